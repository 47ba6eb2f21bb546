/*
 * test_remote_parse.c: the readers of OpenAI-compatible answers (src/backend/remote_parse.c) on
 * response bodies written from the servers' documented formats: llama-server's /v1/completions
 * (logprobs.content[], the chat shape), vLLM/SGLang's legacy completions logprobs (tokens,
 * token_logprobs, top_logprobs as {token: logprob}), vLLM's "token_id:N" keys, llama-server's native
 * /completion (content, tokens, stop_type), and broken ones.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "remote_parse.h"
#include "testutil.h"

static bool parse(const char *s, struct sr_rp_completion *c, char *err) {
    return sr_rp_parse_completion(s, strlen(s), c, err, 256);
}

static const struct sr_rp_top *find(const struct sr_rp_completion *c, const char *tok) {
    for (int i = 0; i < c->n_top; i++)
        if (strcmp(c->top[i].token, tok) == 0) return &c->top[i];
    return NULL;
}

static void test_llama_server(void) {
    /* llama-server, judge: max_tokens 1, logprobs 20 (server-task.cpp to_json_oaicompat). */
    const char *body =
        "{\"choices\":[{\"text\":\"7\",\"index\":0,\"logprobs\":{\"content\":[{\"id\":22,\"token\":\"7\","
        "\"bytes\":[55],\"logprob\":-0.5,\"top_logprobs\":[{\"id\":22,\"token\":\"7\",\"bytes\":[55],"
        "\"logprob\":-0.5},{\"id\":23,\"token\":\"8\",\"bytes\":[56],\"logprob\":-1.25},{\"id\":15,\"token\":\"0\","
        "\"bytes\":[48],\"logprob\":-3.0},{\"id\":1000,\"token\":\" seven\",\"bytes\":[32,115,101,118,101,110],"
        "\"logprob\":-4.0}]}]},\"finish_reason\":\"length\"}],\"created\":1700000000,\"model\":\"base.gguf\","
        "\"system_fingerprint\":\"b1-80fb11a\",\"object\":\"text_completion\",\"usage\":{\"completion_tokens\":1,"
        "\"prompt_tokens\":42,\"total_tokens\":43,\"prompt_tokens_details\":{\"cached_tokens\":40}},"
        "\"id\":\"chatcmpl-abc\",\"timings\":{\"cache_n\":40,\"prompt_n\":2}}";
    struct sr_rp_completion c;
    char err[256] = "";
    CHECK(parse(body, &c, err));
    CHECK_STR(c.text, "7");
    CHECK(c.finish == SR_RP_FINISH_LENGTH);
    CHECK(c.stop_reason == SR_RP_SR_ABSENT);
    CHECK(c.prompt_tokens == 42 && c.completion_tokens == 1);
    CHECK(c.has_logprobs && c.ids_known && c.n_ids == 1 && c.ids[0] == 22);
    CHECK(c.n_top == 4);
    const struct sr_rp_top *t = find(&c, "8");
    CHECK(t && t->id == 23 && t->logprob == -1.25);
    t = find(&c, " seven");
    CHECK(t && t->id == 1000 && t->token_len == 6);
    sr_rp_completion_free(&c);

    /* Generation with a stop string: one entry per sampled token (minus the stop's tokens). */
    const char *gen =
        "{\"choices\":[{\"text\":\"Two.\",\"index\":0,\"logprobs\":{\"content\":[{\"id\":11613,\"token\":\"Two\","
        "\"bytes\":[84,119,111],\"logprob\":-0.1,\"top_logprobs\":[{\"id\":11613,\"token\":\"Two\",\"bytes\":[84,119,111],"
        "\"logprob\":-0.1}]},{\"id\":13,\"token\":\".\",\"bytes\":[46],\"logprob\":-0.2,\"top_logprobs\":[]}]},"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"completion_tokens\":3,\"prompt_tokens\":9,\"total_tokens\":12}}";
    CHECK(parse(gen, &c, err));
    CHECK(c.finish == SR_RP_FINISH_STOP && c.n_ids == 2 && c.ids[0] == 11613 && c.ids[1] == 13 && c.ids_known);
    CHECK(c.completion_tokens == 3);
    sr_rp_completion_free(&c);

    /* post_sampling_probs: "top_probs" with "prob" (converted to log). */
    const char *post =
        "{\"choices\":[{\"text\":\"5\",\"logprobs\":{\"content\":[{\"id\":20,\"token\":\"5\",\"prob\":0.5,"
        "\"top_probs\":[{\"id\":20,\"token\":\"5\",\"prob\":0.5},{\"id\":19,\"token\":\"4\",\"prob\":0.25}]}]},"
        "\"finish_reason\":\"length\"}]}";
    CHECK(parse(post, &c, err));
    t = find(&c, "4");
    CHECK(t && fabs(t->logprob - log(0.25)) < 1e-12);
    CHECK(c.prompt_tokens == -1 && c.completion_tokens == -1);
    sr_rp_completion_free(&c);

    /* No logprobs requested: null. */
    CHECK(parse("{\"choices\":[{\"text\":\"x\",\"logprobs\":null,\"finish_reason\":\"stop\"}]}", &c, err));
    CHECK(!c.has_logprobs && c.n_top == 0 && c.n_ids == 0);
    sr_rp_completion_free(&c);
}

static void test_native(void) {
    /* llama-server's native /completion with return_tokens (what token-mode generation uses:
     * ids without per-token probabilities), as server-task.cpp to_json_non_oaicompat writes it. */
    const char *gen =
        "{\"index\":0,\"content\":\"Two.\",\"tokens\":[11613,13],\"id_slot\":0,\"stop\":true,"
        "\"model\":\"small.gguf\",\"tokens_predicted\":3,\"tokens_evaluated\":9,\"generation_settings\":{},"
        "\"prompt\":\"\",\"has_new_line\":false,\"truncated\":false,\"stop_type\":\"word\","
        "\"stopping_word\":\"\\n\\n\",\"tokens_cached\":11,\"timings\":{\"prompt_n\":1}}";
    struct sr_rp_completion c;
    char err[256] = "";
    CHECK(parse(gen, &c, err));
    CHECK_STR(c.text, "Two.");
    CHECK(c.finish == SR_RP_FINISH_STOP && c.stop_reason == SR_RP_SR_STRING);
    CHECK(c.ids_known && c.n_ids == 2 && c.ids[0] == 11613 && c.ids[1] == 13);
    CHECK(c.prompt_tokens == 9 && c.completion_tokens == 3 && !c.has_logprobs);
    sr_rp_completion_free(&c);
    CHECK(parse("{\"content\":\"\",\"tokens\":[151643],\"stop\":true,\"stop_type\":\"eos\"}", &c, err));
    CHECK(c.finish == SR_RP_FINISH_STOP && c.stop_reason == SR_RP_SR_EOS && c.n_ids == 1);
    sr_rp_completion_free(&c);
    CHECK(parse("{\"content\":\"abc\",\"tokens\":[1,2,3],\"stop\":true,\"stop_type\":\"limit\"}", &c, err));
    CHECK(c.finish == SR_RP_FINISH_LENGTH && c.n_ids == 3);
    sr_rp_completion_free(&c);
    /* with n_probs: the ids come from completion_probabilities */
    CHECK(parse("{\"content\":\"7\",\"tokens\":[],\"stop_type\":\"limit\",\"completion_probabilities\":[{\"id\":22,"
                "\"token\":\"7\",\"logprob\":-0.5,\"top_logprobs\":[{\"id\":22,\"token\":\"7\",\"logprob\":-0.5}]}]}",
                &c, err));
    CHECK(c.has_logprobs && c.n_ids == 1 && c.ids[0] == 22 && c.n_top == 1);
    sr_rp_completion_free(&c);
    /* broken: ids that are not integers are "unknown", a content that is not a string fails */
    CHECK(parse("{\"content\":\"ab\",\"tokens\":[1,\"x\"],\"stop_type\":\"limit\"}", &c, err));
    CHECK(!c.ids_known && c.n_ids == 2);
    sr_rp_completion_free(&c);
    CHECK(!parse("{\"content\":5,\"tokens\":[1]}", &c, err));
    CHECK(!parse("{\"content\":\"a\",\"tokens\":7}", &c, err));
}

static void test_vllm(void) {
    /* vLLM /v1/completions, max_tokens 1, logprobs 20: the legacy OpenAI shape. */
    const char *body =
        "{\"id\":\"cmpl-9f\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"Qwen/QwQ-32B\","
        "\"choices\":[{\"index\":0,\"text\":\"7\",\"logprobs\":{\"text_offset\":[0],\"token_logprobs\":[-0.5],"
        "\"tokens\":[\"7\"],\"top_logprobs\":[{\"7\":-0.5,\"8\":-1.25,\"0\":-3.0,\" seven\":-4.0}]},"
        "\"finish_reason\":\"length\",\"stop_reason\":null,\"prompt_logprobs\":null}],"
        "\"usage\":{\"prompt_tokens\":42,\"total_tokens\":43,\"completion_tokens\":1,\"prompt_tokens_details\":null}}";
    struct sr_rp_completion c;
    char err[256] = "";
    CHECK(parse(body, &c, err));
    CHECK_STR(c.text, "7");
    CHECK(c.stop_reason == SR_RP_SR_EOS); /* null */
    CHECK(c.has_logprobs && c.n_top == 4 && c.n_ids == 1 && !c.ids_known && c.ids[0] == -1);
    const struct sr_rp_top *t = find(&c, "0");
    CHECK(t && t->id == -1 && t->logprob == -3.0);
    CHECK(c.prompt_tokens == 42);
    sr_rp_completion_free(&c);

    /* return_tokens_as_token_ids: "token_id:N" strings. */
    const char *ids =
        "{\"choices\":[{\"index\":0,\"text\":\" two\\n\\n\",\"logprobs\":{\"text_offset\":[0,4],"
        "\"token_logprobs\":[-0.1,-0.2],\"tokens\":[\"token_id:1378\",\"token_id:271\"],\"top_logprobs\":"
        "[{\"token_id:1378\":-0.1,\"token_id:825\":-2.0},{\"token_id:271\":-0.2}]},\"finish_reason\":\"stop\","
        "\"stop_reason\":\"\\n\\n\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}";
    CHECK(parse(ids, &c, err));
    CHECK(c.ids_known && c.n_ids == 2 && c.ids[0] == 1378 && c.ids[1] == 271);
    CHECK(c.stop_reason == SR_RP_SR_STRING && c.finish == SR_RP_FINISH_STOP);
    CHECK(c.n_top == 2 && (c.top[0].id == 1378 || c.top[1].id == 1378));
    sr_rp_completion_free(&c);

    /* A stop token id (vLLM stop_token_ids). */
    CHECK(parse("{\"choices\":[{\"text\":\"\",\"finish_reason\":\"stop\",\"stop_reason\":151643}]}", &c, err));
    CHECK(c.stop_reason == SR_RP_SR_TOKEN);
    sr_rp_completion_free(&c);
}

static void test_broken(void) {
    struct sr_rp_completion c;
    char err[256];
    const char *bad[] = {
        "", "{", "[]", "null", "{\"choices\":[]}", "{\"choices\":[{\"text\":5}]}", "{\"choices\":{}}",
        "{\"choices\":[{\"text\":\"x\",\"logprobs\":{}}]}",
        "{\"choices\":[{\"text\":\"x\",\"logprobs\":7}]}",
        "{\"choices\":[{\"text\":\"x\",\"logprobs\":{\"content\":[{\"id\":1}]}}]}",
        "{\"choices\":[{\"text\":\"x\",\"logprobs\":{\"content\":[{\"id\":1,\"top_logprobs\":[{\"token\":\"a\"}]}]}}]}",
        "{\"choices\":[{\"text\":\"x\",\"logprobs\":{\"content\":[7]}}]}",
        "{\"choices\":[{\"text\":\"x\",\"logprobs\":{\"tokens\":[\"a\"],\"top_logprobs\":[]}}]}",
        "{\"choices\":[{\"text\":\"x\",\"logprobs\":{\"tokens\":[\"a\"],\"top_logprobs\":[{\"a\":\"high\"}]}}]}",
        "{\"choices\":[{\"text\":\"x\",\"logprobs\":{\"tokens\":[1],\"top_logprobs\":[{}]}}]}",
        "{\"choices\":[{\"text\":\"truncat",
        "<html>502 Bad Gateway</html>",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        bool ok = parse(bad[i], &c, err);
        CHECK(!ok && err[0]);
        if (ok) fprintf(stderr, "  accepted: %s\n", bad[i]);
        CHECK(c.text == NULL && c.ids == NULL);
    }
    /* Numbers out of range become "unknown", not garbage. */
    CHECK(parse("{\"choices\":[{\"text\":\"x\",\"logprobs\":{\"content\":[{\"id\":99999999999,\"top_logprobs\":"
                "[{\"id\":-4,\"token\":\"a\",\"logprob\":-1}]}]}}],\"usage\":{\"prompt_tokens\":-3}}", &c, err));
    CHECK(c.n_ids == 1 && c.ids[0] == -1 && !c.ids_known && c.top[0].id == -1 && c.prompt_tokens == -1);
    sr_rp_completion_free(&c);
    /* A long token text is truncated but its length kept. */
    char big[400];
    snprintf(big, sizeof big, "{\"choices\":[{\"text\":\"\",\"logprobs\":{\"tokens\":[\"t\"],\"top_logprobs\":[{\"%0100d\":-1}]}}]}", 0);
    CHECK(parse(big, &c, err));
    CHECK(c.n_top == 1 && c.top[0].token_len == 100 && strlen(c.top[0].token) == 63);
    sr_rp_completion_free(&c);
}

static void test_misc(void) {
    int32_t *ids = NULL;
    const char *tk = "{\"tokens\":[9707,11,1879]}";
    CHECK(sr_rp_parse_tokenize(tk, strlen(tk), &ids) == 3 && ids && ids[2] == 1879);
    free(ids);
    const char *pieces = "{\"tokens\":[{\"id\":9707,\"piece\":\"Hello\"},{\"id\":11,\"piece\":[44]}]}";
    CHECK(sr_rp_parse_tokenize(pieces, strlen(pieces), &ids) == 2 && ids && ids[1] == 11);
    free(ids);
    const char *cnt = "{\"count\":5,\"max_model_len\":32768,\"tokens\":[1,2,3,4,5]}";
    CHECK(sr_rp_parse_tokenize(cnt, strlen(cnt), NULL) == 5);
    const char *cnt2 = "{\"count\":7}";
    CHECK(sr_rp_parse_tokenize(cnt2, strlen(cnt2), NULL) == 7);
    CHECK(sr_rp_parse_tokenize(cnt2, strlen(cnt2), &ids) == -1 && !ids);
    CHECK(sr_rp_parse_tokenize("{\"tokens\":[\"a\"]}", 16, &ids) == -1 && !ids);
    CHECK(sr_rp_parse_tokenize("nope", 4, NULL) == -1);

    const char *at = "{\"prompt\":\"<|im_start|>user\\nx<|im_end|>\\n\"}";
    char *p = sr_rp_parse_apply_template(at, strlen(at));
    CHECK_STR(p, "<|im_start|>user\nx<|im_end|>\n");
    free(p);
    CHECK(sr_rp_parse_apply_template("{\"prompt\":1}", 12) == NULL);

    int64_t n_ctx;
    int32_t slots;
    const char *props = "{\"default_generation_settings\":{\"n_ctx\":4096,\"params\":{}},\"total_slots\":4,"
                        "\"model_path\":\"m.gguf\",\"chat_template\":\"...\"}";
    CHECK(sr_rp_parse_props(props, strlen(props), &n_ctx, &slots) && n_ctx == 4096 && slots == 4);
    CHECK(!sr_rp_parse_props("{\"detail\":\"Not Found\"}", 22, &n_ctx, &slots));

    char *id = NULL;
    const char *models = "{\"object\":\"list\",\"data\":[{\"id\":\"Qwen/QwQ-32B\",\"object\":\"model\",\"max_model_len\":32768},"
                         "{\"id\":\"other\",\"max_model_len\":8192}]}";
    CHECK(sr_rp_parse_models(models, strlen(models), NULL, &id) == 32768);
    CHECK_STR(id, "Qwen/QwQ-32B");
    free(id);
    CHECK(sr_rp_parse_models(models, strlen(models), "other", &id) == 8192);
    CHECK_STR(id, "other");
    free(id);
    CHECK(sr_rp_parse_models(models, strlen(models), "missing", &id) == -1 && !id);

    char msg[128];
    const char *e1 = "{\"error\":{\"code\":503,\"message\":\"Loading model\",\"type\":\"unavailable_error\"}}";
    sr_rp_error_message(e1, strlen(e1), msg, sizeof msg);
    CHECK_STR(msg, "Loading model");
    const char *e2 = "{\"object\":\"error\",\"message\":\"This model's maximum context length is 32768\",\"code\":400}";
    sr_rp_error_message(e2, strlen(e2), msg, sizeof msg);
    CHECK_STR(msg, "This model's maximum context length is 32768");
    sr_rp_error_message("{\"detail\":\"Not Found\"}", 22, msg, sizeof msg);
    CHECK_STR(msg, "Not Found");
    sr_rp_error_message("Internal\x01" "Error", 14, msg, sizeof msg);
    CHECK_STR(msg, "Internal?Error");

    CHECK(sr_rp_digits_value("7", 1) == 7);
    CHECK(sr_rp_digits_value("10", 2) == 10);
    CHECK(sr_rp_digits_value(" 7", 2) == -1);
    CHECK(sr_rp_digits_value("", 0) == -1);
    CHECK(sr_rp_digits_value("1234567890", 10) == -1);
}

int main(void) {
    test_llama_server();
    test_native();
    test_vllm();
    test_broken();
    test_misc();
    return test_summary("test_remote_parse");
}
