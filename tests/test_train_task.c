/*
 * test_train_task.c: the trainer's synthetic task (tools/train/task.c) and sample layout
 * (data.c): reference steps add up, corruptions are never the right step, parsing and \boxed
 * extraction round-trip, the held-out split is respected, and training samples learn exactly
 * the tokens they should (the thinking part; a wrong candidate never; the judge digit).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "task.h"
#include "testutil.h"
#include "train.h"

static int count_learned(const struct tt_sample *s, int cat) {
    int n = 0;
    for (int i = 1; i < s->n; i++) n += s->w[i] > 0 && s->cat[i] == cat;
    return n;
}

int main(void) {
    struct tk_cfg cfg = tk_cfg_default();
    CHECK(tk_cfg_check(&cfg) == NULL);
    struct tk_cfg bad = cfg;
    bad.terms_min = 1;
    CHECK(tk_cfg_check(&bad) != NULL);

    uint64_t rng = 42;
    int n_corrupt = 0;
    for (int it = 0; it < 300; it++) {
        struct tk_problem p, q;
        char text[TK_TEXT_MAX], step[TK_TEXT_MAX], wrong[TK_TEXT_MAX];
        tk_problem_gen(&cfg, &rng, &p);
        CHECK(p.n_terms == 5 && p.width == 2);
        tk_problem_text(&p, text, sizeof text);
        CHECK(tk_problem_parse(text, &q) && q.n_terms == p.n_terms && q.width == p.width &&
              memcmp(q.term, p.term, sizeof p.term) == 0);
        int64_t sum = 0;
        for (int i = 0; i < p.n_terms; i++) sum += p.term[i];
        CHECK(tk_answer(&p) == sum);
        for (int k = 0; k < tk_n_steps(&p); k++) {
            tk_step_text(&p, k, step, sizeof step);
            CHECK(strstr(step, "\n") == NULL);
            CHECK((strstr(step, "boxed") != NULL) == (k == tk_n_steps(&p) - 1));
            tk_step_corrupt(&p, k, &rng, wrong, sizeof wrong);
            CHECK(strcmp(step, wrong) != 0);
            CHECK(strstr(wrong, "\n") == NULL && strlen(wrong) > 5);
            n_corrupt++;
            /* a near miss differs from the right step in its result only, by one */
            tk_step_near_miss(&p, k, &rng, wrong, sizeof wrong);
            CHECK(strcmp(step, wrong) != 0);
            size_t pre = 0;
            while (step[pre] == wrong[pre]) pre++;
            const char *rs = k == tk_n_steps(&p) - 1 ? strchr(step, '{') + 1 : strchr(step, '=') + 1;
            CHECK(step + pre >= rs);
            long a = strtol(rs, NULL, 10), b = strtol(wrong + (rs - step), NULL, 10);
            CHECK(labs(a - b) == 1);
        }
        int64_t v = -1;
        tk_step_text(&p, tk_n_steps(&p) - 1, step, sizeof step);
        CHECK(tk_boxed_value(step, &v) && v == sum);
    }
    CHECK(n_corrupt == 1500);
    char buf[TK_TEXT_MAX];
    struct tk_problem p;
    CHECK(!tk_problem_parse("03+5", &p));
    CHECK(!tk_problem_parse("03+", &p));
    CHECK(!tk_problem_parse("", &p));
    int64_t v;
    CHECK(!tk_boxed_value("no box", &v));
    CHECK(!tk_boxed_value("\\boxed{x}", &v));
    CHECK(tk_boxed_value("\\boxed{1} then \\boxed{27}", &v) && v == 27);

    /* The exact text of one solution and the prompt pieces. */
    struct tk_problem fixed = {.n_terms = 5, .width = 2, .term = {3, 5, 7, 9, 4}};
    tk_problem_text(&fixed, buf, sizeof buf);
    CHECK_STR(buf, "03+05+07+09+04");
    tk_step_text(&fixed, 1, buf, sizeof buf);
    CHECK_STR(buf, "Step 2: 08+07=15");
    tk_step_text(&fixed, 4, buf, sizeof buf);
    CHECK_STR(buf, "Answer: \\boxed{28}");
    tk_render_prefix("03+05", buf, sizeof buf);
    CHECK_STR(buf, "<|im_start|>user\n03+05<|im_end|>\n<|im_start|>assistant\n<think>\n");
    tk_render_judge_suffix("J", "P", buf, sizeof buf);
    CHECK_STR(buf, "<|im_end|>\n<|im_start|>user\nJ<|im_end|>\n<|im_start|>assistant\nP");

    /* Held-out problems never appear in training samples. */
    dt_heldout_register(&cfg, 1, 50);
    struct tk_problem h;
    dt_heldout_problem(&cfg, 1, 7, &h);
    CHECK(dt_is_heldout(&h));

    /* Sample layout. */
    struct dt_mix mix = {.cfg = cfg, .p_judge = 0.0f, .p_judge_good = 0.5f, .judge_weight = 4, .judge_prompt = TK_JUDGE_PROMPT,
                         .judge_prefill = TK_JUDGE_PREFILL};
    static struct tt_sample s;
    uint64_t r2 = 9;
    dt_next(&mix, &r2, &s);
    CHECK(s.n > 50 && s.n < TT_MAX_T);
    CHECK(s.tok[0] == TK_IM_START);
    CHECK(count_learned(&s, TT_CAT_JUDGE) == 0);
    /* every learned token comes after "<think>" and the last one is the final delimiter */
    int think = -1;
    for (int i = 0; i < s.n; i++)
        if (s.tok[i] == TK_THINK) think = i;
    CHECK(think > 0);
    for (int i = 1; i <= think + 1 && i < s.n; i++) CHECK(s.w[i] == 0);
    CHECK(s.tok[s.n - 1] == TK_DELIM && s.w[s.n - 1] == 1);

    mix.p_judge = 1.0f;
    int seen_good = 0, seen_bad = 0;
    for (int it = 0; it < 200; it++) {
        dt_next(&mix, &r2, &s);
        int last = s.n - 1;
        CHECK(s.cat[last] == TT_CAT_JUDGE && s.w[last] == 4);
        CHECK(count_learned(&s, TT_CAT_JUDGE) == 1);
        bool good = s.tok[last] == tk_digit_token(TK_SCORE_GOOD);
        CHECK(good || s.tok[last] == tk_digit_token(TK_SCORE_BAD));
        seen_good += good;
        seen_bad += !good;
        /* The candidate is the step before the suffix: learned iff the score is good. */
        int suffix_start = -1, th = -1;
        for (int i = 0; i < s.n; i++)
            if (s.tok[i] == TK_THINK) th = i;
        for (int i = th; th > 0 && i < s.n && suffix_start < 0; i++)
            if (s.tok[i] == TK_IM_END) suffix_start = i;
        CHECK(suffix_start > 0);
        int j = suffix_start - 1; /* the candidate's delimiter */
        CHECK(s.tok[j] == TK_DELIM);
        CHECK((s.w[j] > 0) == good);
        for (int i = suffix_start; i < last; i++) CHECK(s.w[i] == 0);
    }
    CHECK(seen_good > 50 && seen_bad > 50);
    dt_heldout_clear();
    return test_summary("test_train_task");
}
