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
#include <stdlib.h>
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

/* msgs followed by extra messages, in a fresh array (caller frees). */
static struct sr_chat_msg *with_tail(const struct sr_chat_msg *msgs, size_t n, const struct sr_chat_msg *tail,
                                     size_t nt) {
    struct sr_chat_msg *all = malloc((n + nt) * sizeof *all);
    if (!all) return NULL;
    if (n) memcpy(all, msgs, n * sizeof *all);
    memcpy(all + n, tail, nt * sizeof *all);
    return all;
}

enum sr_status sr_prompt_prefix_msgs(struct sr_lm *lm, const struct sr_chat_msg *msgs, size_t n,
                                     const char *think_open, struct sr_buf *out) {
    struct sr_chat_msg tail[1] = {{"assistant", SENT_A}};
    struct sr_chat_msg *all = with_tail(msgs, n, tail, 1);
    if (!all) return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
    struct sr_buf r = {0};
    enum sr_status st = lm->ops->render(lm, all, n + 1, &r);
    free(all);
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

enum sr_status sr_prompt_prefix(struct sr_lm *lm, const char *user_msg, const char *think_open,
                                struct sr_buf *out) {
    struct sr_chat_msg m = {"user", user_msg};
    return sr_prompt_prefix_msgs(lm, &m, 1, think_open, out);
}

enum sr_status sr_prompt_judge_suffix_msgs(struct sr_lm *lm, const struct sr_chat_msg *msgs, size_t n,
                                           const char *judge_prompt, const char *judge_prefill,
                                           struct sr_buf *out) {
    struct sr_chat_msg tail[3] = {{"assistant", SENT_A}, {"user", judge_prompt}, {"assistant", SENT_B}};
    struct sr_chat_msg *all = with_tail(msgs, n, tail, 3);
    if (!all) return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
    struct sr_buf r = {0};
    enum sr_status st = lm->ops->render(lm, all, n + 3, &r);
    free(all);
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

enum sr_status sr_prompt_judge_suffix(struct sr_lm *lm, const char *user_msg,
                                      const char *judge_prompt, const char *judge_prefill,
                                      struct sr_buf *out) {
    struct sr_chat_msg m = {"user", user_msg};
    return sr_prompt_judge_suffix_msgs(lm, &m, 1, judge_prompt, judge_prefill, out);
}
