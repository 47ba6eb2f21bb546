/*
 * request.h: the body of POST /v1/chat/completions, parsed and checked (jansson). Outside input:
 * every field is type- and range-checked here, unknown fields are ignored (OpenAI clients send
 * many), unsupported ones (n > 1, tools, logprobs) are refused. Fuzzed by tests/fuzz/fuzz_request.c.
 */
#ifndef SR_SERVER_REQUEST_H
#define SR_SERVER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "specreason.h"

#define REQ_MAX_STOP 4

/* An OpenAI-style error: HTTP status, message, type, param (may be empty), code. */
struct req_error {
    int status;
    char message[512];
    const char *type; /* "invalid_request_error", "authentication_error", ... */
    char param[64];
    const char *code; /* NULL = null */
};

struct chat_req {
    struct sr_message *msgs; /* role and content strings owned by the request */
    size_t n_msgs;
    char *model;             /* NULL = not given */
    bool stream, include_usage;
    bool has_max_tokens, has_temperature, has_top_p, has_seed, has_threshold, has_first_n_base, has_token_budget;
    bool has_max_step_tokens, has_max_answer_tokens;
    bool want_result;  /* "specreason_result": true: the whole result in specreason.result */
    int64_t max_tokens, first_n_base, token_budget, max_step_tokens, max_answer_tokens;
    double temperature, top_p, threshold;
    uint64_t seed;
    int score_method; /* -1 = not given, else enum sr_score_method */
    int mode;         /* -1 = not given, else enum sr_mode */
    int policy;       /* -1 = not given, else enum sr_policy */
    int spec_decode;  /* -1 = not given, 0, 1 */
    char *stop[REQ_MAX_STOP];
    size_t n_stop;
};

/* Parses body[0..len). Returns 0 and fills *r (free with chat_req_free), or -1 with *err set
 * (and *r empty). */
int chat_req_parse(const char *body, size_t len, struct chat_req *r, struct req_error *err);
void chat_req_free(struct chat_req *r);

/* Sets err; returns -1. */
int req_fail(struct req_error *err, int status, const char *type, const char *param, const char *code,
             const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#endif
