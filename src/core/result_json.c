/*
 * result_json.c: a result's JSON form (jansson), written by the library (sr_result_to_json), by
 * specreason-eval's records and by specreason-server, and read back by specreason-eval's client
 * of the server. One table of struct sr_stats's fields serves both directions.
 */
#define _POSIX_C_SOURCE 200809L
#include "result_json.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum ftype { F_I32, F_I64, F_DBL };

struct field {
    const char *name;
    size_t off;
    enum ftype type;
};

#define FLD(name, member, type) {name, offsetof(struct sr_stats, member), type}

/* In output order ("score_hist" follows "acceptance"; "ctl_model" holds the CTL rows). */
static const struct field STATS[] = {
    FLD("steps", n_steps, F_I32),
    FLD("steps_small", n_steps_small, F_I32),
    FLD("steps_base_reject", n_steps_base_reject, F_I32),
    FLD("steps_base_forced", n_steps_base_forced, F_I32),
    FLD("judged", n_judged, F_I32),
    FLD("acceptance", acceptance, F_DBL),
    FLD("prompt_tokens_small", n_prompt_tokens_small, F_I64),
    FLD("prompt_tokens_base", n_prompt_tokens_base, F_I64),
    FLD("adopted_tokens", n_adopted_tokens, F_I64),
    FLD("adopted_small", n_adopted_small, F_I64),
    FLD("adopted_base", n_adopted_base, F_I64),
    FLD("rejected_tokens", n_rejected_tokens, F_I64),
    FLD("judge_tokens", n_judge_tokens, F_I64),
    FLD("sync_tokens", n_sync_tokens, F_I64),
    FLD("answer_tokens", n_answer_tokens, F_I64),
    FLD("decode_calls_small", n_decode_small, F_I64),
    FLD("decode_calls_base", n_decode_base, F_I64),
    FLD("t_small_ms", t_small_ms, F_DBL),
    FLD("t_judge_ms", t_judge_ms, F_DBL),
    FLD("t_base_ms", t_base_ms, F_DBL),
    FLD("t_sync_ms", t_sync_ms, F_DBL),
    FLD("t_prompt_ms", t_prompt_ms, F_DBL),
    FLD("t_other_ms", t_other_ms, F_DBL),
    FLD("t_total_ms", t_total_ms, F_DBL),
    FLD("t_backend_ms", t_backend_ms, F_DBL),
    FLD("tokens_per_s", tokens_per_s, F_DBL),
    FLD("sd_drafted", n_sd_drafted, F_I64),
    FLD("sd_accepted", n_sd_accepted, F_I64),
    FLD("sd_batches", n_sd_batches, F_I64),
    FLD("sd_mean_accepted", sd_mean_accepted, F_DBL),
    FLD("t_sd_draft_ms", t_sd_draft_ms, F_DBL),
    FLD("t_sd_verify_ms", t_sd_verify_ms, F_DBL),
    FLD("http_requests_small", n_http_requests_small, F_I64),
    FLD("http_requests_base", n_http_requests_base, F_I64),
    FLD("http_retries_small", n_http_retries_small, F_I64),
    FLD("http_retries_base", n_http_retries_base, F_I64),
    FLD("http_bytes_small", n_http_bytes_small, F_I64),
    FLD("http_bytes_base", n_http_bytes_base, F_I64),
    FLD("t_http_small_ms", t_http_small_ms, F_DBL),
    FLD("t_http_base_ms", t_http_base_ms, F_DBL),
    FLD("ctl_spec", n_ctl_spec, F_I32),
    FLD("ctl_base", n_ctl_base, F_I32),
    FLD("ctl_probes", n_ctl_probes, F_I32),
    FLD("unjudged", n_unjudged, F_I32),
    FLD("audits", n_audits, F_I32),
    FLD("audit_disagree", n_audit_disagree, F_I32),
    FLD("catchup_tokens", n_catchup_tokens, F_I64),
    FLD("t_catchup_ms", t_catchup_ms, F_DBL),
    FLD("pipe_started", n_pipe_started, F_I32),
    FLD("pipe_used", n_pipe_used, F_I32),
    FLD("pipe_discarded", n_pipe_discarded, F_I32),
    FLD("t_pipe_draft_ms", t_pipe_draft_ms, F_DBL),
    FLD("t_pipe_wait_ms", t_pipe_wait_ms, F_DBL),
    FLD("t_pipe_hidden_ms", t_pipe_hidden_ms, F_DBL),
};

static const struct field CTL[] = {
    FLD("small_tok_ms", ctl_small_tok_ms, F_DBL),
    FLD("base_tok_ms", ctl_base_tok_ms, F_DBL),
    FLD("judge_tok_ms", ctl_judge_tok_ms, F_DBL),
    FLD("catchup_tok_ms", ctl_catchup_tok_ms, F_DBL),
    FLD("sync_tok_ms", ctl_sync_tok_ms, F_DBL),
    FLD("step_tokens", ctl_step_tokens, F_DBL),
    FLD("acceptance", ctl_acceptance, F_DBL),
    FLD("gate_level", ctl_gate_level, F_DBL),
    FLD("skip_rate", ctl_skip_rate, F_DBL),
    FLD("predicted_speedup", ctl_predicted_speedup, F_DBL),
    FLD("measured_speedup", ctl_measured_speedup, F_DBL),
};

static double field_get(const struct sr_stats *S, const struct field *f) {
    const char *p = (const char *)S + f->off;
    switch (f->type) {
    case F_I32: { int32_t v; memcpy(&v, p, sizeof v); return v; }
    case F_I64: { int64_t v; memcpy(&v, p, sizeof v); return (double)v; }
    default: { double v; memcpy(&v, p, sizeof v); return v; }
    }
}

/* Numbers read back as they were written: NaN from null (the writer's non-finite values). */
static void field_set(struct sr_stats *S, const struct field *f, json_t *v) {
    char *p = (char *)S + f->off;
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    switch (f->type) {
    case F_I32: { int32_t x = isfinite(d) ? (int32_t)d : 0; memcpy(p, &x, sizeof x); break; }
    case F_I64: { int64_t x = isfinite(d) ? (int64_t)d : 0; memcpy(p, &x, sizeof x); break; }
    default: memcpy(p, &d, sizeof d); break;
    }
}

json_t *sr_stats_json(const struct sr_stats *S) {
    json_t *o = json_object(), *m = json_object(), *hist = json_array();
    bool ok = o && m && hist;
    for (size_t i = 0; ok && i < sizeof STATS / sizeof STATS[0]; i++) {
        ok = sr_jset(o, STATS[i].name, sr_jnum(field_get(S, &STATS[i])));
        if (ok && strcmp(STATS[i].name, "acceptance") == 0) {
            for (int k = 0; ok && k < 10; k++) ok = json_array_append_new(hist, json_integer(S->score_hist[k])) == 0;
            ok = ok && sr_jset(o, "score_hist", hist);
            hist = NULL;
        }
    }
    for (size_t i = 0; ok && i < sizeof CTL / sizeof CTL[0]; i++) ok = sr_jset(m, CTL[i].name, sr_jnum(field_get(S, &CTL[i])));
    ok = ok && sr_jset(o, "ctl_model", m);
    if (ok) return o;
    json_decref(hist);
    json_decref(m);
    json_decref(o);
    return NULL;
}

bool sr_stats_from_json(json_t *o, struct sr_stats *S) {
    memset(S, 0, sizeof *S);
    if (!json_is_object(o)) return false;
    for (size_t i = 0; i < sizeof STATS / sizeof STATS[0]; i++) field_set(S, &STATS[i], json_object_get(o, STATS[i].name));
    json_t *m = json_object_get(o, "ctl_model");
    for (size_t i = 0; i < sizeof CTL / sizeof CTL[0]; i++) field_set(S, &CTL[i], json_object_get(m, CTL[i].name));
    json_t *hist = json_object_get(o, "score_hist");
    for (int k = 0; k < 10; k++) {
        json_t *v = json_array_get(hist, (size_t)k);
        S->score_hist[k] = json_is_integer(v) ? (int32_t)json_integer_value(v) : 0;
    }
    return true;
}

static bool put_num(json_t *o, const char *k, double v) { return sr_jset(o, k, sr_jnum(v)); }
static bool put_str(json_t *o, const char *k, const char *v) { return sr_jset(o, k, sr_jstr(v)); }

static json_t *step_json(const struct sr_step *s) {
    json_t *g = json_object();
    if (!g) return NULL;
    bool ok = put_str(g, "author", sr_author_str(s->author)) &&
              sr_jset(g, "score", s->score >= 0 ? sr_jnum(s->score) : json_null()) &&
              put_num(g, "tokens", s->n_tokens) && put_str(g, "text", s->text);
    if (ok && s->draft) ok = put_str(g, "rejected_draft", s->draft) && put_num(g, "draft_score", s->draft_score);
    ok = ok && put_num(g, "draft_tokens", s->n_draft_tokens) && put_num(g, "t_draft_ms", s->t_draft_ms) &&
         put_num(g, "t_judge_ms", s->t_judge_ms) && put_num(g, "t_base_ms", s->t_base_ms) &&
         put_num(g, "t_sync_ms", s->t_sync_ms) && put_str(g, "ctl", sr_ctl_reason_str(s->ctl_reason)) &&
         put_str(g, "gate", sr_ctl_gate_str(s->ctl_gate)) && put_num(g, "e_spec_ms", s->ctl_e_spec_ms) &&
         put_num(g, "e_base_ms", s->ctl_e_base_ms) && put_num(g, "conf_min", s->conf_min) &&
         put_num(g, "conf_mean", s->conf_mean);
    if (ok) return g;
    json_decref(g);
    return NULL;
}

json_t *sr_result_json(const struct sr_result *r, const struct sr_run_params *p) {
    json_t *o = json_object(), *steps = json_array();
    bool ok = o && steps;
    if (ok && p) {
        ok = put_str(o, "mode", sr_mode_str(p->mode)) && put_num(o, "threshold", p->threshold) &&
             put_str(o, "score_method", p->score_method == SR_SCORE_GREEDY    ? "greedy"
                                        : p->score_method == SR_SCORE_AVERAGE ? "average"
                                                                              : "digit-softmax") &&
             put_num(o, "seed", (double)p->seed) && sr_jset(o, "spec_decode", json_boolean(p->spec_decode)) &&
             put_str(o, "policy", sr_policy_str(p->policy)) && put_str(o, "pipeline", sr_pipeline_str(p->pipeline));
    }
    ok = ok && put_str(o, "text", r->text) && put_str(o, "answer", r->answer) && put_str(o, "stop", sr_stop_str(r->stop));
    for (size_t i = 0; ok && i < r->n_steps; i++) ok = json_array_append_new(steps, step_json(&r->steps[i])) == 0;
    ok = ok && sr_jset(o, "steps", steps);
    if (!ok) json_decref(steps);
    ok = ok && sr_jset(o, "stats", sr_stats_json(&r->stats));
    if (ok) return o;
    json_decref(o);
    return NULL;
}

/* The enum value whose name (str(i)) is s, for i in [0, n); def if none. */
static int enum_of(const char *s, const char *(*str)(int), int n, int def) {
    for (int i = 0; s && i < n; i++)
        if (strcmp(str(i), s) == 0) return i;
    return def;
}
static const char *author_s(int i) { return sr_author_str((enum sr_author)i); }
static const char *stop_s(int i) { return sr_stop_str((enum sr_stop_reason)i); }
static const char *ctl_s(int i) { return sr_ctl_reason_str((enum sr_ctl_reason)i); }
static const char *gate_s(int i) { return sr_ctl_gate_str((enum sr_ctl_gate)i); }

static double num_or(json_t *o, const char *k, double def) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : json_is_null(v) ? NAN : def;
}

/* A copy of member k if it is a string (NULs kept), NULL otherwise; *bad on OOM. */
static char *str_dup(json_t *o, const char *k, bool *bad) {
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v)) return NULL;
    char *s = sr_strndup(json_string_value(v), json_string_length(v));
    if (!s) *bad = true;
    return s;
}

struct sr_result *sr_result_from_json(json_t *o, char *err, size_t errlen) {
    if (!json_is_object(o) || !json_is_string(json_object_get(o, "text")) || !json_is_array(json_object_get(o, "steps")) ||
        !json_is_object(json_object_get(o, "stats"))) {
        if (errlen) snprintf(err, errlen, "not a result object (text, steps, stats)");
        return NULL;
    }
    struct sr_result *r = calloc(1, sizeof *r);
    if (!r) { if (errlen) snprintf(err, errlen, "out of memory"); return NULL; }
    bool bad = false;
    r->text = str_dup(o, "text", &bad);
    r->answer = str_dup(o, "answer", &bad);
    json_t *stop = json_object_get(o, "stop");
    r->stop = (enum sr_stop_reason)enum_of(json_string_value(stop), stop_s, 8, SR_STOP_NONE);
    sr_stats_from_json(json_object_get(o, "stats"), &r->stats);
    json_t *steps = json_object_get(o, "steps");
    size_t n = json_array_size(steps);
    r->steps = n ? calloc(n, sizeof *r->steps) : NULL;
    if (n && !r->steps) bad = true;
    for (size_t i = 0; !bad && i < n; i++) {
        json_t *g = json_array_get(steps, i);
        struct sr_step *s = &r->steps[r->n_steps++];
        s->author = (enum sr_author)enum_of(json_string_value(json_object_get(g, "author")), author_s, 5, SR_AUTHOR_SMALL);
        double sc = num_or(g, "score", -1);
        s->score = isfinite(sc) ? (float)sc : -1.0f;
        s->n_tokens = (int32_t)num_or(g, "tokens", 0);
        s->text = str_dup(g, "text", &bad);
        if (!s->text && !bad) s->text = sr_strdup("");
        if (!s->text) bad = true;
        s->draft = str_dup(g, "rejected_draft", &bad);
        s->draft_score = (float)num_or(g, "draft_score", -1);
        s->n_draft_tokens = (int32_t)num_or(g, "draft_tokens", 0);
        s->t_draft_ms = num_or(g, "t_draft_ms", 0);
        s->t_judge_ms = num_or(g, "t_judge_ms", 0);
        s->t_base_ms = num_or(g, "t_base_ms", 0);
        s->t_sync_ms = num_or(g, "t_sync_ms", 0);
        s->ctl_reason = (enum sr_ctl_reason)enum_of(json_string_value(json_object_get(g, "ctl")), ctl_s, 5, SR_CTL_FIXED);
        s->ctl_gate = (enum sr_ctl_gate)enum_of(json_string_value(json_object_get(g, "gate")), gate_s, 4, SR_GATE_NONE);
        s->ctl_e_spec_ms = num_or(g, "e_spec_ms", 0);
        s->ctl_e_base_ms = num_or(g, "e_base_ms", 0);
        s->conf_min = (float)num_or(g, "conf_min", NAN);
        s->conf_mean = (float)num_or(g, "conf_mean", NAN);
    }
    if (bad || !r->text) {
        sr_result_free(r);
        if (errlen) snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return r;
}
