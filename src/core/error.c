/*
 * error.c: status strings, enum names, version, logging fan-out.
 */
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

const char *sr_status_str(enum sr_status status) {
    switch (status) {
    case SR_OK: return "ok";
    case SR_ERR_INVALID_ARG: return "invalid argument";
    case SR_ERR_NOMEM: return "out of memory";
    case SR_ERR_IO: return "i/o error";
    case SR_ERR_MODEL_LOAD: return "model load failed";
    case SR_ERR_CONTEXT_FULL: return "context full";
    case SR_ERR_ABORTED: return "aborted";
    case SR_ERR_BACKEND: return "backend error";
    case SR_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *sr_version(void) { return SR_VERSION; }

const char *sr_mode_str(enum sr_mode mode) {
    switch (mode) {
    case SR_MODE_SPEC: return "spec";
    case SR_MODE_BASE: return "base";
    case SR_MODE_SMALL: return "small";
    }
    return "?";
}

const char *sr_author_str(enum sr_author a) {
    switch (a) {
    case SR_AUTHOR_SMALL: return "small";
    case SR_AUTHOR_BASE_REJECT: return "base-reject";
    case SR_AUTHOR_BASE_FORCED: return "base-forced";
    case SR_AUTHOR_SMALL_ONLY: return "small-only";
    case SR_AUTHOR_ANSWER: return "answer";
    }
    return "?";
}

const char *sr_stop_str(enum sr_stop_reason s) {
    switch (s) {
    case SR_STOP_NONE: return "none";
    case SR_STOP_ANSWER: return "answer";
    case SR_STOP_REPEAT: return "repeat";
    case SR_STOP_BUDGET: return "budget";
    case SR_STOP_EOG: return "eog";
    case SR_STOP_CANCELLED: return "cancelled";
    case SR_STOP_ANSWER_MAX: return "answer-max";
    case SR_STOP_CONTEXT: return "context";
    }
    return "?";
}

void sr_free(void *ptr) { free(ptr); }

/* The logger is process-global because llama.cpp's is (see llama_backend.c). */
static sr_log_fn g_log_fn;
static void *g_log_user;
static enum sr_log_level g_log_min = SR_LOG_WARN;

void sr_log_set_internal(sr_log_fn fn, void *user, enum sr_log_level min_level);
void sr_log_set_internal(sr_log_fn fn, void *user, enum sr_log_level min_level) {
    g_log_fn = fn;
    g_log_user = user;
    g_log_min = min_level;
}

void sr_log(enum sr_log_level level, const char *fmt, ...) {
    if (!g_log_fn || level < g_log_min) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    g_log_fn(level, msg, g_log_user);
}

const char *sr_policy_str(enum sr_policy p) {
    switch (p) {
    case SR_POLICY_AUTO: return "auto";
    case SR_POLICY_ALWAYS: return "always";
    case SR_POLICY_NEVER: return "never";
    }
    return "?";
}

const char *sr_pipeline_str(enum sr_pipeline p) {
    switch (p) {
    case SR_PIPE_AUTO: return "auto";
    case SR_PIPE_ON: return "on";
    case SR_PIPE_OFF: return "off";
    }
    return "?";
}

const char *sr_ctl_reason_str(enum sr_ctl_reason r) {
    switch (r) {
    case SR_CTL_FIXED: return "fixed";
    case SR_CTL_WARMUP: return "warmup";
    case SR_CTL_CHEAPER: return "cheaper";
    case SR_CTL_BASE: return "base";
    case SR_CTL_PROBE: return "probe";
    }
    return "?";
}

const char *sr_ctl_gate_str(enum sr_ctl_gate g) {
    switch (g) {
    case SR_GATE_NONE: return "none";
    case SR_GATE_JUDGED: return "judged";
    case SR_GATE_SKIPPED: return "skipped";
    case SR_GATE_AUDIT: return "audit";
    }
    return "?";
}
