/*
 * internal.h: the seam between the SpecReason loop and the models.
 *
 * The loop (loop.c) never sees llama.cpp. It drives two `struct sr_lm` objects through a small
 * table of text-level operations: prefill a prompt, generate a step up to a delimiter, append
 * text written by the other model, judge a candidate, roll back to a mark. llama_backend.c
 * implements them over an in-process llama.cpp context; a remote engine (llama-server, vLLM)
 * or a scripted test double implements the same table.
 *
 * Invariant the loop relies on: after every operation the model's context holds exactly the
 * text the loop has adopted so far (prompt + steps each followed by the delimiter), plus
 * whatever the last generate/judge call is documented to leave.
 */
#ifndef SR_INTERNAL_H
#define SR_INTERNAL_H

#include "specreason.h"
#include "util.h"

struct sr_lm;

enum sr_gen_end {
    SR_GEN_DELIM = 0, /* the delimiter appeared (possibly inside a token) */
    SR_GEN_MAX = 1,   /* max_tokens were generated */
    SR_GEN_EOG = 2,   /* an end-of-generation token was sampled (it is not kept) */
};

struct sr_gen_out {
    struct sr_buf text;  /* generated text, without the delimiter; appended to */
    int32_t n_tokens;    /* tokens sampled (the EOG token not counted) */
    enum sr_gen_end end;
    /* The model's own confidence in what it wrote: log-probabilities (temperature 1, the raw
     * logits) of the sampled tokens, the EOG token not counted, when lm->want_logprob is set
     * (a pass over the vocabulary per token). n_logprob = 0: not reported. */
    int32_t n_logprob;
    float logprob_min;
    double logprob_sum;
};

struct sr_judge_out {
    int32_t n_cand_tokens;   /* candidate tokens prefilled (kept on accept) */
    int32_t n_suffix_tokens; /* judge suffix tokens prefilled (always removed) */
    int32_t greedy_value;    /* numeric value of the argmax token if it is all digits, else -1 */
    float digit_logit[10];   /* raw logits of the tokens "0".."9" */
    bool digit_ok[10];       /* whether the digit is a single token in this vocabulary */
    bool digit_top10[10];    /* whether the digit's token is among the ten most likely tokens */
};

/* A piece of prompt text. Template text (special) has its chat-template markers read as control
 * tokens; anything else (a problem, a step a model wrote) is tokenized as plain text, so
 * "<|im_end|>" inside a problem stays those characters. */
struct sr_seg {
    const char *text;
    size_t len;
    bool special;
};

struct sr_sd_params {
    int32_t draft_max;
    int32_t draft_min;
    float p_min;
};

struct sr_sd_stats {
    int64_t drafted, accepted, batches;
    int64_t t_draft_us, t_verify_us;
};

struct sr_chat_msg {
    const char *role;
    const char *content;
};

struct sr_lm_ops {
    /* Clears the context and prefills the segments as one text (template segments parsed for
     * control tokens, the others as plain text), after a BOS token when the model's vocabulary
     * asks for one. *n_tokens = prompt tokens. */
    enum sr_status (*reset)(struct sr_lm *lm, const struct sr_seg *segs, size_t n_segs, int32_t *n_tokens);
    /* Samples until delim (NULL = none), max_tokens or EOG. Afterwards the context holds the
     * previous text + out->text + delim (the delimiter is appended when the model did not write
     * it; text the model wrote past the delimiter inside the same token is dropped). */
    enum sr_status (*generate)(struct sr_lm *lm, const char *delim, int32_t max_tokens,
                               struct sr_gen_out *out);
    /* Appends text written elsewhere, tokenized as plain text. *n_tokens (may be NULL) = tokens
     * appended. */
    enum sr_status (*append)(struct sr_lm *lm, const char *text, size_t len, int32_t *n_tokens);
    /* A checkpoint: the current context length. */
    int64_t (*mark)(const struct sr_lm *lm);
    /* Drops everything after a checkpoint. */
    enum sr_status (*rollback)(struct sr_lm *lm, int64_t mark);
    /* Appends cand (which includes its delimiter; plain text), then suffix (template text), reads
     * the next-token logits, then removes the suffix: the context holds previous text + cand
     * afterwards. */
    enum sr_status (*judge)(struct sr_lm *lm, const char *cand, size_t cand_len,
                            const char *suffix, size_t suffix_len, struct sr_judge_out *out);
    /* temperature <= 0 = greedy. Resets the sampler state. */
    enum sr_status (*set_sampling)(struct sr_lm *lm, float temperature, float top_p, uint64_t seed);
    /* Renders messages with the model's chat template (no generation prompt). */
    enum sr_status (*render)(struct sr_lm *lm, const struct sr_chat_msg *msgs, size_t n,
                             struct sr_buf *out);
    void (*free)(struct sr_lm *lm);
    /* Optional (NULL = not supported). Like generate, with `draft` proposing tokens that this
     * model verifies in batches (token-level speculative decoding). draft must hold the same
     * text as lm on entry; afterwards it holds extra tokens that the caller rolls back. */
    enum sr_status (*generate_spec)(struct sr_lm *lm, struct sr_lm *draft, const char *delim, int32_t max_tokens,
                                    const struct sr_sd_params *sd, struct sr_gen_out *out, struct sr_sd_stats *stats);
    /* Optional: whether draft's token ids mean the same as this model's (why = reason if not). */
    bool (*draft_compatible)(struct sr_lm *lm, struct sr_lm *draft, char *why, size_t n);
};

/* The common head of every model implementation. */
struct sr_lm {
    const struct sr_lm_ops *ops;
    char errmsg[512];     /* detail of the last failure */
    int64_t t_backend_us; /* time spent inside model calls */
    int64_t n_decode;     /* forward passes (llama_decode calls or remote requests) */
    int64_t n_ctx;        /* context capacity in tokens (INT64_MAX if unknown) */
    /* HTTP counters (remote backends; 0 in-process) */
    int64_t n_http;       /* requests sent (attempts, retries included) */
    int64_t n_retries;    /* attempts repeated after 429/5xx/connection errors */
    int64_t n_bytes;      /* request + response bytes */
    int64_t t_http_us;    /* time inside HTTP requests */
    bool (*abort_fn)(void *user); /* polled before each forward pass; true = fail with SR_ERR_ABORTED */
    void *abort_user;
    bool want_logprob;    /* generate reports token log-probabilities (sr_gen_out.n_logprob) */
    int32_t n_threads;    /* CPU threads its calls use (the most of decode and prefill); 0 = unknown */
};

enum sr_status sr_lm_fail(struct sr_lm *lm, enum sr_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- prompt.c: prompt strings built from chat templates ---------------------------------- */

/* Replaces "{problem}" in tmpl with problem (other placeholders are left as they are). */
char *sr_prompt_fill(const char *tmpl, const char *problem);
/* The thinking prefix: the chat rendering of [user: U, assistant: <open thinking turn>] cut where
 * the assistant content starts, followed by think_open. */
enum sr_status sr_prompt_prefix(struct sr_lm *lm, const char *user_msg, const char *think_open,
                                struct sr_buf *out);
/* The same prefix in out, as three segments pointing into it: template head, the user message
 * (as the template rendered it; plain text), template tail + think_open. */
enum sr_status sr_prompt_prefix_segs(struct sr_lm *lm, const char *user_msg, const char *think_open,
                                     struct sr_buf *out, struct sr_seg segs[3]);
/* The same for a conversation: msgs (n >= 1), then the open thinking turn, as *n_segs <= 2n+1
 * segments into out (segs has room for 2n+1): the template's own text as special segments, each
 * message's content as a plain-text one. One user message gives sr_prompt_prefix_segs's segments. */
enum sr_status sr_prompt_prefix_msgs(struct sr_lm *lm, const struct sr_chat_msg *msgs, size_t n,
                                     const char *think_open, struct sr_buf *out, struct sr_seg *segs,
                                     size_t *n_segs);
/* What follows a candidate step in the judge prompt: the end of the thinking turn, the judge
 * user turn and the assistant prefill, exactly as the template renders
 * [user: U, assistant: ...candidate, user: judge_prompt, assistant: judge_prefill]. */
enum sr_status sr_prompt_judge_suffix(struct sr_lm *lm, const char *user_msg,
                                      const char *judge_prompt, const char *judge_prefill,
                                      struct sr_buf *out);
enum sr_status sr_prompt_judge_suffix_msgs(struct sr_lm *lm, const struct sr_chat_msg *msgs, size_t n,
                                           const char *judge_prompt, const char *judge_prefill,
                                           struct sr_buf *out);

/* ---- loop.c: the algorithm over two models ------------------------------------------------- */

/* Runs one problem. small/base may be NULL when the mode does not need them. On error returns
 * the status with a message in errbuf and *out == NULL. */
enum sr_status sr_loop_run(struct sr_lm *small, struct sr_lm *base, const char *problem,
                           const struct sr_run_params *params, struct sr_result **out,
                           char *errbuf, size_t errlen);
/* The same over a conversation (msgs rendered with the chat template; no prompt template). */
enum sr_status sr_loop_run_chat(struct sr_lm *small, struct sr_lm *base, const struct sr_chat_msg *msgs, size_t n_msgs,
                                const struct sr_run_params *params, struct sr_result **out, char *errbuf,
                                size_t errlen);
/* The same, with a controller model shared across runs (policy auto; NULL = this run only). */
struct sr_ctl_shared;
enum sr_status sr_loop_run_shared(struct sr_lm *small, struct sr_lm *base, const char *problem,
                                  const struct sr_run_params *params, struct sr_ctl_shared *shared,
                                  struct sr_result **out, char *errbuf, size_t errlen);
/* The key of a controller model for these parameters (the judge settings its gate depends on). */
uint64_t sr_loop_ctl_key(const struct sr_run_params *params);
enum sr_status sr_loop_run_chat_shared(struct sr_lm *small, struct sr_lm *base, const struct sr_chat_msg *msgs,
                                       size_t n_msgs, const struct sr_run_params *params, struct sr_ctl_shared *shared,
                                       struct sr_result **out, char *errbuf, size_t errlen);

/* ---- llama_backend.c ------------------------------------------------------------------------ */

struct sr_llama_model; /* a loaded llama.cpp model (shared, read-only) */

enum sr_status sr_llama_model_load(const struct sr_model_params *p, const char *role,
                                   struct sr_llama_model **out, struct sr_error *err);
void sr_llama_model_free(struct sr_llama_model *m);
bool sr_llama_vocab_compatible(const struct sr_llama_model *a, const struct sr_llama_model *b, char *why, size_t n);
int sr_llama_model_desc(const struct sr_llama_model *m, char *buf, size_t size);
/* From now on, sessions on this model share one context of n_seq sequences (each n_ctx tokens)
 * and their forward passes are batched together (batch.c); n_seq < 2 = no-op. Sessions beyond
 * n_seq get a context of their own. */
enum sr_status sr_llama_model_share(struct sr_llama_model *m, int32_t n_seq, struct sr_error *err);
/* A context (KV cache + sampler) on a loaded model: a sequence of the shared context if the model
 * has one with a free sequence, else a context of its own. */
enum sr_status sr_llama_lm_init(struct sr_llama_model *m, struct sr_lm **out, struct sr_error *err);
/* Test hook: forward passes and jobs of the shared context this context is on (0, 0 if none). */
void sr_llama_lm_batch_stats(const struct sr_lm *lm, int64_t *n_decodes, int64_t *n_jobs);
/* Test hook: the tokens currently in the context (borrowed) and their count. */
const int32_t *sr_llama_lm_tokens(const struct sr_lm *lm, int64_t *n);
/* Test hook: decodes tokens into a fresh context of the same model and returns the logits after
 * the last one (caller frees). */
float *sr_llama_fresh_logits(struct sr_lm *lm, const int32_t *tokens, int64_t n, int32_t *n_vocab);
/* Test hook: the tokens of the last judge call (candidate + suffix), borrowed. */
const int32_t *sr_llama_lm_last_judge(const struct sr_lm *lm, int64_t *n, int64_t *start);
/* Test hook: the positions the KV cache holds for sequence 0: [pos_min, pos_max]. */
void sr_llama_lm_cache_range(const struct sr_lm *lm, int32_t *pos_min, int32_t *pos_max);
/* Test hook: the logits for the next token (position n-1), or NULL if none are at hand. */
const float *sr_llama_lm_logits(struct sr_lm *lm);
/* Test hook: the vocabulary's BOS token, whether prompts start with it (add_bos_token), its size. */
void sr_llama_lm_vocab_info(const struct sr_lm *lm, int32_t *bos, bool *add_bos, int32_t *n_vocab);
/* Test hook: decodes text with the model's vocabulary, special tokens rendered (caller frees). */
char *sr_llama_lm_detokenize(struct sr_lm *lm, const int32_t *tokens, int64_t n);

/* Vocabulary services (remote backend): a vocabulary-only load of a GGUF, tokenized and
 * rendered exactly as the in-process backend does. */
enum sr_status sr_llama_vocab_load(const char *path, const char *role, struct sr_llama_model **out,
                                   struct sr_error *err);
/* Tokenizes without BOS, control-token text read as control tokens iff special (template text;
 * user and model text is tokenized with special = false); *toks malloc'd. -1 on error. */
int64_t sr_llama_vocab_tokenize(const struct sr_llama_model *m, const char *text, size_t len, bool special,
                                int32_t **toks);
/* Tokenizes prompt segments exactly as the in-process reset does (control tokens only inside
 * template segments; no BOS); *toks malloc'd. -1 on error. */
int64_t sr_llama_vocab_tokenize_segs(const struct sr_llama_model *m, const struct sr_seg *segs, size_t n_segs,
                                     int32_t **toks);
/* The BOS token a prompt starts with (tokenizer.ggml.add_bos_token), or -1 if none. */
int32_t sr_llama_vocab_bos(const struct sr_llama_model *m);
/* Text of a token (special tokens rendered) into buf; its length or -1. */
int32_t sr_llama_vocab_piece(const struct sr_llama_model *m, int32_t tok, char *buf, int32_t size);
bool sr_llama_vocab_is_eog(const struct sr_llama_model *m, int32_t tok);
int32_t sr_llama_vocab_size(const struct sr_llama_model *m);
/* Token id of the digit d if it is one token, else -1. */
int32_t sr_llama_vocab_digit(const struct sr_llama_model *m, int d);
/* Renders with m's template (m may be NULL), else the named llama.cpp template (NULL = chatml). */
enum sr_status sr_llama_render(const struct sr_llama_model *m, const char *tmpl_name, const struct sr_chat_msg *msgs,
                               size_t n, struct sr_buf *out, char *errbuf, size_t errlen);

/* ---- remote.c: struct sr_lm over an OpenAI-compatible HTTP server ------------------------- */

struct sr_remote_model; /* an endpoint, checked at load (shared, read-only after load) */

enum sr_status sr_remote_model_load(const struct sr_model_params *p, const char *role,
                                    struct sr_remote_model **out, struct sr_error *err);
void sr_remote_model_free(struct sr_remote_model *m);
int sr_remote_model_desc(const struct sr_remote_model *m, char *buf, size_t size);
enum sr_status sr_remote_lm_init(struct sr_remote_model *m, struct sr_lm **out, struct sr_error *err);
/* Whether lm is a remote context. */
bool sr_lm_is_remote(const struct sr_lm *lm);
/* Test hooks: the last judge's top alternatives (id, log-probability) as the server sent them;
 * the token ids of the context (token mode). */
int sr_remote_lm_last_top(const struct sr_lm *lm, int32_t *ids, double *logprobs, int cap);
const int32_t *sr_remote_lm_tokens(const struct sr_lm *lm, int64_t *n);

/* ---- engine.c ------------------------------------------------------------------------------ */
/* Test hook: a session's model context (NULL if that model is not loaded). */
struct sr_lm *sr_session_lm(struct sr_session *s, bool base);

/* Routes llama.cpp logging (global) to sr_log. */
void sr_llama_log_install(void);

#endif
