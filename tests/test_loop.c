/*
 * test_loop.c: the step loop's control logic against a scripted in-memory model (no llama.cpp).
 * Each fake model holds its context as text, so the loop's invariant — both contexts hold exactly
 * prefix + adopted steps — is checked by string comparison after every run. Also: accept/reject
 * sequences, stop rules, first-N, </think> handling, the answer phase, cancellation, parameter
 * validation and failure injection (every operation failing in turn must give an error and leak
 * nothing under ASan), the reference's average score, stop reasons, a context that fills up
 * mid-run, and which prompt text is template text (only the template's own pieces).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
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
};

static enum sr_status check_limit(struct fake *f, size_t add) {
    if (f->ctx_limit && f->ctx.len + add > f->ctx_limit) return sr_lm_fail(&f->base, SR_ERR_CONTEXT_FULL, "context full");
    return SR_OK;
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
    *n = ntok(f->ctx.data, f->ctx.len);
    return SR_OK;
}

static enum sr_status f_generate(struct sr_lm *lm, const char *delim, int32_t max_tokens, struct sr_gen_out *out) {
    struct fake *f = (struct fake *)lm;
    if (maybe_fail(f)) return SR_ERR_BACKEND;
    f->n_generate++;
    const char *s = f->i_gen < f->n_gen ? f->gen[f->i_gen++] : "filler";
    size_t n = strlen(s);
    bool cut = ntok(s, n) > max_tokens;
    if (cut) n = (size_t)max_tokens * 4;
    if (check_limit(f, n + (delim ? strlen(delim) : 0))) return SR_ERR_CONTEXT_FULL;
    sr_buf_append(&out->text, s, n);
    out->n_tokens = ntok(s, n);
    out->end = cut ? SR_GEN_MAX : delim ? SR_GEN_DELIM : SR_GEN_EOG;
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

static struct sr_run_params params(enum sr_mode mode, float thr) {
    struct sr_run_params p = sr_run_default_params();
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
    return test_summary("test_loop");
}
