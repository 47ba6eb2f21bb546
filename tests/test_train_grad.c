/*
 * test_train_grad.c: the trainer's analytic gradients (ggml's backward pass over our graph: packed
 * rows, block-diagonal causal mask, RoPE, SwiGLU, target weights, the deep-supervision head that
 * learns error marks) against central
 * finite differences of the same loss, on a tiny model. Also checks that a target of weight 0
 * does not influence the gradient (masked tokens teach nothing) and that weight 2 counts twice.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "task.h"
#include "testutil.h"
#include "train.h"

#define T 24
#define B 2

static void make_samples(struct tt_sample *s, int n) {
    uint64_t rng = 5;
    memset(s, 0, (size_t)n * sizeof *s);
    for (int k = 0; k < n; k++) {
        s[k].n = 9 + k * 2;
        for (int i = 0; i < s[k].n; i++) {
            s[k].tok[i] = (int32_t)tk_rand_below(&rng, TK_N_VOCAB);
            s[k].w[i] = i > 2 ? (uint8_t)(1 + (i % 3 == 0)) : 0;
            s[k].cat[i] = TT_CAT_GEN;
            /* marks: the deep-supervision head */
            s[k].mk[i] = i % 5 == 0 ? (i % 2 ? TT_MARK_OK : TT_MARK_ERR) : 0;
            s[k].mw[i] = i % 5 == 0 ? 2 : 0;
        }
    }
}

static float **alloc_grads(const struct tm_model *m) {
    float **g = calloc((size_t)m->n_params, sizeof *g);
    for (int i = 0; i < m->n_params; i++) g[i] = calloc((size_t)ggml_nelements(m->params[i]), sizeof(float));
    return g;
}

static void free_grads(const struct tm_model *m, float **g) {
    for (int i = 0; i < m->n_params; i++) free(g[i]);
    free(g);
}

int main(void) {
    struct tm_hparams hp = {.n_vocab = TK_N_VOCAB, .n_embd = 16, .n_layer = 2, .n_head = 2, .n_ff = 24,
                            .n_ctx = 64, .rms_eps = 1e-5f, .rope_base = 10000.0f};
    struct tm_model m;
    CHECK(tm_model_init(&m, &hp, 9) == 0);
    /* Larger weights than the init, so every path carries a visible gradient. */
    for (int i = 0; i < m.n_params; i++) {
        float *d = m.params[i]->data;
        for (int64_t j = 0; j < ggml_nelements(m.params[i]); j++) d[j] *= ggml_n_dims(m.params[i]) >= 2 ? 2.0f : 1.0f;
    }
    struct tt_sample s[4];
    make_samples(s, 4); /* 9 + 11 + 13 + 15 tokens: packs as [9, 11] [13] [15] -> 3 rows > B, last dropped */
    float **g = alloc_grads(&m);
    float loss = tt_loss_and_grads(&m, s, 4, T, B, g);
    CHECK(isfinite(loss) && loss > 0.0f);

    /* Central differences on a few elements of every tensor. Double-precision accumulation is
     * not available inside ggml, so use a step where float rounding stays small. */
    const float h = 1e-2f;
    int n_checked = 0, n_bad = 0;
    double worst = 0.0;
    uint64_t rng = 3;
    for (int i = 0; i < m.n_params; i++) {
        struct ggml_tensor *t = m.params[i];
        float *d = t->data;
        int64_t ne = ggml_nelements(t);
        for (int r = 0; r < 6; r++) {
            int64_t j = (int64_t)tk_rand_below(&rng, (uint64_t)ne);
            if (i == 0 || i == m.n_params - 1) {
                /* embeddings / output head: pick a row that is used, or most picks would be 0 */
                int64_t E = hp.n_embd, row = s[r % 2].tok[3 + r];
                j = row * E + (int64_t)tk_rand_below(&rng, (uint64_t)E);
            }
            float old = d[j];
            d[j] = old + h;
            float lp = tt_loss_and_grads(&m, s, 4, T, B, NULL);
            d[j] = old - h;
            float lm = tt_loss_and_grads(&m, s, 4, T, B, NULL);
            d[j] = old;
            double num = ((double)lp - (double)lm) / (2.0 * h), ana = g[i][j];
            double err = fabs(num - ana) / fmax(1e-3, fabs(num) + fabs(ana));
            n_checked++;
            if (err > 0.05 && fabs(num - ana) > 2e-4) {
                n_bad++;
                fprintf(stderr, "%s[%lld]: analytic %+.6f numeric %+.6f\n", ggml_get_name(t), (long long)j, ana, num);
            }
            if (fabs(num - ana) > worst) worst = fabs(num - ana);
        }
    }
    printf("gradient check: %d elements, %d off, worst absolute difference %.2e\n", n_checked, n_bad, worst);
    CHECK(n_bad == 0);

    /* Weight 0 = not learned: changing such a target's token leaves loss and gradients alone. */
    struct tt_sample s2[4];
    memcpy(s2, s, sizeof s);
    s2[0].tok[s2[0].n - 1] = (s2[0].tok[s2[0].n - 1] + 1) % TK_N_VOCAB; /* last token: target only */
    s2[0].w[s2[0].n - 1] = 0;
    struct tt_sample s3[4];
    memcpy(s3, s2, sizeof s);
    s3[0].tok[s3[0].n - 1] = (s3[0].tok[s3[0].n - 1] + 5) % TK_N_VOCAB;
    float **g2 = alloc_grads(&m), **g3 = alloc_grads(&m);
    float l2 = tt_loss_and_grads(&m, s2, 4, T, B, g2), l3 = tt_loss_and_grads(&m, s3, 4, T, B, g3);
    CHECK(l2 == l3);
    bool same = true;
    for (int i = 0; i < m.n_params; i++)
        same = same && memcmp(g2[i], g3[i], (size_t)ggml_nelements(m.params[i]) * sizeof(float)) == 0;
    CHECK(same);

    /* Packing: segments of a row do not see each other. Sample 0 shares row 0 with sample 1 and
     * comes first; with sample 0 unweighted, changing its tokens must not change the loss. */
    memcpy(s2, s, sizeof s);
    for (int i = 0; i < s2[0].n; i++) s2[0].w[i] = s2[0].mw[i] = 0;
    memcpy(s3, s2, sizeof s);
    for (int i = 0; i < s3[0].n; i++) s3[0].tok[i] = (s3[0].tok[i] + 7) % TK_N_VOCAB;
    l2 = tt_loss_and_grads(&m, s2, 4, T, B, NULL);
    l3 = tt_loss_and_grads(&m, s3, 4, T, B, NULL);
    CHECK(fabsf(l2 - l3) < 1e-6f);
    free_grads(&m, g);
    free_grads(&m, g2);
    free_grads(&m, g3);
    tm_model_free(&m);
    return test_summary("test_train_grad");
}
