/*
 * bench_cost.c: what a judgement costs on this machine, in decode tokens, for any GGUF.
 * For each model: the best of R repetitions of (a) N single-token decodes after a 60-token
 * context, per token, and (b) one prefill of N tokens in a single batch (a judge call: candidate
 * step + judge suffix), then judge = prefill / decode-per-token. Real deployments on GPUs judge
 * a step for 1-2 decode tokens; a model that fits in the CPU caches pays about half a decode
 * token per prefilled one. Writes one JSON object per model (a JSON array) to stdout.
 * Usage: bench_cost [--threads N] [--threads-batch N] [--tokens N] [--reps R] MODEL.gguf...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "jsonutil.h"
#include "util.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)level, (void)text, (void)user;
}

static int usage(FILE *f, int rc) {
    fprintf(f, "usage: bench_cost [--threads N] [--threads-batch N] [--tokens N] [--reps R] MODEL.gguf...\n"
               "Decode cost per token and the cost of one N-token prefill (a judge call, default 32\n"
               "tokens), best of R (default 7) repetitions, 1 thread by default; JSON on stdout.\n");
    return rc;
}

static void fill(struct llama_batch *b, const llama_token *tok, int n, int pos0) {
    b->n_tokens = n;
    for (int i = 0; i < n; i++) {
        b->token[i] = tok[i];
        b->pos[i] = pos0 + i;
        b->n_seq_id[i] = 1;
        b->seq_id[i][0] = 0;
        b->logits[i] = i == n - 1;
    }
}

static int measure(const char *path, int nt, int ntb, int n, int reps, double *dec, double *pre, int64_t *params) {
    struct llama_model *m = llama_model_load_from_file(path, llama_model_default_params());
    if (!m) return -1;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = cp.n_ubatch = 512;
    cp.n_threads = nt;
    cp.n_threads_batch = ntb;
    struct llama_context *c = llama_init_from_model(m, cp);
    if (!c) { llama_model_free(m); return -1; }
    *params = (int64_t)llama_model_n_params(m);
    int nv = llama_vocab_n_tokens(llama_model_get_vocab(m));
    llama_token tok[512];
    for (int i = 0; i < 512; i++) tok[i] = (llama_token)((i * 7 + 3) % nv);
    struct llama_batch b = llama_batch_init(512, 0, 1);
    const int ctx0 = 60;
    int rc = 0;
    fill(&b, tok, ctx0, 0);
    if (llama_decode(c, b) != 0) rc = -1;
    *dec = *pre = 1e30;
    for (int r = 0; rc == 0 && r < reps; r++) {
        int64_t t0 = sr_time_us();
        for (int k = 0; k < n && rc == 0; k++) {
            fill(&b, tok + ctx0 + k, 1, ctx0 + k);
            if (llama_decode(c, b) != 0 || !llama_get_logits_ith(c, -1)) rc = -1;
        }
        double d = (double)(sr_time_us() - t0) / 1e3 / n;
        llama_memory_seq_rm(llama_get_memory(c), 0, ctx0, -1);
        t0 = sr_time_us();
        fill(&b, tok + ctx0, n, ctx0);
        if (llama_decode(c, b) != 0 || !llama_get_logits_ith(c, -1)) rc = -1;
        double p = (double)(sr_time_us() - t0) / 1e3;
        llama_memory_seq_rm(llama_get_memory(c), 0, ctx0, -1);
        if (d < *dec) *dec = d;
        if (p < *pre) *pre = p;
    }
    llama_batch_free(b);
    llama_free(c);
    llama_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    int nt = 1, ntb = 0, n = 32, reps = 7, first = argc;
    for (int i = 1; i < argc; i++) {
        int *dst = !strcmp(argv[i], "--threads") ? &nt : !strcmp(argv[i], "--threads-batch") ? &ntb
                 : !strcmp(argv[i], "--tokens") ? &n : !strcmp(argv[i], "--reps") ? &reps : NULL;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(stdout, 0);
        if (dst) {
            char *end;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || *end || v < 1 || v > 400) {
                fprintf(stderr, "bench_cost: %s needs a number in 1..400\n", argv[i]);
                return 2;
            }
            *dst = (int)v;
            i++;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "bench_cost: unknown option '%s'\n", argv[i]);
            return usage(stderr, 2);
        } else {
            first = i;
            break;
        }
    }
    if (first >= argc) return usage(stderr, 2);
    if (!ntb) ntb = nt;
    llama_log_set(quiet, NULL);
    llama_backend_init();
    int rc = 0;
    printf("[");
    for (int i = first; i < argc; i++) {
        double d, p;
        int64_t np = 0;
        if (measure(argv[i], nt, ntb, n, reps, &d, &p, &np) != 0) {
            fprintf(stderr, "bench_cost: cannot load or run %s\n", argv[i]);
            rc = 1;
            continue;
        }
        json_t *o = json_pack("{s:o,s:I,s:i,s:i,s:f,s:i,s:f,s:f}", "model", sr_jstr(argv[i]), "params", (json_int_t)np,
                              "threads", nt, "threads_batch", ntb, "decode_ms_per_token", d, "prefill_tokens", n,
                              "prefill_ms", p, "judge_in_decode_tokens", p / d);
        char *js = json_dumps(o, JSON_REAL_PRECISION(6));
        json_decref(o);
        if (!js) { fprintf(stderr, "bench_cost: out of memory\n"); rc = 1; continue; }
        printf("%s\n %s", i > first ? "," : "", js);
        free(js);
        fflush(stdout);
    }
    printf("\n]\n");
    llama_backend_free();
    return rc;
}
