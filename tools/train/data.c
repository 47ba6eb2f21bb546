/*
 * data.c: sample builders and the held-out split (see data.h).
 */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dt_pool_add(struct dt_pool *pool, const struct tk_problem *p, int32_t k, const char *text) {
    if (strlen(text) >= DT_STEP_MAX) return 0; /* rambling drafts: the corruptions cover them */
    if (pool->n == pool->cap) {
        size_t c = pool->cap ? pool->cap * 2 : 256;
        struct dt_mistake *v = realloc(pool->v, c * sizeof *v);
        if (!v) return -1;
        pool->v = v;
        pool->cap = c;
    }
    struct dt_mistake *m = &pool->v[pool->n++];
    m->p = *p;
    m->k = k;
    strcpy(m->text, text);
    return 0;
}

void dt_pool_free(struct dt_pool *pool) {
    free(pool->v);
    memset(pool, 0, sizeof *pool);
}

/* ------------------------------------------------------------------------------------------ */
/* Held-out split: a sorted set of problem hashes.                                            */

static uint64_t *g_held;
static size_t g_n_held;

static uint64_t problem_hash(const struct tk_problem *p) {
    uint64_t h = 0xCBF29CE484222325ull ^ (uint64_t)p->n_terms;
    for (int32_t i = 0; i < p->n_terms; i++) {
        h ^= (uint64_t)p->term[i] + 0x9E3779B97F4A7C15ull;
        h *= 0x100000001B3ull;
        h ^= h >> 29;
    }
    return h;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void dt_heldout_problem(const struct tk_cfg *cfg, uint64_t seed, int32_t i, struct tk_problem *out) {
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 0xD1B54A32D192ED03ull * (uint64_t)(i + 1);
    tk_problem_gen(cfg, &rng, out);
}

void dt_heldout_register(const struct tk_cfg *cfg, uint64_t seed, int32_t n) {
    dt_heldout_clear();
    g_held = malloc((size_t)(n > 0 ? n : 1) * sizeof *g_held);
    if (!g_held) return;
    for (int32_t i = 0; i < n; i++) {
        struct tk_problem p;
        dt_heldout_problem(cfg, seed, i, &p);
        g_held[i] = problem_hash(&p);
    }
    g_n_held = (size_t)n;
    qsort(g_held, g_n_held, sizeof *g_held, cmp_u64);
}

void dt_heldout_clear(void) {
    free(g_held);
    g_held = NULL;
    g_n_held = 0;
}

bool dt_is_heldout(const struct tk_problem *p) {
    if (!g_n_held) return false;
    uint64_t h = problem_hash(p);
    return bsearch(&h, g_held, g_n_held, sizeof h, cmp_u64) != NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Samples                                                                                    */

static void put(struct tt_sample *s, const char *text, int w, int cat) {
    int32_t cap = TT_MAX_T - s->n;
    int32_t n = tk_tokenize(text, strlen(text), s->tok + s->n, cap);
    if (n > cap) n = cap;
    for (int32_t i = 0; i < n; i++) {
        s->w[s->n + i] = (uint8_t)w;
        s->cat[s->n + i] = (uint8_t)cat;
        s->alt[s->n + i] = 0;
        s->mk[s->n + i] = 0;
        s->mw[s->n + i] = 0;
    }
    s->n += n;
}

static void put_step(struct tt_sample *s, const char *step, int w, int cat) {
    char buf[TK_TEXT_MAX + 4];
    snprintf(buf, sizeof buf, "%s" TK_DELIM_TEXT, step);
    put(s, buf, w, cat);
}

static void train_problem(const struct dt_mix *mx, uint64_t *rng, struct tk_problem *p) {
    do {
        tk_problem_gen(&mx->cfg, rng, p);
    } while (dt_is_heldout(p));
}

void dt_next(void *user, uint64_t *rng, struct tt_sample *s) {
    const struct dt_mix *mx = user;
    struct tk_problem p;
    char text[TK_TEXT_MAX], buf[TK_TEXT_MAX * 2];
    s->n = 0;
    bool judge = tk_rand_unit(rng) < mx->p_judge;
    const struct dt_mistake *real = NULL;
    bool good = true;
    if (judge) {
        good = tk_rand_unit(rng) < mx->p_judge_good;
        if (!good && mx->pool && mx->pool->n > 0 && tk_rand_unit(rng) < mx->p_real)
            real = &mx->pool->v[tk_rand_below(rng, mx->pool->n)];
    }
    if (real) p = real->p;
    else train_problem(mx, rng, &p);
    tk_problem_text(&p, text, sizeof text);
    tk_render_prefix(text, buf, sizeof buf);
    put(s, buf, 0, TT_CAT_NONE);
    int32_t ns = tk_n_steps(&p);
    bool mark_only = !judge && mx->mark_weight > 0 && tk_rand_unit(rng) < mx->p_mark;
    if (!judge && !mark_only) {
        for (int32_t k = 0; k < ns; k++) {
            tk_step_text(&p, k, text, sizeof text);
            put_step(s, text, 1, TT_CAT_GEN);
        }
        return;
    }
    if (mark_only) good = false;
    int32_t kc = real ? real->k : (int32_t)tk_rand_below(rng, (uint64_t)ns);
    for (int32_t k = 0; k < kc; k++) {
        tk_step_text(&p, k, text, sizeof text);
        put_step(s, text, 1, TT_CAT_GEN);
    }
    if (real) snprintf(text, sizeof text, "%s", real->text);
    else if (good) tk_step_text(&p, kc, text, sizeof text);
    else if (mx->p_near > 0 && tk_rand_unit(rng) < mx->p_near) tk_step_near_miss(&p, kc, rng, text, sizeof text);
    else tk_step_corrupt(&p, kc, rng, text, sizeof text);
    int32_t c0 = s->n;
    put_step(s, text, good ? 1 : 0, good ? TT_CAT_GEN : TT_CAT_NONE);
    if (mx->mark_weight > 0) {
        /* Marks (learned by the deep-supervision head at a middle layer): every candidate token
         * up to the first wrong one learns "is this token right?" -- TT_MARK_OK before it,
         * TT_MARK_ERR on it, nothing after it. A local, densely supervised feature that the
         * layers above can gather into the judge digit. A wrong candidate's correct prefix is
         * also learned as generation; its first wrong token and the rest are not. */
        char right[TK_TEXT_MAX + 4];
        tk_step_text(&p, kc, right, sizeof right);
        strcat(right, TK_DELIM_TEXT);
        int32_t rt[TT_MAX_T];
        int32_t nr = tk_tokenize(right, strlen(right), rt, TT_MAX_T);
        int32_t e = 0;
        while (c0 + e < s->n && e < nr && s->tok[c0 + e] == rt[e]) e++;
        for (int32_t i = 0; i < e && c0 + i < s->n; i++) {
            s->mk[c0 + i] = TT_MARK_OK;
            s->mw[c0 + i] = 1;
            if (!good) {
                s->w[c0 + i] = 1;
                s->cat[c0 + i] = TT_CAT_GEN;
            }
        }
        if (c0 + e < s->n && !good) {
            s->mk[c0 + e] = TT_MARK_ERR;
            s->mw[c0 + e] = (uint8_t)mx->mark_weight;
        }
    }
    if (mark_only) return; /* ends after the marked candidate: what follows a wrong step is not taught */
    int32_t s0 = s->n;
    tk_render_judge_suffix(mx->judge_prompt, mx->judge_prefill, buf, sizeof buf);
    put(s, buf, 0, TT_CAT_NONE);
    char digit[2] = {(char)('0' + (good ? TK_SCORE_GOOD : TK_SCORE_BAD)), 0};
    put(s, digit, mx->judge_weight, TT_CAT_JUDGE);
    if (mx->suffix_weight > 0) {
        /* Every position inside the judge suffix also learns the verdict (instead of the next
         * template token, which the engine never generates): dense supervision for routing "was
         * the candidate right?" into the judge turn, whose last position is the one read. */
        int32_t score_tok = s->tok[s->n - 1];
        for (int32_t i = s0 + 1; i < s->n - 1; i++) {
            s->alt[i] = score_tok;
            s->w[i] = (uint8_t)mx->suffix_weight;
            s->cat[i] = TT_CAT_AUX;
        }
    }
}
