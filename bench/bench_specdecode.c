/*
 * bench_specdecode.c: base-model tokens per second with and without token-level drafting, on the
 * in-process engine, for one draft/target pair; the same settings are then run through
 * llama.cpp's own `llama-speculative-simple` by bench/run.sh for comparison.
 * Plain generation (no step delimiter), greedy, fixed prompt, medians over --reps.
 * Usage: bench_specdecode --draft D.gguf --target T.gguf [--n 128] [--draft-max 8] [--p-min 0.5]
 *                         [--threads 1] [--reps 3] [--prompt TEXT]
 * Prints one JSON object.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "jsonutil.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    const char *draft = NULL, *target = NULL;
    const char *prompt = "Compute 48 * 37 step by step.";
    int n = 128, draft_max = 8, threads = 1, reps = 3;
    double p_min = 0.5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_specdecode --draft D.gguf --target T.gguf [--n 128] [--draft-max 8] [--p-min 0.5] "
                   "[--threads 1] [--reps 3] [--prompt TEXT]\n");
            return 0;
        }
        if (i + 1 >= argc) { fprintf(stderr, "bench_specdecode: %s needs a value\n", argv[i]); return 2; }
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--draft")) draft = v;
        else if (!strcmp(a, "--target")) target = v;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--n")) n = atoi(v);
        else if (!strcmp(a, "--draft-max")) draft_max = atoi(v);
        else if (!strcmp(a, "--p-min")) p_min = atof(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else { fprintf(stderr, "bench_specdecode: unknown option %s\n", a); return 2; }
    }
    if (!draft || !target || n < 1 || draft_max < 1 || draft_max > 64 || reps < 1 || reps > 15 || threads < 1) {
        fprintf(stderr, "bench_specdecode: bad arguments (see --help)\n");
        return 2;
    }
    struct sr_engine_params ep = sr_engine_default_params();
    ep.small.path = draft;
    ep.base.path = target;
    ep.small.n_ctx = ep.base.n_ctx = 2048;
    ep.small.n_threads = ep.base.n_threads = threads;
    struct sr_engine *e = NULL;
    struct sr_session *s = NULL;
    struct sr_error err;
    if (sr_engine_init(&ep, &e, &err) != SR_OK || sr_session_init(e, &s, &err) != SR_OK) {
        fprintf(stderr, "bench_specdecode: %s\n", err.msg);
        sr_engine_free(e);
        return 1;
    }
    struct sr_lm *T = sr_session_lm(s, true), *D = sr_session_lm(s, false);
    char why[256];
    if (!T->ops->draft_compatible(T, D, why, sizeof why)) {
        fprintf(stderr, "bench_specdecode: incompatible pair: %s\n", why);
        return 1;
    }
    struct sr_sd_params sd = {draft_max, 0, (float)p_min};
    double plain[16], spec[16];
    struct sr_sd_stats last = {0};
    int n_plain = 0, n_spec = 0;
    bool same = true;
    for (int r = 0; r < reps; r++) {
        int32_t np = 0;
        struct sr_gen_out a = {0}, b = {0};
        T->ops->reset(T, &(struct sr_seg){prompt, strlen(prompt), true}, 1, &np);
        T->ops->set_sampling(T, 0.0f, 1.0f, 0);
        int64_t t0 = sr_time_us();
        if (T->ops->generate(T, NULL, n, &a) != SR_OK) { fprintf(stderr, "generate: %s\n", T->errmsg); return 1; }
        plain[r] = (double)(sr_time_us() - t0) / 1000.0;
        n_plain = a.n_tokens;

        T->ops->reset(T, &(struct sr_seg){prompt, strlen(prompt), true}, 1, &np);
        D->ops->reset(D, &(struct sr_seg){prompt, strlen(prompt), true}, 1, &np);
        T->ops->set_sampling(T, 0.0f, 1.0f, 0);
        struct sr_sd_stats st = {0};
        t0 = sr_time_us();
        if (T->ops->generate_spec(T, D, NULL, n, &sd, &b, &st) != SR_OK) {
            fprintf(stderr, "generate_spec: %s\n", T->errmsg);
            return 1;
        }
        spec[r] = (double)(sr_time_us() - t0) / 1000.0;
        n_spec = b.n_tokens;
        same = same && a.text.len == b.text.len && memcmp(a.text.data, b.text.data, a.text.len) == 0;
        last = st;
        fprintf(stderr, "  rep %d: plain %d tok in %.0f ms, drafting %d tok in %.0f ms (%lld/%lld accepted)\n", r,
                a.n_tokens, plain[r], b.n_tokens, spec[r], (long long)st.accepted, (long long)st.drafted);
        sr_buf_free(&a.text);
        sr_buf_free(&b.text);
    }
    double mp = median(plain, reps), ms = median(spec, reps);
    json_t *o = json_pack("{s:o,s:o,s:i,s:i,s:i,s:f,s:f,s:f,s:f,s:I,s:I,s:f,s:I,s:f,s:f,s:f,s:b}", "bench",
                          json_string("specdecode"), "draft", sr_jstr(draft), "target", sr_jstr(target), "threads", threads,
                          "n_predict", n, "draft_max", draft_max, "p_min", (double)p_min, "plain_tok_per_s",
                          n_plain / (mp / 1000.0), "spec_tok_per_s", n_spec / (ms / 1000.0), "speedup",
                          (n_spec / ms) / (n_plain / mp), "drafted", (json_int_t)last.drafted, "accepted",
                          (json_int_t)last.accepted, "acceptance",
                          last.drafted ? (double)last.accepted / (double)last.drafted : 0.0, "batches",
                          (json_int_t)last.batches, "mean_accepted_per_batch",
                          last.batches ? (double)last.accepted / (double)last.batches : 0.0, "t_draft_ms",
                          (double)last.t_draft_us / 1000.0, "t_verify_ms", (double)last.t_verify_us / 1000.0, "same_text",
                          (int)same);
    char *js = sr_jdump(o);
    json_decref(o);
    if (js) printf("%s\n", js);
    else fprintf(stderr, "bench_specdecode: out of memory\n");
    free(js);
    sr_session_free(s);
    sr_engine_free(e);
    return 0;
}
