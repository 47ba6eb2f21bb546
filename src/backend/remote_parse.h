/*
 * remote_parse.h: readers for the JSON answers of OpenAI-compatible servers (llama-server,
 * vLLM, SGLang). No I/O and no llama.cpp: remote.c feeds them response bodies; a unit test and a
 * libFuzzer target feed them everything else.
 *
 * The two /v1/completions log-probability shapes (see docs/REMOTE.md):
 *   llama-server: choices[0].logprobs = {"content":[{id, token, bytes, logprob,
 *                 top_logprobs:[{id, token, bytes, logprob}, ...]}, ...]}
 *   vLLM/SGLang:  choices[0].logprobs = {tokens:[str], token_logprobs:[f],
 *                 top_logprobs:[{token_str: logprob, ...}, ...], text_offset:[int]}
 *                 (with return_tokens_as_token_ids the strings are "token_id:<id>")
 */
#ifndef SR_REMOTE_PARSE_H
#define SR_REMOTE_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SR_RP_MAX_TOP 32

enum sr_rp_finish { SR_RP_FINISH_UNKNOWN = 0, SR_RP_FINISH_STOP = 1, SR_RP_FINISH_LENGTH = 2 };

/* vLLM's choices[0].stop_reason: absent (llama-server), null (end of sequence), a string (the
 * stop string that matched) or an integer (a stop token id). */
enum sr_rp_stop_reason { SR_RP_SR_ABSENT = 0, SR_RP_SR_EOS = 1, SR_RP_SR_STRING = 2, SR_RP_SR_TOKEN = 3 };

struct sr_rp_top {
    char token[64];  /* the token's text (truncated to 63 bytes; complete when token_len < 64) */
    size_t token_len;
    int32_t id;      /* token id, -1 when the server did not say */
    double logprob;
};

struct sr_rp_completion {
    char *text; /* choices[0].text, NUL-terminated (malloc'd) */
    size_t text_len;
    enum sr_rp_finish finish;
    enum sr_rp_stop_reason stop_reason;
    int64_t prompt_tokens, completion_tokens; /* usage; -1 when absent */
    bool has_logprobs;   /* a logprobs object in one of the two shapes */
    int32_t *ids;        /* ids of the generated tokens, in order (-1 = not given); malloc'd */
    size_t n_ids;
    bool ids_known;      /* every entry of ids is >= 0 */
    struct sr_rp_top top[SR_RP_MAX_TOP]; /* alternatives for the first generated token */
    int n_top;
};

/* Parses a /v1/completions response body, or llama-server's native /completion one (content,
 * tokens, stop_type; ids from `tokens`). On failure returns false with a message in err. */
bool sr_rp_parse_completion(const char *body, size_t len, struct sr_rp_completion *out, char *err, size_t errlen);
void sr_rp_completion_free(struct sr_rp_completion *c);

/* The number of tokens in a /tokenize answer: {"tokens":[...]} (llama-server, vLLM) or
 * {"count":N} (vLLM); -1 if neither. When ids is non-NULL and the tokens are integers they are
 * copied into *ids (malloc'd, caller frees). */
int64_t sr_rp_parse_tokenize(const char *body, size_t len, int32_t **ids);

/* llama-server's /apply-template answer {"prompt": "..."}: malloc'd string, or NULL. */
char *sr_rp_parse_apply_template(const char *body, size_t len);

/* llama-server's GET /props: n_ctx (of a slot, or the server's) and total_slots; false if the
 * body does not look like llama-server's. */
bool sr_rp_parse_props(const char *body, size_t len, int64_t *n_ctx, int32_t *total_slots);

/* GET /v1/models: max_model_len (vLLM) of the named model (NULL = the first); -1 if absent.
 * *first_id (may be NULL) = that model's id, malloc'd, or NULL. */
int64_t sr_rp_parse_models(const char *body, size_t len, const char *model, char **first_id);

/* A readable message from an error body ({"error":{"message":...}}, {"error":"..."},
 * {"detail":...}, or the first bytes of the body) into buf. */
void sr_rp_error_message(const char *body, size_t len, char *buf, size_t size);

/* Numeric value of a token text if it is 1..9 ASCII digits, else -1 (the judge's greedy value). */
int32_t sr_rp_digits_value(const char *s, size_t n);

#endif
