/*
 * bench_engine.c: what speculation costs and saves on this machine, measured side by side in one
 * process and written as JSON.
 *   - decode time per token of each model (greedy, one token per forward pass);
 *   - the judge: time of one judgement (candidate + judge suffix prefilled in one pass, digits
 *     read, suffix rolled back) and its ratio to one base decode token (the paper: 1-2 on GPU);
 *   - engine overhead: wall time outside model calls as a share of a SpecReason run;
 *   - the bounds of speculation: spec at threshold 0 vs mode small (best case: every step
 *     accepted, the judge is pure overhead) and at threshold 10 vs mode base (worst case: every
 *     draft wasted), interleaved and repeated, medians reported.
 * Usage: bench_engine --small S.gguf --base B.gguf [--threads N] [--reps N] [--out FILE.json]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "jsonutil.h"

static const char *PROBLEM = "A train travels 120 km in 1.5 hours, then 80 km in 1 hour. What is its average speed?";

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ms per token of greedy generation of n tokens after a fixed prompt. */
static double decode_ms(struct sr_lm *lm, int n, int reps) {
    double v[16];
    for (int r = 0; r < reps && r < 16; r++) {
        const char *prompt = "<|im_start|>user\nCount: 1 2 3<|im_end|>\n<|im_start|>assistant\n<think>\n";
        int32_t np = 0;
        if (lm->ops->reset(lm, &(struct sr_seg){prompt, strlen(prompt), true}, 1, &np) != SR_OK) return -1;
        lm->ops->set_sampling(lm, 0.0f, 1.0f, 0);
        struct sr_gen_out g = {0};
        int64_t t0 = sr_time_us();
        enum sr_status st = lm->ops->generate(lm, NULL, n, &g);
        double ms = (double)(sr_time_us() - t0) / 1000.0;
        int32_t nt = g.n_tokens;
        sr_buf_free(&g.text);
        if (st != SR_OK || nt <= 0) return -1;
        v[r] = ms / nt;
    }
    return median(v, reps < 16 ? reps : 16);
}

struct run_out {
    double ms;
    struct sr_stats s;
};

static int run(struct sr_session *s, enum sr_mode mode, float thr, struct run_out *o) {
    struct sr_run_params p = sr_run_default_params();
    p.policy = SR_POLICY_ALWAYS; /* the reference algorithm (bench_policy.sh compares policies) */
    p.mode = mode;
    p.threshold = thr;
    p.small.temperature = p.base.temperature = 0.0f;
    p.max_step_tokens = 48;
    p.token_budget = 256;
    p.max_answer_tokens = 32;
    p.answer_by = SR_ANSWER_LOOP;
    struct sr_result *r = NULL;
    if (sr_session_run(s, PROBLEM, &p, &r) != SR_OK) {
        fprintf(stderr, "bench_engine: run failed: %s\n", sr_session_errmsg(s));
        return -1;
    }
    o->ms = r->stats.t_total_ms;
    o->s = r->stats;
    sr_result_free(r);
    return 0;
}

int main(int argc, char **argv) {
    const char *small = NULL, *base = NULL, *out = NULL;
    int threads = 1, reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_engine --small S.gguf --base B.gguf [--threads N (default 1)] [--reps N (default 3)] "
                   "[--out FILE.json]\nMeasures decode, judge and engine overhead and the best/worst case of speculation; "
                   "prints JSON.\n");
            return 0;
        }
        if (i + 1 >= argc) { fprintf(stderr, "bench_engine: %s needs a value\n", argv[i]); return 2; }
        if (!strcmp(argv[i], "--small")) small = argv[++i];
        else if (!strcmp(argv[i], "--base")) base = argv[++i];
        else if (!strcmp(argv[i], "--out")) out = argv[++i];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
        else { fprintf(stderr, "bench_engine: unknown option %s\n", argv[i]); return 2; }
    }
    if (!small || !base || threads < 1 || reps < 1 || reps > 15) {
        fprintf(stderr, "bench_engine: --small and --base are required (see --help)\n");
        return 2;
    }
    struct sr_engine_params ep = sr_engine_default_params();
    ep.small.path = small;
    ep.base.path = base;
    ep.small.n_ctx = ep.base.n_ctx = 2048;
    ep.small.n_threads = ep.base.n_threads = threads;
    struct sr_engine *e = NULL;
    struct sr_session *s = NULL;
    struct sr_error err;
    if (sr_engine_init(&ep, &e, &err) != SR_OK || sr_session_init(e, &s, &err) != SR_OK) {
        fprintf(stderr, "bench_engine: %s\n", err.msg);
        sr_engine_free(e);
        return 1;
    }
    struct sr_lm *lb = sr_session_lm(s, true), *ls = sr_session_lm(s, false);

    /* 1. decode cost per token */
    fprintf(stderr, "bench_engine: decode ...\n");
    double base_tok = decode_ms(lb, 64, reps), small_tok = decode_ms(ls, 64, reps);

    /* 2. one judgement in isolation: a 32-token candidate after ~400 tokens of context */
    fprintf(stderr, "bench_engine: judge ...\n");
    struct sr_buf ctx = {0}, suffix = {0};
    char *user = sr_prompt_fill(SR_PROMPT_MATH, PROBLEM);
    sr_prompt_prefix(lb, user, "<think>\n", &ctx);
    for (int i = 0; i < 12; i++) sr_buf_printf(&ctx, "Step %d: the distance so far is %d km at %d km/h.\n\n", i, 40 * i, 80);
    sr_prompt_judge_suffix(lb, user, SR_JUDGE_PROMPT, SR_JUDGE_PREFILL, &suffix);
    const char *cand = "So the average speed is 200 km divided by 2.5 hours, which is 80 km/h.\n\n";
    int32_t n_ctx_tok = 0;
    lb->ops->reset(lb, &(struct sr_seg){ctx.data, ctx.len, true}, 1, &n_ctx_tok);
    int64_t mark = lb->ops->mark(lb);
    double jv[16];
    struct sr_judge_out j = {0};
    for (int r = 0; r < reps; r++) {
        int64_t t0 = sr_time_us();
        lb->ops->judge(lb, cand, strlen(cand), suffix.data, suffix.len, &j);
        jv[r] = (double)(sr_time_us() - t0) / 1000.0;
        lb->ops->rollback(lb, mark);
    }
    double judge_ms = median(jv, reps);
    int judge_tokens = j.n_cand_tokens + j.n_suffix_tokens;

    /* 3./4. whole runs, interleaved */
    fprintf(stderr, "bench_engine: runs ...\n");
    double t_small[16], t_spec0[16], t_base[16], t_spec10[16], t_spec7[16], ovh[16];
    struct run_out o7 = {0}, o;
    for (int r = 0; r < reps; r++) {
        if (run(s, SR_MODE_SMALL, 7, &o)) return 1;
        t_small[r] = o.ms;
        if (run(s, SR_MODE_SPEC, 0, &o)) return 1;
        t_spec0[r] = o.ms;
        if (run(s, SR_MODE_BASE, 7, &o)) return 1;
        t_base[r] = o.ms;
        if (run(s, SR_MODE_SPEC, 10, &o)) return 1;
        t_spec10[r] = o.ms;
        if (run(s, SR_MODE_SPEC, 7, &o7)) return 1;
        t_spec7[r] = o7.ms;
        ovh[r] = (o7.s.t_total_ms - o7.s.t_backend_ms) / o7.s.t_total_ms;
        fprintf(stderr, "  rep %d: small %.0f spec@0 %.0f base %.0f spec@10 %.0f spec@7 %.0f ms\n", r, t_small[r],
                t_spec0[r], t_base[r], t_spec10[r], t_spec7[r]);
    }
    double m_small = median(t_small, reps), m_spec0 = median(t_spec0, reps), m_base = median(t_base, reps);
    double m_spec10 = median(t_spec10, reps), m_spec7 = median(t_spec7, reps), m_ovh = median(ovh, reps);
    double judge_step = o7.s.n_judged ? o7.s.t_judge_ms / o7.s.n_judged : 0;

    struct sr_buf b = {0};
    char desc_s[256], desc_b[256];
    sr_engine_model_desc(e, false, desc_s, sizeof desc_s);
    sr_engine_model_desc(e, true, desc_b, sizeof desc_b);
#define N(x) sr_jnum(x)
    json_t *doc = json_pack(
        "{s:s,s:i,s:i,s:o,s:o,s:{s:o,s:o,s:o},s:{s:i,s:i,s:o,s:o,s:o,s:o,s:o},s:o,s:{s:o,s:o,s:o,s:o,s:o},"
        "s:{s:o,s:o,s:o},s:{s:i,s:i,s:o}}",
        "bench", "engine", "threads", threads, "reps", reps, "small_model", sr_jstr(desc_s), "base_model", sr_jstr(desc_b),
        "decode_ms_per_token", "small", N(small_tok), "base", N(base_tok), "base_over_small", N(base_tok / small_tok),
        "judge", "context_tokens", n_ctx_tok, "prefill_tokens", judge_tokens, "ms", N(judge_ms),
        "base_decode_tokens_equivalent", N(judge_ms / base_tok), "in_run_ms_per_step", N(judge_step),
        "in_run_prefill_tokens_per_step", N(o7.s.n_judged ? (double)o7.s.n_judge_tokens / o7.s.n_judged : 0.0),
        "in_run_base_decode_tokens_equivalent", N(judge_step / base_tok), "engine_overhead_share", N(m_ovh),
        "runs_ms", "small", N(m_small), "spec_t0", N(m_spec0), "base", N(m_base), "spec_t10", N(m_spec10), "spec_t7",
        N(m_spec7), "ratios", "spec_t0_over_small", N(m_spec0 / m_small), "spec_t10_over_base", N(m_spec10 / m_base),
        "base_over_spec_t7", N(m_base / m_spec7), "spec_t7", "steps", (int)o7.s.n_steps, "judged", (int)o7.s.n_judged,
        "acceptance", N(o7.s.acceptance));
#undef N
    char *js = sr_jdump(doc);
    json_decref(doc);
    if (!js) { fprintf(stderr, "bench_engine: out of memory\n"); return 1; }
    sr_buf_puts(&b, js);
    sr_buf_puts(&b, "\n");
    free(js);
    fputs(b.data, stdout);
    if (out) {
        FILE *f = fopen(out, "w");
        if (f) {
            fputs(b.data, f);
            fclose(f);
        } else {
            fprintf(stderr, "bench_engine: cannot write %s\n", out);
        }
    }
    sr_buf_free(&b);
    sr_buf_free(&ctx);
    sr_buf_free(&suffix);
    free(user);
    sr_session_free(s);
    sr_engine_free(e);
    return 0;
}
