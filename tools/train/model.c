/*
 * model.c: tensors, initialisation, the forward graph and the GGUF writer (see model.h).
 *
 * Initialisation: matrices ~ N(0, 0.5/sqrt(fan_in)), the two residual output projections (wo,
 * ffn_down) further scaled by 1/sqrt(2 n_layer) (GPT-2), embeddings ~ N(0, 0.5), norms = 1.
 */
#define _POSIX_C_SOURCE 200809L
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ggml-alloc.h"
#include "ggml-cpu.h"
#include "gguf.h"
#include "task.h"

const char *tm_hparams_check(const struct tm_hparams *hp) {
    if (hp->n_vocab < 2 || hp->n_vocab > 1 << 20) return "n_vocab out of range";
    if (hp->n_embd < 2 || hp->n_embd > 4096) return "n_embd must be in [2, 4096]";
    if (hp->n_layer < 1 || hp->n_layer > TM_MAX_LAYERS) return "n_layer must be in [1, 16]";
    if (hp->n_head < 1 || hp->n_embd % hp->n_head != 0) return "n_head must divide n_embd";
    if ((hp->n_embd / hp->n_head) % 2 != 0) return "head_dim (n_embd / n_head) must be even (RoPE)";
    if (hp->n_ff < 1 || hp->n_ff > 65536) return "n_ff must be in [1, 65536]";
    if (hp->n_ctx < 8 || hp->n_ctx > 1 << 20) return "n_ctx must be in [8, 1048576]";
    if (!(hp->rms_eps > 0.0f) || !(hp->rope_base > 0.0f)) return "rms_eps and rope_base must be > 0";
    return NULL;
}

static float randn(uint64_t *rng) {
    double u1 = tk_rand_unit(rng), u2 = tk_rand_unit(rng);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static void fill(struct ggml_tensor *t, float std, uint64_t *rng) {
    float *d = t->data;
    int64_t n = ggml_nelements(t);
    for (int64_t i = 0; i < n; i++) d[i] = std > 0.0f ? std * randn(rng) : 1.0f;
}

static struct ggml_tensor *new_param(struct tm_model *m, const char *name, int64_t ne0, int64_t ne1) {
    struct ggml_tensor *t = ne1 > 0 ? ggml_new_tensor_2d(m->ctx, GGML_TYPE_F32, ne0, ne1)
                                    : ggml_new_tensor_1d(m->ctx, GGML_TYPE_F32, ne0);
    ggml_set_name(t, name);
    ggml_set_param(t);
    m->params[m->n_params++] = t;
    return t;
}

int tm_model_init(struct tm_model *m, const struct tm_hparams *hp, uint64_t seed) {
    memset(m, 0, sizeof *m);
    if (tm_hparams_check(hp)) return -1;
    m->hp = *hp;
    struct ggml_init_params ip = {.mem_size = ggml_tensor_overhead() * (TM_MAX_PARAMS + 4), .mem_buffer = NULL, .no_alloc = true};
    m->ctx = ggml_init(ip);
    if (!m->ctx) return -1;
    const int64_t E = hp->n_embd, V = hp->n_vocab, F = hp->n_ff;
    char name[64];
    /* GGUF order: embeddings, layers, output norm, output. */
    m->tok_embd = new_param(m, "token_embd.weight", E, V);
    for (int il = 0; il < hp->n_layer; il++) {
        struct tm_layer *L = &m->layers[il];
#define P(field, suffix, a, b)                                  \
    snprintf(name, sizeof name, "blk.%d." suffix ".weight", il); \
    L->field = new_param(m, name, a, b)
        P(attn_norm, "attn_norm", E, 0);
        P(wq, "attn_q", E, E);
        P(wk, "attn_k", E, E);
        P(wv, "attn_v", E, E);
        P(wo, "attn_output", E, E);
        P(ffn_norm, "ffn_norm", E, 0);
        P(ffn_gate, "ffn_gate", E, F);
        P(ffn_up, "ffn_up", E, F);
        P(ffn_down, "ffn_down", F, E);
#undef P
    }
    m->output_norm = new_param(m, "output_norm.weight", E, 0);
    m->output = new_param(m, "output.weight", E, V);
    m->buf = ggml_backend_alloc_ctx_tensors_from_buft(m->ctx, ggml_backend_cpu_buffer_type());
    if (!m->buf) {
        ggml_free(m->ctx);
        m->ctx = NULL;
        return -1;
    }
    uint64_t rng = seed * 0x100000001B3ull + 12345;
    float s_in = 0.5f / sqrtf((float)E), s_ff = 0.5f / sqrtf((float)F);
    float s_res = 1.0f / sqrtf(2.0f * (float)hp->n_layer);
    fill(m->tok_embd, 0.5f, &rng);
    for (int il = 0; il < hp->n_layer; il++) {
        struct tm_layer *L = &m->layers[il];
        fill(L->attn_norm, 0, &rng);
        fill(L->wq, s_in, &rng);
        fill(L->wk, s_in, &rng);
        fill(L->wv, s_in, &rng);
        fill(L->wo, s_in * s_res, &rng);
        fill(L->ffn_norm, 0, &rng);
        fill(L->ffn_gate, s_in, &rng);
        fill(L->ffn_up, s_in, &rng);
        fill(L->ffn_down, s_ff * s_res, &rng);
    }
    fill(m->output_norm, 0, &rng);
    fill(m->output, s_in, &rng);
    return 0;
}

int tm_model_pad_ff(const struct tm_model *src, int32_t n_ff, uint64_t seed, struct tm_model *dst) {
    const int64_t E = src->hp.n_embd, F = src->hp.n_ff;
    if (n_ff < F) return -1;
    struct tm_hparams hp = src->hp;
    hp.n_ff = n_ff;
    if (tm_model_init(dst, &hp, seed) != 0) return -1;
    for (int i = 0; i < src->n_params; i++) {
        const struct ggml_tensor *a = src->params[i];
        struct ggml_tensor *b = dst->params[i];
        if (ggml_nelements(a) == ggml_nelements(b)) {
            memcpy(b->data, a->data, ggml_nbytes(a));
        } else if (a->ne[0] == E) { /* ffn_gate, ffn_up [E, F]: unit j is row j */
            memcpy(b->data, a->data, ggml_nbytes(a));
        } else { /* ffn_down [F, E]: row e holds the weights of every unit for output e */
            const float *x = a->data;
            float *y = b->data;
            for (int64_t e = 0; e < E; e++) {
                memcpy(y + e * n_ff, x + e * F, (size_t)F * sizeof *x);
                memset(y + e * n_ff + F, 0, (size_t)(n_ff - F) * sizeof *y);
            }
        }
    }
    return 0;
}

void tm_model_free(struct tm_model *m) {
    if (!m) return;
    if (m->buf) ggml_backend_buffer_free(m->buf);
    if (m->ctx) ggml_free(m->ctx);
    memset(m, 0, sizeof *m);
}

int64_t tm_model_n_elements(const struct tm_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += ggml_nelements(m->params[i]);
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Graph                                                                                      */

static struct ggml_tensor *norm(struct ggml_context *ctx, struct ggml_tensor *x, struct ggml_tensor *w, float eps) {
    return ggml_mul(ctx, ggml_rms_norm(ctx, x, eps), w);
}

/* [E, N] -> roped [hd, T, nh, B] (contiguous). */
static struct ggml_tensor *rope_heads(struct ggml_context *ctx, const struct tm_hparams *hp, struct ggml_tensor *x,
                                      struct ggml_tensor *pos, int T, int B) {
    const int hd = hp->n_embd / hp->n_head;
    x = ggml_reshape_3d(ctx, x, hd, hp->n_head, (int64_t)T * B);
    /* llama.cpp: rope type NORM for arch llama; no YaRN (ext_factor 0), attn_factor 1. */
    x = ggml_rope_ext(ctx, x, pos, NULL, hd, GGML_ROPE_TYPE_NORMAL, hp->n_ctx, hp->rope_base, 1.0f, 0.0f, 1.0f,
                      32.0f, 1.0f);
    x = ggml_reshape_4d(ctx, x, hd, hp->n_head, T, B);
    return ggml_cont(ctx, ggml_permute(ctx, x, 0, 2, 1, 3));
}

struct ggml_tensor *tm_build_logits(struct ggml_context *ctx, const struct tm_model *m, struct ggml_tensor *tok,
                                    struct ggml_tensor *pos, struct ggml_tensor *mask, int T, int B) {
    const struct tm_hparams *hp = &m->hp;
    const int E = hp->n_embd, H = hp->n_head, hd = E / H;
    const int64_t N = (int64_t)T * B;
    const float kq_scale = 1.0f / sqrtf((float)hd);
    struct ggml_tensor *x = ggml_get_rows(ctx, m->tok_embd, tok); /* [E, N] */
    for (int il = 0; il < hp->n_layer; il++) {
        const struct tm_layer *L = &m->layers[il];
        struct ggml_tensor *h = norm(ctx, x, L->attn_norm, hp->rms_eps);
        struct ggml_tensor *q = rope_heads(ctx, hp, ggml_mul_mat(ctx, L->wq, h), pos, T, B); /* [hd, T, H, B] */
        struct ggml_tensor *k = rope_heads(ctx, hp, ggml_mul_mat(ctx, L->wk, h), pos, T, B);
        struct ggml_tensor *v = ggml_reshape_4d(ctx, ggml_mul_mat(ctx, L->wv, h), hd, H, T, B);
        v = ggml_cont(ctx, ggml_permute(ctx, v, 1, 2, 0, 3));                              /* [T, hd, H, B] */
        struct ggml_tensor *kq = ggml_mul_mat(ctx, k, q);                                  /* [Tk, Tq, H, B] */
        kq = ggml_soft_max_ext(ctx, kq, mask, kq_scale, 0.0f);
        struct ggml_tensor *o = ggml_mul_mat(ctx, v, kq);                                  /* [hd, Tq, H, B] */
        o = ggml_cont(ctx, ggml_permute(ctx, o, 0, 2, 1, 3));                              /* [hd, H, T, B] */
        o = ggml_reshape_2d(ctx, o, E, N);
        x = ggml_add(ctx, x, ggml_mul_mat(ctx, L->wo, o));
        h = norm(ctx, x, L->ffn_norm, hp->rms_eps);
        struct ggml_tensor *g = ggml_swiglu_split(ctx, ggml_mul_mat(ctx, L->ffn_gate, h), ggml_mul_mat(ctx, L->ffn_up, h));
        x = ggml_add(ctx, x, ggml_mul_mat(ctx, L->ffn_down, g));
    }
    x = norm(ctx, x, m->output_norm, hp->rms_eps);
    return ggml_mul_mat(ctx, m->output, x); /* [V, N] */
}

/* ------------------------------------------------------------------------------------------ */
/* Training graph with the backward pass by hand                                              */

/* A contiguous copy of a strided F32 view, copied in 32 x 32 tiles. ggml's own cont copies a
 * transposed tensor one element at a time through memcpy (measured: 30% of a training step). */
static void cont_tiled(struct ggml_tensor *dst, const struct ggml_tensor *a, int ith, int nth, void *user) {
    (void)user;
    const int64_t ne0 = a->ne[0], ne1 = a->ne[1], ne2 = a->ne[2], ne3 = a->ne[3];
    const size_t nb0 = a->nb[0], nb1 = a->nb[1], nb2 = a->nb[2], nb3 = a->nb[3];
    const int64_t TB = 32, n1b = (ne1 + TB - 1) / TB, n_tiles = n1b * ne2 * ne3;
    float *d = dst->data;
    const char *src = a->data;
    for (int64_t t = ith; t < n_tiles; t += nth) {
        const int64_t i1b = t % n1b, i2 = (t / n1b) % ne2, i3 = t / (n1b * ne2);
        const int64_t i1e = (i1b + 1) * TB < ne1 ? (i1b + 1) * TB : ne1;
        const char *s23 = src + (size_t)i2 * nb2 + (size_t)i3 * nb3;
        float *d23 = d + ((i3 * ne2 + i2) * ne1) * ne0;
        if (nb0 == sizeof(float)) {
            for (int64_t i1 = i1b * TB; i1 < i1e; i1++)
                memcpy(d23 + i1 * ne0, s23 + (size_t)i1 * nb1, (size_t)ne0 * sizeof(float));
            continue;
        }
        for (int64_t i0b = 0; i0b < ne0; i0b += TB) {
            const int64_t i0e = i0b + TB < ne0 ? i0b + TB : ne0;
            for (int64_t i1 = i1b * TB; i1 < i1e; i1++) {
                const char *s1 = s23 + (size_t)i1 * nb1;
                float *d1 = d23 + i1 * ne0;
                for (int64_t i0 = i0b; i0 < i0e; i0++) d1[i0] = *(const float *)(s1 + (size_t)i0 * nb0);
            }
        }
    }
}

static struct ggml_tensor *cont(struct ggml_context *ctx, struct ggml_tensor *view) {
    return ggml_map_custom1(ctx, view, cont_tiled, GGML_N_TASKS_MAX, NULL);
}

static struct ggml_tensor *tr(struct ggml_context *ctx, struct ggml_tensor *x) {
    return cont(ctx, ggml_transpose(ctx, x));
}

/* y = W x with W [I, O], x [I, N]: returns dx [I, N] and sets *dW [I, O] from dy [O, N]. */
static struct ggml_tensor *linear_back(struct ggml_context *ctx, struct ggml_tensor *W, struct ggml_tensor *x,
                                       struct ggml_tensor *dy, struct ggml_tensor **dW) {
    struct ggml_tensor *gw = ggml_mul_mat(ctx, tr(ctx, x), tr(ctx, dy)); /* [I, O] = sum_n x dy^T */
    *dW = *dW ? ggml_add(ctx, *dW, gw) : gw;
    return ggml_mul_mat(ctx, tr(ctx, W), dy); /* [I, N] = W dy */
}

struct layer_acts {
    struct ggml_tensor *x, *a, *h;         /* input, rms_norm(x), a * attn_norm */
    struct ggml_tensor *q, *k, *v, *p, *oc; /* [hd,T,H,B] x3, softmax [Tk,Tq,H,B], merged heads [E,N] */
    struct ggml_tensor *xm, *b, *h2, *g, *u, *z;
};

struct ggml_tensor *tm_build_train(struct ggml_context *ctx, const struct tm_model *m, struct ggml_tensor *tok,
                                   struct ggml_tensor *pos, struct ggml_tensor *mask, struct ggml_tensor *labels,
                                   struct ggml_tensor *roww, int T, int B, struct ggml_tensor **grads,
                                   struct ggml_tensor *labels_mid, struct ggml_tensor *roww_mid, int mid_layer,
                                   struct ggml_tensor **logits_mid) {
    const struct tm_hparams *hp = &m->hp;
    const int E = hp->n_embd, H = hp->n_head, hd = E / H;
    const int64_t N = (int64_t)T * B;
    const float kq_scale = 1.0f / sqrtf((float)hd), eps = hp->rms_eps;
    struct layer_acts A[TM_MAX_LAYERS];

    /* forward, keeping what the backward pass needs */
    struct ggml_tensor *x = ggml_get_rows(ctx, m->tok_embd, tok);
    for (int il = 0; il < hp->n_layer; il++) {
        const struct tm_layer *L = &m->layers[il];
        struct layer_acts *S = &A[il];
        S->x = x;
        S->a = ggml_rms_norm(ctx, x, eps);
        S->h = ggml_mul(ctx, S->a, L->attn_norm);
        S->q = rope_heads(ctx, hp, ggml_mul_mat(ctx, L->wq, S->h), pos, T, B);
        S->k = rope_heads(ctx, hp, ggml_mul_mat(ctx, L->wk, S->h), pos, T, B);
        struct ggml_tensor *v4 = ggml_reshape_4d(ctx, ggml_mul_mat(ctx, L->wv, S->h), hd, H, T, B);
        S->v = cont(ctx, ggml_permute(ctx, v4, 0, 2, 1, 3));          /* [hd, T, H, B] */
        struct ggml_tensor *vt = cont(ctx, ggml_permute(ctx, v4, 1, 2, 0, 3)); /* [T, hd, H, B] */
        S->p = ggml_soft_max_ext(ctx, ggml_mul_mat(ctx, S->k, S->q), mask, kq_scale, 0.0f);
        struct ggml_tensor *o = ggml_mul_mat(ctx, vt, S->p);                 /* [hd, Tq, H, B] */
        S->oc = ggml_reshape_2d(ctx, cont(ctx, ggml_permute(ctx, o, 0, 2, 1, 3)), E, N);
        S->xm = ggml_add(ctx, x, ggml_mul_mat(ctx, L->wo, S->oc));
        S->b = ggml_rms_norm(ctx, S->xm, eps);
        S->h2 = ggml_mul(ctx, S->b, L->ffn_norm);
        S->g = ggml_mul_mat(ctx, L->ffn_gate, S->h2);
        S->u = ggml_mul_mat(ctx, L->ffn_up, S->h2);
        S->z = ggml_swiglu_split(ctx, S->g, S->u);
        x = ggml_add(ctx, S->xm, ggml_mul_mat(ctx, L->ffn_down, S->z));
    }
    struct ggml_tensor *xL = x;
    struct ggml_tensor *c = ggml_rms_norm(ctx, xL, eps);
    struct ggml_tensor *hf = ggml_mul(ctx, c, m->output_norm);
    struct ggml_tensor *logits = ggml_mul_mat(ctx, m->output, hf); /* [V, N] */

    /* backward */
    for (int i = 0; i < m->n_params; i++) grads[i] = NULL;
    /* parameter slots in m->params order: 0 tok_embd, 1 + 9 il + {0..8}, then output_norm, output */
#define G(i) grads[(i)]
    const int i_out = m->n_params - 1, i_onorm = m->n_params - 2;
    struct ggml_tensor *dlog = ggml_mul(ctx, ggml_sub(ctx, ggml_soft_max(ctx, logits), labels), roww);
    struct ggml_tensor *dhf = linear_back(ctx, m->output, hf, dlog, &G(i_out));
    G(i_onorm) = ggml_repeat_back(ctx, ggml_mul(ctx, c, dhf), m->output_norm);
    struct ggml_tensor *dx = ggml_rms_norm_back(ctx, ggml_mul(ctx, dhf, m->output_norm), xL, eps);
    /* the deep-supervision head on the input of the last layer, sharing the output norm and head */
    const int il_mid = mid_layer >= 1 && mid_layer < hp->n_layer ? mid_layer : hp->n_layer - 1;
    struct ggml_tensor *dx_mid = NULL;
    if (roww_mid) {
        struct ggml_tensor *xm = A[il_mid].x;
        struct ggml_tensor *cm = ggml_rms_norm(ctx, xm, eps);
        struct ggml_tensor *hm = ggml_mul(ctx, cm, m->output_norm);
        struct ggml_tensor *lm = ggml_mul_mat(ctx, m->output, hm);
        *logits_mid = lm;
        struct ggml_tensor *dlm = ggml_mul(ctx, ggml_sub(ctx, ggml_soft_max(ctx, lm), labels_mid), roww_mid);
        struct ggml_tensor *dhm = linear_back(ctx, m->output, hm, dlm, &G(i_out));
        G(i_onorm) = ggml_add(ctx, G(i_onorm), ggml_repeat_back(ctx, ggml_mul(ctx, cm, dhm), m->output_norm));
        dx_mid = ggml_rms_norm_back(ctx, ggml_mul(ctx, dhm, m->output_norm), xm, eps);
    }
    for (int il = hp->n_layer - 1; il >= 0; il--) {
        const struct tm_layer *L = &m->layers[il];
        const struct layer_acts *S = &A[il];
        const int base = 1 + 9 * il; /* attn_norm, q, k, v, o, ffn_norm, gate, up, down */
        /* FFN */
        struct ggml_tensor *dz = linear_back(ctx, L->ffn_down, S->z, dx, &G(base + 8));
        struct ggml_tensor *du = ggml_mul(ctx, dz, ggml_silu(ctx, S->g));
        struct ggml_tensor *dg = ggml_silu_back(ctx, ggml_mul(ctx, dz, S->u), S->g);
        struct ggml_tensor *dh2 = ggml_add(ctx, linear_back(ctx, L->ffn_gate, S->h2, dg, &G(base + 6)),
                                           linear_back(ctx, L->ffn_up, S->h2, du, &G(base + 7)));
        G(base + 5) = ggml_repeat_back(ctx, ggml_mul(ctx, S->b, dh2), L->ffn_norm);
        struct ggml_tensor *dxm =
            ggml_add(ctx, dx, ggml_rms_norm_back(ctx, ggml_mul(ctx, dh2, L->ffn_norm), S->xm, eps));
        /* attention output */
        struct ggml_tensor *doc = linear_back(ctx, L->wo, S->oc, dxm, &G(base + 4));
        struct ggml_tensor *dO = cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, doc, hd, H, T, B), 0, 2, 1, 3));
        /* o = v p: dp[j,i] = sum_d v[d,j] dO[d,i]; dv[d,j] = sum_i dO[d,i] p[j,i] */
        struct ggml_tensor *dp = ggml_mul_mat(ctx, S->v, dO);                           /* [Tk, Tq, H, B] */
        struct ggml_tensor *dv = ggml_mul_mat(ctx, tr(ctx, dO), tr(ctx, S->p));        /* [hd, Tk, H, B] */
        struct ggml_tensor *ds = ggml_soft_max_ext_back(ctx, dp, S->p, kq_scale, 0.0f); /* [Tk, Tq, H, B] */
        /* s = k^T q: dq[d,i] = sum_j k[d,j] ds[j,i]; dk[d,j] = sum_i q[d,i] ds[j,i] */
        struct ggml_tensor *dq = ggml_mul_mat(ctx, tr(ctx, S->k), ds);                 /* [hd, Tq, H, B] */
        struct ggml_tensor *dk = ggml_mul_mat(ctx, tr(ctx, S->q), tr(ctx, ds));        /* [hd, Tk, H, B] */
        /* back to [E, N], undoing the head permutation and RoPE */
        struct ggml_tensor *dqk[2] = {dq, dk};
        for (int j = 0; j < 2; j++) {
            struct ggml_tensor *t = cont(ctx, ggml_permute(ctx, dqk[j], 0, 2, 1, 3)); /* [hd, H, T, B] */
            t = ggml_reshape_3d(ctx, t, hd, H, N);
            t = ggml_rope_ext_back(ctx, t, pos, NULL, hd, GGML_ROPE_TYPE_NORMAL, hp->n_ctx, hp->rope_base, 1.0f, 0.0f,
                                   1.0f, 32.0f, 1.0f);
            dqk[j] = ggml_reshape_2d(ctx, t, E, N);
        }
        struct ggml_tensor *dv0 = ggml_reshape_2d(ctx, cont(ctx, ggml_permute(ctx, dv, 0, 2, 1, 3)), E, N);
        struct ggml_tensor *dh = linear_back(ctx, L->wq, S->h, dqk[0], &G(base + 1));
        dh = ggml_add(ctx, dh, linear_back(ctx, L->wk, S->h, dqk[1], &G(base + 2)));
        dh = ggml_add(ctx, dh, linear_back(ctx, L->wv, S->h, dv0, &G(base + 3)));
        G(base + 0) = ggml_repeat_back(ctx, ggml_mul(ctx, S->a, dh), L->attn_norm);
        dx = ggml_add(ctx, dxm, ggml_rms_norm_back(ctx, ggml_mul(ctx, dh, L->attn_norm), S->x, eps));
        if (il == il_mid && dx_mid) dx = ggml_add(ctx, dx, dx_mid);
    }
    G(0) = ggml_get_rows_back(ctx, dx, tok, m->tok_embd);
#undef G
    for (int i = 0; i < m->n_params; i++) ggml_set_output(grads[i]);
    return logits;
}

int tm_forward_seq(const struct tm_model *m, const int32_t *tok, int n, int n_threads, float *out) {
    if (n <= 0) return -1;
    struct ggml_init_params ip = {.mem_size = ggml_tensor_overhead() * 1024 + ggml_graph_overhead(), .mem_buffer = NULL,
                                  .no_alloc = true};
    struct ggml_context *ctx = ggml_init(ip);
    if (!ctx) return -1;
    struct ggml_tensor *t_tok = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
    struct ggml_tensor *t_pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
    struct ggml_tensor *t_mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, n, n, 1, 1);
    ggml_set_input(t_tok);
    ggml_set_input(t_pos);
    ggml_set_input(t_mask);
    struct ggml_tensor *logits = tm_build_logits(ctx, m, t_tok, t_pos, t_mask, n, 1);
    ggml_set_output(logits);
    struct ggml_cgraph *gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, logits);
    ggml_gallocr_t ga = ggml_gallocr_new(ggml_backend_cpu_buffer_type());
    ggml_backend_t be = ggml_backend_cpu_init();
    int rc = -1;
    if (ga && be && ggml_gallocr_alloc_graph(ga, gf)) {
        int32_t *pos = malloc((size_t)n * sizeof *pos);
        float *mask = malloc((size_t)n * (size_t)n * sizeof *mask);
        if (pos && mask) {
            for (int i = 0; i < n; i++) {
                pos[i] = i;
                for (int j = 0; j < n; j++) mask[(size_t)i * (size_t)n + (size_t)j] = j <= i ? 0.0f : -INFINITY;
            }
            ggml_backend_tensor_set(t_tok, tok, 0, (size_t)n * sizeof *tok);
            ggml_backend_tensor_set(t_pos, pos, 0, (size_t)n * sizeof *pos);
            ggml_backend_tensor_set(t_mask, mask, 0, (size_t)n * (size_t)n * sizeof *mask);
            ggml_backend_cpu_set_n_threads(be, n_threads > 0 ? n_threads : 1);
            if (ggml_backend_graph_compute(be, gf) == GGML_STATUS_SUCCESS) {
                ggml_backend_tensor_get(logits, out, 0, ggml_nbytes(logits));
                rc = 0;
            }
        }
        free(pos);
        free(mask);
    }
    if (be) ggml_backend_free(be);
    if (ga) ggml_gallocr_free(ga);
    ggml_free(ctx);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* GGUF                                                                                       */

int tm_model_save(const struct tm_model *m, const char *path, const char *name, char *err, size_t errlen) {
    const struct tm_hparams *hp = &m->hp;
    struct gguf_context *g = gguf_init_empty();
    if (!g) { snprintf(err, errlen, "out of memory"); return -1; }
    gguf_set_val_str(g, "general.architecture", "llama");
    gguf_set_val_str(g, "general.name", name);
    gguf_set_val_u32(g, "general.file_type", 0); /* all F32 */
    gguf_set_val_u32(g, "llama.context_length", (uint32_t)hp->n_ctx);
    gguf_set_val_u32(g, "llama.embedding_length", (uint32_t)hp->n_embd);
    gguf_set_val_u32(g, "llama.block_count", (uint32_t)hp->n_layer);
    gguf_set_val_u32(g, "llama.feed_forward_length", (uint32_t)hp->n_ff);
    gguf_set_val_u32(g, "llama.attention.head_count", (uint32_t)hp->n_head);
    gguf_set_val_u32(g, "llama.attention.head_count_kv", (uint32_t)hp->n_head);
    gguf_set_val_f32(g, "llama.attention.layer_norm_rms_epsilon", hp->rms_eps);
    gguf_set_val_f32(g, "llama.rope.freq_base", hp->rope_base);
    gguf_set_val_u32(g, "llama.rope.dimension_count", (uint32_t)(hp->n_embd / hp->n_head));
    gguf_set_val_u32(g, "llama.vocab_size", (uint32_t)hp->n_vocab);

    const char *toks[TK_N_VOCAB];
    float scores[TK_N_VOCAB];
    int32_t types[TK_N_VOCAB];
    for (int i = 0; i < TK_N_VOCAB; i++) {
        toks[i] = tk_token_text(i);
        scores[i] = 0.0f;
        types[i] = (int32_t)tk_token_type(i);
    }
    gguf_set_val_str(g, "tokenizer.ggml.model", "llama");
    gguf_set_val_str(g, "tokenizer.ggml.pre", "default");
    gguf_set_arr_str(g, "tokenizer.ggml.tokens", toks, TK_N_VOCAB);
    gguf_set_arr_data(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, TK_N_VOCAB);
    gguf_set_arr_data(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, TK_N_VOCAB);
    gguf_set_val_u32(g, "tokenizer.ggml.unknown_token_id", TK_UNK);
    gguf_set_val_u32(g, "tokenizer.ggml.bos_token_id", TK_BOS);
    gguf_set_val_u32(g, "tokenizer.ggml.eos_token_id", TK_IM_END);
    gguf_set_val_u32(g, "tokenizer.ggml.eot_token_id", TK_IM_END);
    gguf_set_val_u32(g, "tokenizer.ggml.padding_token_id", TK_EOS);
    gguf_set_val_bool(g, "tokenizer.ggml.add_bos_token", false);
    gguf_set_val_bool(g, "tokenizer.ggml.add_eos_token", false);
    gguf_set_val_bool(g, "tokenizer.ggml.add_space_prefix", false);
    gguf_set_val_str(g, "tokenizer.chat_template", TK_CHAT_TEMPLATE);
    for (int i = 0; i < m->n_params; i++) gguf_add_tensor(g, m->params[i]);

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    bool ok = gguf_write_to_file(g, tmp, false);
    gguf_free(g);
    if (!ok) {
        unlink(tmp);
        snprintf(err, errlen, "cannot write %s", tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        snprintf(err, errlen, "cannot rename %s to %s", tmp, path);
        return -1;
    }
    return 0;
}

int tm_model_load(struct tm_model *m, const char *path, char *err, size_t errlen) {
    struct ggml_context *data = NULL;
    struct gguf_init_params gp = {.no_alloc = false, .ctx = &data};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) {
        snprintf(err, errlen, "cannot read %s as GGUF", path);
        return -1;
    }
    struct tm_hparams hp = {.n_vocab = TK_N_VOCAB, .rms_eps = 1e-5f, .rope_base = 10000.0f};
    static const char *const keys[] = {"llama.embedding_length", "llama.block_count", "llama.attention.head_count",
                                       "llama.feed_forward_length", "llama.context_length"};
    int32_t *dst[] = {&hp.n_embd, &hp.n_layer, &hp.n_head, &hp.n_ff, &hp.n_ctx};
    int rc = 0;
    for (int i = 0; i < 5; i++) {
        int64_t id = gguf_find_key(g, keys[i]);
        if (id < 0 || gguf_get_kv_type(g, id) != GGUF_TYPE_UINT32) { rc = -1; break; }
        *dst[i] = (int32_t)gguf_get_val_u32(g, id);
    }
    int64_t id = gguf_find_key(g, "llama.rope.freq_base");
    if (id >= 0 && gguf_get_kv_type(g, id) == GGUF_TYPE_FLOAT32) hp.rope_base = gguf_get_val_f32(g, id);
    id = gguf_find_key(g, "llama.attention.layer_norm_rms_epsilon");
    if (id >= 0 && gguf_get_kv_type(g, id) == GGUF_TYPE_FLOAT32) hp.rms_eps = gguf_get_val_f32(g, id);
    if (rc == 0 && tm_model_init(m, &hp, 0) != 0) rc = -1;
    for (int i = 0; rc == 0 && i < m->n_params; i++) {
        struct ggml_tensor *src = ggml_get_tensor(data, ggml_get_name(m->params[i]));
        if (!src || src->type != GGML_TYPE_F32 || ggml_nelements(src) != ggml_nelements(m->params[i])) {
            rc = -1;
            break;
        }
        memcpy(m->params[i]->data, src->data, ggml_nbytes(src));
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s is not a model written by sr-train (missing key or tensor)", path);
        tm_model_free(m);
    }
    gguf_free(g);
    ggml_free(data);
    return rc;
}
