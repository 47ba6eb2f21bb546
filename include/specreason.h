/*
 * specreason.h: speculative reasoning (SpecReason, arXiv 2504.07891) as a C library.
 *
 * A small model writes each reasoning step; the base model scores the step 0-9 in one prefill
 * pass and keeps it when the score reaches a threshold, otherwise the base model writes the step
 * itself. Both models keep their KV cache for the adopted text, so judging a step costs the
 * prefill of the step plus a short judge suffix, never the whole context.
 *
 * Objects:
 *   struct sr_engine   both loaded models; immutable after sr_engine_init, may be shared by threads.
 *   struct sr_session  one problem's mutable state (model contexts, samplers, buffers); one thread
 *                      at a time. Create one per concurrent problem.
 *   struct sr_result   what a run produced: text, steps, statistics. Caller frees.
 *
 * Usage:
 *   struct sr_engine_params ep = sr_engine_default_params();
 *   ep.small.path = "small.gguf"; ep.base.path = "base.gguf";
 *   struct sr_engine *eng; struct sr_error err;
 *   if (sr_engine_init(&ep, &eng, &err) != SR_OK) { fprintf(stderr, "%s\n", err.msg); ... }
 *   struct sr_run_params rp = sr_run_default_params();
 *   struct sr_result *res;
 *   if (sr_run(eng, "What is 1+1?", &rp, &res, &err) == SR_OK) { puts(res->text); sr_result_free(res); }
 *   sr_engine_free(eng);
 *
 * The library never exits, aborts or prints on bad input: fallible calls return enum sr_status
 * and a message. It never includes llama.h: no llama.cpp type appears here.
 */
#ifndef SPECREASON_H
#define SPECREASON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SR_API __attribute__((visibility("default")))
#define SR_NODISCARD __attribute__((warn_unused_result))
#else
#define SR_API
#define SR_NODISCARD
#endif

#define SR_VERSION "0.1.0"

/* ------------------------------------------------------------------------------------------ */
/* Status and errors                                                                          */

enum sr_status {
    SR_OK = 0,
    SR_ERR_INVALID_ARG = -1,  /* a parameter is out of range or inconsistent */
    SR_ERR_NOMEM = -2,        /* an allocation failed */
    SR_ERR_IO = -3,           /* a file could not be read or written */
    SR_ERR_MODEL_LOAD = -4,   /* a model file is missing, corrupt or unsupported */
    SR_ERR_CONTEXT_FULL = -5, /* prompt plus budget does not fit in the context */
    SR_ERR_ABORTED = -6,      /* cancelled by a callback */
    SR_ERR_BACKEND = -7,      /* llama.cpp (or a remote engine) failed */
    SR_ERR_INTERNAL = -8,     /* a bug: an invariant did not hold */
};

/* Static text for a status code. Never NULL. */
SR_API const char *sr_status_str(enum sr_status status);

/* Filled by constructors and one-shot calls on failure (may be passed as NULL). */
struct sr_error {
    enum sr_status status;
    char msg[512]; /* NUL-terminated, human-readable detail */
};

SR_API const char *sr_version(void);

/* ------------------------------------------------------------------------------------------ */
/* Logging. llama.cpp's logger is process-global, so this is too. NULL callback = silent
 * (the default). Not thread-safe: call once at start-up.                                     */

enum sr_log_level { SR_LOG_DEBUG = 1, SR_LOG_INFO = 2, SR_LOG_WARN = 3, SR_LOG_ERROR = 4 };
typedef void (*sr_log_fn)(enum sr_log_level level, const char *msg, void *user);
/* Messages below min_level are dropped. Also routes llama.cpp/ggml logs. */
SR_API void sr_log_set(sr_log_fn fn, void *user, enum sr_log_level min_level);

/* ------------------------------------------------------------------------------------------ */
/* Engine: the two models                                                                     */

struct sr_engine;

struct sr_model_params {
    const char *path;        /* GGUF file; borrowed during sr_engine_init; NULL = model not loaded */
    int32_t n_gpu_layers;    /* layers offloaded to a GPU; -1 = all, 0 = CPU only (default 0) */
    uint32_t n_ctx;          /* context tokens per session; 0 = min(16384, model's n_ctx_train) */
    int32_t n_threads;       /* CPU threads for decoding; 0 = number of online cores */
    int32_t n_threads_batch; /* CPU threads for prefill; 0 = n_threads */
    /* A model served by an OpenAI-compatible HTTP server (llama-server, vLLM, SGLang) instead of
     * loaded in-process: see docs/REMOTE.md. With a url, `path` is optional and names a GGUF that
     * is read for its vocabulary and chat template only (exact tokenization, local rendering). */
    const char *url;           /* server base URL, e.g. "http://127.0.0.1:8080"; NULL = in-process */
    const char *model;         /* "model" sent with requests; NULL = the server's first model */
    const char *api_key;       /* sent as "Authorization: Bearer KEY"; NULL = none */
    const char *chat_template; /* remote without a GGUF and without llama-server's /apply-template:
                                  a llama.cpp template name ("chatml", "llama3", ...); NULL = chatml */
    double timeout_s;          /* per HTTP request (connect timeout min(10, this)); 0 = 600 */
    int32_t max_retries;       /* retries after 429/5xx/connection errors/timeouts; 0 = 3, < 0 = none */
    /* In-process only: llama.cpp RPC workers ("host:port,host:port"; ggml-rpc-server) that hold
     * the layers. n_gpu_layers 0 then means all layers on the workers. NULL = none. */
    const char *rpc;
};

struct sr_engine_params {
    struct sr_model_params small; /* drafts steps (modes spec and small) */
    struct sr_model_params base;  /* judges and writes steps (modes spec and base) */
    int32_t n_parallel;           /* >= 2: the first n_parallel sessions share one context per model
                                     (one sequence each, n_ctx tokens per sequence) and the forward
                                     passes of concurrent runs are merged into single batches; output
                                     is that of a run alone. 0 or 1 (default): each session has
                                     contexts of its own. At most 256. */
};

SR_API struct sr_engine_params sr_engine_default_params(void);

/* Loads the models. On success *out owns them; free with sr_engine_free. On failure *out is
 * NULL, err (if non-NULL) says why, and nothing is leaked. At least one path must be set. */
SR_API SR_NODISCARD enum sr_status sr_engine_init(const struct sr_engine_params *params,
                                                  struct sr_engine **out, struct sr_error *err);
/* NULL is a no-op. No session may outlive its engine. */
SR_API void sr_engine_free(struct sr_engine *engine);

/* Human-readable description of a loaded model ("small" or "base"), into buf with snprintf
 * semantics; returns the length it needed, or -1 if that model is not loaded. */
SR_API int sr_engine_model_desc(const struct sr_engine *engine, bool base, char *buf, size_t size);

/* ------------------------------------------------------------------------------------------ */
/* Running one problem                                                                        */

enum sr_mode {
    SR_MODE_SPEC = 0,  /* small drafts, base judges, base rewrites rejected steps */
    SR_MODE_BASE = 1,  /* base model alone, same step loop */
    SR_MODE_SMALL = 2, /* small model alone, same step loop */
};

enum sr_score_method {
    SR_SCORE_GREEDY = 0,  /* argmax over the whole vocabulary; 0 if it is not a digit */
    SR_SCORE_AVERAGE = 1, /* the reference's average: expectation of the digit over the digits among
                             the ten most likely tokens, renormalised over them; 0 if none is */
    SR_SCORE_DIGIT_SOFTMAX = 2, /* expectation under softmax over the ten digit logits, whatever
                                   else is likely (not the reference's) */
};

enum sr_answer_by {
    SR_ANSWER_BASE = 0, /* after </think>, the base model (the only model in small mode) writes the answer */
    SR_ANSWER_LOOP = 1, /* the step loop keeps going after </think> (the reference's behaviour) */
};

enum sr_author {
    SR_AUTHOR_SMALL = 0,       /* small model's draft, accepted by the judge */
    SR_AUTHOR_BASE_REJECT = 1, /* base model, after the small draft was rejected */
    SR_AUTHOR_BASE_FORCED = 2, /* base model, forced (first N steps, or mode base) */
    SR_AUTHOR_SMALL_ONLY = 3,  /* small model in mode small (no judge) */
    SR_AUTHOR_ANSWER = 4,      /* the final answer after </think> */
};

enum sr_stop_reason {
    SR_STOP_NONE = 0,
    SR_STOP_ANSWER = 1,    /* a step contained an answer marker (boxed, Answer:, ANSWER:) */
    SR_STOP_REPEAT = 2,    /* the same step twice in a row */
    SR_STOP_BUDGET = 3,    /* adopted step tokens reached the token budget */
    SR_STOP_EOG = 4,       /* the answer ended with an end-of-generation token */
    SR_STOP_CANCELLED = 5, /* the event callback returned false */
    SR_STOP_ANSWER_MAX = 6, /* the answer after </think> was cut at max_answer_tokens (also 0) */
    SR_STOP_CONTEXT = 7,   /* a model's context filled up mid-run; the steps so far are kept */
};

/* How the cost-aware controller (src/core/controller.c) runs mode spec. */
enum sr_policy {
    SR_POLICY_AUTO = 0,   /* per step: speculate or let the base model write, by expected time; skip
                             the judge on drafts the small model is confident about (calibrated
                             per pair on judged drafts: ctl_gate_label) */
    SR_POLICY_ALWAYS = 1, /* speculate and judge every step (the reference's behaviour) */
    SR_POLICY_NEVER = 2,  /* the base model writes every step (exactly mode base) */
};

/* What the judge-skip gate of policy auto calibrates against (struct sr_run_params.ctl_gate_label). */
enum sr_gate_label {
    SR_LABEL_OUTCOME = 0, /* the step's outcome: a judged draft counts as skippable when it was kept,
                             or rejected and rewritten by the base model to the same text (skipping
                             the judge would have changed nothing) */
    SR_LABEL_JUDGE = 1,   /* the judge's verdict alone */
};

/* Pipelined speculation (src/core/pipeline.c): while the base model judges step k, the small
 * model drafts step k+1 on a second thread as if step k were accepted. Results are identical to
 * an unpipelined run; only time changes. Only a greedy small model is pipelined (a thrown-away
 * draft would consume its sampler's random draws), and not with spec_decode. */
enum sr_pipeline {
    SR_PIPE_AUTO = 0, /* when both models' threads fit the online cores and acceptance is high */
    SR_PIPE_ON = 1,   /* whenever it is exact (greedy small model, no spec_decode) */
    SR_PIPE_OFF = 2,  /* never: the reference's strict turn-taking */
};

/* Why a step went the way it did (struct sr_step.ctl_reason). */
enum sr_ctl_reason {
    SR_CTL_FIXED = 0,     /* no decision: policy always/never, another mode, or a first-N step */
    SR_CTL_WARMUP = 1,    /* speculated while the cost model and the judge-skip gate warm up */
    SR_CTL_CHEAPER = 2,   /* speculated: expected time below the base model writing the step */
    SR_CTL_BASE = 3,      /* the base model wrote: expected time below speculating */
    SR_CTL_PROBE = 4,     /* speculated to re-measure acceptance while the base model writes */
};

/* What happened to a draft's judgement (struct sr_step.ctl_gate). */
enum sr_ctl_gate {
    SR_GATE_NONE = 0,    /* no draft, or nothing to decide (policy always) */
    SR_GATE_JUDGED = 1,  /* judged: the gate is not calibrated or the confidence is below its level */
    SR_GATE_SKIPPED = 2, /* accepted unjudged: confidence at or above the calibrated level */
    SR_GATE_AUDIT = 3,   /* above the level but judged anyway (sampled audit of the gate) */
};

struct sr_sampling {
    float temperature; /* <= 0 = greedy (argmax); default 0.6 */
    float top_p;       /* nucleus mass in (0, 1]; 1 = off; default 0.95 */
};

enum sr_event_type {
    SR_EVENT_STEP_DRAFTED = 0, /* the small model wrote a candidate step (text, n_tokens) */
    SR_EVENT_STEP_SCORED = 1,  /* the base model scored it (score, accepted) */
    SR_EVENT_STEP_ADOPTED = 2, /* a step joined the reasoning (text, author, score) */
    SR_EVENT_ANSWER = 3,       /* the final answer text after </think> */
    SR_EVENT_FINISHED = 4,     /* the run ended (stop reason in ev->stop) */
    SR_EVENT_PROMPT = 5,       /* the prompt is in the models' contexts and fits; steps follow
                                  (n_tokens = prompt tokens, t_ms = prefill time) */
};

struct sr_event {
    enum sr_event_type type;
    int32_t step;             /* 0-based step index */
    const char *text;         /* borrowed for the call; not NUL-terminated beyond len */
    size_t len;
    enum sr_author author;
    float score;              /* judge score, or -1 when not judged */
    bool accepted;
    int32_t n_tokens;         /* tokens of this text in its author's tokenizer */
    double t_ms;              /* time this event's work took */
    enum sr_stop_reason stop; /* SR_EVENT_FINISHED only */
};
/* Return false to cancel the run (it then stops with SR_STOP_CANCELLED). */
typedef bool (*sr_event_fn)(const struct sr_event *ev, void *user);

/* Default prompt strings, verbatim from the reference implementation (spec_reason.py). */
#define SR_PROMPT_MATH                                                                          \
    "\n        Solve the following math problem efficiently and clearly. Please reason step by " \
    "step, \n        separate logical reasoning steps with two newline characters (\n\n), and " \
    "put your final answer within \\boxed{}.\n        Problem: {problem}\n        "
#define SR_PROMPT_GPQA                                                                          \
    "\n        What is the correct answer to the following problem? Please reason step by "     \
    "step. \n        Separate logical reasoning steps with two newline characters (\n\n).\n"    \
    "        Put the final answer **strictly** in the format \\boxed{X}, where X is a single "   \
    "letter (A, B, C, or D).\n\n        **Example output:** \\boxed{A}\n\n        Problem: "     \
    "{problem}.\n        Choices: \n        (A) {ans_a}\n        (B) {ans_b}\n        (C) "     \
    "{ans_c}\n        (D) {ans_d}\n        "
#define SR_JUDGE_PROMPT                                                                          \
    "Evaluate the last reasoning step solely based on factual correctness and logical validity. " \
    "Ignore style, phrasing, or overall usefulness\xe2\x80\x94only judge whether the step is "    \
    "objectively correct and logically follows from prior steps. Assign a score from 0 to 9."
#define SR_JUDGE_PREFILL "<think>I think the quality score is: "

struct sr_run_params {
    enum sr_mode mode;                 /* default SR_MODE_SPEC */
    float threshold;                   /* accept iff score >= threshold; [0, 10]; default 7 */
    enum sr_score_method score_method; /* default SR_SCORE_GREEDY */
    int32_t first_n_base;              /* the first N steps are written by the base model; default 0 */
    int32_t max_step_tokens;           /* a step ends after this many tokens; [1, 65536]; default 512 */
    int32_t token_budget;              /* stop once adopted step tokens reach this; default 8192 */
    int32_t max_answer_tokens;         /* cap on the answer after </think>; default 1024 */
    struct sr_sampling small;          /* default 0.6 / 0.95 */
    struct sr_sampling base;           /* default 0.6 / 0.95 */
    uint64_t seed;                     /* sampling seed; same seed = same output; default 0 */
    enum sr_answer_by answer_by;       /* default SR_ANSWER_BASE */
    bool strip_think_end;              /* remove </think> from a step without an answer marker
                                          (reference behaviour); default true */
    const char *prompt_template;       /* user message; "{problem}" is replaced; NULL = SR_PROMPT_MATH */
    const char *judge_prompt;          /* judge user turn; NULL = SR_JUDGE_PROMPT */
    const char *judge_prefill;         /* judge assistant prefill; NULL = SR_JUDGE_PREFILL */
    const char *think_open;            /* opens the thinking turn; NULL = "<think>\n" */
    const char *step_delim;            /* step delimiter; NULL = "\n\n" */
    bool spec_decode;                  /* token-level speculative decoding wherever the base model
                                          writes (rejected steps, first N, answer, mode base);
                                          needs compatible vocabularies; default false */
    int32_t draft_max;                 /* tokens the small model drafts per verification; [1, 64];
                                          default 8 */
    int32_t draft_min;                 /* drafts shorter than this are not verified; [0, draft_max];
                                          default 0 */
    float draft_p_min;                 /* stop drafting when the small model's top token probability
                                          (softmax over its ten best, as llama.cpp's draft-simple)
                                          falls below this; [0, 1]; default 0.5 */
    sr_event_fn on_event;              /* streaming callback; NULL = none */
    void *user;                        /* passed to on_event and should_abort */
    bool (*should_abort)(void *user);  /* polled before every forward pass (so at least once per
                                          generated token); returning true stops the run at once,
                                          even inside a step, with SR_ERR_ABORTED and no result.
                                          NULL = never. May be called from the run's thread only. */
    /* The cost-aware controller (mode spec only). Its cost model and gate calibration are kept
     * per engine across runs (sessions share them), so decisions improve as an engine serves. */
    enum sr_policy policy;             /* default SR_POLICY_AUTO */
    float ctl_precision;               /* judge-skip gate: skip only where a lower confidence bound
                                          of the gate label's rate reaches this; (0, 1]; 1 = never
                                          skip; default 0.97 */
    enum sr_gate_label ctl_gate_label; /* what the gate calibrates against; default outcome */
    bool ctl_verify_rewrite;           /* policy auto, greedy, in-process, shared tokenizer: the base
                                          model rewrites a rejected draft verifying the small model's
                                          tokens in batches (faster where it rewrites the same text);
                                          batched logits round differently, so on near ties the text
                                          can differ from a plain rewrite; default false */
    float ctl_audit;                   /* fraction of skippable drafts judged anyway; [0, 1];
                                          default 0.1 */
    int32_t ctl_probe_max;             /* most base-written steps between two probes of
                                          speculation; [1, 65536]; default 64 */
    enum sr_pipeline pipeline;         /* draft step k+1 while step k is judged; default auto */
};

SR_API struct sr_run_params sr_run_default_params(void);

/* Checks a parameter set without running; returns SR_ERR_INVALID_ARG naming the bad field. */
SR_API SR_NODISCARD enum sr_status sr_run_params_check(const struct sr_run_params *params,
                                                       struct sr_error *err);

struct sr_stats {
    int32_t n_steps;             /* adopted reasoning steps */
    int32_t n_steps_small;       /* small drafts accepted (or written in mode small) */
    int32_t n_steps_base_reject; /* base steps written after a rejection */
    int32_t n_steps_base_forced; /* base steps written without a draft (first N, mode base) */
    int32_t n_judged;            /* judge calls */
    int32_t score_hist[10];      /* judge scores, floor()ed into 0..9 */
    double acceptance;           /* n_steps_small / n_judged (0 if none judged) */

    int64_t n_prompt_tokens_small; /* prompt prefill, per model */
    int64_t n_prompt_tokens_base;
    int64_t n_adopted_tokens;      /* tokens of adopted steps (what counts against the budget) */
    int64_t n_adopted_small;       /* of which written by the small model */
    int64_t n_adopted_base;        /* of which written by the base model */
    int64_t n_rejected_tokens;     /* small tokens of rejected drafts */
    int64_t n_judge_tokens;        /* base prefill tokens spent judging (candidate + suffix) */
    int64_t n_sync_tokens;         /* tokens appended to a model to adopt the other's text */
    int64_t n_answer_tokens;       /* tokens of the answer after </think> */
    int64_t n_decode_small;        /* llama_decode calls, per model */
    int64_t n_decode_base;

    double t_small_ms;   /* small model drafting */
    double t_judge_ms;   /* base model judging */
    double t_base_ms;    /* base model writing steps and the answer */
    double t_sync_ms;    /* adopting text into the other model, rollbacks */
    double t_prompt_ms;  /* prompt prefill */
    double t_other_ms;   /* everything else */
    double t_total_ms;   /* end-to-end latency of the run */
    double t_backend_ms; /* time inside model calls (decode, sampling, tokenizing) */
    double tokens_per_s; /* (adopted + answer tokens) / total seconds */

    /* token-level speculative decoding (spec_decode) */
    int64_t n_sd_drafted;  /* tokens drafted by the small model */
    int64_t n_sd_accepted; /* drafted tokens the base model kept */
    int64_t n_sd_batches;  /* verification batches (base forward passes while drafting) */
    double sd_mean_accepted; /* n_sd_accepted / n_sd_batches */
    double t_sd_draft_ms;  /* small model drafting inside base writing */
    double t_sd_verify_ms; /* base model verifying */

    /* remote backends (docs/REMOTE.md); all 0 for in-process models */
    int64_t n_http_requests_small; /* HTTP requests, retries included */
    int64_t n_http_requests_base;
    int64_t n_http_retries_small;  /* requests repeated after 429/5xx/connection errors */
    int64_t n_http_retries_base;
    int64_t n_http_bytes_small;    /* request + response bytes */
    int64_t n_http_bytes_base;
    double t_http_small_ms;        /* time inside HTTP requests */
    double t_http_base_ms;
    /* the cost-aware controller (policy auto; zero otherwise) */
    int32_t n_ctl_spec;        /* steps speculated by decision (incl. warm-up and probes) */
    int32_t n_ctl_base;        /* steps the base model wrote by decision */
    int32_t n_ctl_probes;      /* of the speculated ones, probes */
    int32_t n_unjudged;        /* drafts accepted without a judge call */
    int32_t n_audits;          /* skippable drafts judged anyway */
    int32_t n_audit_disagree;  /* of which the judge rejected */
    int64_t n_catchup_tokens;  /* tokens of unjudged steps appended to the base model later */
    double t_catchup_ms;       /* time of those appends */
    /* the learned cost model at the end of the run (ms per token; acceptance of judged drafts) */
    double ctl_small_tok_ms;   /* small model decoding */
    double ctl_base_tok_ms;    /* base model decoding */
    double ctl_judge_tok_ms;   /* base model judging, per prefilled token (candidate + suffix) */
    double ctl_catchup_tok_ms; /* base model prefilling unjudged steps */
    double ctl_sync_tok_ms;    /* small model prefilling the base model's steps */
    double ctl_step_tokens;    /* median step length */
    double ctl_acceptance;     /* smoothed judge acceptance of recent drafts */
    double ctl_gate_level;     /* calibrated lowest-token log-probability level (NAN = not yet) */
    double ctl_skip_rate;      /* expected fraction of drafts accepted unjudged */
    /* over the steps decided with a ready cost model: sum of predicted base-only step time over
     * sum of the predicted time of what was chosen, and over the measured time of those steps */
    double ctl_predicted_speedup;
    double ctl_measured_speedup;

    /* pipelined speculation (zero when not pipelined) */
    int32_t n_pipe_started;    /* drafts started ahead, while the base model judged */
    int32_t n_pipe_used;       /* of which became the next step's draft */
    int32_t n_pipe_discarded;  /* of which were thrown away (rejection, stop, base writing) */
    double t_pipe_draft_ms;    /* time the used drafts took on the second thread */
    double t_pipe_wait_ms;     /* time the loop still waited for them (counted in t_small_ms) */
    double t_pipe_hidden_ms;   /* of t_pipe_draft_ms, the part that ran before the loop asked
                                  for the draft (hidden behind judging) */
};

struct sr_step {
    enum sr_author author;
    float score;            /* judge score of the adopted text's draft; -1 if not judged */
    char *text;             /* adopted step text, NUL-terminated, without the delimiter */
    int32_t n_tokens;       /* tokens of the adopted text in its author's tokenizer */
    char *draft;            /* rejected small draft (SR_AUTHOR_BASE_REJECT only), else NULL */
    int32_t n_draft_tokens; /* tokens of the small draft (accepted or rejected); 0 if none */
    float draft_score;      /* score of the rejected draft; -1 if none */
    double t_draft_ms, t_judge_ms, t_base_ms, t_sync_ms;
    /* the controller's view of this step */
    enum sr_ctl_reason ctl_reason;
    enum sr_ctl_gate ctl_gate;
    double ctl_e_spec_ms;   /* expected time of speculating (0 = cost model not ready) */
    double ctl_e_base_ms;   /* expected time of the base model writing the step */
    float conf_min;         /* the draft's lowest token log-probability (NAN = none) */
    float conf_mean;        /* its mean token log-probability (NAN = none) */
};

struct sr_result {
    char *text;        /* everything written after the thinking opener: steps joined with the
                          delimiter, then the answer; NUL-terminated */
    char *answer;      /* the text after </think>, or NULL when thinking never ended */
    struct sr_step *steps;
    size_t n_steps;
    enum sr_stop_reason stop;
    struct sr_stats stats;
};

/* NULL is a no-op. */
SR_API void sr_result_free(struct sr_result *result);

SR_API const char *sr_mode_str(enum sr_mode mode);
SR_API const char *sr_author_str(enum sr_author author);
SR_API const char *sr_stop_str(enum sr_stop_reason stop);
SR_API const char *sr_policy_str(enum sr_policy policy);
SR_API const char *sr_pipeline_str(enum sr_pipeline pipeline);
SR_API const char *sr_ctl_reason_str(enum sr_ctl_reason reason);
SR_API const char *sr_ctl_gate_str(enum sr_ctl_gate gate);

/* Sessions: per-problem state over a shared engine. sr_session_init creates the model
 * contexts (KV caches) once; sr_session_run may be called many times on one session. */
struct sr_session;
SR_API SR_NODISCARD enum sr_status sr_session_init(struct sr_engine *engine, struct sr_session **out,
                                                   struct sr_error *err);
SR_API void sr_session_free(struct sr_session *session);

/* Runs one problem. On SR_OK, *out is a result the caller frees with sr_result_free (also when
 * the run was cancelled: see result->stop). On error *out is NULL and sr_session_errmsg says why. */
SR_API SR_NODISCARD enum sr_status sr_session_run(struct sr_session *session, const char *problem,
                                                  const struct sr_run_params *params,
                                                  struct sr_result **out);
/* Detail of the last error on this session; valid until the next call on it. Never NULL. */
SR_API const char *sr_session_errmsg(const struct sr_session *session);

/* A chat message for sr_session_run_chat. role: "system", "user" or "assistant". */
struct sr_message {
    const char *role;
    const char *content;
};

/* Like sr_session_run, with a whole conversation instead of one problem: the messages are
 * rendered with each model's chat template (any count, multi-turn) and the reasoning continues
 * as a new assistant turn. params->prompt_template is not applied (the messages are used as
 * given). A prompt that does not fit in a context gives SR_ERR_CONTEXT_FULL. */
SR_API SR_NODISCARD enum sr_status sr_session_run_chat(struct sr_session *session, const struct sr_message *msgs,
                                                       size_t n_msgs, const struct sr_run_params *params,
                                                       struct sr_result **out);

/* One-shot convenience: a temporary session, one run. */
SR_API SR_NODISCARD enum sr_status sr_run(struct sr_engine *engine, const char *problem,
                                          const struct sr_run_params *params, struct sr_result **out,
                                          struct sr_error *err);

/* Writes the result as one JSON object (text, steps, stats) to a malloc'd string the caller
 * frees with sr_free; NULL on allocation failure. */
SR_API char *sr_result_to_json(const struct sr_result *result, const struct sr_run_params *params);
SR_API void sr_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* SPECREASON_H */
