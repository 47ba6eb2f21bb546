/*
 * test_remote_judge.c BASE.gguf URL: the remote judge against the in-process one, on the same
 * model (URL is a llama-server serving BASE.gguf; tests/test_remote.py starts it).
 *
 * The remote judge sees the top 20 log-probabilities, not all logits. What that changes, checked
 * here on a series of contexts and candidates:
 *   - the greedy value is the same (the argmax is the top entry);
 *   - every top entry's log-probability equals the in-process log-softmax of the full logits at
 *     that token (to float rounding), and the entries are exactly the in-process top 20;
 *   - a digit in the top 20 has remote digit_logit = in-process logit - logsumexp(all logits),
 *     so the digit-restricted softmax (the average score) is the same whenever all ten digits
 *     are in the top 20; a digit outside gets -inf remotely, and its in-process probability is at
 *     most the 20th entry's, which bounds the average score's error;
 *   - both backends hold the same token ids after each operation (token mode).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

#define SR_MAX_TOP_TEST 32

static double avg_score(const struct sr_judge_out *j) {
    float mx = -INFINITY;
    for (int d = 0; d < 10; d++)
        if (j->digit_ok[d] && j->digit_logit[d] > mx) mx = j->digit_logit[d];
    if (!isfinite(mx)) return 0.0;
    double z = 0, e = 0;
    for (int d = 0; d < 10; d++) {
        if (!j->digit_ok[d]) continue;
        double w = exp((double)(j->digit_logit[d] - mx));
        z += w;
        e += w * d;
    }
    return e / z;
}

/* The reference's average (--score average): the digits among the top 10, renormalised, 0 if none. */
static double avg10_score(const struct sr_judge_out *j) {
    float mx = -INFINITY;
    for (int d = 0; d < 10; d++)
        if (j->digit_ok[d] && j->digit_top10[d] && j->digit_logit[d] > mx) mx = j->digit_logit[d];
    if (!isfinite(mx)) return 0.0;
    double z = 0, e = 0;
    for (int d = 0; d < 10; d++) {
        if (!j->digit_ok[d] || !j->digit_top10[d]) continue;
        double w = exp((double)(j->digit_logit[d] - mx));
        z += w;
        e += w * d;
    }
    return e / z;
}

static bool same_tokens(struct sr_lm *local, struct sr_lm *remote) {
    int64_t na, nb;
    const int32_t *a = sr_llama_lm_tokens(local, &na);
    const int32_t *b = sr_remote_lm_tokens(remote, &nb);
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_remote_judge BASE.gguf URL\n");
        return 2;
    }
    struct sr_model_params lp = {0}, rp = {0};
    lp.path = argv[1];
    lp.n_ctx = 2048;
    lp.n_threads = 1;
    rp.path = argv[1];
    rp.url = argv[2];
    rp.timeout_s = 60;
    struct sr_error err = {0};
    struct sr_llama_model *lm_model = NULL;
    struct sr_remote_model *rm_model = NULL;
    struct sr_lm *L = NULL, *R = NULL;
    if (sr_llama_model_load(&lp, "base", &lm_model, &err) != SR_OK || sr_llama_lm_init(lm_model, &L, &err) != SR_OK ||
        sr_remote_model_load(&rp, "base", &rm_model, &err) != SR_OK || sr_remote_lm_init(rm_model, &R, &err) != SR_OK) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    struct sr_buf prefix = {0}, suffix = {0};
    CHECK(sr_prompt_prefix(L, "What is 2+3? Reason step by step.", "<think>\n", &prefix) == SR_OK);
    CHECK(sr_prompt_judge_suffix(L, "What is 2+3?", SR_JUDGE_PROMPT, SR_JUDGE_PREFILL, &suffix) == SR_OK);
    struct sr_buf rprefix = {0};
    CHECK(sr_prompt_prefix(R, "What is 2+3? Reason step by step.", "<think>\n", &rprefix) == SR_OK);
    CHECK_STR(rprefix.data, prefix.data); /* local rendering from the GGUF */
    int32_t nl = 0, nr = 0;
    /* The prompt as the loop sends it: template segments and the user's text as plain text. */
    struct sr_buf segbuf = {0};
    struct sr_seg segs[3];
    CHECK(sr_prompt_prefix_segs(L, "What is 2+3? Reason step by step.", "<think>\n", &segbuf, segs) == SR_OK);
    CHECK(L->ops->reset(L, segs, 3, &nl) == SR_OK);
    CHECK(R->ops->reset(R, segs, 3, &nr) == SR_OK);
    CHECK(same_tokens(L, R));
    CHECK(nl == nr && nl > 0);
    static const char *cands[] = {"First, 2+3 means adding.\n\n", "So 5.\n\n", "9 9 9 7 7\n\n",
                                  "\xce\xb1 + \xce\xb2 = 5 <think>\n\n", "0123456789\n\n", "The answer is \\boxed{5}.\n\n"};
    int n_all_digits = 0;
    double max_bound_gap = 0;
    for (size_t c = 0; c < sizeof cands / sizeof cands[0]; c++) {
        const char *cand = cands[c];
        int64_t ml = L->ops->mark(L), mr = R->ops->mark(R);
        struct sr_judge_out jl, jr;
        CHECK(L->ops->judge(L, cand, strlen(cand), suffix.data, suffix.len, &jl) == SR_OK);
        CHECK(R->ops->judge(R, cand, strlen(cand), suffix.data, suffix.len, &jr) == SR_OK);
        CHECK(same_tokens(L, R));
        CHECK(jl.greedy_value == jr.greedy_value);
        CHECK(jl.n_cand_tokens == jr.n_cand_tokens && jl.n_suffix_tokens == jr.n_suffix_tokens);
        /* The full in-process distribution at the judge position. */
        int64_t nt = 0;
        const int32_t *toks = sr_llama_lm_tokens(L, &nt);
        int64_t nj = 0, start = 0;
        const int32_t *jt = sr_llama_lm_last_judge(L, &nj, &start);
        int32_t *all = malloc((size_t)(start + nj) * sizeof *all);
        memcpy(all, toks, (size_t)start * sizeof *all);
        memcpy(all + start, jt, (size_t)nj * sizeof *all);
        int32_t n_vocab = 0;
        float *lg = sr_llama_fresh_logits(L, all, start + nj, &n_vocab);
        free(all);
        CHECK(lg != NULL);
        if (!lg) break;
        double mx = -INFINITY, z = 0;
        for (int32_t i = 0; i < n_vocab; i++) mx = lg[i] > mx ? lg[i] : mx;
        for (int32_t i = 0; i < n_vocab; i++) z += exp(lg[i] - mx);
        double lse = mx + log(z);
        int32_t ids[SR_MAX_TOP_TEST];
        double lps[SR_MAX_TOP_TEST];
        int n = sr_remote_lm_last_top(R, ids, lps, SR_MAX_TOP_TEST);
        CHECK(n == 20);
        double min_lp = INFINITY;
        int n_above = 0; /* in-process tokens strictly above the remote 20th, beyond the 20 */
        for (int k = 0; k < n; k++) {
            CHECK(ids[k] >= 0 && ids[k] < n_vocab);
            if (ids[k] < 0 || ids[k] >= n_vocab) continue;
            double want = lg[ids[k]] - lse;
            if (fabs(want - lps[k]) > 2e-3) {
                t_fail++;
                fprintf(stderr, "cand %zu: token %d: remote logprob %.6f, in-process %.6f\n", c, ids[k], lps[k], want);
            } else {
                t_pass++;
            }
            if (lps[k] < min_lp) min_lp = lps[k];
        }
        for (int32_t i = 0; i < n_vocab; i++) {
            bool listed = false;
            for (int k = 0; k < n; k++) listed = listed || ids[k] == i;
            if (!listed && lg[i] - lse > min_lp + 2e-3) n_above++;
        }
        CHECK(n_above == 0); /* the remote 20 are the in-process top 20 */
        bool all_digits = true;
        for (int d = 0; d < 10; d++) {
            CHECK(jl.digit_ok[d] == jr.digit_ok[d]);
            CHECK(jl.digit_top10[d] == jr.digit_top10[d]);
            if (!jl.digit_ok[d]) continue;
            double want = jl.digit_logit[d] - lse;
            if (isfinite(jr.digit_logit[d])) {
                CHECK(fabs(jr.digit_logit[d] - want) < 2e-3);
            } else {
                all_digits = false;
                CHECK(want <= min_lp + 2e-3); /* outside the top 20: at most the 20th */
            }
        }
        /* The reference's average needs only the top 10, which lie within the remote 20: equal up to
         * the servers' logprob rounding (2e-3 per entry, above). */
        CHECK(fabs(avg10_score(&jl) - avg10_score(&jr)) < 1e-2);
        double sa = avg_score(&jl), sb = avg_score(&jr);
        if (all_digits) {
            n_all_digits++;
            CHECK(fabs(sa - sb) < 1e-3);
        } else if (fabs(sa - sb) > max_bound_gap) {
            max_bound_gap = fabs(sa - sb);
        }
        free(lg);
        /* Alternate: keep the candidate (accept) or roll back (reject). */
        if (c % 2) {
            CHECK(L->ops->rollback(L, ml) == SR_OK);
            CHECK(R->ops->rollback(R, mr) == SR_OK);
            CHECK(same_tokens(L, R));
        }
        /* The base writes a step; both hold the same tokens afterwards. */
        struct sr_gen_out gl = {0}, gr = {0};
        CHECK(L->ops->generate(L, "\n\n", 24, &gl) == SR_OK);
        CHECK(R->ops->generate(R, "\n\n", 24, &gr) == SR_OK);
        CHECK_STR(gr.text.data ? gr.text.data : "", gl.text.data ? gl.text.data : "");
        CHECK(gl.n_tokens == gr.n_tokens);
        CHECK(same_tokens(L, R));
        sr_buf_free(&gl.text);
        sr_buf_free(&gr.text);
    }
    printf("judge positions with all ten digits in the top 20: %d of %zu; largest average-score gap otherwise: %.4f\n",
           n_all_digits, sizeof cands / sizeof cands[0], max_bound_gap);
    CHECK(R->n_http > 0 && R->n_bytes > 0);
    sr_buf_free(&prefix);
    sr_buf_free(&segbuf);
    sr_buf_free(&suffix);
    sr_buf_free(&rprefix);
    L->ops->free(L);
    R->ops->free(R);
    sr_llama_model_free(lm_model);
    sr_remote_model_free(rm_model);
    return test_summary("test_remote_judge");
}
