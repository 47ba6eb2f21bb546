/*
 * cli/main.c: the `specreason` command. Parses options into the library's parameter structs
 * (one table drives parsing and --help), loads the models, runs one problem and streams the
 * reasoning step by step, marked by author and score; --json prints one machine-readable result.
 * Exit codes: 0 success, 1 run or model error, 2 usage error.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opts.h"
#include "specreason.h"
#include "template.h"

struct cli {
    struct common_opts o; /* models, steps, sampling, drafting, hardware (cli/opts.c) */
    const char *prompt, *file, *mode, *color, *template_name, *prompt_template, *choice[4];
    double threshold;
    uint64_t seed;
    bool json, quiet, verbose, help, version, spec_decode;
};

static struct cli C;

static const struct opt OPTS[] = {
    COMMON_OPTS_MODELS(C.o),
    {"prompt", 'p', OPT_STR, &C.prompt, 0, 0, "the problem text"},
    {"file", 'f', OPT_STR, &C.file, 0, 0, "read the problem from a file ('-' = stdin; default: stdin when -p is absent)"},
    {"mode", 'm', OPT_STR, &C.mode, 0, 0, "spec | base | small (default spec)"},
    {"threshold", 't', OPT_FLOAT, &C.threshold, 0, 10, "accept a step iff its score >= this (default 7)"},
    COMMON_OPTS_STEPS(C.o),
    COMMON_OPTS_SAMPLING(C.o),
    {"seed", 's', OPT_U64, &C.seed, 0, 0, "sampling seed (default 0)"},
    COMMON_OPTS_THINKING(C.o),
    {"template", 0, OPT_STR, &C.template_name, 0, 0, "math | gpqa | raw: the user message around the problem (default math)"},
    {"prompt-template", 0, OPT_STR, &C.prompt_template, 0, 0,
     "custom user message; {problem} (required) and {ans_a}..{ans_d} are replaced"},
    {"choice-a", 0, OPT_STR, &C.choice[0], 0, 0, "multiple choice (--template gpqa): the text of choice A"},
    {"choice-b", 0, OPT_STR, &C.choice[1], 0, 0, "the text of choice B"},
    {"choice-c", 0, OPT_STR, &C.choice[2], 0, 0, "the text of choice C"},
    {"choice-d", 0, OPT_STR, &C.choice[3], 0, 0, "the text of choice D"},
    COMMON_OPTS_JUDGE(C.o),
    COMMON_OPTS_POLICY(C.o),
    {"spec-decode", 0, OPT_FLAG, &C.spec_decode, 0, 0, "token-level speculative decoding wherever the base model writes"},
    COMMON_OPTS_DRAFT(C.o, ""),
    COMMON_OPTS_HARDWARE(C.o),
    COMMON_OPTS_REMOTE(C.o),
    {"json", 0, OPT_FLAG, &C.json, 0, 0, "print one JSON result instead of the stream"},
    {"quiet", 'q', OPT_FLAG, &C.quiet, 0, 0, "no streaming; print the text and the summary at the end"},
    {"color", 0, OPT_STR, &C.color, 0, 0, "auto | always | never (default auto: colours on a terminal)"},
    {"verbose", 'v', OPT_FLAG, &C.verbose, 0, 0, "log llama.cpp warnings and errors to stderr"},
    {"version", 0, OPT_FLAG, &C.version, 0, 0, "print the version"},
    {"help", 'h', OPT_FLAG, &C.help, 0, 0, "this help"},
};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

static void usage(FILE *f) {
    fprintf(f,
            "usage: specreason --small S.gguf --base B.gguf [-p PROBLEM | -f FILE | < FILE] [options]\n\n"
            "Speculative reasoning: the small model writes each step, the base model scores it 0-9 and\n"
            "rewrites the steps that score below the threshold.\n\noptions:\n");
    opt_usage(f, OPTS, N_OPTS, 28);
    fprintf(f, "\npolicies of mode spec: auto decides each step by expected time whether to speculate or let\n"
               "the base model write it, and accepts drafts the small model is confident about without a\n"
               "judge call (the level is calibrated against the judge's verdicts; a sampled audit checks it);\n"
               "always speculates and judges every step (the reference); never is mode base exactly.\n"
               "The controller learns from its own timings within a run; an engine serving many runs (the\n"
               "evaluation harness, a server) keeps what it learned across them.\n");
    fprintf(f, "\nexit status: 0 ok, 1 model or run error, 2 usage error\n");
}

#define bad(...) opt_bad("specreason", __VA_ARGS__)

static void on_set(const struct opt *o, void *user) {
    (void)user;
    common_opts_on_set(&C.o, o);
}

static char *read_all(FILE *f, size_t *n_read) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            if (cap > ((size_t)64 << 20)) { free(buf); errno = EFBIG; return NULL; }
            char *p = realloc(buf, cap * 2);
            if (!p) { free(buf); return NULL; }
            buf = p;
            cap *= 2;
        }
    }
    if (ferror(f)) { free(buf); return NULL; }
    buf[len] = '\0';
    *n_read = len;
    return buf;
}

/* ------------------------------------------------------------------------------------------ */
/* streaming output                                                                           */

struct view {
    bool color;
    FILE *out;
    int32_t pending_draft_tokens;
};

static const char *col(const struct view *v, const char *code) { return v->color ? code : ""; }

static bool on_event(const struct sr_event *ev, void *user) {
    struct view *v = user;
    FILE *o = v->out;
    switch (ev->type) {
    case SR_EVENT_STEP_SCORED:
        if (!ev->accepted) {
            fprintf(o, "%s[step %d · small draft rejected · score %.2g · %d tok]%s %s%.*s%s\n", col(v, "\x1b[2m"),
                    ev->step, (double)ev->score, ev->n_tokens, col(v, "\x1b[0m"), col(v, "\x1b[2;9m"),
                    (int)(ev->len > 200 ? 200 : ev->len), ev->text, col(v, "\x1b[0m"));
        }
        break;
    case SR_EVENT_STEP_ADOPTED: {
        const char *c = "", *who = "";
        switch (ev->author) {
        case SR_AUTHOR_SMALL: c = "\x1b[32m"; who = "small"; break;
        case SR_AUTHOR_SMALL_ONLY: c = "\x1b[32m"; who = "small"; break;
        case SR_AUTHOR_BASE_REJECT: c = "\x1b[33m"; who = "base (rewrite)"; break;
        case SR_AUTHOR_BASE_FORCED: c = "\x1b[34m"; who = "base"; break;
        case SR_AUTHOR_ANSWER: c = "\x1b[35m"; who = "answer"; break;
        }
        if (ev->score >= 0)
            fprintf(o, "%s[step %d · %s · score %.2g · %d tok · %.0f ms]%s\n", col(v, c), ev->step, who,
                    (double)ev->score, ev->n_tokens, ev->t_ms, col(v, "\x1b[0m"));
        else
            fprintf(o, "%s[step %d · %s · %d tok · %.0f ms]%s\n", col(v, c), ev->step, who, ev->n_tokens, ev->t_ms,
                    col(v, "\x1b[0m"));
        fwrite(ev->text, 1, ev->len, o);
        fputs("\n\n", o);
        fflush(o);
        break;
    }
    case SR_EVENT_ANSWER:
        fprintf(o, "%s[answer · %d tok · %.0f ms]%s\n", col(v, "\x1b[35m"), ev->n_tokens, ev->t_ms, col(v, "\x1b[0m"));
        fwrite(ev->text, 1, ev->len, o);
        fputs("\n", o);
        fflush(o);
        break;
    default: break;
    }
    return true;
}

static void print_summary(FILE *o, const struct sr_result *r, const struct sr_run_params *p) {
    const struct sr_stats *S = &r->stats;
    fprintf(o, "\n---- %s", sr_mode_str(p->mode));
    if (p->mode == SR_MODE_SPEC)
        fprintf(o, " (threshold %g, %s, policy %s)", (double)p->threshold,
                p->score_method == SR_SCORE_GREEDY    ? "greedy"
                : p->score_method == SR_SCORE_AVERAGE ? "average"
                                                      : "digit-softmax",
                sr_policy_str(p->policy));
    fprintf(o, " · stop: %s\n", sr_stop_str(r->stop));
    fprintf(o, "steps       %d: small %d, base after rejection %d, base forced %d\n", S->n_steps, S->n_steps_small,
            S->n_steps_base_reject, S->n_steps_base_forced);
    if (p->mode == SR_MODE_SPEC) {
        fprintf(o, "acceptance  %.1f%% of %d judged; scores:", 100.0 * S->acceptance, S->n_judged);
        for (int i = 0; i < 10; i++) fprintf(o, " %d:%d", i, S->score_hist[i]);
        fprintf(o, "\n");
    }
    if (S->n_pipe_started)
        fprintf(o, "pipeline    %d drafts ahead: %d used, %d thrown away; drafting %.1f ms, %.1f ms of it hidden\n",
                S->n_pipe_started, S->n_pipe_used, S->n_pipe_discarded, S->t_pipe_draft_ms, S->t_pipe_hidden_ms);
    if (p->mode == SR_MODE_SPEC && p->policy == SR_POLICY_AUTO) {
        fprintf(o, "controller  speculated %d (probes %d), base wrote %d; accepted unjudged %d, audits %d (%d disagreed)\n",
                S->n_ctl_spec, S->n_ctl_probes, S->n_ctl_base, S->n_unjudged, S->n_audits, S->n_audit_disagree);
        fprintf(o, "cost model  ms/token: small %.3f, base %.3f, judge %.3f, catch-up %.3f, sync %.3f; step %.0f tok; "
                   "acceptance %.2f, gate level %.3g, skip %.2f; speedup predicted %.2fx, measured %.2fx\n",
                S->ctl_small_tok_ms, S->ctl_base_tok_ms, S->ctl_judge_tok_ms, S->ctl_catchup_tok_ms, S->ctl_sync_tok_ms,
                S->ctl_step_tokens, S->ctl_acceptance, S->ctl_gate_level, S->ctl_skip_rate, S->ctl_predicted_speedup,
                S->ctl_measured_speedup);
    }
    fprintf(o, "tokens      adopted %lld (small %lld, base %lld), answer %lld, rejected drafts %lld, judge prefill %lld, sync %lld\n",
            (long long)S->n_adopted_tokens, (long long)S->n_adopted_small, (long long)S->n_adopted_base,
            (long long)S->n_answer_tokens, (long long)S->n_rejected_tokens, (long long)S->n_judge_tokens,
            (long long)S->n_sync_tokens);
    fprintf(o, "time        %.0f ms total: small %.0f, judge %.0f, base %.0f, sync %.0f, prompt %.0f, other %.0f; %.1f tok/s\n",
            S->t_total_ms, S->t_small_ms, S->t_judge_ms, S->t_base_ms, S->t_sync_ms, S->t_prompt_ms, S->t_other_ms,
            S->tokens_per_s);
    if (p->spec_decode)
        fprintf(o, "drafting    %lld drafted, %lld accepted (%.1f%%), %lld verification batches, %.2f accepted/batch; "
                   "draft %.0f ms, verify %.0f ms\n",
                (long long)S->n_sd_drafted, (long long)S->n_sd_accepted,
                S->n_sd_drafted ? 100.0 * (double)S->n_sd_accepted / (double)S->n_sd_drafted : 0.0,
                (long long)S->n_sd_batches, S->sd_mean_accepted, S->t_sd_draft_ms, S->t_sd_verify_ms);
}

static void log_stderr(enum sr_log_level level, const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "[%s] %s\n", level >= SR_LOG_ERROR ? "error" : level >= SR_LOG_WARN ? "warn" : "info", msg);
}

#define pick(val, what, names, n, out) opt_pick("specreason", val, what, names, n, out)

int main(int argc, char **argv) {
    struct sr_run_params rp0 = sr_run_default_params(), *rp = &rp0;
    common_opts_init(&C.o);
    C.threshold = rp->threshold;
    int rc = opt_parse("specreason", OPTS, N_OPTS, argc, argv, on_set, NULL);
    if (rc) return rc;
    if (C.help) { usage(stdout); return 0; }
    if (C.version) { printf("specreason %s\n", sr_version()); return 0; }

    int v = 0;
    if (C.mode) {
        static const char *const m[] = {"spec", "base", "small"};
        if ((rc = pick(C.mode, "mode", m, 3, &v))) return rc;
        rp->mode = (enum sr_mode)v;
    }
    if ((rc = common_opts_run_params("specreason", &C.o, rp))) return rc;
    int color = isatty(STDOUT_FILENO);
    if (C.color) {
        static const char *const m[] = {"never", "always", "auto"};
        if ((rc = pick(C.color, "colour mode", m, 3, &v))) return rc;
        if (v < 2) color = v;
    }
    const char *tmpl = SR_PROMPT_MATH;
    if (C.template_name) {
        static const char *const m[] = {"math", "gpqa", "raw"};
        if ((rc = pick(C.template_name, "template", m, 3, &v))) return rc;
        tmpl = v == 0 ? SR_PROMPT_MATH : v == 1 ? SR_PROMPT_GPQA : "{problem}";
    }
    if (C.prompt_template) tmpl = C.prompt_template;
    if (!strstr(tmpl, "{problem}")) return bad("the prompt template has no {problem}");
    int n_choices = 0;
    for (int k = 0; k < 4; k++) n_choices += C.choice[k] != NULL;
    bool has_choices = cli_template_has_choices(tmpl);
    if (has_choices && n_choices < 4)
        return bad("the prompt template shows four choices: give them with --choice-a, --choice-b, --choice-c and "
                   "--choice-d");
    if (!has_choices && n_choices)
        return bad("--choice-a..--choice-d need a template that shows them ({ans_a}..{ans_d}, e.g. --template gpqa)");
    rp->prompt_template = "{problem}"; /* the user message is filled here (cli/template.c) */
    rp->threshold = (float)C.threshold;
    rp->seed = C.seed;
    rp->spec_decode = C.spec_decode;
    struct sr_error err = {0};
    if (sr_run_params_check(rp, &err) != SR_OK) return bad("%s", err.msg);

    bool base_only = rp->mode == SR_MODE_BASE || (rp->mode == SR_MODE_SPEC && rp->policy == SR_POLICY_NEVER);
    bool need_small = !base_only || rp->spec_decode, need_base = rp->mode != SR_MODE_SMALL;
    if (need_small && !C.o.small_path && !C.o.small_url)
        return bad("mode %s%s needs --small or --small-url", sr_mode_str(rp->mode), rp->spec_decode ? " with --spec-decode" : "");
    if (need_base && !C.o.base_path && !C.o.base_url) return bad("mode %s needs --base or --base-url", sr_mode_str(rp->mode));

    char *text = NULL;
    size_t text_len = 0;
    if (C.prompt && C.file) return bad("give the problem with -p or -f, not both");
    if (C.prompt) {
        text = strdup(C.prompt);
        text_len = text ? strlen(text) : 0;
    } else if (C.file && strcmp(C.file, "-") != 0) {
        FILE *f = fopen(C.file, "rb");
        if (!f) { fprintf(stderr, "specreason: %s: %s\n", C.file, strerror(errno)); return 1; }
        text = read_all(f, &text_len);
        fclose(f);
    } else {
        if (!C.file && isatty(STDIN_FILENO)) return bad("no problem given (use -p, -f or standard input)");
        text = read_all(stdin, &text_len);
    }
    if (!text) { fprintf(stderr, "specreason: could not read the problem: %s\n", strerror(errno)); return 1; }
    const char *nul = memchr(text, '\0', text_len);
    if (nul) {
        size_t at = (size_t)(nul - text);
        free(text);
        return bad("the problem contains a NUL byte (at byte %zu); problems are text", at);
    }
    if (strspn(text, " \t\r\n") == strlen(text)) {
        free(text);
        return bad("no problem given (the problem text is empty)");
    }
    char *problem = cli_fill_template(tmpl, text, has_choices ? C.choice : NULL);
    free(text);
    if (!problem) { fprintf(stderr, "specreason: out of memory\n"); return 1; }

    if (C.verbose) sr_log_set(log_stderr, NULL, SR_LOG_WARN);
    else sr_log_set(NULL, NULL, SR_LOG_ERROR);

    struct sr_engine_params ep;
    common_opts_engine_params(&C.o, need_small, need_base, &ep);

    struct sr_engine *eng = NULL;
    if (sr_engine_init(&ep, &eng, &err) != SR_OK) {
        fprintf(stderr, "specreason: %s\n", err.msg);
        free(problem);
        return 1;
    }
    struct view view = {.color = color != 0, .out = stdout};
    if (!C.json && !C.quiet) {
        rp->on_event = on_event;
        rp->user = &view;
    }
    struct sr_result *res = NULL;
    enum sr_status st = sr_run(eng, problem, rp, &res, &err);
    int ret = 0;
    if (st != SR_OK) {
        fprintf(stderr, "specreason: %s: %s\n", sr_status_str(st), err.msg);
        ret = 1;
    } else if (C.json) {
        char *js = sr_result_to_json(res, rp);
        if (!js) { fprintf(stderr, "specreason: out of memory\n"); ret = 1; }
        else { puts(js); sr_free(js); }
    } else {
        if (C.quiet) fputs(res->text, stdout);
        print_summary(stdout, res, rp);
    }
    sr_result_free(res);
    sr_engine_free(eng);
    free(problem);
    return ret;
}
