/*
 * cli/eval/store.c: OUT/results.jsonl. Every record is keyed by (problem, mode, threshold,
 * sample, seed, settings hash) and indexed in memory; a rerun loads the file and skips what it
 * holds. Also one record as a JSON line.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "eval.h"
#include "json.h"
#include "result_json.h"

uint64_t fnv1a64(const char *s, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001B3ULL;
    }
    return h;
}

char *path_join(const char *dir, const char *name) {
    struct sr_buf b = {0};
    sr_buf_printf(&b, "%s/%s", dir, name);
    return sr_buf_take(&b);
}

/* mkdir -p */
int make_dirs(const char *path) {
    char *p = sr_strdup(path);
    if (!p) return ENOMEM;
    int rc = 0;
    for (char *q = p + 1;; q++) {
        if (*q == '/' || *q == '\0') {
            char c = *q;
            *q = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) { rc = errno; break; }
            *q = c;
            if (!c) break;
        }
    }
    free(p);
    if (rc == 0) {
        struct stat st;
        if (stat(path, &st) != 0) rc = errno;
        else if (!S_ISDIR(st.st_mode)) rc = ENOTDIR;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Records: what results.jsonl holds, indexed by key                                          */



void store_free(struct store *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i].key);
    free(s->v);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

static size_t store_slot(const struct store *s, const char *key) {
    size_t m = s->nslots - 1, i = (size_t)fnv1a64(key, strlen(key), 0xCBF29CE484222325ULL) & m;
    while (s->slots[i] && strcmp(s->v[s->slots[i] - 1].key, key) != 0) i = (i + 1) & m;
    return i;
}

struct rec *store_find(const struct store *s, const char *key) {
    if (!s->nslots) return NULL;
    size_t i = store_slot(s, key);
    return s->slots[i] ? &s->v[s->slots[i] - 1] : NULL;
}

/* Adds r (takes ownership of r->key, also on failure); a record with the same key is replaced,
 * so the latest line of the file wins. False on allocation failure. */
bool store_put(struct store *s, struct rec *r) {
    struct rec *old = store_find(s, r->key);
    if (old) {
        free(old->key);
        *old = *r;
        return true;
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 256;
        struct rec *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) { free(r->key); return false; }
        s->v = nv;
        s->cap = nc;
    }
    if ((s->n + 1) * 2 > s->nslots) {
        size_t ns = s->nslots ? s->nslots * 2 : 1024;
        size_t *sl = calloc(ns, sizeof *sl);
        if (!sl) { free(r->key); return false; }
        free(s->slots);
        s->slots = sl;
        s->nslots = ns;
        for (size_t i = 0; i < s->n; i++) s->slots[store_slot(s, s->v[i].key)] = i + 1;
    }
    s->v[s->n] = *r;
    s->slots[store_slot(s, r->key)] = ++s->n;
    return true;
}

/* The key of a record. settings NULL (--report) leaves the settings out, so the latest record
 * per problem, mode, threshold, sample and seed counts whatever settings produced it. */
char *make_key(const char *id, const char *mode, const char *thr, int64_t sample, uint64_t seed,
                      const char *settings) {
    struct sr_buf b = {0};
    sr_buf_printf(&b, "%s\x1f%s\x1f%s\x1f%lld\x1f%llu", id, mode, thr, (long long)sample, (unsigned long long)seed);
    if (settings) sr_buf_printf(&b, "\x1f%s", settings);
    return sr_buf_take(&b);
}

static double num_or(const struct sr_json *obj, const char *key, double dflt) {
    double v;
    return sr_json_num(sr_json_get(obj, key), &v) ? v : dflt;
}

/* Parses one results.jsonl line into *r. Returns NULL on success, else why the line is unusable. */
static const char *parse_record(const char *line, size_t len, bool with_settings, struct rec *r) {
    char jerr[128];
    struct sr_json *j = sr_json_parse(line, len, jerr, sizeof jerr);
    if (!j) return "not valid JSON";
    const char *why = NULL;
    const struct sr_json *id = sr_json_get(j, "id"), *mode = sr_json_get(j, "mode"),
                         *thr = sr_json_get(j, "threshold"), *seed = sr_json_get(j, "seed"),
                         *settings = sr_json_get(j, "settings"), *stats = sr_json_get(j, "stats");
    int64_t sample = 0;
    double thr_v = 0;
    bool correct = false;
    memset(r, 0, sizeof *r);
    if (j->type != SR_JSON_OBJECT) why = "not a JSON object";
    else if (!sr_json_str(id) || !sr_json_str(mode) || !sr_json_str(settings)) why = "id, mode or settings missing";
    else if (!thr || (!sr_json_is_null(thr) && !sr_json_num(thr, &thr_v))) why = "threshold missing";
    else if (!sr_json_int(sr_json_get(j, "sample"), &sample) || sample < 0) why = "sample missing";
    else if (!seed || seed->type != SR_JSON_NUMBER || seed->str[0] == '-') why = "seed missing";
    else if (!sr_json_bool(sr_json_get(j, "correct"), &correct)) why = "correct missing";
    else if (!sr_json_num(sr_json_get(j, "latency_ms"), &r->latency_ms)) why = "latency_ms missing";
    else if (!sr_json_num(sr_json_get(j, "tokens"), &r->tokens)) why = "tokens missing";
    if (!why) {
        char thr_s[32];
        if (sr_json_is_null(thr)) snprintf(thr_s, sizeof thr_s, "-");
        else snprintf(thr_s, sizeof thr_s, "%.9g", thr_v);
        r->correct = correct;
        r->judged = num_or(stats, "judged", 0);
        r->steps_small = num_or(stats, "steps_small", 0);
        r->sd_drafted = num_or(stats, "sd_drafted", 0);
        r->sd_accepted = num_or(stats, "sd_accepted", 0);
        r->key = make_key(id->str, mode->str, thr_s, sample, strtoull(seed->str, NULL, 10),
                          with_settings ? settings->str : NULL);
        if (!r->key) why = "out of memory";
    }
    sr_json_free(j);
    return why;
}

/* Reads every complete line of f into the store. An unterminated last line (a crash while it was
 * written) is dropped; *partial_at = its offset, or -1. Malformed complete lines are skipped with
 * a warning. Returns 0 or an exit code. */
static int load_records(FILE *f, const char *path, bool with_settings, struct store *s, size_t *n_lines,
                        long long *partial_at) {
    char *line = NULL;
    size_t cap = 0, lineno = 0, n_bad = 0;
    long long off = 0;
    ssize_t len;
    *partial_at = -1;
    *n_lines = 0;
    errno = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[len - 1] != '\n') { *partial_at = off; break; }
        off += len;
        size_t n = (size_t)len - 1;
        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ')) n--;
        if (n == 0) continue;
        struct rec r;
        const char *why = parse_record(line, n, with_settings, &r);
        if (why) {
            if (n_bad++ < 5) fprintf(stderr, PROG ": warning: %s line %zu ignored: %s\n", path, lineno, why);
            continue;
        }
        if (!store_put(s, &r)) { free(line); return fail("out of memory"); }
        (*n_lines)++;
    }
    bool err = ferror(f);
    free(line);
    if (err) return fail("cannot read %s: %s", path, strerror(errno));
    if (n_bad > 5) fprintf(stderr, PROG ": warning: %zu malformed lines in %s ignored\n", n_bad, path);
    return 0;
}
/* ------------------------------------------------------------------------------------------ */
/* One record as a JSON line                                                                  */

void key_(struct sr_buf *b, const char *k) {
    sr_buf_puts(b, ",");
    sr_buf_json_str(b, k, strlen(k));
    sr_buf_puts(b, ":");
}
void kv_str(struct sr_buf *b, const char *k, const char *v) {
    key_(b, k);
    if (v) sr_buf_json_str(b, v, strlen(v));
    else sr_buf_puts(b, "null");
}
void kv_num(struct sr_buf *b, const char *k, double v) {
    key_(b, k);
    sr_buf_json_num(b, v);
}
void kv_raw(struct sr_buf *b, const char *k, const char *raw) {
    key_(b, k);
    sr_buf_puts(b, raw);
}

char *record_json(const struct item *it, const struct config *c, bool gpqa, const struct sr_result *res,
                         const struct grade *g, double latency_ms, const struct sr_run_params *rp,
                         const char *backend) {
    struct sr_buf b = {0};
    sr_buf_puts(&b, "{\"id\":");
    sr_buf_json_str(&b, it->p->id, strlen(it->p->id));
    kv_str(&b, "mode", c->m->name);
    kv_raw(&b, "threshold", c->has_thr ? c->thr_str : "null");
    sr_buf_printf(&b, ",\"sample\":%lld,\"seed\":%llu", (long long)it->sample, (unsigned long long)it->seed);
    kv_str(&b, "settings", c->settings);
    kv_str(&b, "kind", gpqa ? "gpqa" : "math");
    kv_str(&b, "truth", it->truth);
    if (gpqa)
        sr_buf_printf(&b, ",\"choice_order\":[%d,%d,%d,%d]", it->perm[0], it->perm[1], it->perm[2], it->perm[3]);
    kv_str(&b, "answer", res->answer);
    kv_str(&b, "extracted", g->extracted);
    kv_raw(&b, "correct", g->correct ? "true" : "false");
    kv_num(&b, "latency_ms", latency_ms);
    kv_num(&b, "tokens", (double)(res->stats.n_adopted_tokens + res->stats.n_answer_tokens));
    kv_str(&b, "stop", sr_stop_str(res->stop));
    kv_str(&b, "backend", backend);
    key_(&b, "stats");
    sr_stats_to_json(&b, &res->stats);
    kv_str(&b, "text", res->text);
    if (C.save_steps) {
        char *full = sr_result_to_json(res, rp);
        if (!full) b.oom = true;
        else kv_raw(&b, "result", full);
        sr_free(full);
    }
    sr_buf_puts(&b, "}\n");
    return sr_buf_take(&b);
}
/* Opens OUT/results.jsonl for appending (locked against a second evaluation on the same
 * directory) and loads its records. --report only reads it. */
int open_results(struct state *S) {
    int err = C.report ? 0 : make_dirs(C.out);
    if (err) return fail("cannot create the output directory %s: %s", C.out, strerror(err));
    S->results_path = path_join(C.out, "results.jsonl");
    if (!S->results_path) return fail("out of memory");
    size_t n_lines = 0;
    long long partial = -1;
    if (C.report) {
        FILE *f = fopen(S->results_path, "rb");
        if (!f) return fail("cannot read %s: %s", S->results_path, strerror(errno));
        int rc = load_records(f, S->results_path, false, &S->store, &n_lines, &partial);
        fclose(f);
        return rc;
    }
    int fd = open(S->results_path, O_RDWR | O_CREAT | O_APPEND, 0666);
    if (fd < 0) return fail("cannot open %s: %s", S->results_path, strerror(errno));
    struct flock lk = {0};
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &lk) != 0) {
        close(fd);
        return fail("%s is in use by another " PROG " (one evaluation per output directory)", S->results_path);
    }
    S->results = fdopen(fd, "a+");
    if (!S->results) {
        close(fd);
        return fail("cannot open %s: %s", S->results_path, strerror(errno));
    }
    rewind(S->results);
    int rc = load_records(S->results, S->results_path, true, &S->store, &n_lines, &partial);
    if (rc) return rc;
    if (partial >= 0) {
        if (ftruncate(fileno(S->results), (off_t)partial) != 0)
            return fail("cannot truncate %s: %s", S->results_path, strerror(errno));
        fprintf(stderr, PROG ": dropped the unfinished last line of %s (an interrupted write); it will be redone\n",
                S->results_path);
    }
    if (fseek(S->results, 0, SEEK_END) != 0) return fail("cannot seek %s: %s", S->results_path, strerror(errno));
    return 0;
}
