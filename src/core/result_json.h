/*
 * result_json.h: pieces of a result's JSON form shared by the library (sr_result_to_json) and the
 * tools (specreason-eval's records), so that every writer names the statistics alike.
 */
#ifndef SR_RESULT_JSON_H
#define SR_RESULT_JSON_H

#include "specreason.h"
#include "util.h"

/* Appends every field of struct sr_stats as one JSON object. */
void sr_stats_to_json(struct sr_buf *b, const struct sr_stats *S);

#endif
