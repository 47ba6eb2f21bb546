/*
 * prompt.c: the strings around the reasoning, built from each model's own chat template.
 *
 * The reference sends [user: U] with a generation prompt for the first step, and
 * [user: U, assistant: "<think>" + steps + "\n\n"] with continue_final_message afterwards; the
 * judge gets [user: U, assistant: "<think>" + steps + candidate + "\n\n", user: J,
 * assistant: "<think>I think the quality score is: "]. With KV-cache reuse the thinking turn is
 * one growing prefix, so we need two pieces of rendered template:
 *   prefix = rendering up to where the assistant's content starts, then think_open ("<think>\n",
 *            the generation prompt of QwQ and R1 templates);
 *   judge suffix = what the template puts between the end of the candidate and the start of the
 *            judge prefill, then the prefill.
 * Both are found by rendering with sentinel contents and cutting at the sentinels, so any
 * template llama.cpp knows (chatml, deepseek, llama3, ...) works unchanged.
 */
#include <string.h>

#include "internal.h"

#define SENT_A "\x01SR_SENTINEL_A\x01"
#define SENT_B "\x01SR_SENTINEL_B\x01"

char *sr_prompt_fill(const char *tmpl, const char *problem) {
    struct sr_buf b = {0};
    const char *key = "{problem}";
    size_t klen = strlen(key);
    const char *p = tmpl;
    for (;;) {
        const char *hit = strstr(p, key);
        if (!hit) { sr_buf_puts(&b, p); break; }
        sr_buf_append(&b, p, (size_t)(hit - p));
        sr_buf_puts(&b, problem);
        p = hit + klen;
    }
    return sr_buf_take(&b);
}

enum sr_status sr_prompt_prefix(struct sr_lm *lm, const char *user_msg, const char *think_open,
                                struct sr_buf *out) {
    struct sr_chat_msg msgs[2] = {{"user", user_msg}, {"assistant", SENT_A}};
    struct sr_buf r = {0};
    enum sr_status st = lm->ops->render(lm, msgs, 2, &r);
    if (st != SR_OK) { sr_buf_free(&r); return st; }
    const char *a = strstr(r.data, SENT_A);
    if (!a) {
        sr_buf_free(&r);
        return sr_lm_fail(lm, SR_ERR_BACKEND, "the chat template dropped the assistant message");
    }
    sr_buf_clear(out);
    sr_buf_append(out, r.data, (size_t)(a - r.data));
    sr_buf_puts(out, think_open);
    sr_buf_free(&r);
    return out->oom ? sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory") : SR_OK;
}

enum sr_status sr_prompt_judge_suffix(struct sr_lm *lm, const char *user_msg,
                                      const char *judge_prompt, const char *judge_prefill,
                                      struct sr_buf *out) {
    struct sr_chat_msg msgs[4] = {
        {"user", user_msg}, {"assistant", SENT_A}, {"user", judge_prompt}, {"assistant", SENT_B}};
    struct sr_buf r = {0};
    enum sr_status st = lm->ops->render(lm, msgs, 4, &r);
    if (st != SR_OK) { sr_buf_free(&r); return st; }
    const char *a = strstr(r.data, SENT_A);
    const char *b = a ? strstr(a, SENT_B) : NULL;
    if (!a || !b) {
        sr_buf_free(&r);
        return sr_lm_fail(lm, SR_ERR_BACKEND, "the chat template dropped a judge message");
    }
    a += strlen(SENT_A);
    sr_buf_clear(out);
    sr_buf_append(out, a, (size_t)(b - a));
    sr_buf_puts(out, judge_prefill);
    sr_buf_free(&r);
    return out->oom ? sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory") : SR_OK;
}
