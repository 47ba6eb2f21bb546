/*
 * dataset.h: benchmark problem sets for the CLI and benchmarks (internal).
 *
 * Formats:
 *   - math JSON Lines as in data/ (math500.jsonl, aime2024.jsonl): "id" (string or
 *     integer), "problem", "answer" (string or number); "unique_id"/"question" are accepted too;
 *   - GPQA in its published layouts, supplied by the user: JSON Lines (or one JSON array) or CSV
 *     (RFC 4180: quoted fields, embedded newlines, doubled quotes) with the columns "Question",
 *     "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3" and
 *     optionally "Record ID" (column names compared case-insensitively).
 * GPQA choices are shuffled per problem with a PRNG seeded from shuffle_seed mixed with the
 * problem id, so the correct answer's letter varies across problems (upstream always puts it at
 * (A), see SPECREASON-REFERENCE §3) and is reproducible for a given seed.
 */
#ifndef SR_DATASET_H
#define SR_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "specreason.h"

enum sr_dataset_kind {
    SR_DATASET_AUTO = 0, /* decide from the file: ".csv" or GPQA column names -> GPQA, else math */
    SR_DATASET_MATH,
    SR_DATASET_GPQA,
};

struct sr_problem {
    char *id;         /* math: the record's id (integers as decimal text); GPQA: "Record ID", else
                         the 0-based row index */
    char *problem;    /* problem statement (GPQA: the question, without choices) */
    char *answer;     /* math: the reference answer; GPQA: the correct letter "A".."D" */
    char *choices[4]; /* GPQA: the four answer texts after shuffling, trimmed; NULL for math */
    int correct;      /* GPQA: index 0..3 of the correct choice after shuffling; -1 for math */
};

struct sr_dataset {
    enum sr_dataset_kind kind; /* SR_DATASET_MATH or SR_DATASET_GPQA after a successful load */
    struct sr_problem *problems;
    size_t count;
};

/* Loads path into *out (caller owns; free with sr_dataset_free). kind SR_DATASET_AUTO detects
 * the format. Blank lines are skipped. Returns SR_OK, or SR_ERR_IO (unreadable file),
 * SR_ERR_INVALID_ARG (malformed content: err says "PATH line N col C: ..." or names the missing
 * field/column) or SR_ERR_NOMEM; on failure *out is left empty. err (if non-NULL and errlen > 0)
 * receives a NUL-terminated message. */
SR_NODISCARD enum sr_status sr_dataset_load(const char *path, enum sr_dataset_kind kind,
                                            uint64_t shuffle_seed, struct sr_dataset *out,
                                            char *err, size_t errlen);

/* Frees every problem and empties *ds. NULL and an empty dataset are no-ops. */
void sr_dataset_free(struct sr_dataset *ds);

/* The problem with this id (borrowed from ds), or NULL. Linear search. */
const struct sr_problem *sr_dataset_find(const struct sr_dataset *ds, const char *id);

/* The choice permutation used for a GPQA problem: perm[k] = which source answer goes to letter k
 * (0 = the correct answer, 1..3 = "Incorrect Answer 1..3"). Exposed for tests and tools. */
void sr_dataset_shuffle(uint64_t seed, const char *id, int perm[4]);

#endif
