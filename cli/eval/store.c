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

static double num_or(json_t *obj, const char *key, double dflt) {
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

/* Parses one results.jsonl line into *r. Returns NULL on success, else why the line is unusable. */
static const char *parse_record(const char *line, size_t len, bool with_settings, struct rec *r) {
    json_t *j = sr_jparse(line, len, NULL, 0);
    if (!j) return "not valid JSON";
    const char *why = NULL;
    json_t *id = json_object_get(j, "id"), *mode = json_object_get(j, "mode"), *thr = json_object_get(j, "threshold"),
           *seed = json_object_get(j, "seed"), *settings = json_object_get(j, "settings"),
           *stats = json_object_get(j, "stats"), *sample = json_object_get(j, "sample"),
           *correct = json_object_get(j, "correct"), *lat = json_object_get(j, "latency_ms"),
           *tok = json_object_get(j, "tokens");
    memset(r, 0, sizeof *r);
    if (!json_is_object(j)) why = "not a JSON object";
    else if (!json_is_string(id) || !json_is_string(mode) || !json_is_string(settings)) why = "id, mode or settings missing";
    else if (!json_is_null(thr) && !json_is_number(thr)) why = "threshold missing";
    else if (!json_is_integer(sample) || json_integer_value(sample) < 0) why = "sample missing";
    else if (!json_is_integer(seed) || json_integer_value(seed) < 0) why = "seed missing";
    else if (!json_is_boolean(correct)) why = "correct missing";
    else if (!json_is_number(lat)) why = "latency_ms missing";
    else if (!json_is_number(tok)) why = "tokens missing";
    if (!why) {
        char thr_s[32];
        if (json_is_null(thr)) snprintf(thr_s, sizeof thr_s, "-");
        else snprintf(thr_s, sizeof thr_s, "%.9g", json_number_value(thr));
        r->correct = json_is_true(correct);
        r->latency_ms = json_number_value(lat);
        r->tokens = json_number_value(tok);
        r->judged = num_or(stats, "judged", 0);
        r->steps_small = num_or(stats, "steps_small", 0);
        r->sd_drafted = num_or(stats, "sd_drafted", 0);
        r->sd_accepted = num_or(stats, "sd_accepted", 0);
        r->key = make_key(json_string_value(id), json_string_value(mode), thr_s, (int64_t)json_integer_value(sample),
                          (uint64_t)json_integer_value(seed), with_settings ? json_string_value(settings) : NULL);
        if (!r->key) why = "out of memory";
    }
    json_decref(j);
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

char *record_json(const struct item *it, const struct config *c, bool gpqa, const struct sr_result *res,
                  const struct grade *g, double latency_ms, const struct sr_run_params *rp, const char *backend) {
    json_t *o = json_object();
    if (!o) return NULL;
    bool ok = sr_jset(o, "id", sr_jstr(it->p->id)) && sr_jset(o, "mode", sr_jstr(c->m->name));
    /* thr_str ("%.9g") reads back exactly: the resume key is built from it. */
    ok = ok && sr_jset(o, "threshold", c->has_thr ? sr_jnum_exact(strtod(c->thr_str, NULL)) : json_null());
    ok = ok && sr_jset(o, "sample", json_integer((json_int_t)it->sample)) &&
         sr_jset(o, "seed", json_integer((json_int_t)it->seed)) && sr_jset(o, "settings", sr_jstr(c->settings)) &&
         sr_jset(o, "kind", sr_jstr(gpqa ? "gpqa" : "math")) && sr_jset(o, "truth", sr_jstr(it->truth));
    if (ok && gpqa)
        ok = sr_jset(o, "choice_order", json_pack("[iiii]", it->perm[0], it->perm[1], it->perm[2], it->perm[3]));
    ok = ok && sr_jset(o, "answer", sr_jstr(res->answer)) && sr_jset(o, "extracted", sr_jstr(g->extracted)) &&
         sr_jset(o, "correct", json_boolean(g->correct)) && sr_jset(o, "latency_ms", sr_jnum(latency_ms)) &&
         sr_jset(o, "tokens", sr_jnum((double)(res->stats.n_adopted_tokens + res->stats.n_answer_tokens))) &&
         sr_jset(o, "stop", sr_jstr(sr_stop_str(res->stop))) && sr_jset(o, "backend", sr_jstr(backend)) &&
         sr_jset(o, "stats", sr_stats_json(&res->stats)) && sr_jset(o, "text", sr_jstr(res->text));
    if (ok && C.save_steps) ok = sr_jset(o, "result", sr_result_json(res, rp));
    char *s = ok ? sr_jdump(o) : NULL;
    json_decref(o);
    if (!s) return NULL;
    size_t n = strlen(s);
    char *line = realloc(s, n + 2);
    if (!line) { free(s); return NULL; }
    line[n] = '\n';
    line[n + 1] = '\0';
    return line;
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
