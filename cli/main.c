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

struct cli {
    struct sr_engine_params ep;
    struct sr_run_params rp;
    const char *small_path, *base_path, *prompt, *file, *mode, *score, *answer_by, *color, *template_name;
    const char *prompt_template, *judge_prompt, *judge_prefill;
    int64_t ctx, threads, threads_batch, ngl, small_ctx, base_ctx, small_ngl, base_ngl;
    double temp, top_p;
    bool json, quiet, verbose, greedy, no_strip, help, version, loaded_temp, loaded_top_p, spec_decode;
    int64_t draft_max, draft_min;
    double draft_p_min;
    int64_t first_n, max_step, budget, max_answer;
    double threshold, small_temp, small_top_p, base_temp, base_top_p;
    uint64_t seed;
};

static struct cli C;

static const struct opt OPTS[] = {
    {"small", 0, OPT_STR, &C.small_path, 0, 0, "small (draft) model GGUF"},
    {"base", 0, OPT_STR, &C.base_path, 0, 0, "base (judge) model GGUF"},
    {"prompt", 'p', OPT_STR, &C.prompt, 0, 0, "the problem text"},
    {"file", 'f', OPT_STR, &C.file, 0, 0, "read the problem from a file ('-' = stdin; default: stdin when -p is absent)"},
    {"mode", 'm', OPT_STR, &C.mode, 0, 0, "spec | base | small (default spec)"},
    {"threshold", 't', OPT_FLOAT, &C.threshold, 0, 10, "accept a step iff its score >= this (default 7)"},
    {"score", 0, OPT_STR, &C.score, 0, 0, "greedy | average: how the judge's score is read (default greedy)"},
    {"first-n-base", 0, OPT_INT, &C.first_n, 0, 1e9, "the first N steps are written by the base model (default 0)"},
    {"max-step-tokens", 0, OPT_INT, &C.max_step, 1, 65536, "a step ends after this many tokens (default 512)"},
    {"budget", 'n', OPT_INT, &C.budget, 1, 16777216, "token budget: adopted step tokens (default 8192)"},
    {"max-answer-tokens", 0, OPT_INT, &C.max_answer, 0, 16777216, "cap on the answer after </think> (default 1024)"},
    {"temp", 0, OPT_FLOAT, &C.temp, 0, 100, "temperature of both models (default 0.6; 0 = greedy)"},
    {"top-p", 0, OPT_FLOAT, &C.top_p, 1e-9, 1, "top-p of both models (default 0.95)"},
    {"small-temp", 0, OPT_FLOAT, &C.small_temp, 0, 100, "temperature of the small model"},
    {"small-top-p", 0, OPT_FLOAT, &C.small_top_p, 1e-9, 1, "top-p of the small model"},
    {"base-temp", 0, OPT_FLOAT, &C.base_temp, 0, 100, "temperature of the base model"},
    {"base-top-p", 0, OPT_FLOAT, &C.base_top_p, 1e-9, 1, "top-p of the base model"},
    {"greedy", 0, OPT_FLAG, &C.greedy, 0, 0, "greedy decoding for both models (same as --temp 0)"},
    {"seed", 's', OPT_U64, &C.seed, 0, 0, "sampling seed (default 0)"},
    {"answer-by", 0, OPT_STR, &C.answer_by, 0, 0, "base | loop: who writes the answer after </think> (default base)"},
    {"no-strip-think-end", 0, OPT_FLAG, &C.no_strip, 0, 0, "let a step without an answer marker end the thinking"},
    {"template", 0, OPT_STR, &C.template_name, 0, 0, "math | gpqa | raw: the user message around the problem (default math)"},
    {"prompt-template", 0, OPT_STR, &C.prompt_template, 0, 0, "custom user message; {problem} is replaced"},
    {"judge-prompt", 0, OPT_STR, &C.judge_prompt, 0, 0, "custom judge instruction (user turn)"},
    {"judge-prefill", 0, OPT_STR, &C.judge_prefill, 0, 0, "custom judge assistant prefill"},
    {"spec-decode", 0, OPT_FLAG, &C.spec_decode, 0, 0, "token-level speculative decoding wherever the base model writes"},
    {"draft-max", 0, OPT_INT, &C.draft_max, 1, 64, "tokens drafted per verification (default 8)"},
    {"draft-min", 0, OPT_INT, &C.draft_min, 0, 64, "drafts shorter than this are not verified (default 0)"},
    {"draft-p-min", 0, OPT_FLOAT, &C.draft_p_min, 0, 1, "stop drafting below this draft probability (default 0.5)"},
    {"ctx", 'c', OPT_INT, &C.ctx, 0, 16777216, "context tokens per model (default: min(16384, training context))"},
    {"small-ctx", 0, OPT_INT, &C.small_ctx, 0, 16777216, "context tokens of the small model"},
    {"base-ctx", 0, OPT_INT, &C.base_ctx, 0, 16777216, "context tokens of the base model"},
    {"threads", 0, OPT_INT, &C.threads, 0, 512, "CPU threads (default: all cores)"},
    {"threads-batch", 0, OPT_INT, &C.threads_batch, 0, 512, "CPU threads for prefill and judging (default: --threads)"},
    {"ngl", 0, OPT_INT, &C.ngl, -1, 1e6, "layers on the GPU for both models (-1 = all, default 0)"},
    {"small-ngl", 0, OPT_INT, &C.small_ngl, -1, 1e6, "GPU layers of the small model"},
    {"base-ngl", 0, OPT_INT, &C.base_ngl, -1, 1e6, "GPU layers of the base model"},
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
    fprintf(f, "\nexit status: 0 ok, 1 model or run error, 2 usage error\n");
}

#define bad(...) opt_bad("specreason", __VA_ARGS__)

static void on_set(const struct opt *o, void *user) {
    (void)user;
    if (o->dst == &C.temp) C.loaded_temp = true;
    if (o->dst == &C.top_p) C.loaded_top_p = true;
}

static char *read_all(FILE *f) {
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
    if (p->mode == SR_MODE_SPEC) fprintf(o, " (threshold %g, %s)", (double)p->threshold, p->score_method ? "average" : "greedy");
    fprintf(o, " · stop: %s\n", sr_stop_str(r->stop));
    fprintf(o, "steps       %d: small %d, base after rejection %d, base forced %d\n", S->n_steps, S->n_steps_small,
            S->n_steps_base_reject, S->n_steps_base_forced);
    if (p->mode == SR_MODE_SPEC) {
        fprintf(o, "acceptance  %.1f%% of %d judged; scores:", 100.0 * S->acceptance, S->n_judged);
        for (int i = 0; i < 10; i++) fprintf(o, " %d:%d", i, S->score_hist[i]);
        fprintf(o, "\n");
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
    C.rp = sr_run_default_params();
    C.threshold = C.rp.threshold;
    C.first_n = 0;
    C.max_step = C.rp.max_step_tokens;
    C.budget = C.rp.token_budget;
    C.max_answer = C.rp.max_answer_tokens;
    C.draft_max = C.rp.draft_max;
    C.draft_min = C.rp.draft_min;
    C.draft_p_min = C.rp.draft_p_min;
    C.small_temp = C.base_temp = NAN;
    C.small_top_p = C.base_top_p = NAN;
    C.small_ctx = C.base_ctx = -1;
    C.small_ngl = C.base_ngl = -2;
    int rc = opt_parse("specreason", OPTS, N_OPTS, argc, argv, on_set, NULL);
    if (rc) return rc;
    if (C.help) { usage(stdout); return 0; }
    if (C.version) { printf("specreason %s\n", sr_version()); return 0; }

    struct sr_run_params *rp = &C.rp;
    int v = 0;
    if (C.mode) {
        static const char *const m[] = {"spec", "base", "small"};
        if ((rc = pick(C.mode, "mode", m, 3, &v))) return rc;
        rp->mode = (enum sr_mode)v;
    }
    if (C.score) {
        static const char *const m[] = {"greedy", "average"};
        if ((rc = pick(C.score, "score method", m, 2, &v))) return rc;
        rp->score_method = (enum sr_score_method)v;
    }
    if (C.answer_by) {
        static const char *const m[] = {"base", "loop"};
        if ((rc = pick(C.answer_by, "answer writer", m, 2, &v))) return rc;
        rp->answer_by = (enum sr_answer_by)v;
    }
    int color = isatty(STDOUT_FILENO);
    if (C.color) {
        static const char *const m[] = {"never", "always", "auto"};
        if ((rc = pick(C.color, "colour mode", m, 3, &v))) return rc;
        if (v < 2) color = v;
    }
    rp->prompt_template = SR_PROMPT_MATH;
    if (C.template_name) {
        static const char *const m[] = {"math", "gpqa", "raw"};
        if ((rc = pick(C.template_name, "template", m, 3, &v))) return rc;
        rp->prompt_template = v == 0 ? SR_PROMPT_MATH : v == 1 ? SR_PROMPT_GPQA : "{problem}";
    }
    if (C.prompt_template) rp->prompt_template = C.prompt_template;
    rp->judge_prompt = C.judge_prompt;
    rp->judge_prefill = C.judge_prefill;
    rp->threshold = (float)C.threshold;
    rp->first_n_base = (int32_t)C.first_n;
    rp->max_step_tokens = (int32_t)C.max_step;
    rp->token_budget = (int32_t)C.budget;
    rp->max_answer_tokens = (int32_t)C.max_answer;
    rp->seed = C.seed;
    rp->strip_think_end = !C.no_strip;
    rp->spec_decode = C.spec_decode;
    rp->draft_max = (int32_t)C.draft_max;
    rp->draft_min = (int32_t)C.draft_min;
    rp->draft_p_min = (float)C.draft_p_min;
    if (C.loaded_temp) rp->small.temperature = rp->base.temperature = (float)C.temp;
    if (C.loaded_top_p) rp->small.top_p = rp->base.top_p = (float)C.top_p;
    if (C.greedy) rp->small.temperature = rp->base.temperature = 0.0f;
    if (!isnan(C.small_temp)) rp->small.temperature = (float)C.small_temp;
    if (!isnan(C.base_temp)) rp->base.temperature = (float)C.base_temp;
    if (!isnan(C.small_top_p)) rp->small.top_p = (float)C.small_top_p;
    if (!isnan(C.base_top_p)) rp->base.top_p = (float)C.base_top_p;
    struct sr_error err = {0};
    if (sr_run_params_check(rp, &err) != SR_OK) return bad("%s", err.msg);

    bool need_small = rp->mode != SR_MODE_BASE || rp->spec_decode, need_base = rp->mode != SR_MODE_SMALL;
    if (need_small && !C.small_path)
        return bad("mode %s%s needs --small", sr_mode_str(rp->mode), rp->spec_decode ? " with --spec-decode" : "");
    if (need_base && !C.base_path) return bad("mode %s needs --base", sr_mode_str(rp->mode));

    char *problem = NULL;
    if (C.prompt && C.file) return bad("give the problem with -p or -f, not both");
    if (C.prompt) {
        problem = strdup(C.prompt);
    } else if (C.file && strcmp(C.file, "-") != 0) {
        FILE *f = fopen(C.file, "rb");
        if (!f) { fprintf(stderr, "specreason: %s: %s\n", C.file, strerror(errno)); return 1; }
        problem = read_all(f);
        fclose(f);
    } else {
        if (!C.file && isatty(STDIN_FILENO)) return bad("no problem given (use -p, -f or standard input)");
        problem = read_all(stdin);
    }
    if (!problem) { fprintf(stderr, "specreason: could not read the problem: %s\n", strerror(errno)); return 1; }
    if (strspn(problem, " \t\r\n") == strlen(problem)) {
        free(problem);
        return bad("no problem given (the problem text is empty)");
    }

    if (C.verbose) sr_log_set(log_stderr, NULL, SR_LOG_WARN);
    else sr_log_set(NULL, NULL, SR_LOG_ERROR);

    struct sr_engine_params ep = sr_engine_default_params();
    if (need_small) ep.small.path = C.small_path;
    if (need_base) ep.base.path = C.base_path;
    ep.small.n_ctx = ep.base.n_ctx = (uint32_t)C.ctx;
    if (C.small_ctx >= 0) ep.small.n_ctx = (uint32_t)C.small_ctx;
    if (C.base_ctx >= 0) ep.base.n_ctx = (uint32_t)C.base_ctx;
    ep.small.n_threads = ep.base.n_threads = (int32_t)C.threads;
    ep.small.n_threads_batch = ep.base.n_threads_batch = (int32_t)C.threads_batch;
    ep.small.n_gpu_layers = ep.base.n_gpu_layers = (int32_t)C.ngl;
    if (C.small_ngl >= -1) ep.small.n_gpu_layers = (int32_t)C.small_ngl;
    if (C.base_ngl >= -1) ep.base.n_gpu_layers = (int32_t)C.base_ngl;

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
