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
#define SENT_U "\x01SR_SENTINEL_U\x01"

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

/* Renders [user: user_msg, assistant: SENT_A] and returns the part before SENT_A. */
static enum sr_status render_head(struct sr_lm *lm, const char *user_msg, struct sr_buf *r, size_t *cut) {
    struct sr_chat_msg msgs[2] = {{"user", user_msg}, {"assistant", SENT_A}};
    enum sr_status st = lm->ops->render(lm, msgs, 2, r);
    if (st != SR_OK) return st;
    const char *a = r->data ? strstr(r->data, SENT_A) : NULL;
    if (!a) return sr_lm_fail(lm, SR_ERR_BACKEND, "the chat template dropped the assistant message");
    *cut = (size_t)(a - r->data);
    return SR_OK;
}

/* The user message sits where a sentinel user message renders: the rendering with the real message
 * is head + content + mid, head and mid taken from the sentinel rendering, so whatever the template
 * does to the message itself (trimming, say) stays in the content, and the template's own text
 * (its markers) stays outside it. */
enum sr_status sr_prompt_prefix_segs(struct sr_lm *lm, const char *user_msg, const char *think_open,
                                     struct sr_buf *out, struct sr_seg segs[3]) {
    struct sr_buf r = {0}, u = {0};
    size_t cut = 0, ucut = 0;
    enum sr_status st = render_head(lm, user_msg, &r, &cut);
    if (st == SR_OK) st = render_head(lm, SENT_U, &u, &ucut);
    const char *su = st == SR_OK ? strstr(u.data, SENT_U) : NULL;
    if (st == SR_OK && (!su || (size_t)(su - u.data) + strlen(SENT_U) > ucut))
        st = sr_lm_fail(lm, SR_ERR_BACKEND, "the chat template dropped the user message");
    if (st != SR_OK) { sr_buf_free(&r); sr_buf_free(&u); return st; }
    size_t head = (size_t)(su - u.data), mid_off = head + strlen(SENT_U), mid = ucut - mid_off;
    sr_buf_clear(out);
    if (cut >= head + mid && memcmp(r.data, u.data, head) == 0 && memcmp(r.data + cut - mid, u.data + mid_off, mid) == 0) {
        sr_buf_append(out, r.data, cut); /* head + content + mid, as rendered with the real message */
    } else {
        /* The template mixed the message with its own text: splice the message in unchanged. */
        sr_buf_append(out, u.data, head);
        sr_buf_puts(out, user_msg);
        sr_buf_append(out, u.data + mid_off, mid);
    }
    size_t content = out->len - head - mid;
    sr_buf_puts(out, think_open);
    sr_buf_free(&r);
    sr_buf_free(&u);
    if (out->oom) return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
    segs[0] = (struct sr_seg){out->data, head, true};
    segs[1] = (struct sr_seg){out->data + head, content, false};
    segs[2] = (struct sr_seg){out->data + head + content, out->len - head - content, true};
    return SR_OK;
}

enum sr_status sr_prompt_prefix(struct sr_lm *lm, const char *user_msg, const char *think_open,
                                struct sr_buf *out) {
    struct sr_seg segs[3];
    return sr_prompt_prefix_segs(lm, user_msg, think_open, out, segs);
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
