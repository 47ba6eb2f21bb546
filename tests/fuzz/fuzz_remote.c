/*
 * fuzz_remote.c: libFuzzer target for src/backend/remote_parse.c, the readers of HTTP answers
 * from model servers: every reader on the same bytes; results must be self-consistent.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remote_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    struct sr_rp_completion c;
    char err[256] = "";
    if (sr_rp_parse_completion(s, size, &c, err, sizeof err)) {
        if (!c.text || strlen(c.text) > c.text_len) __builtin_trap();
        if (c.n_top < 0 || c.n_top > SR_RP_MAX_TOP) __builtin_trap();
        for (int i = 0; i < c.n_top; i++)
            if (strlen(c.top[i].token) > c.top[i].token_len || c.top[i].logprob != c.top[i].logprob) __builtin_trap();
        for (size_t i = 0; i < c.n_ids; i++)
            if (c.ids_known && c.ids[i] < 0) __builtin_trap();
        sr_rp_completion_free(&c);
    } else if (!err[0] || c.text || c.ids) {
        __builtin_trap();
    }
    int32_t *ids = NULL;
    int64_t n = sr_rp_parse_tokenize(s, size, &ids);
    if ((n >= 0) != (ids != NULL)) __builtin_trap();
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0) __builtin_trap();
    free(ids);
    free(sr_rp_parse_apply_template(s, size));
    int64_t n_ctx;
    int32_t slots;
    (void)sr_rp_parse_props(s, size, &n_ctx, &slots);
    if (slots < 1) __builtin_trap();
    char *id = NULL;
    (void)sr_rp_parse_models(s, size, NULL, &id);
    free(id);
    char msg[64];
    sr_rp_error_message(s, size, msg, sizeof msg);
    if (strlen(msg) >= sizeof msg) __builtin_trap();
    return 0;
}
