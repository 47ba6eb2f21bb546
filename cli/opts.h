/*
 * opts.h: command-line options from one table, shared by the specreason tools: the table drives
 * parsing (--name VALUE, --name=VALUE, -x VALUE), range checks with strtol/strtod and --help.
 * Bad values are rejected naming the option and its range, never clamped.
 */
#ifndef SR_CLI_OPTS_H
#define SR_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "specreason.h"

enum opt_kind { OPT_FLAG, OPT_STR, OPT_INT, OPT_U64, OPT_FLOAT };

struct opt {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 = none */
    enum opt_kind kind;
    void *dst;        /* bool, const char *, int64_t, uint64_t or double */
    double lo, hi;    /* inclusive range for numbers */
    const char *help;
};

/* Prints "PROG: message" and the --help hint to stderr; returns 2 (usage error). */
int opt_bad(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses argv into the table's destinations; on_set (may be NULL) is called for each option
 * given. Returns 0, or 2 after printing the error. */
int opt_parse(const char *prog, const struct opt *opts, size_t n, int argc, char **argv,
              void (*on_set)(const struct opt *o, void *user), void *user);
/* The option list for --help, the left column `width` wide. */
void opt_usage(FILE *f, const struct opt *opts, size_t n, int width);
/* Index of val in names, or 2 after printing "unknown WHAT 'val'". */
int opt_pick(const char *prog, const char *val, const char *what, const char *const *names, int n, int *out);

/* ---- options both tools share: models, steps, sampling, drafting, hardware ------------------ */

struct common_opts {
    const char *small_path, *base_path, *score, *answer_by, *judge_prompt, *judge_prefill;
    int64_t first_n, max_step, budget, max_answer, draft_max, draft_min;
    int64_t ctx, small_ctx, base_ctx, threads, threads_batch, ngl, small_ngl, base_ngl;
    double temp, top_p, small_temp, small_top_p, base_temp, base_top_p, draft_p_min;
    bool greedy, no_strip, set_temp, set_top_p;
    /* remote models and RPC workers (docs/REMOTE.md) */
    const char *small_url, *base_url, *small_model, *base_model, *remote_template, *rpc;
    double remote_timeout;
    int64_t remote_retries;
    const char *policy; /* the controller (issue 14) */
    const char *pipeline; /* pipelined speculation (issue 17) */
    const char *gate_label;
    bool verify_rewrite;
    int64_t small_threads, base_threads;
    double ctl_precision, ctl_audit;
    int64_t ctl_probe_max;
};

/* Table rows of the shared options, for a tool's `static const struct opt OPTS[]` (O is the
 * tool's struct common_opts). */
#define COMMON_OPTS_MODELS(O)                                                                              \
    {"small", 0, OPT_STR, &(O).small_path, 0, 0, "small (draft) model GGUF"},                              \
    {"base", 0, OPT_STR, &(O).base_path, 0, 0, "base (judge) model GGUF"}
#define COMMON_OPTS_STEPS(O)                                                                               \
    {"score", 0, OPT_STR, &(O).score, 0, 0, "greedy | average | digit-softmax: how the judge's score is read (default greedy)"}, \
    {"first-n-base", 0, OPT_INT, &(O).first_n, 0, 1e9, "the first N steps are written by the base model (default 0)"}, \
    {"max-step-tokens", 0, OPT_INT, &(O).max_step, 1, 65536, "a step ends after this many tokens (default 512)"}, \
    {"budget", 'n', OPT_INT, &(O).budget, 1, 16777216, "token budget: adopted step tokens (default 8192)"},      \
    {"max-answer-tokens", 0, OPT_INT, &(O).max_answer, 0, 16777216, "cap on the answer after </think> (default 1024)"}
#define COMMON_OPTS_SAMPLING(O)                                                                            \
    {"temp", 0, OPT_FLOAT, &(O).temp, 0, 100, "temperature of both models (default 0.6; 0 = greedy)"},      \
    {"top-p", 0, OPT_FLOAT, &(O).top_p, 1e-9, 1, "top-p of both models (default 0.95)"},                    \
    {"small-temp", 0, OPT_FLOAT, &(O).small_temp, 0, 100, "temperature of the small model"},                \
    {"small-top-p", 0, OPT_FLOAT, &(O).small_top_p, 1e-9, 1, "top-p of the small model"},                   \
    {"base-temp", 0, OPT_FLOAT, &(O).base_temp, 0, 100, "temperature of the base model"},                   \
    {"base-top-p", 0, OPT_FLOAT, &(O).base_top_p, 1e-9, 1, "top-p of the base model"},                      \
    {"greedy", 0, OPT_FLAG, &(O).greedy, 0, 0, "greedy decoding for both models (same as --temp 0)"}
#define COMMON_OPTS_THINKING(O)                                                                            \
    {"answer-by", 0, OPT_STR, &(O).answer_by, 0, 0, "base | loop: who writes the answer after </think> (default base)"}, \
    {"no-strip-think-end", 0, OPT_FLAG, &(O).no_strip, 0, 0, "let a step without an answer marker end the thinking"}
#define COMMON_OPTS_JUDGE(O)                                                                               \
    {"judge-prompt", 0, OPT_STR, &(O).judge_prompt, 0, 0, "custom judge instruction (user turn)"},          \
    {"judge-prefill", 0, OPT_STR, &(O).judge_prefill, 0, 0, "custom judge assistant prefill"}
#define COMMON_OPTS_DRAFT(O, WHERE)                                                                        \
    {"draft-max", 0, OPT_INT, &(O).draft_max, 1, 64, WHERE "tokens drafted per verification (default 8)"},   \
    {"draft-min", 0, OPT_INT, &(O).draft_min, 0, 64, WHERE "drafts shorter than this are not verified (default 0)"}, \
    {"draft-p-min", 0, OPT_FLOAT, &(O).draft_p_min, 0, 1, WHERE "stop drafting below this draft probability (default 0.5)"}
#define COMMON_OPTS_POLICY(O)                                                                              \
    {"policy", 0, OPT_STR, &(O).policy, 0, 0,                                                               \
     "auto | always | never: mode spec's controller (default auto: decides per step; always: the reference; never: base only)"}, \
    {"gate-precision", 0, OPT_FLOAT, &(O).ctl_precision, 1e-6, 1,                                           \
     "auto: skip the judge only where the gate label's rate is at least this (lower bound; 1 = never skip; default 0.97)"}, \
    {"gate-label", 0, OPT_STR, &(O).gate_label, 0, 0,                                                       \
     "outcome | judge: what the gate calibrates against (default outcome: the draft was kept, or the base model rewrote it to the same text)"}, \
    {"verify-rewrite", 0, OPT_FLAG, &(O).verify_rewrite, 0, 0,                                               \
     "auto, greedy: the base model rewrites a rejected draft verifying the small model's tokens in batches (faster; near ties may change the text)"}, \
    {"audit", 0, OPT_FLOAT, &(O).ctl_audit, 0, 1, "auto: fraction of skippable drafts judged anyway (default 0.1)"}, \
    {"probe-max", 0, OPT_INT, &(O).ctl_probe_max, 1, 65536,                                                  \
     "auto: most base-written steps between probes of speculation (default 64)"},                             \
    {"pipeline", 0, OPT_STR, &(O).pipeline, 0, 0,                                                           \
     "auto | on | off: draft the next step while the base model judges (greedy small model; same output; "    \
     "default auto: when both models' threads fit the cores)"}
#define COMMON_OPTS_HARDWARE(O)                                                                            \
    {"ctx", 'c', OPT_INT, &(O).ctx, 0, 16777216, "context tokens per model (default: min(16384, training context))"}, \
    {"small-ctx", 0, OPT_INT, &(O).small_ctx, 0, 16777216, "context tokens of the small model"},             \
    {"base-ctx", 0, OPT_INT, &(O).base_ctx, 0, 16777216, "context tokens of the base model"},                \
    {"threads", 0, OPT_INT, &(O).threads, 0, 512, "CPU threads (default: all cores)"},                       \
    {"threads-batch", 0, OPT_INT, &(O).threads_batch, 0, 512, "CPU threads for prefill and judging (default: --threads)"}, \
    {"small-threads", 0, OPT_INT, &(O).small_threads, 0, 512, "CPU threads of the small model (decode and prefill)"}, \
    {"base-threads", 0, OPT_INT, &(O).base_threads, 0, 512, "CPU threads of the base model (decode and prefill)"}, \
    {"ngl", 0, OPT_INT, &(O).ngl, -1, 1e6, "layers on the GPU for both models (-1 = all, default 0)"},        \
    {"small-ngl", 0, OPT_INT, &(O).small_ngl, -1, 1e6, "GPU layers of the small model"},                     \
    {"base-ngl", 0, OPT_INT, &(O).base_ngl, -1, 1e6, "GPU layers of the base model"}

/* Models on OpenAI-compatible servers and llama.cpp RPC workers (API keys come from
 * SPECREASON_SMALL_API_KEY / SPECREASON_BASE_API_KEY). */
#define COMMON_OPTS_REMOTE(O)                                                                              \
    {"small-url", 0, OPT_STR, &(O).small_url, 0, 0,                                                         \
     "small model on an OpenAI-compatible server (llama-server, vLLM, SGLang); --small GGUF is then only its vocabulary"}, \
    {"base-url", 0, OPT_STR, &(O).base_url, 0, 0, "base model on an OpenAI-compatible server (as --small-url)"}, \
    {"small-model", 0, OPT_STR, &(O).small_model, 0, 0, "model name sent to the small model's server"},    \
    {"base-model", 0, OPT_STR, &(O).base_model, 0, 0, "model name sent to the base model's server"},       \
    {"remote-template", 0, OPT_STR, &(O).remote_template, 0, 0,                                            \
     "llama.cpp template name for a remote model without GGUF or /apply-template (default chatml)"},       \
    {"remote-timeout", 0, OPT_FLOAT, &(O).remote_timeout, 0.001, 86400, "seconds per HTTP request (default 600)"}, \
    {"remote-retries", 0, OPT_INT, &(O).remote_retries, 0, 100, "retries after 429/5xx/connection errors (default 3)"}, \
    {"rpc", 0, OPT_STR, &(O).rpc, 0, 0, "HOST:PORT,... ggml-rpc-server workers for the in-process models' layers"}

/* Defaults (those of sr_run_default_params; "not given" for the per-model overrides). */
void common_opts_init(struct common_opts *o);
/* Call from the tool's on_set: notes which of the both-model options were given. */
void common_opts_on_set(struct common_opts *o, const struct opt *given);
/* Resolves the shared options into rp (per-model values override both-model ones; --greedy
 * overrides temperatures). Returns 0, or 2 after printing a usage error. */
int common_opts_run_params(const char *prog, const struct common_opts *o, struct sr_run_params *rp);
/* The engine parameters; a model path (or URL) is set only when that model is needed. */
void common_opts_engine_params(const struct common_opts *o, bool need_small, bool need_base,
                               struct sr_engine_params *ep);

#endif
