/*
 * The browser console at /console (CONSOLE=true): a chat page over the
 * session API, its HTML, CSS and JavaScript kept in console/ and compiled in
 * by tools/embed.py, so an installed binary or a container serves it with no
 * files beside it.
 */
#ifndef SB_CONSOLE_H
#define SB_CONSOLE_H

#include <stddef.h>

#include <h2o.h>

#define SB_CONSOLE_PATH "/console"    /* the page */
#define SB_CONSOLE_PREFIX "/console/" /* its files, by name */

/* One file of the console, as embed.py writes it (console_assets.c): static, never freed. */
typedef struct sb_console_asset {
    const char *name;         /* the file's name in console/; served at /console/<name> */
    const char *content_type; /* from its extension */
    const char *etag;         /* strong and quoted: a digest of its bytes, so a new build gives a new one */
    const char *data;
    size_t len;
} sb_console_asset_t;

extern const sb_console_asset_t sb_console_assets[];
extern const size_t sb_console_asset_count;

/*
 * Answers GET and HEAD of /console (index.html), /console/ and
 * /console/<name> with the file and its headers (Content-Security-Policy,
 * nosniff, ETag; 304 for a matching If-None-Match); 404 for anything else,
 * and for everything when CONSOLE or SESSIONS is off. Loop thread.
 */
void sb_console_handle(h2o_req_t *req);

#endif
