/*
 * sha256.h: SHA-256 as lowercase hex (what sha256sum prints), for the hashes of the trained
 * models in meta.json.
 */
#ifndef SR_TRAIN_SHA256_H
#define SR_TRAIN_SHA256_H

#include <stddef.h>
#include <stdint.h>

void sr_sha256(const void *data, size_t n, char hex[65]);
/* 0, or -1 if the file cannot be read. */
int sr_sha256_file(const char *path, char hex[65]);

#endif
