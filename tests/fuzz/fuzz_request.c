/*
 * fuzz_request.c: libFuzzer target for the server's request parser (server/request.c, over
 * jansson): any bytes either parse into a request whose fields are all in range, or fail with a
 * 4xx/5xx error that has a message. Nothing leaks either way.
 */
#include <stdint.h>
#include <string.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct chat_req r;
    struct req_error e;
    memset(&e, 0, sizeof e);
    if (chat_req_parse((const char *)data, size, &r, &e) != 0) {
        if (e.status < 400 || e.status > 599 || !e.message[0] || !e.type) __builtin_trap();
        if (r.msgs || r.n_msgs || r.model || r.n_stop) __builtin_trap();
        return 0;
    }
    if (r.n_msgs == 0 || !r.msgs) __builtin_trap();
    for (size_t i = 0; i < r.n_msgs; i++) {
        const char *role = r.msgs[i].role;
        if (!r.msgs[i].content || (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")))
            __builtin_trap();
    }
    if (r.has_max_tokens && (r.max_tokens < 1 || r.max_tokens > (1 << 24))) __builtin_trap();
    if (r.has_threshold && !(r.threshold >= 0 && r.threshold <= 10)) __builtin_trap();
    if (r.has_temperature && !(r.temperature >= 0 && r.temperature <= 2)) __builtin_trap();
    if (r.has_top_p && !(r.top_p > 0 && r.top_p <= 1)) __builtin_trap();
    if (r.has_max_step_tokens && (r.max_step_tokens < 1 || r.max_step_tokens > 65536)) __builtin_trap();
    if (r.has_max_answer_tokens && (r.max_answer_tokens < 0 || r.max_answer_tokens > (1 << 24))) __builtin_trap();
    if (r.n_stop > REQ_MAX_STOP || r.mode > 2 || r.score_method > 2 || r.spec_decode > 1 || r.policy > 2)
        __builtin_trap();
    chat_req_free(&r);
    return 0;
}
