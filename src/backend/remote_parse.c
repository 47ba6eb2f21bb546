/*
 * remote_parse.c: see remote_parse.h. Every field is type-checked; anything unexpected is an
 * error with a message, never a crash (tests/fuzz/fuzz_remote.c).
 */
#define _POSIX_C_SOURCE 200809L
#include "remote_parse.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *load(const char *body, size_t len, char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root && err) snprintf(err, errlen, "not JSON (%s at byte %d)", je.text, je.position);
    return root;
}

/* "token_id:123" -> 123, else -1. */
static int32_t token_id_key(const char *s) {
    if (strncmp(s, "token_id:", 9) != 0) return -1;
    const char *p = s + 9;
    if (*p < '0' || *p > '9') return -1;
    long long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
        if (v > INT32_MAX) return -1;
    }
    return (int32_t)v;
}

static void set_top_text(struct sr_rp_top *t, const char *s, size_t n) {
    t->token_len = n;
    size_t k = n < sizeof t->token - 1 ? n : sizeof t->token - 1;
    memcpy(t->token, s, k);
    t->token[k] = '\0';
}

static bool json_int32(const json_t *v, int32_t *out) {
    if (!json_is_integer(v)) return false;
    json_int_t i = json_integer_value(v);
    if (i < INT32_MIN || i > INT32_MAX) return false;
    *out = (int32_t)i;
    return true;
}

static bool json_finite(const json_t *v, double *out) {
    if (!json_is_number(v)) return false;
    double d = json_number_value(v);
    if (isnan(d)) return false;
    *out = d;
    return true;
}

static bool push_id(struct sr_rp_completion *c, size_t *cap, int32_t id) {
    if (c->n_ids == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        int32_t *p = realloc(c->ids, nc * sizeof *p);
        if (!p) return false;
        c->ids = p;
        *cap = nc;
    }
    c->ids[c->n_ids++] = id;
    return true;
}

/* llama-server: {"content":[{id, token, logprob, top_logprobs:[...]}, ...]} */
static bool parse_llama_logprobs(const json_t *content, struct sr_rp_completion *c, char *err, size_t errlen) {
    size_t cap = 0;
    c->ids_known = true;
    for (size_t i = 0; i < json_array_size(content); i++) {
        const json_t *e = json_array_get(content, i);
        if (!json_is_object(e)) { snprintf(err, errlen, "logprobs.content[%zu] is not an object", i); return false; }
        int32_t id = -1;
        if (!json_int32(json_object_get(e, "id"), &id) || id < 0) { id = -1; c->ids_known = false; }
        if (!push_id(c, &cap, id)) { snprintf(err, errlen, "out of memory"); return false; }
        if (i > 0) continue;
        const json_t *tops = json_object_get(e, "top_logprobs");
        if (!tops) tops = json_object_get(e, "top_probs");
        if (!json_is_array(tops)) { snprintf(err, errlen, "logprobs.content[0] has no top_logprobs array"); return false; }
        for (size_t k = 0; k < json_array_size(tops) && c->n_top < SR_RP_MAX_TOP; k++) {
            const json_t *t = json_array_get(tops, k);
            if (!json_is_object(t)) { snprintf(err, errlen, "top_logprobs[%zu] is not an object", k); return false; }
            struct sr_rp_top *o = &c->top[c->n_top];
            const json_t *tok = json_object_get(t, "token");
            double lp;
            const json_t *lpv = json_object_get(t, "logprob");
            bool is_prob = false;
            if (!lpv) { lpv = json_object_get(t, "prob"); is_prob = true; }
            if (!json_is_string(tok) || !json_finite(lpv, &lp)) {
                snprintf(err, errlen, "top_logprobs[%zu] lacks a token string or a numeric logprob", k);
                return false;
            }
            if (is_prob) lp = lp > 0 ? log(lp) : -INFINITY;
            set_top_text(o, json_string_value(tok), json_string_length(tok));
            if (!json_int32(json_object_get(t, "id"), &o->id) || o->id < 0) o->id = -1;
            o->logprob = lp;
            c->n_top++;
        }
    }
    return true;
}

/* vLLM/SGLang legacy: {tokens:[str], token_logprobs:[f], top_logprobs:[{str: f}], text_offset} */
static bool parse_legacy_logprobs(const json_t *lp, struct sr_rp_completion *c, char *err, size_t errlen) {
    const json_t *tokens = json_object_get(lp, "tokens");
    const json_t *tops = json_object_get(lp, "top_logprobs");
    if (!json_is_array(tokens)) { snprintf(err, errlen, "logprobs.tokens is not an array"); return false; }
    size_t cap = 0;
    c->ids_known = true;
    for (size_t i = 0; i < json_array_size(tokens); i++) {
        const json_t *t = json_array_get(tokens, i);
        if (!json_is_string(t)) { snprintf(err, errlen, "logprobs.tokens[%zu] is not a string", i); return false; }
        int32_t id = token_id_key(json_string_value(t));
        if (id < 0) c->ids_known = false;
        if (!push_id(c, &cap, id)) { snprintf(err, errlen, "out of memory"); return false; }
    }
    if (json_array_size(tokens) == 0) return true;
    if (!json_is_array(tops) || json_array_size(tops) == 0) {
        snprintf(err, errlen, "logprobs.top_logprobs is missing or empty");
        return false;
    }
    json_t *first = json_array_get(tops, 0);
    if (!json_is_object(first)) { snprintf(err, errlen, "logprobs.top_logprobs[0] is not an object"); return false; }
    const char *key;
    const json_t *val;
    json_object_foreach(first, key, val) {
        if (c->n_top >= SR_RP_MAX_TOP) break;
        double lpv;
        if (!json_finite(val, &lpv)) { snprintf(err, errlen, "top_logprobs['%.32s'] is not a number", key); return false; }
        struct sr_rp_top *o = &c->top[c->n_top++];
        o->id = token_id_key(key);
        set_top_text(o, key, strlen(key));
        o->logprob = lpv;
    }
    return true;
}

/* The generated text (a JSON string named `what` in messages) into c->text, NUL-terminated. */
static bool take_text(const json_t *text, const char *what, struct sr_rp_completion *c, char *err, size_t errlen) {
    if (!json_is_string(text)) { snprintf(err, errlen, "%s is not a string", what); return false; }
    c->text_len = json_string_length(text);
    c->text = malloc(c->text_len + 1);
    if (!c->text) { snprintf(err, errlen, "out of memory"); return false; }
    memcpy(c->text, json_string_value(text), c->text_len);
    c->text[c->text_len] = '\0';
    return true;
}

/* llama-server's native /completion: {content, tokens:[ids], stop_type, tokens_predicted,
 * tokens_evaluated, completion_probabilities?:[{id, token, logprob, top_logprobs}]} */
static bool parse_native(const json_t *root, struct sr_rp_completion *c, char *err, size_t errlen) {
    if (!take_text(json_object_get(root, "content"), "'content'", c, err, errlen)) return false;
    const json_t *stype = json_object_get(root, "stop_type");
    if (json_is_string(stype)) {
        const char *f = json_string_value(stype);
        if (strcmp(f, "eos") == 0) c->finish = SR_RP_FINISH_STOP, c->stop_reason = SR_RP_SR_EOS;
        else if (strcmp(f, "word") == 0) c->finish = SR_RP_FINISH_STOP, c->stop_reason = SR_RP_SR_STRING;
        else if (strcmp(f, "limit") == 0) c->finish = SR_RP_FINISH_LENGTH;
    }
    const json_t *pt = json_object_get(root, "tokens_evaluated"), *ct = json_object_get(root, "tokens_predicted");
    if (json_is_integer(pt) && json_integer_value(pt) >= 0) c->prompt_tokens = json_integer_value(pt);
    if (json_is_integer(ct) && json_integer_value(ct) >= 0) c->completion_tokens = json_integer_value(ct);
    const json_t *probs = json_object_get(root, "completion_probabilities");
    if (json_is_array(probs)) {
        if (!parse_llama_logprobs(probs, c, err, errlen)) return false;
        c->has_logprobs = true;
        return true;
    }
    const json_t *toks = json_object_get(root, "tokens");
    if (json_is_array(toks)) {
        size_t cap = 0;
        c->ids_known = true;
        for (size_t i = 0; i < json_array_size(toks); i++) {
            int32_t id = -1;
            if (!json_int32(json_array_get(toks, i), &id) || id < 0) { id = -1; c->ids_known = false; }
            if (!push_id(c, &cap, id)) { snprintf(err, errlen, "out of memory"); return false; }
        }
    } else if (toks && !json_is_null(toks)) {
        snprintf(err, errlen, "'tokens' is not an array");
        return false;
    }
    return true;
}

bool sr_rp_parse_completion(const char *body, size_t len, struct sr_rp_completion *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->prompt_tokens = c->completion_tokens = -1;
    json_t *root = load(body, len, err, errlen);
    if (!root) return false;
    bool ok = false;
    if (json_is_object(root) && !json_object_get(root, "choices") && json_object_get(root, "content")) {
        ok = parse_native(root, c, err, errlen);
        goto done;
    }
    const json_t *choices = json_object_get(root, "choices");
    const json_t *ch = json_array_get(choices, 0);
    if (!json_is_object(ch)) {
        snprintf(err, errlen, "no choices[0] in the response");
        goto done;
    }
    if (!take_text(json_object_get(ch, "text"), "choices[0].text", c, err, errlen)) goto done;
    const json_t *fr = json_object_get(ch, "finish_reason");
    if (json_is_string(fr)) {
        const char *f = json_string_value(fr);
        c->finish = strcmp(f, "stop") == 0 ? SR_RP_FINISH_STOP : strcmp(f, "length") == 0 ? SR_RP_FINISH_LENGTH : SR_RP_FINISH_UNKNOWN;
    }
    const json_t *sr = json_object_get(ch, "stop_reason");
    if (sr) {
        if (json_is_null(sr)) c->stop_reason = SR_RP_SR_EOS;
        else if (json_is_string(sr)) c->stop_reason = SR_RP_SR_STRING;
        else if (json_is_integer(sr)) c->stop_reason = SR_RP_SR_TOKEN;
    }
    const json_t *usage = json_object_get(root, "usage");
    if (json_is_object(usage)) {
        const json_t *pt = json_object_get(usage, "prompt_tokens"), *ct = json_object_get(usage, "completion_tokens");
        if (json_is_integer(pt) && json_integer_value(pt) >= 0) c->prompt_tokens = json_integer_value(pt);
        if (json_is_integer(ct) && json_integer_value(ct) >= 0) c->completion_tokens = json_integer_value(ct);
    }
    const json_t *lp = json_object_get(ch, "logprobs");
    if (json_is_object(lp)) {
        const json_t *content = json_object_get(lp, "content");
        if (json_is_array(content)) {
            if (!parse_llama_logprobs(content, c, err, errlen)) goto done;
            c->has_logprobs = true;
        } else if (json_object_get(lp, "tokens")) {
            if (!parse_legacy_logprobs(lp, c, err, errlen)) goto done;
            c->has_logprobs = true;
        } else {
            snprintf(err, errlen, "choices[0].logprobs has neither 'content' (llama-server) nor 'tokens' (vLLM)");
            goto done;
        }
    } else if (lp && !json_is_null(lp)) {
        snprintf(err, errlen, "choices[0].logprobs is not an object");
        goto done;
    }
    ok = true;
done:
    json_decref(root);
    if (!ok) sr_rp_completion_free(c);
    return ok;
}

void sr_rp_completion_free(struct sr_rp_completion *c) {
    if (!c) return;
    free(c->text);
    free(c->ids);
    c->text = NULL;
    c->ids = NULL;
    c->n_ids = 0;
    c->text_len = 0;
}

int64_t sr_rp_parse_tokenize(const char *body, size_t len, int32_t **ids) {
    if (ids) *ids = NULL;
    json_t *root = load(body, len, NULL, 0);
    if (!root) return -1;
    int64_t n = -1;
    const json_t *toks = json_object_get(root, "tokens");
    const json_t *count = json_object_get(root, "count");
    if (json_is_array(toks)) {
        n = (int64_t)json_array_size(toks);
        if (ids) {
            int32_t *a = malloc((size_t)(n ? n : 1) * sizeof *a);
            bool all = a != NULL;
            for (int64_t i = 0; all && i < n; i++) {
                const json_t *e = json_array_get(toks, (size_t)i);
                if (json_is_object(e)) e = json_object_get(e, "id"); /* with_pieces */
                if (!json_int32(e, &a[i]) || a[i] < 0) all = false;
            }
            if (all) *ids = a;
            else { free(a); n = -1; }
        }
    } else if (json_is_integer(count) && json_integer_value(count) >= 0) {
        n = json_integer_value(count);
        if (ids) n = -1; /* ids wanted but not given */
    }
    json_decref(root);
    return n;
}

char *sr_rp_parse_apply_template(const char *body, size_t len) {
    json_t *root = load(body, len, NULL, 0);
    if (!root) return NULL;
    char *res = NULL;
    const json_t *p = json_object_get(root, "prompt");
    if (json_is_string(p)) {
        size_t n = json_string_length(p);
        res = malloc(n + 1);
        if (res) {
            memcpy(res, json_string_value(p), n);
            res[n] = '\0';
        }
    }
    json_decref(root);
    return res;
}

bool sr_rp_parse_props(const char *body, size_t len, int64_t *n_ctx, int32_t *total_slots) {
    *n_ctx = -1;
    *total_slots = 1;
    json_t *root = load(body, len, NULL, 0);
    if (!root) return false;
    const json_t *dgs = json_object_get(root, "default_generation_settings");
    const json_t *ts = json_object_get(root, "total_slots");
    bool ok = json_is_object(dgs) || json_is_integer(ts);
    if (ok) {
        const json_t *nc = json_object_get(dgs, "n_ctx");
        if (!json_is_integer(nc)) nc = json_object_get(root, "n_ctx");
        if (json_is_integer(nc) && json_integer_value(nc) > 0) *n_ctx = json_integer_value(nc);
        if (json_is_integer(ts) && json_integer_value(ts) > 0 && json_integer_value(ts) < 1 << 20)
            *total_slots = (int32_t)json_integer_value(ts);
    }
    json_decref(root);
    return ok;
}

int64_t sr_rp_parse_models(const char *body, size_t len, const char *model, char **first_id) {
    if (first_id) *first_id = NULL;
    json_t *root = load(body, len, NULL, 0);
    if (!root) return -1;
    int64_t res = -1;
    const json_t *data = json_object_get(root, "data");
    for (size_t i = 0; i < json_array_size(data); i++) {
        const json_t *m = json_array_get(data, i);
        const json_t *id = json_object_get(m, "id");
        if (model && !(json_is_string(id) && strcmp(json_string_value(id), model) == 0)) continue;
        if (first_id && json_is_string(id)) {
            size_t n = json_string_length(id);
            *first_id = malloc(n + 1);
            if (*first_id) {
                memcpy(*first_id, json_string_value(id), n);
                (*first_id)[n] = '\0';
            }
        }
        const json_t *ml = json_object_get(m, "max_model_len");
        if (json_is_integer(ml) && json_integer_value(ml) > 0) res = json_integer_value(ml);
        break;
    }
    json_decref(root);
    return res;
}

/* Copies a short printable excerpt of s into buf. */
static void excerpt(const char *s, size_t n, char *buf, size_t size) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < size && i < 200; i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[k++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (n > 200 && k + 4 < size) { memcpy(buf + k, "...", 3); k += 3; }
    buf[k] = '\0';
}

void sr_rp_error_message(const char *body, size_t len, char *buf, size_t size) {
    if (!size) return;
    buf[0] = '\0';
    json_t *root = load(body, len, NULL, 0);
    if (root) {
        const json_t *e = json_object_get(root, "error");
        const json_t *m = json_is_object(e) ? json_object_get(e, "message") : e;
        if (!json_is_string(m)) m = json_object_get(root, "detail");
        if (!json_is_string(m)) m = json_object_get(root, "message");
        if (json_is_string(m)) excerpt(json_string_value(m), json_string_length(m), buf, size);
        json_decref(root);
        if (buf[0]) return;
    }
    excerpt(body, len, buf, size);
}

int32_t sr_rp_digits_value(const char *s, size_t n) {
    if (n == 0 || n > 9) return -1;
    int32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}
