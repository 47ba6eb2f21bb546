/*
 * web_assets.h: the files of web/ compiled into the binary (cmake/embed_web.cmake generates the
 * table at build time), served by specreason-server and inlined by the evaluation report.
 */
#ifndef SR_WEB_ASSETS_H
#define SR_WEB_ASSETS_H

#include <stddef.h>

struct sr_web_asset {
    const char *path;         /* URL path: "/" + file name, e.g. "/index.html" */
    const char *content_type; /* e.g. "text/css; charset=utf-8" */
    const unsigned char *data; /* len bytes, followed by a NUL (not counted) */
    size_t len;
};

extern const struct sr_web_asset sr_web_assets[];
extern const size_t sr_web_n_assets;

/* The asset served at path ("/" is "/index.html"), or NULL. The query string must be removed. */
const struct sr_web_asset *sr_web_asset_find(const char *path);

#endif
