/*
 * model.h: a llama-architecture transformer held in ggml tensors, its training/evaluation graph
 * and the GGUF writer. The graph is the one llama.cpp runs for arch `llama` (RMSNorm, RoPE of
 * type NORM on Q and K, causal softmax attention scaled by 1/sqrt(head_dim), SwiGLU FFN, final
 * RMSNorm, untied output head), but computed without a KV cache over packed batches, so every
 * weight -- K/V projections and token embeddings included -- gets its gradient.
 *
 * Tensors live in one CPU backend buffer; tm_model_params() lists them in GGUF order.
 */
#ifndef SR_TRAIN_MODEL_H
#define SR_TRAIN_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "ggml-backend.h"
#include "ggml.h"

#define TM_MAX_LAYERS 16
#define TM_MAX_PARAMS (3 + 9 * TM_MAX_LAYERS)

struct tm_hparams {
    int32_t n_vocab;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;  /* head_dim = n_embd / n_head; K/V have as many heads (no GQA) */
    int32_t n_ff;
    int32_t n_ctx;   /* context_length written to the GGUF */
    float rms_eps;   /* 1e-5 */
    float rope_base; /* 10000 */
};

struct tm_layer {
    struct ggml_tensor *attn_norm;                    /* [E] */
    struct ggml_tensor *wq, *wk, *wv, *wo;            /* [E, E] (ne0 = input) */
    struct ggml_tensor *ffn_norm;                     /* [E] */
    struct ggml_tensor *ffn_gate, *ffn_up, *ffn_down; /* [E, F], [E, F], [F, E] */
};

struct tm_model {
    struct tm_hparams hp;
    struct ggml_context *ctx; /* tensor headers */
    ggml_backend_buffer_t buf;
    struct ggml_tensor *tok_embd;    /* [E, V] */
    struct ggml_tensor *output_norm; /* [E] */
    struct ggml_tensor *output;      /* [E, V] */
    struct tm_layer layers[TM_MAX_LAYERS];
    struct ggml_tensor *params[TM_MAX_PARAMS];
    int n_params;
};

/* NULL if valid, else a static message naming the bad field. */
const char *tm_hparams_check(const struct tm_hparams *hp);
/* Allocates the tensors and fills them with a seeded random initialisation. Returns 0 or -1. */
int tm_model_init(struct tm_model *m, const struct tm_hparams *hp, uint64_t seed);
void tm_model_free(struct tm_model *m);
int64_t tm_model_n_elements(const struct tm_model *m);

/* Logits [V, T*B] for B packed rows of T tokens. tok, pos: I32 [T*B]; mask: F32 [T, T, 1, B]
 * (0 where query i may attend key j, -INFINITY elsewhere). */
struct ggml_tensor *tm_build_logits(struct ggml_context *ctx, const struct tm_model *m, struct ggml_tensor *tok,
                                    struct ggml_tensor *pos, struct ggml_tensor *mask, int T, int B);

/* The training graph: forward as tm_build_logits, then the backward pass written out by hand
 * with mul_mat (ggml's automatic backward uses OUT_PROD, whose CPU kernel is a scalar axpy loop;
 * measured 2/3 of a training step). dlogits = roww * (softmax(logits) - labels), i.e. the
 * gradient of sum_n roww[n] * CE(logits[:, n], labels[:, n]); labels F32 [V, T*B] (one-hot, or
 * any row where roww is 0), roww F32 [1, T*B]. Fills grads[i] (same shape as m->params[i]),
 * marked as graph outputs.
 * Deep supervision (training only, nothing is exported): if roww_mid is not NULL, the residual
 * stream entering layer mid_layer (1 .. n_layer-1) also goes through the final norm and output head, and rows with
 * roww_mid > 0 learn their row of labels_mid there (*logits_mid). A feature learned this way is visible to the
 * attention of the layers from mid_layer on at every later position -- the judge's error marks use
 * it. */
struct ggml_tensor *tm_build_train(struct ggml_context *ctx, const struct tm_model *m, struct ggml_tensor *tok,
                                   struct ggml_tensor *pos, struct ggml_tensor *mask, struct ggml_tensor *labels,
                                   struct ggml_tensor *roww, int T, int B, struct ggml_tensor **grads,
                                   struct ggml_tensor *labels_mid, struct ggml_tensor *roww_mid, int mid_layer,
                                   struct ggml_tensor **logits_mid);

/* Logits of one sequence, all positions, computed by the training graph: out[i * V + v]. */
int tm_forward_seq(const struct tm_model *m, const int32_t *tok, int n, int n_threads, float *out);

/* Loads a model written by tm_model_save (hyperparameters and weights). Returns 0 or -1. */
int tm_model_load(struct tm_model *m, const char *path, char *err, size_t errlen);

/* dst = src with n_ff feed-forward units per layer (n_ff >= src's): the first units are src's,
 * the added ones have random gate/up rows and zero down columns, so they add nothing to the
 * residual stream: the same function (up to float summation order) at the weight traffic of a
 * larger model. Returns 0 or -1. */
int tm_model_pad_ff(const struct tm_model *src, int32_t n_ff, uint64_t seed, struct tm_model *dst);

/* Writes a llama-arch GGUF with this vocabulary (task.h) and chat template; atomically (tmp +
 * rename). Returns 0 or -1 (message in err). */
int tm_model_save(const struct tm_model *m, const char *path, const char *name, char *err, size_t errlen);

#endif
