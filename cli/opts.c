/*
 * opts.c: see opts.h.
 */
#include "opts.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int opt_bad(const char *prog, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see %s --help)\n", prog);
    va_end(ap);
    return 2;
}

static int set_opt(const char *prog, const struct opt *o, const char *val) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case OPT_FLAG: *(bool *)o->dst = true; return 0;
    case OPT_STR: *(const char **)o->dst = val; return 0;
    case OPT_INT: {
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end || (double)v < o->lo || (double)v > o->hi)
            return opt_bad(prog, "--%s expects an integer in [%.0f, %.0f]", o->name, o->lo, o->hi);
        *(int64_t *)o->dst = v;
        return 0;
    }
    case OPT_U64: {
        if (val[0] == '-') return opt_bad(prog, "--%s expects a non-negative integer", o->name);
        unsigned long long v = strtoull(val, &end, 10);
        if (errno || end == val || *end) return opt_bad(prog, "--%s expects a non-negative integer", o->name);
        *(uint64_t *)o->dst = v;
        return 0;
    }
    case OPT_FLOAT: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || v < o->lo || v > o->hi)
            return opt_bad(prog, "--%s expects a number in [%g, %g]", o->name, o->lo, o->hi);
        *(double *)o->dst = v;
        return 0;
    }
    }
    return 0;
}

int opt_parse(const char *prog, const struct opt *opts, size_t n, int argc, char **argv,
              void (*on_set)(const struct opt *o, void *user), void *user) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const struct opt *o = NULL;
        const char *val = NULL;
        if (a[0] == '-' && a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            for (size_t k = 0; k < n; k++)
                if (strlen(opts[k].name) == len && strncmp(opts[k].name, name, len) == 0) o = &opts[k];
            if (eq) val = eq + 1;
        } else if (a[0] == '-' && a[1] && !a[2]) {
            for (size_t k = 0; k < n; k++)
                if (opts[k].short_name == a[1]) o = &opts[k];
        }
        if (!o) return opt_bad(prog, "unknown option '%s'", a);
        if (o->kind == OPT_FLAG) {
            if (val) return opt_bad(prog, "--%s takes no value", o->name);
        } else if (!val) {
            if (i + 1 >= argc) return opt_bad(prog, "--%s needs a value", o->name);
            val = argv[++i];
        }
        int rc = set_opt(prog, o, val ? val : "");
        if (rc) return rc;
        if (on_set) on_set(o, user);
    }
    return 0;
}

void opt_usage(FILE *f, const struct opt *opts, size_t n, int width) {
    for (size_t i = 0; i < n; i++) {
        char left[64];
        const char *arg = opts[i].kind == OPT_FLAG ? "" : opts[i].kind == OPT_STR ? " S" : opts[i].kind == OPT_FLOAT ? " F" : " N";
        if (opts[i].short_name) snprintf(left, sizeof left, "-%c, --%s%s", opts[i].short_name, opts[i].name, arg);
        else snprintf(left, sizeof left, "    --%s%s", opts[i].name, arg);
        fprintf(f, "  %-*s %s\n", width, left, opts[i].help);
    }
}

int opt_pick(const char *prog, const char *val, const char *what, const char *const *names, int n, int *out) {
    for (int i = 0; i < n; i++)
        if (strcmp(val, names[i]) == 0) { *out = i; return 0; }
    return opt_bad(prog, "unknown %s '%s'", what, val);
}

/* ---- shared options -------------------------------------------------------------------------- */

void common_opts_init(struct common_opts *o) {
    struct sr_run_params rp = sr_run_default_params();
    memset(o, 0, sizeof *o);
    o->first_n = rp.first_n_base;
    o->max_step = rp.max_step_tokens;
    o->budget = rp.token_budget;
    o->max_answer = rp.max_answer_tokens;
    o->draft_max = rp.draft_max;
    o->draft_min = rp.draft_min;
    o->draft_p_min = rp.draft_p_min;
    o->ctl_precision = rp.ctl_precision;
    o->ctl_audit = rp.ctl_audit;
    o->ctl_probe_max = rp.ctl_probe_max;
    o->small_temp = o->base_temp = o->small_top_p = o->base_top_p = NAN;
    o->small_ctx = o->base_ctx = -1;
    o->small_ngl = o->base_ngl = -2;
    o->remote_retries = -1;
    o->small_threads = o->base_threads = -1;
}

void common_opts_on_set(struct common_opts *o, const struct opt *given) {
    if (given->dst == &o->temp) o->set_temp = true;
    if (given->dst == &o->top_p) o->set_top_p = true;
}

int common_opts_run_params(const char *prog, const struct common_opts *o, struct sr_run_params *rp) {
    int v = 0, rc;
    if (o->score) {
        static const char *const m[] = {"greedy", "average", "digit-softmax"};
        if ((rc = opt_pick(prog, o->score, "score method", m, 3, &v))) return rc;
        rp->score_method = (enum sr_score_method)v;
    }
    if (o->answer_by) {
        static const char *const m[] = {"base", "loop"};
        if ((rc = opt_pick(prog, o->answer_by, "answer writer", m, 2, &v))) return rc;
        rp->answer_by = (enum sr_answer_by)v;
    }
    if (o->policy) {
        static const char *const m[] = {"auto", "always", "never"};
        if ((rc = opt_pick(prog, o->policy, "policy", m, 3, &v))) return rc;
        rp->policy = (enum sr_policy)v;
    }
    if (o->gate_label) {
        static const char *const m[] = {"outcome", "judge"};
        if ((rc = opt_pick(prog, o->gate_label, "gate label", m, 2, &v))) return rc;
        rp->ctl_gate_label = (enum sr_gate_label)v;
    }
    if (o->pipeline) {
        static const char *const m[] = {"auto", "on", "off"};
        if ((rc = opt_pick(prog, o->pipeline, "pipeline", m, 3, &v))) return rc;
        rp->pipeline = (enum sr_pipeline)v;
    }
    rp->ctl_verify_rewrite = o->verify_rewrite;
    rp->ctl_precision = (float)o->ctl_precision;
    rp->ctl_audit = (float)o->ctl_audit;
    rp->ctl_probe_max = (int32_t)o->ctl_probe_max;
    rp->judge_prompt = o->judge_prompt;
    rp->judge_prefill = o->judge_prefill;
    rp->first_n_base = (int32_t)o->first_n;
    rp->max_step_tokens = (int32_t)o->max_step;
    rp->token_budget = (int32_t)o->budget;
    rp->max_answer_tokens = (int32_t)o->max_answer;
    rp->strip_think_end = !o->no_strip;
    rp->draft_max = (int32_t)o->draft_max;
    rp->draft_min = (int32_t)o->draft_min;
    rp->draft_p_min = (float)o->draft_p_min;
    if (o->set_temp) rp->small.temperature = rp->base.temperature = (float)o->temp;
    if (o->set_top_p) rp->small.top_p = rp->base.top_p = (float)o->top_p;
    if (o->greedy) rp->small.temperature = rp->base.temperature = 0.0f;
    if (!isnan(o->small_temp)) rp->small.temperature = (float)o->small_temp;
    if (!isnan(o->base_temp)) rp->base.temperature = (float)o->base_temp;
    if (!isnan(o->small_top_p)) rp->small.top_p = (float)o->small_top_p;
    if (!isnan(o->base_top_p)) rp->base.top_p = (float)o->base_top_p;
    return 0;
}

void common_opts_engine_params(const struct common_opts *o, bool need_small, bool need_base,
                               struct sr_engine_params *ep) {
    *ep = sr_engine_default_params();
    if (need_small) ep->small.path = o->small_path;
    if (need_base) ep->base.path = o->base_path;
    ep->small.n_ctx = ep->base.n_ctx = (uint32_t)o->ctx;
    if (o->small_ctx >= 0) ep->small.n_ctx = (uint32_t)o->small_ctx;
    if (o->base_ctx >= 0) ep->base.n_ctx = (uint32_t)o->base_ctx;
    ep->small.n_threads = ep->base.n_threads = (int32_t)o->threads;
    ep->small.n_threads_batch = ep->base.n_threads_batch = (int32_t)o->threads_batch;
    if (o->small_threads >= 0) ep->small.n_threads = ep->small.n_threads_batch = (int32_t)o->small_threads;
    if (o->base_threads >= 0) ep->base.n_threads = ep->base.n_threads_batch = (int32_t)o->base_threads;
    ep->small.n_gpu_layers = ep->base.n_gpu_layers = (int32_t)o->ngl;
    if (o->small_ngl >= -1) ep->small.n_gpu_layers = (int32_t)o->small_ngl;
    if (o->base_ngl >= -1) ep->base.n_gpu_layers = (int32_t)o->base_ngl;
    if (need_small && o->small_url) {
        ep->small.url = o->small_url;
        ep->small.model = o->small_model;
        ep->small.api_key = getenv("SPECREASON_SMALL_API_KEY");
    }
    if (need_base && o->base_url) {
        ep->base.url = o->base_url;
        ep->base.model = o->base_model;
        ep->base.api_key = getenv("SPECREASON_BASE_API_KEY");
    }
    struct sr_model_params *mp[2] = {&ep->small, &ep->base};
    for (int i = 0; i < 2; i++) {
        mp[i]->chat_template = o->remote_template;
        mp[i]->timeout_s = o->remote_timeout;
        /* library: 0 = default (3), < 0 = none */
        mp[i]->max_retries = o->remote_retries < 0 ? 0 : o->remote_retries == 0 ? -1 : (int32_t)o->remote_retries;
        if (!mp[i]->url) mp[i]->rpc = o->rpc;
    }
}
