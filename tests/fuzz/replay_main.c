/*
 * replay_main.c: a standalone driver for libFuzzer targets, used by the CTest `fuzz` label: runs
 * LLVMFuzzerTestOneInput over every regular file of each directory (or file) named in argv, so
 * the seed corpora are replayed under the normal (and sanitizer) builds without libFuzzer.
 * Each input is copied into a buffer of exactly its size so ASan sees any over-read.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); return -1; }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb) { free(buf); buf = NULL; }
            else buf = nb;
        }
    }
    fclose(f);
    if (!buf) { fprintf(stderr, "out of memory reading %s\n", path); return -1; }
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) { free(buf); return -1; }
    if (len) memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

int main(int argc, char **argv) {
    size_t files = 0;
    int bad = 0;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) { fprintf(stderr, "cannot stat %s\n", argv[a]); bad = 1; continue; }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[a]) == 0) files++; else bad = 1;
            continue;
        }
        DIR *d = opendir(argv[a]);
        if (!d) { fprintf(stderr, "cannot open %s\n", argv[a]); bad = 1; continue; }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            size_t n = strlen(argv[a]) + strlen(e->d_name) + 2;
            char *p = malloc(n);
            if (!p) { bad = 1; break; }
            snprintf(p, n, "%s/%s", argv[a], e->d_name);
            if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
                if (run_file(p) == 0) files++; else bad = 1;
            }
            free(p);
        }
        closedir(d);
    }
    printf("replayed %zu inputs\n", files);
    return bad || files == 0 ? 1 : 0;
}
