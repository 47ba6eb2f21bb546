/*
 * result_json.h: a result's JSON form (jansson values), shared by the library (sr_result_to_json)
 * and the tools (specreason-eval's records, specreason-server's `specreason` object), so that
 * every writer names the statistics alike; and read back (specreason-eval's client of the server).
 */
#ifndef SR_RESULT_JSON_H
#define SR_RESULT_JSON_H

#include "jsonutil.h"
#include "specreason.h"

/* Every field of struct sr_stats as one JSON object (new reference; NULL on OOM). */
json_t *sr_stats_json(const struct sr_stats *S);

/* The object sr_result_to_json dumps: the run's settings (if p), text, answer, stop, steps, stats. */
json_t *sr_result_json(const struct sr_result *r, const struct sr_run_params *p);

/* Reads an object written by sr_stats_json into *S (missing fields are 0, null reals NaN). False
 * unless o is an object. */
bool sr_stats_from_json(json_t *o, struct sr_stats *S);

/* A result from an object written by sr_result_json (free with sr_result_free); NULL with err set
 * if o lacks text, steps or stats, or on OOM. */
struct sr_result *sr_result_from_json(json_t *o, char *err, size_t errlen);

#endif
