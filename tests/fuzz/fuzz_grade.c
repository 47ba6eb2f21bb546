/*
 * fuzz_grade.c: libFuzzer target for src/eval/grade.c. The input is one model output for extraction
 * and choice; split at its first NUL (else in the middle) it is also a pair of answers for
 * normalisation and comparison, checking that equality is reflexive and symmetric.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "specreason_grade.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    char *ext = sr_grade_extract(text, size);
    (void)sr_grade_choice(text, size);
    const uint8_t *nul = memchr(data, 0, size);
    size_t cut = nul ? (size_t)(nul - data) : size / 2;
    char *a = sr_strndup(text, cut);
    char *b = sr_strndup(text + cut, size - cut);
    char *na = a ? sr_grade_normalize(a) : NULL;
    if (a && b) {
        if (sr_grade_equal(a, b) != sr_grade_equal(b, a)) __builtin_trap();
        if (na && na[0] && !sr_grade_equal(a, a)) __builtin_trap();
        if (ext) (void)sr_grade_equal(ext, b);
    }
    free(na);
    free(a);
    free(b);
    free(ext);
    return 0;
}
