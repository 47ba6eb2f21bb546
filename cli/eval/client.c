/*
 * cli/eval/client.c: the backend of `specreason-eval --server URL`: every record is one
 * non-streaming POST /v1/chat/completions to a running specreason-server, with the run's
 * parameters as SpecReason's extra body fields and "specreason_result": true, so the reply's
 * specreason.result is the library's own JSON form of the result (sr_result_to_json), read back
 * into a struct sr_result (src/core/result_json.c). Safe to call from several threads at once: each
 * call has its own curl handle. The API key, if the server wants one, comes from
 * $SPECREASON_API_KEY.
 */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "result_json.h"

struct client {
    char *base;  /* URL without a trailing '/' or "/v1" */
    char *model; /* the server's model id (GET /v1/models) */
    struct curl_slist *headers;
};

struct body {
    struct sr_buf b;
    size_t max;
};

static size_t on_data(char *p, size_t size, size_t n, void *user) {
    struct body *B = user;
    size_t len = size * n;
    if (B->b.len + len > B->max) return 0; /* an absurd reply: stop reading */
    sr_buf_append(&B->b, p, len);
    return B->b.oom ? 0 : len;
}

static int on_progress(void *user, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)user, (void)dt, (void)dn, (void)ut, (void)un;
    return g_stop ? 1 : 0; /* Ctrl-C: abort the transfer at once */
}

/* One HTTP request: GET when body == NULL. Returns the status (0 on a transport error, with err
 * set) and the reply in *reply (caller frees). */
static long http(const struct client *cl, const char *path, const char *body, char **reply, char *err, size_t errlen) {
    *reply = NULL;
    CURL *h = curl_easy_init();
    if (!h) { snprintf(err, errlen, "cannot start an HTTP client"); return 0; }
    struct sr_buf url = {0};
    sr_buf_printf(&url, "%s%s", cl->base, path);
    struct body B = {{0}, (size_t)1 << 30};
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url.data ? url.data : "");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, cl->headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &B);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        *reply = sr_buf_take(&B.b);
        if (!*reply) { snprintf(err, errlen, "out of memory"); status = 0; }
    } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(err, errlen, "interrupted");
    } else {
        snprintf(err, errlen, "%s%s: %s", cl->base, path, cerr[0] ? cerr : curl_easy_strerror(rc));
    }
    sr_buf_free(&B.b);
    sr_buf_free(&url);
    curl_easy_cleanup(h);
    return status;
}

/* The message of an OpenAI-style error body, or the start of the body. */
static void error_of(long status, const char *reply, char *err, size_t errlen) {
    json_t *j = reply ? sr_jparse(reply, strlen(reply), NULL, 0) : NULL;
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    if (m) snprintf(err, errlen, "server: HTTP %ld: %s", status, m);
    else snprintf(err, errlen, "server: HTTP %ld: %.200s", status, reply ? reply : "");
    json_decref(j);
}

static const char *score_name(enum sr_score_method m) {
    return m == SR_SCORE_GREEDY ? "greedy" : m == SR_SCORE_AVERAGE ? "average" : "digit-softmax";
}

static enum sr_status client_run(void *state, const char *user_msg, const struct sr_run_params *p,
                                 struct sr_result **out, char *err, size_t errlen) {
    const struct client *cl = state;
    *out = NULL;
    json_t *o = json_pack("{s:s,s:[{s:s,s:o}],s:b,s:b}", "model", cl->model, "messages", "role", "user", "content",
                          sr_jstr(user_msg), "stream", 0, "specreason_result", 1);
    bool ok = o != NULL;
    ok = ok && sr_jset(o, "mode", json_string(sr_mode_str(p->mode))) &&
         sr_jset(o, "threshold", json_real(p->threshold)) && sr_jset(o, "score_method", json_string(score_name(p->score_method))) &&
         sr_jset(o, "spec_decode", json_boolean(p->spec_decode)) && sr_jset(o, "policy", json_string(sr_policy_str(p->policy))) &&
         sr_jset(o, "seed", json_integer((json_int_t)p->seed)) &&
         sr_jset(o, "temperature", json_real(p->small.temperature)) && sr_jset(o, "top_p", json_real(p->small.top_p)) &&
         sr_jset(o, "token_budget", json_integer(p->token_budget)) && sr_jset(o, "first_n_base", json_integer(p->first_n_base)) &&
         sr_jset(o, "max_step_tokens", json_integer(p->max_step_tokens)) &&
         sr_jset(o, "max_answer_tokens", json_integer(p->max_answer_tokens));
    char *body = ok ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(o);
    if (!body) { snprintf(err, errlen, "out of memory"); return SR_ERR_NOMEM; }
    char *reply = NULL;
    long st = http(cl, "/v1/chat/completions", body, &reply, err, errlen);
    free(body);
    if (st == 0) {
        free(reply);
        return g_stop ? SR_ERR_ABORTED : SR_ERR_BACKEND;
    }
    if (st != 200) {
        error_of(st, reply, err, errlen);
        free(reply);
        return SR_ERR_BACKEND;
    }
    json_t *j = sr_jparse(reply, strlen(reply), NULL, 0);
    free(reply);
    json_t *res = json_object_get(json_object_get(j, "specreason"), "result");
    char rerr[128] = "";
    *out = res ? sr_result_from_json(res, rerr, sizeof rerr) : NULL;
    json_decref(j);
    if (!*out) {
        snprintf(err, errlen, "server: the reply has no specreason.result (%s); is it a specreason-server?",
                 rerr[0] ? rerr : "not JSON");
        return SR_ERR_BACKEND;
    }
    return SR_OK;
}

static void client_free_result(void *state, struct sr_result *r) {
    (void)state;
    sr_result_free(r);
}

static void client_close(void *state) {
    struct client *cl = state;
    if (!cl) return;
    curl_slist_free_all(cl->headers);
    free(cl->base);
    free(cl->model);
    free(cl);
    curl_global_cleanup();
}

enum sr_status client_open(const char *url, struct backend *be, char *err, size_t errlen) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return SR_ERR_IO;
    }
    struct client *cl = calloc(1, sizeof *cl);
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/') n--;
    if (n >= 3 && memcmp(url + n - 3, "/v1", 3) == 0) n -= 3;
    if (cl) cl->base = sr_strndup(url, n);
    struct curl_slist *h = cl && cl->base ? curl_slist_append(NULL, "Content-Type: application/json") : NULL;
    const char *key = getenv("SPECREASON_API_KEY");
    if (h && key && *key) {
        struct sr_buf a = {0};
        sr_buf_printf(&a, "Authorization: Bearer %s", key);
        struct curl_slist *h2 = a.data ? curl_slist_append(h, a.data) : NULL;
        sr_buf_free(&a);
        if (!h2) { curl_slist_free_all(h); h = NULL; }
    }
    if (!h) {
        if (cl) free(cl->base);
        free(cl);
        curl_global_cleanup();
        snprintf(err, errlen, "out of memory");
        return SR_ERR_NOMEM;
    }
    cl->headers = h;
    char *reply = NULL;
    long st = http(cl, "/health", NULL, &reply, err, errlen);
    if (st != 200) {
        if (st) snprintf(err, errlen, "%s/health: HTTP %ld (the server is not ready)", cl->base, st);
        free(reply);
        client_close(cl);
        return SR_ERR_IO;
    }
    free(reply);
    st = http(cl, "/v1/models", NULL, &reply, err, errlen);
    json_t *j = st == 200 ? sr_jparse(reply, strlen(reply), NULL, 0) : NULL;
    free(reply);
    const char *id = json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id"));
    cl->model = id ? sr_strdup(id) : NULL;
    json_decref(j);
    if (!cl->model) {
        if (st) snprintf(err, errlen, "%s/v1/models: no model id (HTTP %ld)", cl->base, st);
        client_close(cl);
        return SR_ERR_IO;
    }
    be->name = "specreason-server";
    be->state = cl;
    be->run_one = client_run;
    be->free_result = client_free_result;
    be->close = client_close;
    return SR_OK;
}
