/*
 * test_dataset.c: unit tests for src/eval/dataset.c: the shared math sets, GPQA as CSV (quoted fields,
 * embedded newlines, doubled quotes, CRLF) and JSONL written into a scratch directory (argv[1],
 * the build directory under CTest), the per-problem shuffle, and error messages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "jsonutil.h"
#include "testutil.h"
#include "util.h"


static const char *scratch = ".";

static char *scratch_path(const char *name) {
    struct sr_buf b = {0};
    sr_buf_printf(&b, "%s/%s", scratch, name);
    return sr_buf_take(&b);
}

static bool write_file(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        return false;
    }
    bool ok = fwrite(text, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static void test_math(void) {
    struct sr_dataset ds;
    char err[256] = "";
    enum sr_status rc = sr_dataset_load(SR_DATA_DIR "/math500.jsonl", SR_DATASET_AUTO, 1, &ds, err, sizeof err);
    CHECK(rc == SR_OK);
    if (rc != SR_OK) { fprintf(stderr, "%s\n", err); return; }
    CHECK(ds.kind == SR_DATASET_MATH);
    CHECK(ds.count == 500);
    CHECK(strcmp(ds.problems[0].id, "test/precalculus/807.json") == 0);
    CHECK(strcmp(ds.problems[0].answer, "\\left( 3, \\frac{\\pi}{2} \\right)") == 0);
    CHECK(strncmp(ds.problems[0].problem, "Convert the point $(0,3)$", 25) == 0);
    bool all_ok = true;
    for (size_t i = 0; i < ds.count; i++) {
        const struct sr_problem *p = &ds.problems[i];
        if (!p->id || !p->problem[0] || !p->answer[0] || p->correct != -1 || p->choices[0]) all_ok = false;
    }
    CHECK(all_ok);
    CHECK(sr_dataset_find(&ds, "test/precalculus/807.json") == &ds.problems[0]);
    CHECK(sr_dataset_find(&ds, "nope") == NULL);
    printf("math500: %zu problems, first id %s\n", ds.count, ds.problems[0].id);
    sr_dataset_free(&ds);
    CHECK(ds.count == 0 && ds.problems == NULL);

    rc = sr_dataset_load(SR_DATA_DIR "/aime2024.jsonl", SR_DATASET_MATH, 1, &ds, err, sizeof err);
    CHECK(rc == SR_OK);
    if (rc != SR_OK) { fprintf(stderr, "%s\n", err); return; }
    CHECK(ds.count == 30);
    bool ids_ok = ds.count == 30;
    for (size_t i = 0; i < ds.count; i++) {
        char want[16];
        snprintf(want, sizeof want, "%zu", 60 + i);
        if (strcmp(ds.problems[i].id, want) != 0) ids_ok = false;
    }
    CHECK(ids_ok);
    CHECK(strcmp(ds.problems[0].answer, "204") == 0);
    printf("aime2024: %zu problems, ids %s..%s\n", ds.count, ds.problems[0].id, ds.problems[ds.count - 1].id);
    sr_dataset_free(&ds);
}

#define N_GPQA 24

/* The texts of GPQA test problem i (shared by the CSV and the JSONL file). */
static void gpqa_texts(int i, char q[128], char c[64], char w[3][64]) {
    if (i == 0) snprintf(q, 128, "He said \"hi\", then\nleft. Why?");
    else snprintf(q, 128, "Question %d, with a comma?", i);
    snprintf(c, 64, "Right %d", i);
    for (int k = 0; k < 3; k++) snprintf(w[k], 64, "Wrong %d.%d", i, k + 1);
}

/* CSV: extra columns, a different column order, quotes, embedded newlines, CRLF. */
static char *gpqa_csv(bool with_id) {
    struct sr_buf b = {0};
    sr_buf_printf(&b, "Pre-Revision Question,Incorrect Answer 1,Question,Correct Answer,"
                      "Incorrect Answer 2,Incorrect Answer 3%s\r\n",
                  with_id ? ",Record ID" : "");
    for (int i = 0; i < N_GPQA; i++) {
        char q[128], c[64], w[3][64];
        gpqa_texts(i, q, c, w);
        struct sr_buf qq = {0};
        for (const char *p = q; *p; p++) {
            if (*p == '"') sr_buf_puts(&qq, "\"\""); /* RFC 4180 doubled quote */
            else sr_buf_append(&qq, p, 1);
        }
        sr_buf_printf(&b, "\"old, \"\"text\"\"\n\",%s,\"%s\",\"%s\",%s,%s", w[0], qq.data, c, w[1], w[2]);
        if (with_id) sr_buf_printf(&b, ",rec%03d", i);
        sr_buf_puts(&b, i % 2 ? "\r\n" : "\n");
        sr_buf_free(&qq);
        if (i == 5) sr_buf_puts(&b, "\n"); /* a blank line is skipped */
    }
    return sr_buf_take(&b);
}

/* Appends s as a JSON string literal (jansson writes it). */
static void put_json_str(struct sr_buf *b, const char *s) {
    json_t *v = sr_jstr(s);
    char *t = json_dumps(v, JSON_ENCODE_ANY);
    if (t) sr_buf_puts(b, t);
    else b->oom = true;
    free(t);
    json_decref(v);
}

static char *gpqa_jsonl(void) {
    struct sr_buf b = {0};
    for (int i = 0; i < N_GPQA; i++) {
        char q[128], c[64], w[3][64];
        gpqa_texts(i, q, c, w);
        sr_buf_puts(&b, "{\"Record ID\": ");
        char id[16];
        snprintf(id, sizeof id, "rec%03d", i);
        put_json_str(&b, id);
        sr_buf_puts(&b, ", \"Question\": ");
        put_json_str(&b, q);
        sr_buf_puts(&b, ", \"Correct Answer\": ");
        put_json_str(&b, c);
        for (int k = 0; k < 3; k++) {
            sr_buf_printf(&b, ", \"Incorrect Answer %d\": ", k + 1);
            put_json_str(&b, w[k]);
        }
        sr_buf_puts(&b, ", \"Subdomain\": \"Physics\"}\n");
    }
    return sr_buf_take(&b);
}

/* Every problem has its texts, the correct letter is consistent; returns a mask of letters used. */
static unsigned check_gpqa(const struct sr_dataset *ds, bool with_id) {
    unsigned letters = 0;
    CHECK(ds->kind == SR_DATASET_GPQA);
    CHECK(ds->count == N_GPQA);
    for (size_t i = 0; i < ds->count && i < N_GPQA; i++) {
        const struct sr_problem *p = &ds->problems[i];
        char q[128], c[64], w[3][64], id[16];
        gpqa_texts((int)i, q, c, w);
        if (with_id) snprintf(id, sizeof id, "rec%03zu", i);
        else snprintf(id, sizeof id, "%zu", i);
        bool ok = strcmp(p->id, id) == 0 && strcmp(p->problem, q) == 0 && p->correct >= 0 &&
                  p->correct < 4 && strcmp(p->choices[p->correct], c) == 0 && p->answer &&
                  p->answer[0] == 'A' + p->correct && p->answer[1] == '\0';
        int wrong_seen = 0;
        for (int k = 0; ok && k < 4; k++)
            for (int j = 0; j < 3; j++)
                if (strcmp(p->choices[k], w[j]) == 0) wrong_seen |= 1 << j;
        if (!ok || wrong_seen != 7) {
            fprintf(stderr, "gpqa problem %zu (id %s) wrong: [%s] correct=%d\n", i, p->id, p->problem, p->correct);
            t_fail++;
        } else {
            t_pass++;
        }
        if (p->correct >= 0 && p->correct < 4) letters |= 1u << p->correct;
    }
    return letters;
}

static bool same_order(const struct sr_dataset *a, const struct sr_dataset *b) {
    if (a->count != b->count) return false;
    for (size_t i = 0; i < a->count; i++) {
        if (a->problems[i].correct != b->problems[i].correct) return false;
        for (int k = 0; k < 4; k++)
            if (strcmp(a->problems[i].choices[k], b->problems[i].choices[k]) != 0) return false;
    }
    return true;
}

static void test_gpqa(void) {
    char *csv_path = scratch_path("gpqa_test.csv");
    char *csv_noid_path = scratch_path("gpqa_test_noid.csv");
    char *jsonl_path = scratch_path("gpqa_test.jsonl");
    char *csv = gpqa_csv(true), *csv_noid = gpqa_csv(false), *jsonl = gpqa_jsonl();
    CHECK(write_file(csv_path, csv, strlen(csv)));
    CHECK(write_file(csv_noid_path, csv_noid, strlen(csv_noid)));
    CHECK(write_file(jsonl_path, jsonl, strlen(jsonl)));
    free(csv);
    free(csv_noid);
    free(jsonl);

    char err[256] = "";
    struct sr_dataset a, b, c, d, e;
    enum sr_status rc = sr_dataset_load(csv_path, SR_DATASET_AUTO, 42, &a, err, sizeof err);
    CHECK(rc == SR_OK);
    if (rc != SR_OK) fprintf(stderr, "csv: %s\n", err);
    unsigned letters = check_gpqa(&a, true);
    CHECK(letters == 0xF); /* all four letters occur */
    printf("gpqa csv: %zu problems, letters used mask 0x%X, first correct %c\n", a.count, letters,
           a.count ? a.problems[0].answer[0] : '?');

    rc = sr_dataset_load(csv_path, SR_DATASET_GPQA, 42, &b, err, sizeof err);
    CHECK(rc == SR_OK);
    CHECK(same_order(&a, &b)); /* reproducible with the same seed */

    rc = sr_dataset_load(csv_path, SR_DATASET_GPQA, 43, &c, err, sizeof err);
    CHECK(rc == SR_OK);
    CHECK(!same_order(&a, &c)); /* another seed, another arrangement */
    check_gpqa(&c, true);

    rc = sr_dataset_load(jsonl_path, SR_DATASET_AUTO, 42, &d, err, sizeof err);
    CHECK(rc == SR_OK);
    if (rc != SR_OK) fprintf(stderr, "jsonl: %s\n", err);
    check_gpqa(&d, true);
    CHECK(same_order(&a, &d)); /* shuffle depends on seed and id only, not on the file format */

    rc = sr_dataset_load(csv_noid_path, SR_DATASET_AUTO, 42, &e, err, sizeof err);
    CHECK(rc == SR_OK);
    check_gpqa(&e, false);

    sr_dataset_free(&a);
    sr_dataset_free(&b);
    sr_dataset_free(&c);
    sr_dataset_free(&d);
    sr_dataset_free(&e);
    free(csv_path);
    free(csv_noid_path);
    free(jsonl_path);

    /* The shuffle is close to uniform over many ids. */
    int count[4] = {0};
    for (int i = 0; i < 4000; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        int perm[4];
        sr_dataset_shuffle(7, id, perm);
        for (int k = 0; k < 4; k++)
            if (perm[k] == 0) count[k]++;
    }
    for (int k = 0; k < 4; k++) CHECK(count[k] > 850 && count[k] < 1150);
}

/* Writes text to a scratch file, loads it, expects failure with rc and a message containing want. */
static void expect_error(const char *name, const char *text, enum sr_dataset_kind kind,
                         enum sr_status want_rc, const char *want) {
    char *path = scratch_path(name);
    CHECK(write_file(path, text, strlen(text)));
    struct sr_dataset ds;
    char err[256] = "";
    enum sr_status rc = sr_dataset_load(path, kind, 1, &ds, err, sizeof err);
    if (rc != want_rc || !strstr(err, want) || ds.count != 0 || ds.problems != NULL) {
        fprintf(stderr, "error case %s: rc %d, err [%s], want rc %d and [%s]\n", name, rc, err, want_rc, want);
        t_fail++;
    } else {
        printf("  %s -> %s\n", name, err);
        t_pass++;
    }
    sr_dataset_free(&ds);
    free(path);
}

static void test_errors(void) {
    expect_error("bad1.jsonl",
                 "{\"id\":1,\"problem\":\"p\",\"answer\":\"1\"}\n\n{\"id\":2,\"problem\":\"p\" \"answer\":\"2\"}\n",
                 SR_DATASET_AUTO, SR_ERR_INVALID_ARG, "bad1.jsonl line 3 col 30: '}' expected near '\"answer\"'");
    expect_error("bad2.jsonl", "{\"id\":1,\"problem\":\"p\"}\n", SR_DATASET_MATH, SR_ERR_INVALID_ARG,
                 "line 1: missing field \"answer\"");
    expect_error("bad3.jsonl", "{\"id\":1,\"problem\":\"p\",\"answer\":\"1\"}\n[1,2]\n", SR_DATASET_AUTO,
                 SR_ERR_INVALID_ARG, "line 2: expected a JSON object");
    expect_error("bad4.csv", "Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2\nq,a,b,c\n",
                 SR_DATASET_AUTO, SR_ERR_INVALID_ARG, "no \"Incorrect Answer 3\" column");
    expect_error("bad5.csv",
                 "Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n"
                 "q,a,b,c,d\n\"q2\nstill q2,a,b,c,d\n",
                 SR_DATASET_AUTO, SR_ERR_INVALID_ARG, "line 3: unterminated quoted field");
    expect_error("bad6.csv",
                 "Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n"
                 "q,a,b,c,d\n\"multi\nline\",a,b,c\n",
                 SR_DATASET_AUTO, SR_ERR_INVALID_ARG, "line 3: 4 fields, but the header has 5");
    expect_error("bad7.csv",
                 "Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n"
                 "\"q\"x,a,b,c,d\n",
                 SR_DATASET_AUTO, SR_ERR_INVALID_ARG, "line 2: unexpected character 'x' after a closing quote");
    expect_error("bad8.jsonl", "\n  \n", SR_DATASET_AUTO, SR_ERR_INVALID_ARG, "no records");
    expect_error("bad9.jsonl", "{\"Question\":\"q\",\"Correct Answer\":\"a\",\"Incorrect Answer 1\":\"b\"}\n",
                 SR_DATASET_AUTO, SR_ERR_INVALID_ARG, "line 1: missing field \"Incorrect Answer 2\"");
    expect_error("bad10.json", "[{\"problem\":\"p\",\"answer\":1},\n {\"problem\":\"p\",\"answer\":]\n",
                 SR_DATASET_AUTO, SR_ERR_INVALID_ARG, "bad10.json line 2 col 26: unexpected token near ']'");
    expect_error("bad11.csv", "problem,answer\n1+1,2\n", SR_DATASET_MATH, SR_ERR_INVALID_ARG,
                 "CSV is supported for GPQA only");

    struct sr_dataset ds;
    char err[256] = "";
    enum sr_status rc = sr_dataset_load("/nonexistent/dir/x.jsonl", SR_DATASET_AUTO, 1, &ds, err, sizeof err);
    CHECK(rc == SR_ERR_IO && strstr(err, "cannot open /nonexistent/dir/x.jsonl") && ds.count == 0);
    rc = sr_dataset_load(NULL, SR_DATASET_AUTO, 1, &ds, err, sizeof err);
    CHECK(rc == SR_ERR_INVALID_ARG);
    CHECK(sr_dataset_load("x", SR_DATASET_AUTO, 1, NULL, NULL, 0) == SR_ERR_INVALID_ARG);
    sr_dataset_free(NULL);

    /* A JSON array of math records with integer answers and ids, and a BOM. */
    char *path = scratch_path("arr.json");
    const char *arr = "\xEF\xBB\xBF[{\"id\": 7, \"problem\": \"1+1?\", \"answer\": 2},"
                      " {\"unique_id\": \"u\", \"question\": \"2+2?\", \"answer\": \" 4 \"}]";
    CHECK(write_file(path, arr, strlen(arr)));
    rc = sr_dataset_load(path, SR_DATASET_AUTO, 1, &ds, err, sizeof err);
    CHECK(rc == SR_OK && ds.count == 2 && ds.kind == SR_DATASET_MATH);
    if (rc == SR_OK && ds.count == 2) {
        CHECK(strcmp(ds.problems[0].id, "7") == 0 && strcmp(ds.problems[0].answer, "2") == 0);
        CHECK(strcmp(ds.problems[1].id, "u") == 0 && strcmp(ds.problems[1].problem, "2+2?") == 0 &&
              strcmp(ds.problems[1].answer, "4") == 0);
    }
    sr_dataset_free(&ds);
    free(path);
}

int main(int argc, char **argv) {
    if (argc > 1) scratch = argv[1];
    test_math();
    test_gpqa();
    test_errors();
    return test_summary("test_dataset");
}
