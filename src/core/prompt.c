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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* msgs followed by extra messages, in a fresh array (caller frees). */
static struct sr_chat_msg *with_tail(const struct sr_chat_msg *msgs, size_t n, const struct sr_chat_msg *tail,
                                     size_t nt) {
    struct sr_chat_msg *all = malloc((n + nt) * sizeof *all);
    if (!all) return NULL;
    if (n) memcpy(all, msgs, n * sizeof *all);
    memcpy(all + n, tail, nt * sizeof *all);
    return all;
}

/* Message i's sentinel content (the first is SENT_U, as for one message). */
static void sentinel(char buf[48], size_t i) {
    if (i == 0) snprintf(buf, 48, "%s", SENT_U);
    else snprintf(buf, 48, "\x01SR_SENTINEL_U%zu\x01", i);
}

/* Whether s[0..len) holds the start of a sentinel. */
static bool has_sentinel(const char *s, size_t len) {
    static const char tag[] = "\x01SR_SENTINEL_";
    for (size_t k = 0; k + sizeof tag - 1 <= len; k++)
        if (s[k] == '\x01' && memcmp(s + k, tag, sizeof tag - 1) == 0) return true;
    return false;
}

/* Renders all + [assistant: SENT_A] and cuts before SENT_A: *cut = its offset in r. */
static enum sr_status render_cut(struct sr_lm *lm, const struct sr_chat_msg *all, size_t n, struct sr_buf *r,
                                 size_t *cut) {
    sr_buf_clear(r);
    enum sr_status st = lm->ops->render(lm, all, n + 1, r);
    if (st != SR_OK) return st;
    const char *a = r->data ? strstr(r->data, SENT_A) : NULL;
    if (!a) return sr_lm_fail(lm, SR_ERR_BACKEND, "the chat template dropped the assistant message");
    *cut = (size_t)(a - r->data);
    return SR_OK;
}

/* Each message sits where its sentinel renders. The rendering with all sentinels gives the
 * template's own text (its markers) around each message: t0 S0 t1 S1 ... tn. Message i's content
 * is taken from a rendering with only message i real: when that is t0..S(i-1) + content + ti..tn,
 * whatever the template did to the message itself (trimming, say) stays in the content; otherwise
 * (the template mixed the message with its own text) the message is spliced in unchanged. The
 * template's text becomes special segments, every message's content a plain-text one, so control
 * tokens are read only in the template's own text. With one message this is exactly the
 * single-problem prefix. */
enum sr_status sr_prompt_prefix_msgs(struct sr_lm *lm, const struct sr_chat_msg *msgs, size_t n,
                                     const char *think_open, struct sr_buf *out, struct sr_seg *segs,
                                     size_t *n_segs) {
    if (n == 0) return sr_lm_fail(lm, SR_ERR_INVALID_ARG, "no messages");
    struct sr_chat_msg tail[1] = {{"assistant", SENT_A}};
    struct sr_chat_msg *all = with_tail(msgs, n, tail, 1);
    char (*sent)[48] = malloc(n * sizeof *sent);
    size_t *start = malloc(n * sizeof *start), *end = malloc(n * sizeof *end);
    /* where each piece lies in out: template text at even indices, contents at odd ones */
    size_t *off = malloc((2 * n + 2) * sizeof *off);
    struct sr_buf u = {0}, m = {0};
    size_t ucut = 0;
    enum sr_status st = SR_OK;
    if (!all || !sent || !start || !end || !off) { st = sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < n; i++) {
        sentinel(sent[i], i);
        all[i].content = sent[i];
    }
    st = render_cut(lm, all, n, &u, &ucut);
    if (st != SR_OK) goto done;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = strstr(u.data + pos, sent[i]);
        if (!s || (size_t)(s - u.data) + strlen(sent[i]) > ucut) {
            if (strcmp(msgs[i].role, "user") == 0 || n == 1) {
                st = sr_lm_fail(lm, SR_ERR_BACKEND, "the chat template dropped the user message");
                goto done;
            }
            start[i] = end[i] = SIZE_MAX; /* the template leaves this message out (a system message, say) */
            continue;
        }
        start[i] = (size_t)(s - u.data);
        end[i] = start[i] + strlen(sent[i]);
        pos = end[i];
    }
    /* No sentinel may be left in the template's text (a repeated or reordered message). */
    bool stray = false;
    for (size_t i = 0, p = 0; i <= n && !stray; i++) {
        if (i < n && start[i] == SIZE_MAX) continue;
        size_t q = i < n ? start[i] : ucut;
        stray = has_sentinel(u.data + p, q - p);
        if (i < n) p = end[i];
    }
    if (stray) {
        st = sr_lm_fail(lm, SR_ERR_BACKEND, "the chat template repeated or reordered a message");
        goto done;
    }
    sr_buf_clear(out);
    size_t prev = 0, np = 0;
    for (size_t i = 0; i < n; i++) {
        if (start[i] == SIZE_MAX) continue;
        off[np++] = out->len;
        sr_buf_append(out, u.data + prev, start[i] - prev); /* template text before message i */
        off[np++] = out->len;
        all[i].content = msgs[i].content;
        size_t mcut = 0;
        st = render_cut(lm, all, n, &m, &mcut);
        all[i].content = sent[i];
        if (st != SR_OK) goto done;
        size_t pre = start[i], post = ucut - end[i];
        if (mcut >= pre + post && memcmp(m.data, u.data, pre) == 0 &&
            memcmp(m.data + mcut - post, u.data + end[i], post) == 0)
            sr_buf_append(out, m.data + pre, mcut - post - pre); /* as rendered with the real message */
        else
            sr_buf_puts(out, msgs[i].content);
        prev = end[i];
    }
    off[np++] = out->len;
    sr_buf_append(out, u.data + prev, ucut - prev);
    sr_buf_puts(out, think_open);
    off[np] = out->len;
    if (out->oom) { st = sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t k = 0; k < np; k++)
        segs[k] = (struct sr_seg){out->data + off[k], off[k + 1] - off[k], k % 2 == 0};
    *n_segs = np;
done:
    free(all);
    free(sent);
    free(start);
    free(end);
    free(off);
    sr_buf_free(&u);
    sr_buf_free(&m);
    return st;
}

enum sr_status sr_prompt_prefix_segs(struct sr_lm *lm, const char *user_msg, const char *think_open,
                                     struct sr_buf *out, struct sr_seg segs[3]) {
    struct sr_chat_msg msg = {"user", user_msg};
    size_t n_segs = 0;
    return sr_prompt_prefix_msgs(lm, &msg, 1, think_open, out, segs, &n_segs);
}

enum sr_status sr_prompt_prefix(struct sr_lm *lm, const char *user_msg, const char *think_open,
                                struct sr_buf *out) {
    struct sr_seg segs[3];
    return sr_prompt_prefix_segs(lm, user_msg, think_open, out, segs);
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
