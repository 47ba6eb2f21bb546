/*
 * dataset.c: loading math JSONL and GPQA (JSONL / JSON array / CSV) problem sets, with the
 * per-problem seeded shuffle of GPQA choices. See dataset.h for the formats.
 *
 * The whole file is read into memory (benchmark files are a few MB at most), then split into
 * records; every error names the file and the line (and column for JSON) where it was found.
 */
#include "dataset.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonutil.h"
#include "util.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* Shuffling                                                                                  */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001B3ULL;
    }
    return h;
}

void sr_dataset_shuffle(uint64_t seed, const char *id, int perm[4]) {
    /* seed and id hash are mixed through splitmix64 so nearby seeds or ids give unrelated orders */
    uint64_t state = seed;
    uint64_t a = splitmix64(&state);
    state = a ^ fnv1a64(id ? id : "");
    for (int k = 0; k < 4; k++) perm[k] = k;
    for (int i = 3; i > 0; i--) { /* Fisher-Yates; the modulo bias of 2^64 % 4 is nil */
        int j = (int)(splitmix64(&state) % (uint64_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Dataset building                                                                           */

struct loader {
    const char *path;
    uint64_t seed;
    struct sr_dataset *ds;
    size_t cap;
    char *err;
    size_t errlen;
};

static void free_problem(struct sr_problem *p) {
    free(p->id);
    free(p->problem);
    free(p->answer);
    for (int k = 0; k < 4; k++) free(p->choices[k]);
    memset(p, 0, sizeof *p);
}

void sr_dataset_free(struct sr_dataset *ds) {
    if (!ds) return;
    for (size_t i = 0; i < ds->count; i++) free_problem(&ds->problems[i]);
    free(ds->problems);
    ds->problems = NULL;
    ds->count = 0;
}

const struct sr_problem *sr_dataset_find(const struct sr_dataset *ds, const char *id) {
    if (!ds || !id) return NULL;
    for (size_t i = 0; i < ds->count; i++)
        if (ds->problems[i].id && strcmp(ds->problems[i].id, id) == 0) return &ds->problems[i];
    return NULL;
}

/* A trimmed copy of s[0..n). */
static char *trimmed(const char *s, size_t n) {
    while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) { s++; n--; }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
    return sr_strndup(s, n);
}

/* Appends a problem (takes ownership of p's strings, also on failure). */
static enum sr_status push(struct loader *L, struct sr_problem *p) {
    struct sr_dataset *ds = L->ds;
    if (ds->count == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 64;
        struct sr_problem *np = realloc(ds->problems, nc * sizeof *np);
        if (!np) {
            free_problem(p);
            set_err(L->err, L->errlen, "%s: out of memory", L->path);
            return SR_ERR_NOMEM;
        }
        ds->problems = np;
        L->cap = nc;
    }
    ds->problems[ds->count++] = *p;
    return SR_OK;
}

/* Builds a GPQA problem from the question, the correct and the three incorrect answers. */
static enum sr_status add_gpqa(struct loader *L, const char *id, const char *q, size_t ql,
                               const char *const ans[4], const size_t lens[4]) {
    struct sr_problem p = {0};
    p.id = sr_strdup(id);
    p.problem = trimmed(q, ql);
    int perm[4];
    sr_dataset_shuffle(L->seed, id, perm);
    p.correct = -1;
    for (int k = 0; k < 4; k++) {
        p.choices[k] = trimmed(ans[perm[k]], lens[perm[k]]);
        if (perm[k] == 0) p.correct = k;
    }
    char letter[2] = {(char)('A' + p.correct), '\0'};
    p.answer = sr_strdup(letter);
    bool oom = !p.id || !p.problem || !p.answer;
    for (int k = 0; k < 4; k++) oom = oom || !p.choices[k];
    if (oom) {
        free_problem(&p);
        set_err(L->err, L->errlen, "%s: out of memory", L->path);
        return SR_ERR_NOMEM;
    }
    return push(L, &p);
}

/* ------------------------------------------------------------------------------------------ */
/* JSON records                                                                               */

static bool ascii_ieq(const char *a, size_t an, const char *b) {
    size_t bn = strlen(b);
    if (an != bn) return false;
    for (size_t i = 0; i < an; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
        if (x != y) return false;
    }
    return true;
}

/* Member of obj whose key equals name case-insensitively (the last such one). */
static json_t *get_ci(json_t *obj, const char *name) {
    json_t *found = NULL, *v;
    const char *k;
    json_object_foreach(obj, k, v) {
        if (ascii_ieq(k, strlen(k), name)) found = v;
    }
    return found;
}

/* A text field: a string member's value, or a number member as text ("60"). */
struct text {
    const char *str;
    size_t len;
    char num[40];
};

/* The first of names present as a string or number; false if none. */
static bool text_field(json_t *obj, const char *const *names, struct text *t) {
    for (; *names; names++) {
        json_t *v = get_ci(obj, *names);
        if (json_is_string(v)) {
            t->str = json_string_value(v);
            t->len = json_string_length(v);
            return true;
        }
        if (sr_jnum_text(v, t->num, sizeof t->num)) {
            t->str = t->num;
            t->len = strlen(t->num);
            return true;
        }
    }
    return false;
}

static const char *const k_id[] = {"id", "unique_id", "problem_id", NULL};
static const char *const k_problem[] = {"problem", "question", NULL};
static const char *const k_answer[] = {"answer", NULL};
static const char *const k_gq[] = {"Question", NULL};
static const char *const k_gc[] = {"Correct Answer", NULL};
static const char *const k_gi[3][2] = {{"Incorrect Answer 1", NULL},
                                       {"Incorrect Answer 2", NULL},
                                       {"Incorrect Answer 3", NULL}};
static const char *const k_grid[] = {"Record ID", NULL};

static bool looks_gpqa(json_t *rec) {
    struct text t;
    return json_is_object(rec) && text_field(rec, k_gc, &t);
}

/* `where` names the record in messages: "line 12" (JSONL) or "record 12" (JSON array). */
static enum sr_status add_json_record(struct loader *L, json_t *rec, const char *where, size_t index) {
    if (!json_is_object(rec)) {
        set_err(L->err, L->errlen, "%s %s: expected a JSON object", L->path, where);
        return SR_ERR_INVALID_ARG;
    }
    char idx[32];
    snprintf(idx, sizeof idx, "%zu", index);
    if (L->ds->kind == SR_DATASET_GPQA) {
        struct text q, c, inc[3], rid;
        bool hq = text_field(rec, k_gq, &q), hc = text_field(rec, k_gc, &c), hi[3];
        for (int k = 0; k < 3; k++) hi[k] = text_field(rec, k_gi[k], &inc[k]);
        const char *missing = !hq ? "Question" : !hc ? "Correct Answer" : !hi[0] ? "Incorrect Answer 1"
                            : !hi[1] ? "Incorrect Answer 2" : !hi[2] ? "Incorrect Answer 3" : NULL;
        if (missing) {
            set_err(L->err, L->errlen, "%s %s: missing field \"%s\"", L->path, where, missing);
            return SR_ERR_INVALID_ARG;
        }
        bool hr = text_field(rec, k_grid, &rid);
        const char *ans[4] = {c.str, inc[0].str, inc[1].str, inc[2].str};
        const size_t lens[4] = {c.len, inc[0].len, inc[1].len, inc[2].len};
        return add_gpqa(L, hr && rid.len ? rid.str : idx, q.str, q.len, ans, lens);
    }
    struct text id, pr, an;
    bool hid = text_field(rec, k_id, &id), hpr = text_field(rec, k_problem, &pr), han = text_field(rec, k_answer, &an);
    if (!hpr || pr.str == pr.num) {
        set_err(L->err, L->errlen, "%s %s: missing string field \"problem\"", L->path, where);
        return SR_ERR_INVALID_ARG;
    }
    if (!han) {
        set_err(L->err, L->errlen, "%s %s: missing field \"answer\" (string or number)", L->path, where);
        return SR_ERR_INVALID_ARG;
    }
    struct sr_problem p = {0};
    p.correct = -1;
    p.id = sr_strdup(hid ? id.str : idx);
    p.problem = sr_strndup(pr.str, pr.len);
    p.answer = trimmed(an.str, an.len);
    if (!p.id || !p.problem || !p.answer) {
        free_problem(&p);
        set_err(L->err, L->errlen, "%s: out of memory", L->path);
        return SR_ERR_NOMEM;
    }
    return push(L, &p);
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
    return true;
}

static enum sr_status load_jsonl(struct loader *L, const char *data, size_t len) {
    size_t line = 0, index = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && data[e] != '\n') e++;
        line++;
        if (!blank(data + i, e - i)) {
            size_t col = 0;
            char msg[JSON_ERROR_TEXT_LENGTH];
            json_t *rec = sr_jparse_at(data + i, e - i, NULL, &col, msg, sizeof msg);
            if (!rec) {
                set_err(L->err, L->errlen, "%s line %zu col %zu: %s", L->path, line, col, msg);
                return SR_ERR_INVALID_ARG;
            }
            if (L->ds->kind == SR_DATASET_AUTO)
                L->ds->kind = looks_gpqa(rec) ? SR_DATASET_GPQA : SR_DATASET_MATH;
            char where[40];
            snprintf(where, sizeof where, "line %zu", line);
            enum sr_status rc = add_json_record(L, rec, where, index++);
            json_decref(rec);
            if (rc != SR_OK) return rc;
        }
        i = e + 1;
    }
    return SR_OK;
}

static enum sr_status load_json_array(struct loader *L, const char *data, size_t len) {
    size_t line = 0, col = 0;
    char msg[JSON_ERROR_TEXT_LENGTH];
    json_t *doc = sr_jparse_at(data, len, &line, &col, msg, sizeof msg);
    if (!doc) {
        set_err(L->err, L->errlen, "%s line %zu col %zu: %s", L->path, line, col, msg);
        return SR_ERR_INVALID_ARG;
    }
    enum sr_status rc = SR_OK;
    if (!json_is_array(doc)) {
        set_err(L->err, L->errlen, "%s: expected a JSON array of records", L->path);
        rc = SR_ERR_INVALID_ARG;
    }
    for (size_t i = 0; rc == SR_OK && i < json_array_size(doc); i++) {
        if (L->ds->kind == SR_DATASET_AUTO)
            L->ds->kind = looks_gpqa(json_array_get(doc, i)) ? SR_DATASET_GPQA : SR_DATASET_MATH;
        char where[40];
        snprintf(where, sizeof where, "record %zu", i);
        rc = add_json_record(L, json_array_get(doc, i), where, i);
    }
    json_decref(doc);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* CSV (RFC 4180)                                                                             */

struct csv_row {
    struct sr_buf *fields;
    size_t count, cap;
};

static void csv_row_free(struct csv_row *r) {
    for (size_t i = 0; i < r->cap; i++) sr_buf_free(&r->fields[i]);
    free(r->fields);
    memset(r, 0, sizeof *r);
}

static struct sr_buf *csv_new_field(struct csv_row *r) {
    if (r->count == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 16;
        struct sr_buf *nf = realloc(r->fields, nc * sizeof *nf);
        if (!nf) return NULL;
        memset(nf + r->cap, 0, (nc - r->cap) * sizeof *nf);
        r->fields = nf;
        r->cap = nc;
    }
    struct sr_buf *f = &r->fields[r->count++];
    sr_buf_clear(f);
    sr_buf_append(f, "", 0); /* so data is a C string even for an empty field */
    return f;
}

/* Reads one record at *pos into r; *line is the current line (advanced past embedded and final
 * newlines). Returns SR_OK, or an error with err set (`start` = the record's first line). */
static enum sr_status csv_read_row(struct loader *L, const char *s, size_t n, size_t *pos,
                                   size_t *line, struct csv_row *r) {
    size_t i = *pos, start = *line;
    r->count = 0;
    for (;;) {
        struct sr_buf *f = csv_new_field(r);
        if (!f) goto oom;
        if (i < n && s[i] == '"') {
            i++;
            for (;;) {
                if (i >= n) {
                    set_err(L->err, L->errlen, "%s line %zu: unterminated quoted field", L->path, start);
                    return SR_ERR_INVALID_ARG;
                }
                size_t run = i;
                while (run < n && s[run] != '"' && s[run] != '\n' && s[run] != '\r') run++;
                sr_buf_append(f, s + i, run - i);
                i = run;
                if (i >= n) continue;
                if (s[i] == '\r') { /* CRLF inside a field becomes LF */
                    if (i + 1 >= n || s[i + 1] != '\n') sr_buf_append(f, "\r", 1);
                    i++;
                    continue;
                }
                if (s[i] == '\n') { sr_buf_append(f, "\n", 1); (*line)++; i++; continue; }
                if (i + 1 < n && s[i + 1] == '"') { sr_buf_append(f, "\"", 1); i += 2; continue; }
                i++; /* closing quote */
                break;
            }
            if (i < n && s[i] != ',' && s[i] != '\n' && s[i] != '\r') {
                set_err(L->err, L->errlen, "%s line %zu: unexpected character '%c' after a closing quote",
                        L->path, *line, s[i]);
                return SR_ERR_INVALID_ARG;
            }
        } else {
            size_t run = i;
            while (run < n && s[run] != ',' && s[run] != '\n' && s[run] != '\r') run++;
            sr_buf_append(f, s + i, run - i);
            i = run;
        }
        if (f->oom) goto oom;
        if (i < n && s[i] == ',') { i++; continue; }
        if (i < n && s[i] == '\r') i++;
        if (i < n && s[i] == '\n') i++;
        (*line)++;
        break;
    }
    *pos = i;
    return SR_OK;
oom:
    set_err(L->err, L->errlen, "%s: out of memory", L->path);
    return SR_ERR_NOMEM;
}

static bool row_blank(const struct csv_row *r) {
    for (size_t i = 0; i < r->count; i++)
        if (!blank(r->fields[i].data, r->fields[i].len)) return false;
    return true;
}

static long find_column(const struct csv_row *hdr, const char *name) {
    for (size_t i = 0; i < hdr->count; i++) {
        const char *h = hdr->fields[i].data;
        size_t hl = hdr->fields[i].len;
        while (hl > 0 && (*h == ' ' || *h == '\t')) { h++; hl--; }
        while (hl > 0 && (h[hl - 1] == ' ' || h[hl - 1] == '\t')) hl--;
        if (ascii_ieq(h, hl, name)) return (long)i;
    }
    return -1;
}

static enum sr_status load_csv(struct loader *L, const char *s, size_t n) {
    struct csv_row hdr = {0}, row = {0};
    size_t pos = 0, line = 1;
    enum sr_status rc;
    do {
        if (pos >= n) {
            set_err(L->err, L->errlen, "%s: empty CSV file (expected a header row)", L->path);
            rc = SR_ERR_INVALID_ARG;
            goto done;
        }
        rc = csv_read_row(L, s, n, &pos, &line, &hdr);
        if (rc != SR_OK) goto done;
    } while (row_blank(&hdr));
    static const char *const cols[5] = {"Question", "Correct Answer", "Incorrect Answer 1",
                                        "Incorrect Answer 2", "Incorrect Answer 3"};
    long ci[5];
    for (int k = 0; k < 5; k++) {
        ci[k] = find_column(&hdr, cols[k]);
        if (ci[k] < 0) {
            set_err(L->err, L->errlen, "%s: the CSV header has no \"%s\" column", L->path, cols[k]);
            rc = SR_ERR_INVALID_ARG;
            goto done;
        }
    }
    long rid = find_column(&hdr, "Record ID");
    size_t index = 0;
    while (pos < n) {
        size_t start = line;
        rc = csv_read_row(L, s, n, &pos, &line, &row);
        if (rc != SR_OK) goto done;
        if (row_blank(&row)) continue;
        if (row.count != hdr.count) {
            set_err(L->err, L->errlen, "%s line %zu: %zu fields, but the header has %zu", L->path, start,
                    row.count, hdr.count);
            rc = SR_ERR_INVALID_ARG;
            goto done;
        }
        const struct sr_buf *q = &row.fields[ci[0]];
        if (blank(q->data, q->len)) {
            set_err(L->err, L->errlen, "%s line %zu: empty \"Question\"", L->path, start);
            rc = SR_ERR_INVALID_ARG;
            goto done;
        }
        const char *ans[4];
        size_t lens[4];
        for (int k = 0; k < 4; k++) {
            ans[k] = row.fields[ci[k + 1]].data;
            lens[k] = row.fields[ci[k + 1]].len;
        }
        char idx[32];
        snprintf(idx, sizeof idx, "%zu", index);
        char *id = NULL;
        if (rid >= 0 && !blank(row.fields[rid].data, row.fields[rid].len)) {
            id = trimmed(row.fields[rid].data, row.fields[rid].len);
            if (!id) {
                set_err(L->err, L->errlen, "%s: out of memory", L->path);
                rc = SR_ERR_NOMEM;
                goto done;
            }
        }
        rc = add_gpqa(L, id ? id : idx, q->data, q->len, ans, lens);
        free(id);
        if (rc != SR_OK) goto done;
        index++;
    }
    rc = SR_OK;
done:
    csv_row_free(&hdr);
    csv_row_free(&row);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */

static bool ends_with_ci(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && ascii_ieq(s + n - m, m, suffix);
}

enum sr_status sr_dataset_load(const char *path, enum sr_dataset_kind kind, uint64_t shuffle_seed,
                               struct sr_dataset *out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) {
        set_err(err, errlen, "sr_dataset_load: out is NULL");
        return SR_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof *out);
    if (!path || (kind != SR_DATASET_AUTO && kind != SR_DATASET_MATH && kind != SR_DATASET_GPQA)) {
        set_err(err, errlen, "sr_dataset_load: invalid path or kind");
        return SR_ERR_INVALID_ARG;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return SR_ERR_IO;
    }
    struct sr_buf b = {0};
    char tmp[65536];
    size_t got;
    while ((got = fread(tmp, 1, sizeof tmp, f)) > 0) sr_buf_append(&b, tmp, got);
    bool read_err = ferror(f) != 0;
    fclose(f);
    if (read_err) {
        sr_buf_free(&b);
        set_err(err, errlen, "cannot read %s", path);
        return SR_ERR_IO;
    }
    if (b.oom) {
        sr_buf_free(&b);
        set_err(err, errlen, "%s: out of memory", path);
        return SR_ERR_NOMEM;
    }
    const char *data = b.data ? b.data : "";
    size_t len = b.len;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) { data += 3; len -= 3; }
    size_t first = 0;
    while (first < len && (data[first] == ' ' || data[first] == '\t' || data[first] == '\r' ||
                           data[first] == '\n'))
        first++;

    struct loader L = {path, shuffle_seed, out, 0, err, errlen};
    out->kind = kind;
    bool csv = ends_with_ci(path, ".csv") || (first < len && data[first] != '{' && data[first] != '[');
    enum sr_status rc;
    if (first >= len) {
        set_err(err, errlen, "%s: no records", path);
        rc = SR_ERR_INVALID_ARG;
    } else if (csv) {
        if (kind == SR_DATASET_MATH) {
            set_err(err, errlen, "%s: CSV is supported for GPQA only (math data is JSON Lines)", path);
            rc = SR_ERR_INVALID_ARG;
        } else {
            out->kind = SR_DATASET_GPQA;
            rc = load_csv(&L, data, len);
        }
    } else if (data[first] == '[') {
        rc = load_json_array(&L, data, len);
    } else {
        rc = load_jsonl(&L, data, len);
    }
    if (rc == SR_OK && out->count == 0) {
        set_err(err, errlen, "%s: no records", path);
        rc = SR_ERR_INVALID_ARG;
    }
    sr_buf_free(&b);
    if (rc != SR_OK) {
        sr_dataset_free(out);
        memset(out, 0, sizeof *out);
    }
    return rc;
}
