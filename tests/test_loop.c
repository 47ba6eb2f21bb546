/*
 * test_loop.c: the step loop's control logic against a scripted in-memory model (no llama.cpp).
 * Each fake model holds its context as text, so the loop's invariant — both contexts hold exactly
 * prefix + adopted steps — is checked by string comparison after every run. Also: accept/reject
 * sequences, stop rules, first-N, </think> handling, the answer phase, cancellation, parameter
 * validation and failure injection (every operation failing in turn must give an error and leak
 * nothing under ASan), the reference's average score, stop reasons, a context that fills up
 * mid-run, and which prompt text is template text (only the template's own pieces). Pipelined
 * speculation (issue 17): the fake is then a deterministic model
 * (by_ctx: what it writes depends only on its context) and may sleep in generate and judge, so
 * the small model really drafts on the pipeline's thread while the base model judges. All fake
 * state is per object: two threads on two fakes share nothing.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "controller.h"
#include "internal.h"
#include "pipeline.h"
#include "testutil.h"

struct fake {
    struct sr_lm base;
    const char *name;
    struct sr_buf ctx;
    const char *const *gen; /* scripted generations, in order */
    int n_gen, i_gen;
    const int *scores; /* scripted judge scores (-1 = not a digit) */
    int n_scores, i_score;
    int calls;   /* operations so far */
    int fail_at; /* operation number that fails (0 = never) */
    int n_judge, n_generate;
    size_t ctx_limit;     /* bytes the context may hold (0 = no limit): beyond, CONTEXT_FULL */
    bool judge_nondigit;  /* the judge's most likely tokens are no digits at all */
    struct sr_buf content; /* the prompt text passed as plain text (not template) */
    const float *confs; /* scripted draft confidences (lowest token log-probability), or NULL */
    int n_confs, i_conf;
    bool by_ctx;     /* generate writes gen[steps already in the context], like a greedy model */
    size_t prompt_len; /* context length after reset */
    long delay_us;   /* sleep in generate and judge (overlap is real) */
};

static enum sr_status check_limit(struct fake *f, size_t add) {
    if (f->ctx_limit && f->ctx.len + add > f->ctx_limit) return sr_lm_fail(&f->base, SR_ERR_CONTEXT_FULL, "context full");
    return SR_OK;
}

static void nap(long us) {
    if (us <= 0) return;
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Steps the context holds after the prompt (delimiters counted). */
static int ctx_steps(const struct fake *f) {
    int n = 0;
    for (const char *q = f->ctx.data + f->prompt_len; (q = strstr(q, "\n\n")); q += 2) n++;
    return n;
}

static int ntok(const char *s, size_t n) {
    (void)s;
    return (int)(n + 3) / 4; /* pretend 4 bytes per token */
}

static enum sr_status maybe_fail(struct fake *f) {
    f->calls++;
    if (f->fail_at && f->calls == f->fail_at) return sr_lm_fail(&f->base, SR_ERR_BACKEND, "injected failure");
    return SR_OK;
}

static enum sr_status f_reset(struct sr_lm *lm, const struct sr_seg *segs, size_t n_segs, int32_t *n) {
    struct fake *f = (struct fake *)lm;
    if (maybe_fail(f)) return SR_ERR_BACKEND;
    sr_buf_clear(&f->ctx);
    sr_buf_clear(&f->content);
    for (size_t i = 0; i < n_segs; i++) {
        sr_buf_append(&f->ctx, segs[i].text, segs[i].len);
        if (!segs[i].special) sr_buf_append(&f->content, segs[i].text, segs[i].len);
    }
    f->prompt_len = f->ctx.len;
    *n = ntok(f->ctx.data, f->ctx.len);
    return SR_OK;
}

static enum sr_status f_generate(struct sr_lm *lm, const char *delim, int32_t max_tokens, struct sr_gen_out *out) {
    struct fake *f = (struct fake *)lm;
    if (maybe_fail(f)) return SR_ERR_BACKEND;
    f->n_generate++;
    nap(f->delay_us);
    if (f->by_ctx) f->i_gen = ctx_steps(f);
    const char *s = f->i_gen < f->n_gen ? f->gen[f->i_gen++] : "filler";
    size_t n = strlen(s);
    bool cut = ntok(s, n) > max_tokens;
    if (cut) n = (size_t)max_tokens * 4;
    if (check_limit(f, n + (delim ? strlen(delim) : 0))) return SR_ERR_CONTEXT_FULL;
    sr_buf_append(&out->text, s, n);
    out->n_tokens = ntok(s, n);
    out->end = cut ? SR_GEN_MAX : delim ? SR_GEN_DELIM : SR_GEN_EOG;
    if (f->confs && f->i_conf < f->n_confs) {
        out->n_logprob = 1;
        out->logprob_min = f->confs[f->i_conf++];
        out->logprob_sum = out->logprob_min;
    }
    sr_buf_append(&f->ctx, s, n);
    if (delim) sr_buf_puts(&f->ctx, delim);
    return SR_OK;
}

static enum sr_status f_append(struct sr_lm *lm, const char *text, size_t len, int32_t *n) {
    struct fake *f = (struct fake *)lm;
    if (maybe_fail(f)) return SR_ERR_BACKEND;
    if (check_limit(f, len)) return SR_ERR_CONTEXT_FULL;
    sr_buf_append(&f->ctx, text, len);
    if (n) *n = ntok(text, len);
    return SR_OK;
}

static int64_t f_mark(const struct sr_lm *lm) { return (int64_t)((const struct fake *)lm)->ctx.len; }

static enum sr_status f_rollback(struct sr_lm *lm, int64_t mark) {
    struct fake *f = (struct fake *)lm;
    if (maybe_fail(f)) return SR_ERR_BACKEND;
    if (mark < 0 || (size_t)mark > f->ctx.len) return sr_lm_fail(lm, SR_ERR_INTERNAL, "bad mark");
    f->ctx.len = (size_t)mark;
    f->ctx.data[mark] = '\0';
    return SR_OK;
}

static enum sr_status f_judge(struct sr_lm *lm, const char *cand, size_t len, const char *suffix, size_t slen,
                              struct sr_judge_out *out) {
    struct fake *f = (struct fake *)lm;
    if (maybe_fail(f)) return SR_ERR_BACKEND;
    if (check_limit(f, len)) return SR_ERR_CONTEXT_FULL;
    f->n_judge++;
    nap(f->delay_us);
    memset(out, 0, sizeof *out);
    int s = f->i_score < f->n_scores ? f->scores[f->i_score++] : 0;
    out->greedy_value = f->judge_nondigit ? -1 : s;
    for (int d = 0; d < 10; d++) {
        out->digit_ok[d] = true;
        out->digit_logit[d] = (d == s) ? 50.0f : 0.0f;
        /* the ten digits are the ten most likely tokens, unless non-digit tokens are */
        out->digit_top10[d] = !f->judge_nondigit;
    }
    if (f->judge_nondigit) out->digit_logit[s] = 4.0f;
    out->n_cand_tokens = ntok(cand, len);
    out->n_suffix_tokens = ntok(suffix, slen);
    sr_buf_append(&f->ctx, cand, len);
    return SR_OK;
}

static enum sr_status f_sampling(struct sr_lm *lm, float t, float p, uint64_t seed) {
    (void)lm; (void)t; (void)p; (void)seed;
    return SR_OK;
}

/* A toy template: <|role|>content<|end|> */
static enum sr_status f_render(struct sr_lm *lm, const struct sr_chat_msg *m, size_t n, struct sr_buf *out) {
    struct fake *f = (struct fake *)lm;
    if (maybe_fail(f)) return SR_ERR_BACKEND;
    sr_buf_clear(out);
    for (size_t i = 0; i < n; i++) sr_buf_printf(out, "<|%s|>%s<|end|>", m[i].role, m[i].content);
    return SR_OK;
}

static void f_free(struct sr_lm *lm) {
    sr_buf_free(&((struct fake *)lm)->ctx);
    sr_buf_free(&((struct fake *)lm)->content);
}

static const struct sr_lm_ops fake_ops = {f_reset, f_generate, f_append, f_mark, f_rollback,
                                          f_judge, f_sampling, f_render, f_free, NULL, NULL};

static void fake_init(struct fake *f, const char *name, const char *const *gen, int n_gen, const int *scores, int n_scores) {
    memset(f, 0, sizeof *f);
    f->base.ops = &fake_ops;
    f->base.n_ctx = 1 << 20;
    f->name = name;
    f->gen = gen;
    f->n_gen = n_gen;
    f->scores = scores;
    f->n_scores = n_scores;
}

/* The context a model must hold: its prefix + the adopted text. */
static void check_ctx(struct fake *f, const struct sr_result *r, const char *problem, bool cut_answer) {
    struct sr_buf want = {0};
    sr_buf_printf(&want, "<|user|>");
    char *u = sr_prompt_fill(SR_PROMPT_MATH, problem);
    sr_buf_puts(&want, u);
    free(u);
    sr_buf_puts(&want, "<|end|><|assistant|><think>\n");
    const char *t = r->text;
    if (cut_answer && r->answer) {
        sr_buf_append(&want, t, strlen(t) - strlen(r->answer));
    } else {
        sr_buf_puts(&want, t);
    }
    CHECK_STR(f->ctx.data, want.data);
    sr_buf_free(&want);
}

/* A model that may lag (policy auto) holds a prefix of that context, ending at a step. */
static void check_ctx_prefix(struct fake *f, const struct sr_result *r, const char *problem) {
    struct sr_buf want = {0};
    sr_buf_printf(&want, "<|user|>");
    char *u = sr_prompt_fill(SR_PROMPT_MATH, problem);
    sr_buf_puts(&want, u);
    free(u);
    sr_buf_puts(&want, "<|end|><|assistant|><think>\n");
    size_t head = want.len;
    sr_buf_puts(&want, r->text);
    size_t n = f->ctx.len;
    CHECK(n >= head && n <= want.len && memcmp(f->ctx.data, want.data, n) == 0);
    CHECK(n == head || (n >= 2 && memcmp(f->ctx.data + n - 2, "\n\n", 2) == 0));
    sr_buf_free(&want);
}

static struct sr_run_params params(enum sr_mode mode, float thr) {
    struct sr_run_params p = sr_run_default_params();
    p.policy = SR_POLICY_ALWAYS; /* these tests assert the reference algorithm step by step */
    p.mode = mode;
    p.threshold = thr;
    return p;
}

static struct sr_result *run(struct fake *s, struct fake *b, const struct sr_run_params *p, enum sr_status want) {
    struct sr_result *r = NULL;
    char err[512] = "";
    enum sr_status st = sr_loop_run(s ? &s->base : NULL, b ? &b->base : NULL, "2+2?", p, &r, err, sizeof err);
    if (st != want) {
        fprintf(stderr, "  status %d (%s), wanted %d\n", st, err, want);
        CHECK(st == want);
    }
    return r;
}

static void test_accept_reject(void) {
    static const char *sg[] = {"s0", "s1 wrong", "s2 so \\boxed{4}"};
    static const int sc[] = {8, 3, 9};
    static const char *bg[] = {"b1 right"};
    struct fake s, b;
    fake_init(&s, "small", sg, 3, NULL, 0);
    fake_init(&b, "base", bg, 1, sc, 3);
    struct sr_run_params p = params(SR_MODE_SPEC, 7);
    struct sr_result *r = run(&s, &b, &p, SR_OK);
    CHECK(r && r->n_steps == 3);
    if (!r) return;
    CHECK_STR(r->text, "s0\n\nb1 right\n\ns2 so \\boxed{4}\n\n");
    CHECK(r->steps[0].author == SR_AUTHOR_SMALL && r->steps[0].score == 8.0f);
    CHECK(r->steps[1].author == SR_AUTHOR_BASE_REJECT && r->steps[1].draft_score == 3.0f);
    CHECK_STR(r->steps[1].draft, "s1 wrong");
    CHECK(r->steps[2].author == SR_AUTHOR_SMALL);
    CHECK(r->stop == SR_STOP_ANSWER);
    CHECK(r->stats.n_judged == 3 && r->stats.n_steps_small == 2 && r->stats.n_steps_base_reject == 1);
    CHECK(r->stats.score_hist[8] == 1 && r->stats.score_hist[3] == 1 && r->stats.score_hist[9] == 1);
    CHECK(fabs(r->stats.acceptance - 2.0 / 3.0) < 1e-9);
    CHECK(r->stats.n_rejected_tokens == 2);
    CHECK(r->answer == NULL);
    check_ctx(&s, r, "2+2?", false);
    check_ctx(&b, r, "2+2?", false);
    /* Only the user message is plain text; the template's own pieces are template text. */
    char *u = sr_prompt_fill(SR_PROMPT_MATH, "2+2?");
    CHECK_STR(s.content.data ? s.content.data : "", u);
    CHECK_STR(b.content.data ? b.content.data : "", u);
    free(u);
    sr_result_free(r);
    f_free(&s.base);
    f_free(&b.base);
}

/* Threshold semantics: score >= threshold accepts (the reference's comparison). */
static void test_threshold_edges(void) {
    static const char *sg[] = {"a", "b", "c \\boxed{1}"};
    static const int sc[] = {7, 6, 7};
    static const char *bg[] = {"B"};
    struct fake s, b;
    fake_init(&s, "small", sg, 3, NULL, 0);
    fake_init(&b, "base", bg, 1, sc, 3);
    struct sr_run_params p = params(SR_MODE_SPEC, 7);
    struct sr_result *r = run(&s, &b, &p, SR_OK);
    CHECK(r && r->n_steps == 3);
    if (r) CHECK_STR(r->text, "a\n\nB\n\nc \\boxed{1}\n\n");
    sr_result_free(r);
    f_free(&s.base);
    f_free(&b.base);

    /* A non-digit judge answer scores 0: rejected at any positive threshold, accepted at 0. */
    static const int nd[] = {-1, -1};
    static const char *sg2[] = {"x \\boxed{1}"};
    fake_init(&s, "small", sg2, 1, NULL, 0);
    fake_init(&b, "base", bg, 1, nd, 2);
    p = params(SR_MODE_SPEC, 0.5f);
    static const char *bg2[] = {"y \\boxed{2}"};
    b.gen = bg2;
    r = run(&s, &b, &p, SR_OK);
    CHECK(r && r->n_steps == 1 && r->steps[0].author == SR_AUTHOR_BASE_REJECT && r->steps[0].draft_score == 0.0f);
    sr_result_free(r);
    f_free(&s.base);
    f_free(&b.base);
}

static void test_average_score(void) {
    static const char *sg[] = {"a \\boxed{1}"};
    static const int sc[] = {6};
    struct fake s, b;
    fake_init(&s, "small", sg, 1, NULL, 0);
    fake_init(&b, "base", NULL, 0, sc, 1);
    struct sr_run_params p = params(SR_MODE_SPEC, 5.5f);
    p.score_method = SR_SCORE_AVERAGE;
    struct sr_result *r = run(&s, &b, &p, SR_OK);
    CHECK(r && r->n_steps == 1 && fabsf(r->steps[0].score - 6.0f) < 1e-3f);
    sr_result_free(r);
    f_free(&s.base);
    f_free(&b.base);

    /* The judge's most likely tokens are no digits: the reference's average (over the digits among
     * the top ten, renormalised) scores 0 and rejects; a softmax over the ten digit logits alone
     * would pass the step (about 5.8 here). */
    static const char *bg[] = {"base \\boxed{2}"};
    for (int method = SR_SCORE_AVERAGE; method <= SR_SCORE_DIGIT_SOFTMAX; method++) {
        fake_init(&s, "small", sg, 1, NULL, 0);
        fake_init(&b, "base", bg, 1, sc, 1);
        b.judge_nondigit = true;
        p = params(SR_MODE_SPEC, 5.5f);
        p.score_method = (enum sr_score_method)method;
        r = run(&s, &b, &p, SR_OK);
        CHECK(r && r->n_steps == 1);
        if (r && method == SR_SCORE_AVERAGE) {
            CHECK(r->steps[0].author == SR_AUTHOR_BASE_REJECT && r->steps[0].draft_score == 0.0f);
            CHECK(r->stats.score_hist[0] == 1);
        }
        if (r && method == SR_SCORE_DIGIT_SOFTMAX) {
            CHECK(r->steps[0].author == SR_AUTHOR_SMALL && r->steps[0].score > 5.5f && r->steps[0].score < 7.0f);
        }
        sr_result_free(r);
        f_free(&s.base);
        f_free(&b.base);
    }
}

static void test_repeat_and_budget(void) {
    static const char *sg[] = {"same", "same", "same", "same"};
    struct fake s, b;
    fake_init(&s, "small", sg, 4, NULL, 0);
    struct sr_run_params p = params(SR_MODE_SMALL, 7);
    struct sr_result *r = run(&s, NULL, &p, SR_OK);
    /* len(steps) > 2 and the last equals the one before: stops after the third step. */
    CHECK(r && r->n_steps == 3 && r->stop == SR_STOP_REPEAT);
    if (r) check_ctx(&s, r, "2+2?", false);
    sr_result_free(r);
    f_free(&s.base);

    static const char *sg2[] = {"abcdefgh", "ijklmnop", "qrstuvwx", "yz012345", "never"};
    fake_init(&s, "small", sg2, 5, NULL, 0);
    p = params(SR_MODE_SMALL, 7);
    p.token_budget = 5; /* 2 tokens per step: stops when the sum reaches 5, i.e. after 3 steps */
    r = run(&s, NULL, &p, SR_OK);
    CHECK(r && r->n_steps == 3 && r->stop == SR_STOP_BUDGET && r->stats.n_adopted_tokens == 6);
    sr_result_free(r);
    f_free(&s.base);

    /* Mode base never touches a small model, which may be absent. */
    static const char *bg[] = {"one", "two", "three \\boxed{3}"};
    fake_init(&b, "base", bg, 3, NULL, 0);
    p = params(SR_MODE_BASE, 7);
    r = run(NULL, &b, &p, SR_OK);
    CHECK(r && r->n_steps == 3 && r->stats.n_steps_base_forced == 3 && r->stats.n_judged == 0);
    if (r) check_ctx(&b, r, "2+2?", false);
    sr_result_free(r);
    f_free(&b.base);
}

static void test_first_n(void) {
    static const char *sg[] = {"small0", "small1 \\boxed{1}"};
    static const char *bg[] = {"base0", "base1"};
    static const int sc[] = {9, 9};
    struct fake s, b;
    fake_init(&s, "small", sg, 2, NULL, 0);
    fake_init(&b, "base", bg, 2, sc, 2);
    struct sr_run_params p = params(SR_MODE_SPEC, 7);
    p.first_n_base = 2;
    struct sr_result *r = run(&s, &b, &p, SR_OK);
    CHECK(r && r->n_steps == 4);
    if (r) {
        CHECK(r->steps[0].author == SR_AUTHOR_BASE_FORCED && r->steps[1].author == SR_AUTHOR_BASE_FORCED);
        CHECK(r->steps[2].author == SR_AUTHOR_SMALL && r->steps[3].author == SR_AUTHOR_SMALL);
        CHECK(r->stats.n_judged == 2 && s.n_generate == 2 && b.n_judge == 2);
        CHECK_STR(r->text, "base0\n\nbase1\n\nsmall0\n\nsmall1 \\boxed{1}\n\n");
        check_ctx(&s, r, "2+2?", false);
        check_ctx(&b, r, "2+2?", false);
    }
    sr_result_free(r);
    f_free(&s.base);
    f_free(&b.base);
}

static void test_think_end(void) {
    /* Without an answer marker, </think> is removed and thinking goes on. */
    static const char *sg[] = {"x</think>y", "z \\boxed{5}"};
    static const int sc[] = {9, 9};
    struct fake s, b;
    fake_init(&s, "small", sg, 2, NULL, 0);
    fake_init(&b, "base", NULL, 0, sc, 2);
    struct sr_run_params p = params(SR_MODE_SPEC, 7);
    struct sr_result *r = run(&s, &b, &p, SR_OK);
    CHECK(r && r->n_steps == 2);
    if (r) {
        CHECK_STR(r->steps[0].text, "xy");
        CHECK_STR(r->text, "xy\n\nz \\boxed{5}\n\n");
        check_ctx(&s, r, "2+2?", false);
        check_ctx(&b, r, "2+2?", false);
    }
    sr_result_free(r);
    f_free(&s.base);
    f_free(&b.base);

    /* With a marker the step keeps its answer and ends the run, as the reference does: no answer
     * phase, nothing written outside the judged steps. */
    static const char *sg2[] = {"so 4</think>The answer is \\boxed{4}"};
    static const char *bg2[] = {"Final: \\boxed{4}."};
    for (int by = SR_ANSWER_BASE; by <= SR_ANSWER_LOOP; by++) {
        fake_init(&s, "small", sg2, 1, NULL, 0);
        fake_init(&b, "base", bg2, 1, sc, 2);
        p = params(SR_MODE_SPEC, 7);
        p.answer_by = (enum sr_answer_by)by;
        r = run(&s, &b, &p, SR_OK);
        CHECK(r && r->n_steps == 1);
        if (r) {
            CHECK_STR(r->steps[0].text, "so 4</think>The answer is \\boxed{4}");
            CHECK_STR(r->text, "so 4</think>The answer is \\boxed{4}\n\n");
            CHECK_STR(r->answer ? r->answer : "(null)", "The answer is \\boxed{4}\n\n");
            CHECK(r->stop == SR_STOP_ANSWER);
            CHECK(r->stats.n_answer_tokens == 0 && b.n_generate == 0);
            CHECK(r->stats.n_adopted_tokens == r->steps[0].n_tokens);
            check_ctx(&s, r, "2+2?", false);
            check_ctx(&b, r, "2+2?", false);
        }
        sr_result_free(r);
        f_free(&s.base);
        f_free(&b.base);
    }

    /* Thinking that ends without an answer (strip_think_end off): the step stays whole and the base
     * model writes the answer after it; its tokens are counted (answer_tokens, tokens/s). */
    static const char *sg3[] = {"so 4</think>The answer"};
    for (int cap = 0; cap < 3; cap++) {
        fake_init(&s, "small", sg3, 1, NULL, 0);
        fake_init(&b, "base", bg2, 1, sc, 2);
        p = params(SR_MODE_SPEC, 7);
        p.strip_think_end = false;
        p.max_answer_tokens = cap == 0 ? 1024 : cap == 1 ? 2 : 0;
        r = run(&s, &b, &p, SR_OK);
        CHECK(r && r->n_steps == 1);
        if (r) {
            CHECK_STR(r->steps[0].text, "so 4</think>The answer");
            const char *ans = cap == 0 ? "Final: \\boxed{4}." : cap == 1 ? "Final: \\" : "";
            struct sr_buf want = {0};
            sr_buf_printf(&want, "so 4</think>The answer\n\n%s", ans);
            CHECK_STR(r->text, want.data);
            sr_buf_free(&want);
            CHECK(r->stats.n_answer_tokens == (cap == 0 ? 5 : cap == 1 ? 2 : 0));
            /* its own stop reason when the answer is cut at max_answer_tokens (or none is allowed) */
            CHECK(r->stop == (cap == 0 ? SR_STOP_EOG : SR_STOP_ANSWER_MAX));
            CHECK(cap == 2 || r->stats.tokens_per_s > 0);
            /* the small model holds the steps, the base model also the answer it wrote */
            const char *sc_end = s.ctx.data ? s.ctx.data + s.ctx.len - strlen("<think>\nso 4</think>The answer\n\n") : "";
            CHECK_STR(sc_end, "<think>\nso 4</think>The answer\n\n");
            check_ctx(&b, r, "2+2?", false);
        }
        sr_result_free(r);
        f_free(&s.base);
        f_free(&b.base);
    }
    CHECK_STR(sr_stop_str(SR_STOP_ANSWER_MAX), "answer-max");
    CHECK_STR(sr_stop_str(SR_STOP_CONTEXT), "context");
}

/* A context that fills up mid-run (the up-front check cannot see a pair's different tokenizers)
 * ends the run with the steps so far and stop reason "context", not an error. */
static void test_context_full(void) {
    static const char *sg[] = {"step zero", "step one", "step two", "step three \\boxed{1}"};
    static const int sc[] = {9, 9, 9, 9};
    for (int which = 0; which < 2; which++) {
        struct fake s, b;
        fake_init(&s, "small", sg, 4, NULL, 0);
        fake_init(&b, "base", NULL, 0, sc, 4);
        struct sr_run_params p = params(SR_MODE_SPEC, 7);
        struct sr_result *r = run(&s, &b, &p, SR_OK);
        CHECK(r && r->n_steps == 4);
        size_t full = which ? b.ctx.len : s.ctx.len; /* context length of a whole run */
        sr_result_free(r);
        f_free(&s.base);
        f_free(&b.base);
        fake_init(&s, "small", sg, 4, NULL, 0);
        fake_init(&b, "base", NULL, 0, sc, 4);
        (which ? &b : &s)->ctx_limit = full - strlen("step three \\boxed{1}\n\n"); /* 3 steps fit */
        r = run(&s, &b, &p, SR_OK);
        CHECK(r && r->n_steps == 3 && r->stop == SR_STOP_CONTEXT);
        if (r) CHECK_STR(r->text, "step zero\n\nstep one\n\nstep two\n\n");
        sr_result_free(r);
        f_free(&s.base);
        f_free(&b.base);
    }
}

struct cancel_ctx {
    int adopted;
    int events[8];
};

static bool cancel_after_two(const struct sr_event *ev, void *user) {
    struct cancel_ctx *c = user;
    c->events[ev->type]++;
    if (ev->type == SR_EVENT_STEP_ADOPTED) c->adopted++;
    return c->adopted < 2;
}

static void test_events_cancel(void) {
    static const char *sg[] = {"a", "b", "c", "d"};
    static const int sc[] = {9, 1, 9, 9};
    static const char *bg[] = {"B"};
    struct fake s, b;
    fake_init(&s, "small", sg, 4, NULL, 0);
    fake_init(&b, "base", bg, 1, sc, 4);
    struct sr_run_params p = params(SR_MODE_SPEC, 7);
    struct cancel_ctx c = {0};
    p.on_event = cancel_after_two;
    p.user = &c;
    struct sr_result *r = run(&s, &b, &p, SR_OK);
    CHECK(r && r->n_steps == 2 && r->stop == SR_STOP_CANCELLED);
    CHECK(c.events[SR_EVENT_STEP_DRAFTED] == 2 && c.events[SR_EVENT_STEP_SCORED] == 2);
    CHECK(c.events[SR_EVENT_FINISHED] == 1);
    sr_result_free(r);
    f_free(&s.base);
    f_free(&b.base);
}

static void test_invalid_params(void) {
    struct sr_run_params p = params(SR_MODE_SPEC, 11);
    struct fake s, b;
    fake_init(&s, "small", NULL, 0, NULL, 0);
    fake_init(&b, "base", NULL, 0, NULL, 0);
    CHECK(run(&s, &b, &p, SR_ERR_INVALID_ARG) == NULL);
    p = params(SR_MODE_SPEC, NAN);
    CHECK(run(&s, &b, &p, SR_ERR_INVALID_ARG) == NULL);
    p = params(SR_MODE_SPEC, 7);
    p.max_step_tokens = 0;
    CHECK(run(&s, &b, &p, SR_ERR_INVALID_ARG) == NULL);
    p = params(SR_MODE_SPEC, 7);
    p.small.top_p = 0;
    CHECK(run(&s, &b, &p, SR_ERR_INVALID_ARG) == NULL);
    p = params(SR_MODE_SPEC, 7);
    CHECK(run(&s, NULL, &p, SR_ERR_INVALID_ARG) == NULL); /* spec needs both models */
    /* A context too small for prompt + budget is refused before any step. */
    p = params(SR_MODE_SPEC, 7);
    b.base.n_ctx = 1000;
    CHECK(run(&s, &b, &p, SR_ERR_CONTEXT_FULL) == NULL);
    f_free(&s.base);
    f_free(&b.base);
}

/* Every operation failing in turn must give an error, never a crash or a leak. */
static void test_fault_injection(void) {
    static const char *sg[] = {"s0", "s1", "s2 \\boxed{1}"};
    static const int sc[] = {8, 3, 9};
    static const char *bg[] = {"b1"};
    int failures = 0;
    for (int which = 0; which < 2; which++) {
        for (int k = 1; k < 40; k++) {
            struct fake s, b;
            fake_init(&s, "small", sg, 3, NULL, 0);
            fake_init(&b, "base", bg, 1, sc, 3);
            (which ? &b : &s)->fail_at = k;
            struct sr_run_params p = params(SR_MODE_SPEC, 7);
            struct sr_result *r = NULL;
            char err[512] = "";
            enum sr_status st = sr_loop_run(&s.base, &b.base, "q", &p, &r, err, sizeof err);
            if (st != SR_OK) {
                failures++;
                CHECK(r == NULL);
                CHECK(strstr(err, "injected failure") != NULL);
            } else {
                CHECK(r != NULL);
            }
            sr_result_free(r);
            f_free(&s.base);
            f_free(&b.base);
        }
    }
    CHECK(failures > 10);
}

/* Policy never is mode base, exactly (text, authors, statistics). */
static void test_policy_never(void) {
    static const char *bg[] = {"b0", "b1 \\boxed{2}"};
    struct fake s, b, s2, b2;
    fake_init(&s, "small", NULL, 0, NULL, 0);
    fake_init(&b, "base", bg, 2, NULL, 0);
    fake_init(&s2, "small", NULL, 0, NULL, 0);
    fake_init(&b2, "base", bg, 2, NULL, 0);
    struct sr_run_params pn = params(SR_MODE_SPEC, 7);
    pn.policy = SR_POLICY_NEVER;
    struct sr_run_params pb = params(SR_MODE_BASE, 7);
    struct sr_result *rn = run(&s, &b, &pn, SR_OK), *rb = run(&s2, &b2, &pb, SR_OK);
    CHECK(rn && rb);
    if (rn && rb) {
        CHECK_STR(rn->text, rb->text);
        CHECK(rn->n_steps == rb->n_steps && rn->stats.n_steps_base_forced == rb->stats.n_steps_base_forced);
        for (size_t i = 0; i < rn->n_steps && i < rb->n_steps; i++) CHECK(rn->steps[i].author == rb->steps[i].author);
        CHECK(rn->stats.n_judged == 0 && s.n_generate == 0 && s.calls == 0); /* the small model is not used */
        CHECK(rn->stats.n_ctl_spec == 0 && rn->stats.n_ctl_base == 0);
    }
    sr_result_free(rn);
    sr_result_free(rb);
    f_free(&s.base);
    f_free(&b.base);
    f_free(&s2.base);
    f_free(&b2.base);
}

/* A controller model whose gate is calibrated at -0.5 and whose costs make speculation win. */
static struct sr_ctl_shared *calibrated(const struct sr_run_params *p) {
    struct sr_ctl_shared *sh = sr_ctl_shared_new();
    if (!sh) return NULL;
    struct sr_ctl_params cp = sr_ctl_default_params();
    cp.precision = p->ctl_precision;
    cp.audit = p->ctl_audit;
    struct sr_ctl c;
    sr_ctl_init(&c, &cp, NULL, sr_loop_ctl_key(p));
    for (int i = 0; i < 150; i++) {
        struct sr_ctl_step cs = {.reason = SR_CTL_WARMUP, .gate = SR_GATE_JUDGED};
        bool good = i % 3 != 0;
        struct sr_ctl_obs o = {.speculated = true, .judged = true, .accepted = good,
                               .conf_min = good ? -0.1f : -3.0f, .n_draft = 4, .t_draft_ms = 4e-3,
                               .n_judge_tokens = 4, .n_suffix_tokens = 4, .t_judge_ms = 8e-3, .n_base = 4,
                               .t_base_ms = 4000.0, .n_step = 4};
        sr_ctl_observe(&c, &cs, &o);
    }
    CHECK(isfinite(c.m.level) && c.m.level <= -0.1f && c.m.level > -3.0f);
    sr_ctl_shared_put(sh, &c.m);
    return sh;
}

/* The loop's two decision points under policy auto: confident drafts are adopted without a judge
 * call, the base model catches up on them before it is next used (judging or writing), and a
 * rejection after unjudged steps rolls back to after the catch-up. */
static void test_auto_gate(void) {
    static const char *sg[] = {"s0", "s1", "s2", "s3 \\boxed{1}"};
    static const float cf[] = {-0.01f, -0.02f, -2.5f, -0.01f};
    static const char *bg[] = {"B2"};
    for (int reject = 0; reject < 2; reject++) {
        const int sc[] = {reject ? 3 : 8};
        struct fake s, b;
        fake_init(&s, "small", sg, 4, NULL, 0);
        fake_init(&b, "base", bg, 1, sc, 1);
        s.confs = cf;
        s.n_confs = 4;
        struct sr_run_params p = params(SR_MODE_SPEC, 7);
        p.policy = SR_POLICY_AUTO;
        p.ctl_audit = 0.0f;
        struct sr_ctl_shared *sh = calibrated(&p);
        struct sr_result *r = NULL;
        char err[512] = "";
        enum sr_status st = sr_loop_run_shared(&s.base, &b.base, "2+2?", &p, sh, &r, err, sizeof err);
        CHECK(st == SR_OK && r && r->n_steps == 4);
        if (r && r->n_steps == 4) {
            CHECK_STR(r->text, reject ? "s0\n\ns1\n\nB2\n\ns3 \\boxed{1}\n\n" : "s0\n\ns1\n\ns2\n\ns3 \\boxed{1}\n\n");
            CHECK(r->steps[0].ctl_gate == SR_GATE_SKIPPED && r->steps[1].ctl_gate == SR_GATE_SKIPPED);
            CHECK(r->steps[2].ctl_gate == SR_GATE_JUDGED && r->steps[3].ctl_gate == SR_GATE_SKIPPED);
            CHECK(r->steps[0].author == SR_AUTHOR_SMALL && r->steps[0].score < 0);
            CHECK(r->steps[2].author == (reject ? SR_AUTHOR_BASE_REJECT : SR_AUTHOR_SMALL));
            CHECK(r->steps[0].conf_min == -0.01f && r->steps[2].conf_min == -2.5f);
            CHECK(r->steps[0].ctl_reason == SR_CTL_CHEAPER && r->steps[0].ctl_e_spec_ms < r->steps[0].ctl_e_base_ms);
            CHECK(b.n_judge == 1 && r->stats.n_judged == 1 && r->stats.n_unjudged == 3);
            CHECK(r->stats.n_catchup_tokens == 2); /* "s0\n\ns1\n\n", 4 bytes a token */
            CHECK(r->stats.acceptance == (reject ? 0.0 : 1.0));
            CHECK(r->stats.n_ctl_spec == 4 && r->stats.n_ctl_base == 0);
            check_ctx(&s, r, "2+2?", false);
            /* The base model holds everything but the last, unjudged step. */
            struct sr_buf want = {0};
            sr_buf_puts(&want, b.ctx.data);
            sr_buf_puts(&want, "s3 \\boxed{1}\n\n");
            struct fake tmp = b;
            tmp.ctx = want;
            check_ctx(&tmp, r, "2+2?", false);
            sr_buf_free(&want);
        }
        sr_result_free(r);
        sr_ctl_shared_free(sh);
        f_free(&s.base);
        f_free(&b.base);
    }
    /* Audit everything (ctl_audit 1): every draft is judged, and a rejected confident one counts
     * as a disagreement. */
    {
        static const int sc[] = {8, 2, 8, 8};
        struct fake s, b;
        fake_init(&s, "small", sg, 4, NULL, 0);
        fake_init(&b, "base", bg, 1, sc, 4);
        s.confs = cf;
        s.n_confs = 4;
        struct sr_run_params p = params(SR_MODE_SPEC, 7);
        p.policy = SR_POLICY_AUTO;
        p.ctl_audit = 1.0f;
        struct sr_ctl_shared *sh = calibrated(&p);
        struct sr_result *r = NULL;
        char err[512] = "";
        enum sr_status st = sr_loop_run_shared(&s.base, &b.base, "2+2?", &p, sh, &r, err, sizeof err);
        CHECK(st == SR_OK && r);
        if (r) {
            CHECK(r->stats.n_unjudged == 0 && r->stats.n_judged == (int)r->n_steps);
            CHECK(r->stats.n_audits >= 2 && r->stats.n_audit_disagree == 1);
            CHECK(r->steps[1].ctl_gate == SR_GATE_AUDIT && r->steps[1].author == SR_AUTHOR_BASE_REJECT);
            check_ctx(&s, r, "2+2?", false);
            check_ctx(&b, r, "2+2?", false);
        }
        sr_result_free(r);
        sr_ctl_shared_free(sh);
        f_free(&s.base);
        f_free(&b.base);
    }
}

/* Speculation loses (every draft rejected so far): the base model writes, the small model lags,
 * and a probe first gives it the base model's steps (its context must be a prefix of the adopted
 * text throughout). The probe is accepted, and since speculation lost by only 3% the next step is
 * speculated again. */
static void test_auto_probe(void) {
    static const char *sg[] = {"p7", "p8 \\boxed{1}"};
    static const char *bg[] = {"b0", "b1", "b2", "b3", "b4", "b5", "b6"};
    static const int sc[] = {8, 8};
    struct fake s, b;
    fake_init(&s, "small", sg, 2, NULL, 0);
    fake_init(&b, "base", bg, 7, sc, 2);
    struct sr_run_params p = params(SR_MODE_SPEC, 7);
    p.policy = SR_POLICY_AUTO;
    struct sr_ctl_shared *sh = sr_ctl_shared_new();
    CHECK(sh != NULL);
    if (!sh) return;
    struct sr_ctl_params cp = sr_ctl_default_params();
    struct sr_ctl c;
    sr_ctl_init(&c, &cp, NULL, sr_loop_ctl_key(&p));
    for (int i = 0; i < 40; i++) { /* every draft rejected: speculation loses by 3% (a probe is cheap) */
        struct sr_ctl_step cs = {.reason = SR_CTL_WARMUP, .gate = SR_GATE_JUDGED};
        struct sr_ctl_obs o = {.speculated = true, .judged = true, .accepted = false, .conf_min = NAN,
                               .n_draft = 4, .t_draft_ms = 0.04, .n_judge_tokens = 4, .n_suffix_tokens = 4,
                               .t_judge_ms = 0.08, .n_base = 4, .t_base_ms = 4.0, .n_sync = 4, .t_sync_ms = 0.04,
                               .n_step = 4};
        sr_ctl_observe(&c, &cs, &o);
    }
    sr_ctl_shared_put(sh, &c.m);
    struct sr_result *r = NULL;
    char err[512] = "";
    enum sr_status st = sr_loop_run_shared(&s.base, &b.base, "2+2?", &p, sh, &r, err, sizeof err);
    CHECK(st == SR_OK && r && r->n_steps == 9);
    if (r && r->n_steps == 9) {
        CHECK_STR(r->text, "b0\n\nb1\n\nb2\n\nb3\n\nb4\n\nb5\n\nb6\n\np7\n\np8 \\boxed{1}\n\n");
        CHECK(r->steps[0].ctl_reason == SR_CTL_BASE && r->steps[6].ctl_reason == SR_CTL_BASE);
        CHECK(r->steps[7].ctl_reason == SR_CTL_PROBE && r->steps[7].ctl_gate == SR_GATE_JUDGED);
        CHECK(r->steps[7].author == SR_AUTHOR_SMALL && r->steps[8].ctl_reason == SR_CTL_CHEAPER);
        CHECK(r->steps[8].author == SR_AUTHOR_SMALL);
        CHECK(r->steps[0].ctl_e_base_ms < r->steps[0].ctl_e_spec_ms);
        CHECK(r->stats.n_ctl_base == 7 && r->stats.n_ctl_spec == 2 && r->stats.n_ctl_probes == 1);
        CHECK(r->stats.n_sync_tokens == 7); /* "b0\n\n" .. "b6\n\n" in one catch-up */
        const char *tail = "b6\n\np7\n\np8 \\boxed{1}\n\n";
        CHECK(s.ctx.len >= strlen(tail));
        if (s.ctx.len >= strlen(tail)) CHECK_STR(s.ctx.data + s.ctx.len - strlen(tail), tail);
        check_ctx_prefix(&s, r, "2+2?");
        check_ctx(&b, r, "2+2?", false);
    }
    sr_result_free(r);
    sr_ctl_shared_free(sh);
    f_free(&s.base);
    f_free(&b.base);
}

/* Whatever the controller decides, threshold 10 gives the base model's text (every draft is
 * rejected and rewritten from the same context, or the base model writes directly). */
static void test_auto_threshold10(void) {
    static const char *sg[] = {"x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"};
    static const char *bg[] = {"b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7 \\boxed{3}"};
    struct fake s, b, s2, b2;
    fake_init(&s, "small", sg, 8, NULL, 0);
    fake_init(&b, "base", bg, 8, NULL, 0);
    fake_init(&s2, "small", NULL, 0, NULL, 0);
    fake_init(&b2, "base", bg, 8, NULL, 0);
    struct sr_run_params p = params(SR_MODE_SPEC, 10);
    p.policy = SR_POLICY_AUTO;
    struct sr_run_params pb = params(SR_MODE_BASE, 10);
    struct sr_result *r = run(&s, &b, &p, SR_OK), *rb = run(&s2, &b2, &pb, SR_OK);
    CHECK(r && rb);
    if (r && rb) {
        CHECK_STR(r->text, rb->text);
        CHECK(r->stats.n_ctl_spec + r->stats.n_ctl_base == (int)r->n_steps);
        CHECK(r->stats.n_unjudged == 0);
        check_ctx_prefix(&s, r, "2+2?");
        check_ctx(&b, r, "2+2?", false);
    }
    sr_result_free(r);
    sr_result_free(rb);
    f_free(&s.base);
    f_free(&b.base);
    f_free(&s2.base);
    f_free(&b2.base);
}


/* ---- pipelined speculation (issue 17) --------------------------------------------------------- */

/* A pair for pipelining: small drafts by context (a deterministic model), greedy. */
static void pipe_pair(struct fake *s, struct fake *b, const char *const *sg, int ns, const char *const *bg, int nb,
                      const int *sc, int nsc, long delay_us) {
    fake_init(s, "small", sg, ns, NULL, 0);
    fake_init(b, "base", bg, nb, sc, nsc);
    s->by_ctx = true;
    s->delay_us = b->delay_us = delay_us;
    s->base.n_threads = b->base.n_threads = 1;
}

static struct sr_run_params pipe_params(enum sr_pipeline pl) {
    struct sr_run_params p = params(SR_MODE_SPEC, 7);
    p.small.temperature = 0.0f;
    p.pipeline = pl;
    return p;
}

/* Pipelined and unpipelined runs: same text, steps, scores, events; both models' contexts the same. */
static void check_same_run(const struct sr_result *a, const struct sr_result *b) {
    CHECK(a && b);
    if (!a || !b) return;
    CHECK_STR(a->text, b->text);
    CHECK(a->n_steps == b->n_steps && a->stop == b->stop);
    for (size_t i = 0; i < a->n_steps && i < b->n_steps; i++) {
        CHECK(a->steps[i].author == b->steps[i].author);
        CHECK(a->steps[i].score == b->steps[i].score && a->steps[i].draft_score == b->steps[i].draft_score);
        CHECK(a->steps[i].n_tokens == b->steps[i].n_tokens && a->steps[i].n_draft_tokens == b->steps[i].n_draft_tokens);
        CHECK_STR(a->steps[i].text, b->steps[i].text);
        CHECK((a->steps[i].draft == NULL) == (b->steps[i].draft == NULL));
        if (a->steps[i].draft && b->steps[i].draft) CHECK_STR(a->steps[i].draft, b->steps[i].draft);
    }
    CHECK(a->stats.n_judged == b->stats.n_judged && a->stats.n_steps_small == b->stats.n_steps_small);
    CHECK(a->stats.n_sync_tokens == b->stats.n_sync_tokens && a->stats.n_judge_tokens == b->stats.n_judge_tokens);
}

struct ev_log {
    struct sr_buf b;
};

static bool log_event(const struct sr_event *ev, void *user) {
    struct ev_log *l = user;
    sr_buf_printf(&l->b, "%d:%d:%.*s:%g|", (int)ev->type, ev->step, (int)ev->len, ev->text, (double)ev->score);
    return true;
}

static void pipe_compare(const char *const *sg, int ns, const char *const *bg, int nb, const int *sc, int nsc,
                         long delay_us, int want_discarded_min, int want_used_min) {
    struct fake s0, b0, s1, b1;
    pipe_pair(&s0, &b0, sg, ns, bg, nb, sc, nsc, 0);
    pipe_pair(&s1, &b1, sg, ns, bg, nb, sc, nsc, delay_us);
    struct sr_run_params p0 = pipe_params(SR_PIPE_OFF), p1 = pipe_params(SR_PIPE_ON);
    struct ev_log l0 = {{0}}, l1 = {{0}};
    p0.on_event = p1.on_event = log_event;
    p0.user = &l0;
    p1.user = &l1;
    struct sr_result *r0 = run(&s0, &b0, &p0, SR_OK), *r1 = run(&s1, &b1, &p1, SR_OK);
    check_same_run(r0, r1);
    CHECK_STR(l0.b.data, l1.b.data); /* the same events in the same order */
    CHECK_STR(s0.ctx.data, s1.ctx.data);
    CHECK_STR(b0.ctx.data, b1.ctx.data);
    CHECK(b0.n_judge == b1.n_judge);
    if (r0 && r1) {
        check_ctx(&s1, r1, "2+2?", r1->stats.n_answer_tokens > 0); /* cut: the base model's answer */
        if (!r1->answer) check_ctx(&b1, r1, "2+2?", false);
        const struct sr_stats *S = &r1->stats;
        CHECK(r0->stats.n_pipe_started == 0);
        CHECK(S->n_pipe_started == S->n_pipe_used + S->n_pipe_discarded);
        CHECK(S->n_pipe_discarded >= want_discarded_min && S->n_pipe_used >= want_used_min);
        CHECK(S->t_pipe_hidden_ms >= 0 && S->t_pipe_hidden_ms <= S->t_pipe_draft_ms + 1e-9);
        if (delay_us >= 1000 && want_used_min) CHECK(S->t_pipe_hidden_ms > 0);
        /* every draft made ahead is one generate more on the small model, used or not */
        CHECK(s1.n_generate == s0.n_generate + S->n_pipe_discarded);
    }
    sr_result_free(r0);
    sr_result_free(r1);
    sr_buf_free(&l0.b);
    sr_buf_free(&l1.b);
    f_free(&s0.base); f_free(&b0.base); f_free(&s1.base); f_free(&b1.base);
}

static void test_pipe_accept_heavy(void) {
    static const char *sg[] = {"s0", "s1", "s2", "s3", "s4", "s5 \\boxed{4}"};
    static const int sc[] = {8, 9, 7, 8, 9, 9};
    pipe_compare(sg, 6, NULL, 0, sc, 6, 2000, 0, 5);
}

/* Rejections throw the draft made ahead away; the small model is rolled back exactly as unpipelined. */
static void test_pipe_reject_heavy(void) {
    static const char *sg[] = {"s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7 \\boxed{4}"};
    static const int sc[] = {3, 8, 2, 1, 9, 0, 8, 9};
    static const char *bg[] = {"b0", "b2", "b3", "b5"};
    pipe_compare(sg, 8, bg, 4, sc, 8, 2000, 4, 3);
}

/* Drafts ahead stop where the next step cannot come: answer marker, budget, repeat, </think>. */
static void test_pipe_stops(void) {
    static const char *sg1[] = {"s0", "s0", "s0", "s0"}; /* repeat stop after step 3 */
    static const int sc[] = {9, 9, 9, 9, 9, 9};
    pipe_compare(sg1, 4, NULL, 0, sc, 6, 0, 0, 1);
    static const char *sg2[] = {"s0", "s1 </think> so", "s2 \\boxed{1}"}; /* </think> stripped */
    pipe_compare(sg2, 3, NULL, 0, sc, 6, 0, 0, 1);
    static const char *sg3[] = {"s0", "s1 </think>The answer: \\boxed{2}"}; /* the step holds the answer */
    static const char *bg3[] = {" done"};
    pipe_compare(sg3, 2, bg3, 1, sc, 6, 0, 0, 0);
    static const char *sg4[] = {"s0", "s1 </think>The answer"}; /* thinking ends, base answers */
    pipe_compare(sg4, 2, bg3, 1, sc, 6, 0, 0, 0);
}

static bool cancel_on_scored(const struct sr_event *ev, void *user) {
    int *n = user;
    return !(ev->type == SR_EVENT_STEP_SCORED && ++*n == 2);
}

/* Cancelled while the next draft is under way: the run ends after the step, the draft is thrown
 * away, both contexts as unpipelined. */
static void test_pipe_cancel(void) {
    static const char *sg[] = {"s0", "s1", "s2", "s3 \\boxed{4}"};
    static const int sc[] = {9, 9, 9, 9};
    struct fake s0, b0, s1, b1;
    pipe_pair(&s0, &b0, sg, 4, NULL, 0, sc, 4, 0);
    pipe_pair(&s1, &b1, sg, 4, NULL, 0, sc, 4, 3000);
    struct sr_run_params p0 = pipe_params(SR_PIPE_OFF), p1 = pipe_params(SR_PIPE_ON);
    int n0 = 0, n1 = 0;
    p0.on_event = p1.on_event = cancel_on_scored;
    p0.user = &n0;
    p1.user = &n1;
    struct sr_result *r0 = run(&s0, &b0, &p0, SR_OK), *r1 = run(&s1, &b1, &p1, SR_OK);
    check_same_run(r0, r1);
    CHECK(r1 && r1->stop == SR_STOP_CANCELLED && r1->n_steps == 2);
    CHECK_STR(s0.ctx.data, s1.ctx.data);
    CHECK_STR(b0.ctx.data, b1.ctx.data);
    /* the draft ahead for step 2 was under way when step 1's score event cancelled: thrown away */
    if (r1) CHECK(r1->stats.n_pipe_started == 2 && r1->stats.n_pipe_used == 1 && r1->stats.n_pipe_discarded == 1);
    sr_result_free(r0);
    sr_result_free(r1);
    f_free(&s0.base); f_free(&b0.base); f_free(&s1.base); f_free(&b1.base);
}

/* Failures in either model while the two overlap end cleanly (ASan: no leak, no race on the
 * fakes); a failure inside a draft that is thrown away changes nothing. */
static void test_pipe_faults(void) {
    static const char *sg[] = {"s0", "s1", "s2", "s3", "s4 \\boxed{1}"};
    static const int sc[] = {8, 3, 9, 2, 9};
    static const char *bg[] = {"b1", "b3"};
    struct fake sc0, bc0;
    pipe_pair(&sc0, &bc0, sg, 5, bg, 2, sc, 5, 0);
    struct sr_run_params p0 = pipe_params(SR_PIPE_OFF);
    struct sr_result *clean = run(&sc0, &bc0, &p0, SR_OK);
    int failures = 0, harmless = 0;
    for (int which = 0; which < 2; which++) {
        for (int k = 1; k < 40; k++) {
            struct fake s, b;
            pipe_pair(&s, &b, sg, 5, bg, 2, sc, 5, 300);
            (which ? &b : &s)->fail_at = k;
            struct sr_run_params p = pipe_params(SR_PIPE_ON);
            struct sr_result *r = NULL;
            char err[512] = "";
            enum sr_status st = sr_loop_run(&s.base, &b.base, "2+2?", &p, &r, err, sizeof err);
            if (st != SR_OK) {
                failures++;
                CHECK(r == NULL);
                CHECK(strstr(err, "injected failure") != NULL);
            } else { /* no failure, or one inside a draft made ahead and thrown away: as if none */
                if ((which ? b.calls : s.calls) >= k) harmless++;
                check_same_run(clean, r);
            }
            sr_result_free(r);
            f_free(&s.base);
            f_free(&b.base);
        }
    }
    CHECK(failures > 10);
    CHECK(harmless >= 1); /* at least one failure fell in a draft made ahead and thrown away */
    sr_result_free(clean);
    f_free(&sc0.base);
    f_free(&bc0.base);
}

/* Who pipelines: off never, on always (when exact), auto when both models' threads fit the cores;
 * never a sampled small model (a thrown-away draft would use up random draws) or spec_decode. */
static void test_pipe_policy(void) {
    struct fake s, b;
    fake_init(&s, "small", NULL, 0, NULL, 0);
    fake_init(&b, "base", NULL, 0, NULL, 0);
    CHECK(!sr_pipe_wanted(SR_PIPE_OFF, &s.base, &b.base));
    CHECK(sr_pipe_wanted(SR_PIPE_ON, &s.base, &b.base));
    CHECK(!sr_pipe_wanted(SR_PIPE_AUTO, &s.base, &b.base)); /* threads unknown */
    s.base.n_threads = b.base.n_threads = 100000;
    CHECK(!sr_pipe_wanted(SR_PIPE_AUTO, &s.base, &b.base)); /* more threads than cores */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    s.base.n_threads = b.base.n_threads = 1;
    CHECK(sr_pipe_wanted(SR_PIPE_AUTO, &s.base, &b.base) == (cores >= 2));
    CHECK(sr_pipe_worth(SR_PIPE_ON, 0.0) && sr_pipe_worth(SR_PIPE_AUTO, 0.9) && !sr_pipe_worth(SR_PIPE_AUTO, 0.2));
    f_free(&s.base);
    f_free(&b.base);

    static const char *sg[] = {"s0", "s1", "s2 \\boxed{4}"};
    static const int sc[] = {8, 9, 9};
    struct sr_run_params p = pipe_params(SR_PIPE_ON);
    p.small.temperature = 0.6f;
    pipe_pair(&s, &b, sg, 3, NULL, 0, sc, 3, 0);
    struct sr_result *r = run(&s, &b, &p, SR_OK);
    CHECK(r && r->stats.n_pipe_started == 0);
    sr_result_free(r);
    f_free(&s.base);
    f_free(&b.base);
    p = pipe_params(SR_PIPE_OFF);
    p.pipeline = (enum sr_pipeline)7;
    pipe_pair(&s, &b, sg, 3, NULL, 0, sc, 3, 0);
    CHECK(run(&s, &b, &p, SR_ERR_INVALID_ARG) == NULL);
    f_free(&s.base);
    f_free(&b.base);
}

/* Policy auto with pipelining: whatever the controller decides, the contexts stay consistent
 * (a draft ahead is thrown away when the base model writes the next step instead). */
static void test_pipe_auto(void) {
    static const char *sg[] = {"x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9"};
    static const char *bg[] = {"b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9 \\boxed{3}"};
    static const int sc[] = {8, 2, 9, 1, 8, 8, 2, 9, 9, 1};
    struct fake s, b;
    pipe_pair(&s, &b, sg, 10, bg, 10, sc, 10, 200);
    struct sr_run_params p = pipe_params(SR_PIPE_ON);
    p.policy = SR_POLICY_AUTO;
    struct sr_result *r = run(&s, &b, &p, SR_OK);
    CHECK(r != NULL);
    if (r) {
        check_ctx_prefix(&s, r, "2+2?");
        check_ctx_prefix(&b, r, "2+2?");
        CHECK(r->stats.n_pipe_started == r->stats.n_pipe_used + r->stats.n_pipe_discarded);
    }
    sr_result_free(r);
    f_free(&s.base);
    f_free(&b.base);
}

int main(void) {
    test_accept_reject();
    test_threshold_edges();
    test_average_score();
    test_repeat_and_budget();
    test_first_n();
    test_think_end();
    test_context_full();
    test_events_cancel();
    test_invalid_params();
    test_fault_injection();
    test_policy_never();
    test_auto_gate();
    test_auto_threshold10();
    test_auto_probe();
    test_pipe_accept_heavy();
    test_pipe_reject_heavy();
    test_pipe_stops();
    test_pipe_cancel();
    test_pipe_faults();
    test_pipe_policy();
    test_pipe_auto();
    return test_summary("test_loop");
}
