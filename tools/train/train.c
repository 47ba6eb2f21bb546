/*
 * train.c: packed batches, the loss graph, AdamW with clipping, the progress bar (see train.h).
 *
 * Graph: logits [V, T*B] -> get_rows(selected targets) [V, M] * selmask -> cross_entropy_loss.
 * ggml's cross-entropy backward assumes every label row sums to 1, so unlearned positions are
 * not given zero labels (that would push their logits around); they are left out by the row
 * selection, and the unused selection slots are multiplied by 0 so no gradient reaches them.
 * The graph is built and allocated once; each step only uploads inputs.
 */
#define _POSIX_C_SOURCE 200809L
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ggml-alloc.h"
#include "ggml-cpu.h"

struct tt_params tt_default_params(void) {
    struct tt_params p = {
        .T = 128, .B = 16, .lr = 2e-3f, .lr_min = 1e-4f, .warmup = 100, .wd = 0.01f,
        .beta1 = 0.9f, .beta2 = 0.98f, .eps = 1e-8f, .clip = 1.0f, .steps = 1000, .deadline = 0,
        .threads = 2, .seed = 1, .label = "train", .progress = true, .dp_role = TT_DP_NONE, .dp_in = -1,
        .dp_out = -1,
    };
    return p;
}

double tt_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double tt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------------------------ */
/* The batch graph                                                                            */

struct sel_info {
    int32_t row;    /* position in the packed batch */
    int32_t target; /* token id */
    uint8_t w, cat;
};

struct bgraph {
    int T, B, V;
    struct ggml_context *ctx;
    struct ggml_cgraph *gf;
    ggml_gallocr_t ga;
    ggml_backend_t be;
    struct ggml_tensor *t_tok, *t_pos, *t_mask, *t_labels, *t_roww, *t_labels_mid, *t_roww_mid, *logits, *logits_mid;
    struct ggml_tensor *grads[TM_MAX_PARAMS];
    /* host copies of the inputs */
    int32_t *tok, *pos;
    float *mask, *labels, *roww, *labels_mid, *roww_mid;
    struct sel_info *info; /* one per learned target of the output head */
    int n_info;
    struct sel_info *minfo; /* one per target of the deep-supervision head */
    int n_minfo;
    double w_total;        /* sum of the learned targets' weights */
};

static void bgraph_free(struct bgraph *g) {
    if (g->ga) ggml_gallocr_free(g->ga);
    if (g->be) ggml_backend_free(g->be);
    if (g->ctx) ggml_free(g->ctx);
    free(g->tok);
    free(g->pos);
    free(g->mask);
    free(g->labels);
    free(g->roww);
    free(g->roww_mid);
    free(g->labels_mid);
    free(g->info);
    free(g->minfo);
    memset(g, 0, sizeof *g);
}

#define GRAPH_SIZE 16384

static int bgraph_init(struct bgraph *g, struct tm_model *m, int T, int B, int threads, int mark_layer) {
    memset(g, 0, sizeof *g);
    g->T = T;
    g->B = B;
    g->V = m->hp.n_vocab;
    const int64_t N = (int64_t)T * B;
    struct ggml_init_params ip = {.mem_size = ggml_tensor_overhead() * GRAPH_SIZE + ggml_graph_overhead_custom(GRAPH_SIZE, false),
                                  .mem_buffer = NULL, .no_alloc = true};
    g->ctx = ggml_init(ip);
    if (!g->ctx) return -1;
    g->t_tok = ggml_new_tensor_1d(g->ctx, GGML_TYPE_I32, N);
    g->t_pos = ggml_new_tensor_1d(g->ctx, GGML_TYPE_I32, N);
    g->t_mask = ggml_new_tensor_4d(g->ctx, GGML_TYPE_F32, T, T, 1, B);
    g->t_labels = ggml_new_tensor_2d(g->ctx, GGML_TYPE_F32, g->V, N);
    g->t_roww = ggml_new_tensor_2d(g->ctx, GGML_TYPE_F32, 1, N);
    g->t_roww_mid = ggml_new_tensor_2d(g->ctx, GGML_TYPE_F32, 1, N);
    g->t_labels_mid = ggml_new_tensor_2d(g->ctx, GGML_TYPE_F32, g->V, N);
    struct ggml_tensor *ins[] = {g->t_tok, g->t_pos, g->t_mask, g->t_labels, g->t_roww, g->t_labels_mid, g->t_roww_mid};
    for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++) ggml_set_input(ins[i]);
    g->logits = tm_build_train(g->ctx, m, g->t_tok, g->t_pos, g->t_mask, g->t_labels, g->t_roww, T, B, g->grads,
                               g->t_labels_mid, g->t_roww_mid, mark_layer, &g->logits_mid);
    ggml_set_output(g->logits);
    ggml_set_output(g->logits_mid);
    g->gf = ggml_new_graph_custom(g->ctx, GRAPH_SIZE, false);
    ggml_build_forward_expand(g->gf, g->logits);
    for (int i = 0; i < m->n_params; i++) ggml_build_forward_expand(g->gf, g->grads[i]);
    g->ga = ggml_gallocr_new(ggml_backend_cpu_buffer_type());
    g->be = ggml_backend_cpu_init();
    if (!g->ga || !g->be || !ggml_gallocr_alloc_graph(g->ga, g->gf)) return -1;
    ggml_backend_cpu_set_n_threads(g->be, threads > 0 ? threads : 1);
    g->tok = malloc((size_t)N * sizeof *g->tok);
    g->pos = malloc((size_t)N * sizeof *g->pos);
    g->mask = malloc((size_t)N * (size_t)T * sizeof *g->mask);
    g->labels = calloc((size_t)N * (size_t)g->V, sizeof *g->labels);
    g->roww = malloc((size_t)N * sizeof *g->roww);
    g->roww_mid = malloc((size_t)N * sizeof *g->roww_mid);
    g->labels_mid = calloc((size_t)N * (size_t)g->V, sizeof *g->labels_mid);
    g->info = malloc((size_t)N * sizeof *g->info);
    g->minfo = malloc((size_t)N * sizeof *g->minfo);
    if (!g->tok || !g->pos || !g->mask || !g->labels || !g->roww || !g->roww_mid || !g->labels_mid || !g->info ||
        !g->minfo)
        return -1;
    return 0;
}

/* Packs samples into the host arrays. `get` returns the next sample (or NULL when there are no
 * more); a sample that does not fit in the current row's remaining space starts the next row
 * (it stays pending). Returns the number of positions holding real tokens. */
typedef const struct tt_sample *(*get_fn)(void *ctx);

static int64_t bgraph_pack(struct bgraph *g, get_fn get, void *gctx, const struct tt_sample **pending,
                           float mid_weight) {
    const int T = g->T, B = g->B;
    const int64_t N = (int64_t)T * B;
    for (int64_t i = 0; i < N * T; i++) g->mask[i] = -INFINITY;
    for (int i = 0; i < g->n_info; i++) /* clear last batch's one-hot entries */
        g->labels[(size_t)g->info[i].row * (size_t)g->V + (size_t)g->info[i].target] = 0.0f;
    for (int i = 0; i < g->n_minfo; i++)
        g->labels_mid[(size_t)g->minfo[i].row * (size_t)g->V + (size_t)g->minfo[i].target] = 0.0f;
    memset(g->roww, 0, (size_t)N * sizeof *g->roww);
    memset(g->roww_mid, 0, (size_t)N * sizeof *g->roww_mid);
    g->n_info = 0;
    g->n_minfo = 0;
    g->w_total = 0.0;
    int64_t used = 0;
    for (int b = 0; b < B; b++) {
        int c = 0;
        for (;;) {
            const struct tt_sample *s = *pending ? *pending : get(gctx);
            *pending = NULL;
            if (!s) break;
            int n = s->n < T ? s->n : T;
            if (c + n > T) {
                *pending = s;
                break;
            }
            for (int i = 0; i < n; i++) {
                int64_t r = (int64_t)b * T + c + i;
                g->tok[r] = s->tok[i];
                g->pos[r] = i;
                float *mrow = g->mask + r * T; /* query c+i of row b sees keys c..c+i */
                for (int j = 0; j <= i; j++) mrow[c + j] = 0.0f;
                if (i + 1 < n && s->w[i + 1] > 0) {
                    int32_t tgt = s->alt[i + 1] > 0 ? s->alt[i + 1] : s->tok[i + 1];
                    g->info[g->n_info++] = (struct sel_info){(int32_t)r, tgt, s->w[i + 1], s->cat[i + 1]};
                    g->labels[(size_t)r * (size_t)g->V + (size_t)tgt] = 1.0f;
                    g->roww[r] = (float)s->w[i + 1];
                    g->w_total += s->w[i + 1];
                }
                /* the deep-supervision head: the mark of this position's own token, else (with
                 * mid_weight) the same generation target as the output head */
                int32_t mt = 0;
                float mw = 0.0f;
                uint8_t mc = TT_CAT_MARK;
                if (s->mk[i] > 0 && s->mw[i] > 0) {
                    mt = s->mk[i];
                    mw = (float)s->mw[i];
                } else if (mid_weight > 0 && i + 1 < n && s->w[i + 1] > 0 && s->cat[i + 1] == TT_CAT_GEN) {
                    mt = s->tok[i + 1];
                    mw = mid_weight * (float)s->w[i + 1];
                    mc = TT_CAT_GEN;
                }
                if (mw > 0) {
                    g->minfo[g->n_minfo++] = (struct sel_info){(int32_t)r, mt, 0, mc};
                    g->labels_mid[(size_t)r * (size_t)g->V + (size_t)mt] = 1.0f;
                    g->roww_mid[r] = mw;
                    g->w_total += mw;
                }
            }
            c += n;
            used += n;
        }
        for (int i = c; i < T; i++) { /* padding: a token that sees only itself */
            int64_t r = (int64_t)b * T + i;
            g->tok[r] = 0;
            g->pos[r] = 0;
            g->mask[r * T + i] = 0.0f;
        }
    }
    if (g->w_total > 0)
        for (int64_t r = 0; r < N; r++) {
            g->roww[r] /= (float)g->w_total;
            g->roww_mid[r] /= (float)g->w_total;
        }
    return used;
}

static double row_nll(const float *row, int V, int32_t target, int *argmax) {
    float mx = row[0];
    int arg = 0;
    for (int v = 1; v < V; v++)
        if (row[v] > mx) { mx = row[v]; arg = v; }
    double z = 0.0;
    for (int v = 0; v < V; v++) z += exp((double)(row[v] - mx));
    *argmax = arg;
    return log(z) + (double)(mx - row[target]);
}

/* Per-category loss and argmax accuracy of the last batch (output head), mark statistics of the
 * deep-supervision head (mark[0..1]: error marks right / seen, mark[2..3]: ok marks), and the loss
 * whose gradient the graph computed. */
static double bgraph_stats(const struct bgraph *g, double sum_loss[TT_N_CAT], double sum_acc[TT_N_CAT], double cnt[TT_N_CAT],
                           double mark[4]) {
    const float *lf = g->logits->data, *lm = g->logits_mid->data;
    double loss = 0.0;
    for (int i = 0; i < g->n_info; i++) {
        const struct sel_info *s = &g->info[i];
        int af = 0;
        double nf = row_nll(lf + (size_t)s->row * (size_t)g->V, g->V, s->target, &af);
        loss += (double)g->roww[s->row] * nf;
        int c = s->cat < TT_N_CAT ? s->cat : 0;
        sum_loss[c] += nf;
        sum_acc[c] += af == s->target;
        cnt[c] += 1;
    }
    for (int i = 0; i < g->n_minfo; i++) {
        const struct sel_info *s = &g->minfo[i];
        int am = 0;
        double nm = row_nll(lm + (size_t)s->row * (size_t)g->V, g->V, s->target, &am);
        loss += (double)g->roww_mid[s->row] * nm;
        if (s->cat != TT_CAT_MARK) continue;
        int k = s->target == TT_MARK_ERR ? 0 : 2;
        mark[k] += am == s->target;
        mark[k + 1] += 1;
    }
    return loss;
}

/* Uploads the inputs, runs forward and backward; returns the weighted mean loss. */
static double bgraph_compute(struct bgraph *g, double sum_loss[TT_N_CAT], double sum_acc[TT_N_CAT], double cnt[TT_N_CAT],
                             double mark[4]) {
    const int64_t N = (int64_t)g->T * g->B;
    ggml_backend_tensor_set(g->t_tok, g->tok, 0, (size_t)N * sizeof *g->tok);
    ggml_backend_tensor_set(g->t_pos, g->pos, 0, (size_t)N * sizeof *g->pos);
    ggml_backend_tensor_set(g->t_mask, g->mask, 0, (size_t)N * (size_t)g->T * sizeof *g->mask);
    ggml_backend_tensor_set(g->t_labels, g->labels, 0, (size_t)N * (size_t)g->V * sizeof *g->labels);
    ggml_backend_tensor_set(g->t_roww, g->roww, 0, (size_t)N * sizeof *g->roww);
    ggml_backend_tensor_set(g->t_roww_mid, g->roww_mid, 0, (size_t)N * sizeof *g->roww_mid);
    ggml_backend_tensor_set(g->t_labels_mid, g->labels_mid, 0, (size_t)N * (size_t)g->V * sizeof *g->labels_mid);
    if (ggml_backend_graph_compute(g->be, g->gf) != GGML_STATUS_SUCCESS) return NAN;
    return bgraph_stats(g, sum_loss, sum_acc, cnt, mark);
}

/* ------------------------------------------------------------------------------------------ */
/* Optimizer                                                                                  */

struct adamw {
    float *m[TM_MAX_PARAMS], *v[TM_MAX_PARAMS];
    int64_t t;
};

static float grad_norm(struct tm_model *mod, struct bgraph *g) {
    double s = 0.0;
    for (int i = 0; i < mod->n_params; i++) {
        const float *gr = g->grads[i]->data;
        int64_t n = ggml_nelements(mod->params[i]);
        for (int64_t j = 0; j < n; j++) s += (double)gr[j] * gr[j];
    }
    return (float)sqrt(s);
}

static void adamw_step(struct adamw *o, struct tm_model *mod, struct bgraph *g, const struct tt_params *p, float lr,
                       float gscale) {
    o->t++;
    const float bc1 = 1.0f - powf(p->beta1, (float)o->t), bc2 = 1.0f - powf(p->beta2, (float)o->t);
    for (int i = 0; i < mod->n_params; i++) {
        struct ggml_tensor *t = mod->params[i];
        float *w = t->data, *m = o->m[i], *v = o->v[i];
        const float *gr = g->grads[i]->data;
        const float wd = ggml_n_dims(t) >= 2 ? p->wd : 0.0f;
        int64_t n = ggml_nelements(t);
        for (int64_t j = 0; j < n; j++) {
            float gj = gr[j] * gscale;
            m[j] = p->beta1 * m[j] + (1.0f - p->beta1) * gj;
            v[j] = p->beta2 * v[j] + (1.0f - p->beta2) * gj * gj;
            float upd = (m[j] / bc1) / (sqrtf(v[j] / bc2) + p->eps);
            w[j] -= lr * (upd + wd * w[j]);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Progress                                                                                   */

static void fmt_time(double s, char *buf, size_t size) {
    if (!(s >= 0) || s > 359999) s = 0;
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, size, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, size, "%d:%02d", t / 60, t % 60);
}

static void progress(const struct tt_params *p, double frac, int64_t step, double el, double loss_g, double loss_j,
                     double acc_j, double tok_s, bool final, bool tty) {
    char eta[32], elapsed[32], bar[128];
    const int W = 24;
    int fill = (int)(frac * W + 0.5);
    if (fill > W) fill = W;
    size_t o = 0;
    for (int i = 0; i < W; i++) {
        const char *c = i < fill ? "\xe2\x96\x88" : "\xe2\x96\x91";
        memcpy(bar + o, c, 3);
        o += 3;
    }
    bar[o] = '\0';
    fmt_time(frac > 0.001 ? el / frac - el : 0, eta, sizeof eta);
    fmt_time(el, elapsed, sizeof elapsed);
    char js[64] = "";
    if (loss_j >= 0) snprintf(js, sizeof js, " judge %.3f (acc %.1f%%)", loss_j, 100.0 * acc_j);
    fprintf(stderr, "%s[%s] %s %3.0f%% step %lld loss %.3f%s %.1fk tok/s %s ETA %s%s", tty ? "\r" : "", p->label, bar,
            100.0 * frac, (long long)step, loss_g, js, tok_s / 1000.0, elapsed, final ? "0:00" : eta,
            tty && !final ? "\x1b[K" : "\n");
    if (tty && final) fprintf(stderr, "\n");
    fflush(stderr);
}

/* ------------------------------------------------------------------------------------------ */

struct gen_src {
    tt_next_fn next;
    void *user;
    uint64_t *rng;
    struct tt_sample s[2];
    int cur;
};

static const struct tt_sample *gen_get(void *ctx) {
    struct gen_src *src = ctx;
    /* Two buffers: the sample returned last may still be pending in the packer. */
    src->cur ^= 1;
    struct tt_sample *s = &src->s[src->cur];
    s->n = 0;
    src->next(src->user, src->rng, s);
    return s->n > 1 ? s : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Data parallelism over a pipe pair (see tt_params.dp_role)                                  */

static bool dp_write(int fd, const void *buf, size_t n) {
    const char *c = buf;
    while (n > 0) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        c += k;
        n -= (size_t)k;
    }
    return true;
}

static bool dp_read(int fd, void *buf, size_t n) {
    char *c = buf;
    while (n > 0) {
        ssize_t k = read(fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        c += k;
        n -= (size_t)k;
    }
    return true;
}

/* Every parameter tensor's data, in order (weights or gradients). */
static bool dp_send_tensors(int fd, struct ggml_tensor *const *t, int n) {
    for (int i = 0; i < n; i++)
        if (!dp_write(fd, t[i]->data, ggml_nbytes(t[i]))) return false;
    return true;
}

static bool dp_recv_tensors(int fd, struct ggml_tensor *const *t, int n) {
    for (int i = 0; i < n; i++)
        if (!dp_read(fd, t[i]->data, ggml_nbytes(t[i]))) return false;
    return true;
}

/* What a worker sends before its gradients each step. */
struct dp_step_hdr {
    int64_t step;
    double tokens;
    double loss;
    double sl[TT_N_CAT], sa[TT_N_CAT], sc[TT_N_CAT], mk[4];
};

/* The start of a data-parallel run: the two sides agree on the shape and the step count, and the
 * worker takes the leader's weights. */
static int dp_start(struct tm_model *m, const struct tt_params *p, char *err, size_t errlen) {
    int64_t hdr[3] = {0x5352445031LL /* "SRDP1" */, p->steps, tm_model_n_elements(m)};
    if (p->dp_role == TT_DP_LEADER) {
        if (dp_write(p->dp_out, hdr, sizeof hdr) && dp_send_tensors(p->dp_out, m->params, m->n_params)) return 0;
    } else {
        int64_t got[3];
        if (!dp_read(p->dp_in, got, sizeof got)) {
            snprintf(err, errlen, "data-parallel %s: the leader process stopped before the start", p->label);
            return -1;
        }
        if (memcmp(got, hdr, sizeof hdr) != 0) {
            snprintf(err, errlen, "data-parallel %s: the leader trains another shape or step count", p->label);
            return -1;
        }
        if (dp_recv_tensors(p->dp_in, m->params, m->n_params)) return 0;
    }
    snprintf(err, errlen, "data-parallel %s: the %s process stopped or failed at the start", p->label,
             p->dp_role == TT_DP_LEADER ? "worker" : "leader");
    return -1;
}

int tt_train(struct tm_model *m, const struct tt_params *p, tt_next_fn next, void *user, struct tt_report *rep,
             char *err, size_t errlen) {
    memset(rep, 0, sizeof *rep);
    if (p->T < 8 || p->T > TT_MAX_T || p->B < 1 || p->B > 4096) {
        snprintf(err, errlen, "T must be in [8, %d] and B in [1, 4096]", TT_MAX_T);
        return -1;
    }
    if (p->steps <= 0) {
        snprintf(err, errlen, "give a step count");
        return -1;
    }
    struct bgraph g;
    if (bgraph_init(&g, m, p->T, p->B, p->threads, p->mark_layer) != 0) {
        bgraph_free(&g);
        snprintf(err, errlen, "could not build or allocate the training graph (out of memory?)");
        return -1;
    }
    const bool leader = p->dp_role == TT_DP_LEADER, worker = p->dp_role == TT_DP_WORKER;
    float *wgrad = NULL; /* the leader's copy of the worker's gradients, one tensor at a time */
    if (leader) {
        size_t mx = 0;
        for (int i = 0; i < m->n_params; i++)
            mx = ggml_nbytes(m->params[i]) > mx ? ggml_nbytes(m->params[i]) : mx;
        wgrad = malloc(mx);
        if (!wgrad) {
            snprintf(err, errlen, "out of memory");
            bgraph_free(&g);
            return -1;
        }
    }
    if ((leader || worker) && dp_start(m, p, err, errlen) != 0) {
        free(wgrad);
        bgraph_free(&g);
        return -1;
    }
    struct adamw opt = {0};
    for (int i = 0; i < m->n_params && !worker; i++) {
        size_t n = (size_t)ggml_nelements(m->params[i]);
        opt.m[i] = calloc(n, sizeof(float));
        opt.v[i] = calloc(n, sizeof(float));
        if (!opt.m[i] || !opt.v[i]) {
            snprintf(err, errlen, "out of memory");
            for (int j = 0; j <= i; j++) { free(opt.m[j]); free(opt.v[j]); }
            free(wgrad);
            bgraph_free(&g);
            return -1;
        }
    }
    uint64_t rng = p->seed;
    struct gen_src src = {.next = next, .user = user, .rng = &rng};
    const struct tt_sample *pending = NULL;
    bool tty = isatty(STDERR_FILENO);
    double t0 = tt_now(), last_print = 0.0, c0 = tt_cpu_now();
    double ema_g = -1, ema_j = -1, ema_aj = 0;
    double win_loss[TT_N_CAT] = {0}, win_acc[TT_N_CAT] = {0}, win_cnt[TT_N_CAT] = {0}, win_mark[4] = {0};
    int last_decile = -1;
    int rc = 0;
    int64_t step = 0;
    double prof[3] = {0};
    for (;; step++) {
        double el = tt_now() - t0;
        double frac = (double)step / (double)p->steps;
        if (frac >= 1.0) break;
        if (p->deadline > 0 && t0 + el > p->deadline && !worker) {
            snprintf(err, errlen,
                     "time limit reached at step %lld of %lld (%s): stopped without a result; budgets are "
                     "optimizer steps, so a run cut short would be a different model (raise --time-limit, 0 = none)",
                     (long long)step, (long long)p->steps, p->label);
            rc = -1;
            break;
        }
        float lr = p->lr_min + 0.5f * (p->lr - p->lr_min) * (1.0f + cosf(3.14159265f * (float)frac));
        if (step < p->warmup) lr *= (float)(step + 1) / (float)p->warmup;

        double ta = tt_now();
        int64_t used = bgraph_pack(&g, gen_get, &src, &pending, p->mid_weight);
        double tb = tt_now();
        if (used == 0) {
            snprintf(err, errlen, "the data source produced no samples");
            rc = -1;
            break;
        }
        double sl[TT_N_CAT] = {0}, sa[TT_N_CAT] = {0}, sc[TT_N_CAT] = {0};
        double mk[4] = {0};
        double loss = bgraph_compute(&g, sl, sa, sc, mk);
        double tc = tt_now();
        prof[0] += tb - ta;
        prof[1] += tc - tb;
        if (!isfinite(loss)) {
            snprintf(err, errlen, "loss is not finite at step %lld (lower the learning rate)", (long long)step);
            rc = -1;
            break;
        }
        rep->tokens += (double)p->T * p->B;
        if (worker) {
            struct dp_step_hdr h = {.step = step, .tokens = (double)p->T * p->B, .loss = loss};
            memcpy(h.sl, sl, sizeof sl);
            memcpy(h.sa, sa, sizeof sa);
            memcpy(h.sc, sc, sizeof sc);
            memcpy(h.mk, mk, sizeof mk);
            if (!dp_write(p->dp_out, &h, sizeof h) || !dp_send_tensors(p->dp_out, g.grads, m->n_params) ||
                !dp_recv_tensors(p->dp_in, m->params, m->n_params)) {
                snprintf(err, errlen, "data-parallel %s: the leader process stopped at step %lld", p->label,
                         (long long)step);
                rc = -1;
                break;
            }
        } else {
            if (leader) {
                struct dp_step_hdr h;
                bool ok = dp_read(p->dp_in, &h, sizeof h) && h.step == step && isfinite(h.loss);
                /* (leader + worker) / 2 element by element, in this order: the bits cannot depend on
                 * which process got here first */
                for (int i = 0; ok && i < m->n_params; i++) {
                    float *gr = g.grads[i]->data;
                    int64_t n = ggml_nelements(m->params[i]);
                    ok = dp_read(p->dp_in, wgrad, (size_t)n * sizeof *wgrad);
                    for (int64_t j = 0; ok && j < n; j++) gr[j] = 0.5f * (gr[j] + wgrad[j]);
                }
                if (!ok) {
                    snprintf(err, errlen, "data-parallel %s: the worker process stopped or failed at step %lld",
                             p->label, (long long)step);
                    rc = -1;
                    break;
                }
                for (int c = 0; c < TT_N_CAT; c++) {
                    sl[c] += h.sl[c];
                    sa[c] += h.sa[c];
                    sc[c] += h.sc[c];
                }
                for (int k = 0; k < 4; k++) mk[k] += h.mk[k];
                rep->tokens += h.tokens;
            }
            float gn = grad_norm(m, &g);
            float gscale = p->clip > 0 && gn > p->clip ? p->clip / gn : 1.0f;
            adamw_step(&opt, m, &g, p, lr, gscale);
            if (leader && !dp_send_tensors(p->dp_out, m->params, m->n_params)) {
                snprintf(err, errlen, "data-parallel %s: the worker process stopped or failed at step %lld", p->label,
                         (long long)step);
                rc = -1;
                break;
            }
        }
        prof[2] += tt_now() - tc;

        if (sc[TT_CAT_GEN] > 0) {
            double l = sl[TT_CAT_GEN] / sc[TT_CAT_GEN];
            ema_g = ema_g < 0 ? l : 0.95 * ema_g + 0.05 * l;
        }
        if (sc[TT_CAT_JUDGE] > 0) {
            double l = sl[TT_CAT_JUDGE] / sc[TT_CAT_JUDGE], a = sa[TT_CAT_JUDGE] / sc[TT_CAT_JUDGE];
            ema_j = ema_j < 0 ? l : 0.95 * ema_j + 0.05 * l;
            ema_aj = 0.95 * ema_aj + 0.05 * a;
        }
        if (frac >= 0.95) {
            for (int c = 0; c < TT_N_CAT; c++) {
                win_loss[c] += sl[c];
                win_acc[c] += sa[c];
                win_cnt[c] += sc[c];
            }
            for (int k = 0; k < 4; k++) win_mark[k] += mk[k];
        }
        el = tt_now() - t0;
        if (p->progress) {
            int decile = (int)(frac * 10);
            if (tty ? el - last_print >= 0.5 : decile != last_decile) {
                progress(p, frac, step + 1, el, ema_g, ema_j, ema_aj, rep->tokens / (el > 0 ? el : 1), false, tty);
                last_print = el;
                last_decile = decile;
            }
        }
    }
    rep->steps = step;
    rep->seconds = tt_now() - t0;
    rep->cpu_seconds = tt_cpu_now() - c0;
    if (getenv("SR_TRAIN_PROFILE"))
        fprintf(stderr, "[%s] time: pack %.1f s, graph %.1f s, optimizer %.1f s\n", p->label, prof[0], prof[1], prof[2]);
    rep->loss_gen = win_cnt[1] > 0 ? win_loss[1] / win_cnt[1] : ema_g;
    rep->loss_judge = win_cnt[2] > 0 ? win_loss[2] / win_cnt[2] : ema_j;
    rep->acc_gen = win_cnt[1] > 0 ? win_acc[1] / win_cnt[1] : 0;
    rep->acc_judge = win_cnt[2] > 0 ? win_acc[2] / win_cnt[2] : ema_aj;
    rep->acc_mark = win_mark[1] > 0 ? win_mark[0] / win_mark[1] : 0.0;
    rep->acc_mark_ok = win_mark[3] > 0 ? win_mark[2] / win_mark[3] : 0.0;
    if (p->progress && rc == 0)
        progress(p, 1.0, step, rep->seconds, rep->loss_gen, rep->loss_judge, rep->acc_judge,
                 rep->tokens / (rep->seconds > 0 ? rep->seconds : 1), true, tty);
    for (int i = 0; i < m->n_params; i++) {
        free(opt.m[i]);
        free(opt.v[i]);
    }
    free(wgrad);
    bgraph_free(&g);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */

struct list_src {
    const struct tt_sample *v;
    int n, i;
};

static const struct tt_sample *list_get(void *ctx) {
    struct list_src *s = ctx;
    return s->i < s->n ? &s->v[s->i++] : NULL;
}

float tt_loss_and_grads(struct tm_model *m, const struct tt_sample *samples, int n_samples, int T, int B,
                        float **grads) {
    struct bgraph g;
    if (bgraph_init(&g, m, T, B, 1, 1) != 0) {
        bgraph_free(&g);
        return NAN;
    }
    struct list_src src = {samples, n_samples, 0};
    const struct tt_sample *pending = NULL;
    bgraph_pack(&g, list_get, &src, &pending, 0.5f);
    double sl[TT_N_CAT] = {0}, sa[TT_N_CAT] = {0}, sc[TT_N_CAT] = {0}, mk[4] = {0};
    double loss = bgraph_compute(&g, sl, sa, sc, mk);
    if (grads)
        for (int i = 0; i < m->n_params; i++)
            memcpy(grads[i], g.grads[i]->data, (size_t)ggml_nelements(m->params[i]) * sizeof(float));
    bgraph_free(&g);
    return (float)loss;
}
