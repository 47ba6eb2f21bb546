/*
 * request.c: see request.h.
 */
#include "request.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int req_fail(struct req_error *err, int status, const char *type, const char *param, const char *code,
             const char *fmt, ...) {
    err->status = status;
    err->type = type;
    err->code = code;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

#define BAD(param, code, ...) req_fail(err, 400, "invalid_request_error", param, code, __VA_ARGS__)

/* The message strings are ours (allocated below) behind the public struct's const. */
static void free_owned(const char *p) {
    void *q;
    memcpy(&q, &p, sizeof q);
    free(q);
}

void chat_req_free(struct chat_req *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_msgs; i++) {
        free_owned(r->msgs[i].role);
        free_owned(r->msgs[i].content);
    }
    free(r->msgs);
    free(r->model);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

static char *dup_str(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* A field that is absent or JSON null counts as not given. */
static json_t *field(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return v && !json_is_null(v) ? v : NULL;
}

static int get_int(json_t *o, const char *k, int64_t lo, int64_t hi, bool *has, int64_t *out, struct req_error *err) {
    json_t *v = field(o, k);
    if (!v) return 0;
    int64_t x;
    if (json_is_integer(v)) {
        x = (int64_t)json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (int64_t)json_real_value(v);
    } else {
        return BAD(k, "invalid_type", "'%s' must be an integer", k);
    }
    if (x < lo || x > hi) return BAD(k, "invalid_value", "'%s' must be in [%lld, %lld]", k, (long long)lo, (long long)hi);
    *has = true;
    *out = x;
    return 0;
}

static int get_num(json_t *o, const char *k, double lo, double hi, bool lo_open, bool *has, double *out,
                   struct req_error *err) {
    json_t *v = field(o, k);
    if (!v) return 0;
    if (!json_is_number(v)) return BAD(k, "invalid_type", "'%s' must be a number", k);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi || (lo_open && x <= lo))
        return BAD(k, "invalid_value", "'%s' must be in %s%g, %g]", k, lo_open ? "(" : "[", lo, hi);
    *has = true;
    *out = x;
    return 0;
}

static int get_bool(json_t *o, const char *k, bool *out, struct req_error *err) {
    json_t *v = field(o, k);
    if (!v) return 0;
    if (!json_is_boolean(v)) return BAD(k, "invalid_type", "'%s' must be a boolean", k);
    *out = json_is_true(v);
    return 1;
}

static int get_choice(json_t *o, const char *k, const char *const *names, int n, int *out, struct req_error *err) {
    json_t *v = field(o, k);
    if (!v) return 0;
    if (!json_is_string(v)) return BAD(k, "invalid_type", "'%s' must be a string", k);
    for (int i = 0; i < n; i++)
        if (strcmp(json_string_value(v), names[i]) == 0) { *out = i; return 0; }
    return BAD(k, "invalid_value", "unknown %s '%.64s'", k, json_string_value(v));
}

/* Message content: a string, or an array of {"type":"text","text":...} parts (joined). */
static int get_content(json_t *m, size_t i, bool allow_null, char **out, struct req_error *err) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    json_t *c = json_object_get(m, "content");
    if (!c || json_is_null(c)) {
        if (!allow_null) return BAD(param, "missing_field", "message %zu has no content", i);
        *out = dup_str("", 0);
        return *out ? 0 : req_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (json_is_string(c)) {
        *out = dup_str(json_string_value(c), json_string_length(c));
        return *out ? 0 : req_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!json_is_array(c)) return BAD(param, "invalid_type", "'%s' must be a string or an array of text parts", param);
    size_t total = 0, k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") != 0)
            return BAD(param, "unsupported_content", "message %zu: only text content parts are supported", i);
        if (!json_is_string(text)) return BAD(param, "invalid_type", "message %zu: a text part needs a 'text' string", i);
        total += json_string_length(text);
    }
    char *s = malloc(total + 1);
    if (!s) return req_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    size_t off = 0;
    json_array_foreach(c, k, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(s + off, json_string_value(text), json_string_length(text));
        off += json_string_length(text);
    }
    s[off] = '\0';
    *out = s;
    return 0;
}

static int parse_messages(json_t *root, struct chat_req *r, struct req_error *err) {
    json_t *ms = json_object_get(root, "messages");
    if (!ms || json_is_null(ms)) return BAD("messages", "missing_field", "'messages' is required");
    if (!json_is_array(ms)) return BAD("messages", "invalid_type", "'messages' must be an array");
    size_t n = json_array_size(ms);
    if (n == 0) return BAD("messages", "invalid_value", "'messages' must not be empty");
    r->msgs = calloc(n, sizeof *r->msgs);
    if (!r->msgs) return req_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(ms, i);
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m)) return BAD(param, "invalid_type", "message %zu must be an object", i);
        json_t *role = json_object_get(m, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!role) return BAD(param, "missing_field", "message %zu has no role", i);
        if (!json_is_string(role)) return BAD(param, "invalid_type", "message %zu: 'role' must be a string", i);
        const char *rs = json_string_value(role);
        const char *mapped = NULL;
        if (strcmp(rs, "system") == 0 || strcmp(rs, "developer") == 0) mapped = "system";
        else if (strcmp(rs, "user") == 0) mapped = "user";
        else if (strcmp(rs, "assistant") == 0) mapped = "assistant";
        else if (strcmp(rs, "tool") == 0 || strcmp(rs, "function") == 0)
            return BAD(param, "unsupported_parameter", "message %zu: tool messages are not supported", i);
        else
            return BAD(param, "invalid_value", "message %zu: unknown role '%.32s' (system, user or assistant)", i, rs);
        if (json_object_get(m, "tool_calls") && !json_is_null(json_object_get(m, "tool_calls")))
            return BAD(param, "unsupported_parameter", "message %zu: tool calls are not supported", i);
        char *content = NULL;
        if (get_content(m, i, mapped[0] == 'a', &content, err)) return -1;
        r->msgs[i].content = content;
        r->msgs[i].role = dup_str(mapped, strlen(mapped));
        r->n_msgs = i + 1;
        if (!r->msgs[i].role) return req_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    return 0;
}

static int parse_stop(json_t *root, struct chat_req *r, struct req_error *err) {
    json_t *v = field(root, "stop");
    if (!v) return 0;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return 0;
        r->stop[0] = dup_str(json_string_value(v), json_string_length(v));
        if (!r->stop[0]) return req_fail(err, 500, "server_error", NULL, NULL, "out of memory");
        r->n_stop = 1;
        return 0;
    }
    if (!json_is_array(v)) return BAD("stop", "invalid_type", "'stop' must be a string or an array of strings");
    if (json_array_size(v) > REQ_MAX_STOP) return BAD("stop", "invalid_value", "'stop' takes at most %d strings", REQ_MAX_STOP);
    size_t k;
    json_t *s;
    json_array_foreach(v, k, s) {
        if (!json_is_string(s)) return BAD("stop", "invalid_type", "'stop' must be a string or an array of strings");
        if (json_string_length(s) == 0) continue;
        r->stop[r->n_stop] = dup_str(json_string_value(s), json_string_length(s));
        if (!r->stop[r->n_stop]) return req_fail(err, 500, "server_error", NULL, NULL, "out of memory");
        r->n_stop++;
    }
    return 0;
}

static int parse_fields(json_t *root, struct chat_req *r, struct req_error *err) {
    json_t *v;
    if ((v = field(root, "model"))) {
        if (!json_is_string(v)) return BAD("model", "invalid_type", "'model' must be a string");
        r->model = dup_str(json_string_value(v), json_string_length(v));
        if (!r->model) return req_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (parse_messages(root, r, err)) return -1;
    if (get_bool(root, "stream", &r->stream, err) < 0) return -1;
    if ((v = field(root, "stream_options"))) {
        if (!json_is_object(v)) return BAD("stream_options", "invalid_type", "'stream_options' must be an object");
        if (get_bool(v, "include_usage", &r->include_usage, err) < 0) return -1;
    }
    /* Unsupported parameters are refused, not silently ignored. */
    bool has_n = false;
    int64_t n = 1;
    if (get_int(root, "n", 1, INT32_MAX, &has_n, &n, err)) return -1;
    if (n != 1) return BAD("n", "unsupported_parameter", "only n = 1 is supported");
    static const char *const tool_fields[] = {"tools", "tool_choice", "functions", "function_call"};
    for (int i = 0; i < 4; i++) {
        v = field(root, tool_fields[i]);
        if (v && !(json_is_array(v) && json_array_size(v) == 0) &&
            !(json_is_string(v) && strcmp(json_string_value(v), "none") == 0))
            return BAD(tool_fields[i], "unsupported_parameter", "tool calling is not supported ('%s')", tool_fields[i]);
    }
    if ((v = field(root, "logprobs")) && !(json_is_boolean(v) && !json_is_true(v)))
        return BAD("logprobs", "unsupported_parameter", "logprobs are not supported");

    bool h1 = false, h2 = false;
    int64_t m1 = 0, m2 = 0;
    if (get_int(root, "max_tokens", 1, 1 << 24, &h1, &m1, err)) return -1;
    if (get_int(root, "max_completion_tokens", 1, 1 << 24, &h2, &m2, err)) return -1;
    r->has_max_tokens = h1 || h2;
    r->max_tokens = h2 ? m2 : m1;
    if (get_num(root, "temperature", 0, 2, false, &r->has_temperature, &r->temperature, err)) return -1;
    if (get_num(root, "top_p", 0, 1, true, &r->has_top_p, &r->top_p, err)) return -1;
    if ((v = field(root, "seed"))) {
        if (!json_is_integer(v)) return BAD("seed", "invalid_type", "'seed' must be an integer");
        if (json_integer_value(v) < 0) return BAD("seed", "invalid_value", "'seed' must be >= 0");
        r->has_seed = true;
        r->seed = (uint64_t)json_integer_value(v);
    }
    if (parse_stop(root, r, err)) return -1;

    /* SpecReason's knobs. */
    if (get_num(root, "threshold", 0, 10, false, &r->has_threshold, &r->threshold, err)) return -1;
    if (get_int(root, "first_n_base", 0, 1 << 24, &r->has_first_n_base, &r->first_n_base, err)) return -1;
    if (get_int(root, "token_budget", 1, 1 << 24, &r->has_token_budget, &r->token_budget, err)) return -1;
    if (get_int(root, "max_step_tokens", 1, 65536, &r->has_max_step_tokens, &r->max_step_tokens, err)) return -1;
    if (get_int(root, "max_answer_tokens", 0, 1 << 24, &r->has_max_answer_tokens, &r->max_answer_tokens, err))
        return -1;
    static const char *const scores[] = {"greedy", "average", "digit-softmax"};
    static const char *const modes[] = {"spec", "base", "small"};
    static const char *const policies[] = {"auto", "always", "never"};
    if (get_choice(root, "score_method", scores, 3, &r->score_method, err)) return -1;
    if (get_choice(root, "mode", modes, 3, &r->mode, err)) return -1;
    if (get_choice(root, "policy", policies, 3, &r->policy, err)) return -1;
    if (get_bool(root, "specreason_result", &r->want_result, err) < 0) return -1;
    bool sd = false;
    int got = get_bool(root, "spec_decode", &sd, err);
    if (got < 0) return -1;
    if (got) r->spec_decode = sd;
    return 0;
}

int chat_req_parse(const char *body, size_t len, struct chat_req *r, struct req_error *err) {
    memset(r, 0, sizeof *r);
    r->score_method = r->mode = r->spec_decode = r->policy = -1;
    if (len == 0) return BAD(NULL, "invalid_json", "the request body is empty (expected a JSON object)");
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return BAD(NULL, "invalid_json", "malformed JSON at line %d, column %d: %s", je.line, je.column, je.text);
    int rc = 0;
    if (!json_is_object(root)) rc = BAD(NULL, "invalid_json", "the request body must be a JSON object");
    else rc = parse_fields(root, r, err);
    json_decref(root);
    if (rc) {
        chat_req_free(r);
        r->score_method = r->mode = r->spec_decode = r->policy = -1;
    }
    return rc;
}
