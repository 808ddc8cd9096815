/*
 * What the vector stores (pinecone.c, qdrant.c, chroma.c) share: their
 * searches on the worker's curl multi (sb/fetch.h), the reading of an answer
 * into rows, the mapping of a failed call to switchboard's errors, and, for
 * switchboard-ingest, the administration each store offers next to its
 * search (find or create the collection, list, upsert, delete), with the
 * blocking JSON call it is made of.
 */
#ifndef SB_RAG_STORE_H
#define SB_RAG_STORE_H

#include <jansson.h>

#include "backend.h"
#include "sb/fetch.h"
#include "sb/json.h"
#include "split.h"

/* A store's answer read into rows: passages that point into the parsed body, best first. */
typedef struct sb_rag_answer {
    sb_passage_t rows[SB_RAG_MAX_ROWS];
    size_t n;
    char ids[SB_RAG_MAX_ROWS][32]; /* numeric ids written out, for rows whose source is their id */
} sb_rag_answer_t;

/* Reads a store's 2xx JSON answer into rows; -1 when the body has the wrong shape. Stops at SB_RAG_MAX_ROWS. */
typedef int (*sb_rag_rows_from_fn)(const sb_json_value_t *root, sb_rag_answer_t *out);

/*
 * A vector store's search: POSTs the JSON `body` (`len` bytes, taken) with
 * `headers` (taken) to `url`, and answers done() once with the rows
 * `rows_from` reads out of a 2xx answer, else the store's error. Curl's own
 * limit is the retrieval budget plus a second: the budget decides when
 * retrieval gives up, curl's limit only keeps a lost transfer from living on.
 * The search belongs to `backend`, whose cancel is sb_rag_store_cancel.
 */
sb_rag_search_t *sb_rag_store_query(const sb_rag_env_t *env, const sb_rag_backend_t *backend, const char *url,
                                    struct curl_slist *headers, char *body, size_t len, sb_rag_rows_from_fn rows_from,
                                    sb_rag_rows_cb done, void *data);
void sb_rag_store_cancel(sb_rag_search_t *search);
/* Maps a store call that did not succeed (transport failure, non-2xx status, no JSON) to switchboard's errors. */
sb_error_t sb_rag_store_error(CURLcode result, long status);

/* --- administration, for switchboard-ingest (blocking calls) -------------------------------------- */

typedef struct sb_store_admin sb_store_admin_t;

/* A vector store opened for loading. */
typedef struct sb_store {
    const sb_config_t *config;
    const sb_store_admin_t *admin;
    int dry_run;      /* find, do not create: a missing collection stays missing */
    char *url;        /* the collection's (or index's) base URL, set by open */
    char *headers[3]; /* its credentials ("Name: value"), NULL-terminated; wiped by sb_store_close */
    int missing;      /* the collection does not exist (yet): it holds no ids */
    size_t dim;       /* the collection's vector size, 0 when not known */
} sb_store_t;

/* One passage as a store keeps it. Borrowed for the call. */
typedef struct sb_store_point {
    const sb_kb_doc_t *doc;
    const sb_kb_chunk_t *chunk; /* its sid is the id in the store */
    json_t *vector;             /* an array of numbers */
} sb_store_point_t;

struct sb_store_admin {
    const char *url_setting, *key_setting; /* named when a call fails: where it went, what key it carried */
    /* Finds the collection (creating it, unless s->dry_run, when it can be made without knowing the dimension). 0, or -1 after
     * saying why. */
    int (*open)(sb_store_t *s);
    /* The id the store gives a chunk of `source` whose content hash is `hash`. */
    void (*point_id)(const char *source, const char *hash, char *out, size_t cap);
    /* The ids the store holds for `source` (an empty array when the collection is missing), or NULL after saying why. */
    json_t *(*source_ids)(sb_store_t *s, const char *source);
    /*
     * For --sync: every point this tool wrote, as {"id","source"} pairs;
     * points of the `ncurrent` sources that still exist may be left out.
     * NULL after saying why.
     */
    json_t *(*written)(sb_store_t *s, const char *const *current, size_t ncurrent);
    /* Writes the points (at most SB_STORE_BATCH, all of one dimension). 0, or -1 after saying why. */
    int (*upsert)(sb_store_t *s, const sb_store_point_t *points, size_t n);
    /* Deletes the points with these ids (at most SB_STORE_DELETE_BATCH). 0, or -1 after saying why. */
    int (*remove)(sb_store_t *s, json_t *ids);
};

#define SB_STORE_BATCH 64          /* points per upsert, and chunks per embeddings request: inside every store's limit */
#define SB_STORE_DELETE_BATCH 1000 /* ids per delete: Pinecone's limit */

extern const sb_store_admin_t sb_store_chroma, sb_store_pinecone, sb_store_qdrant;

/* Opens the store `admin` names for loading. 0, or -1 after saying why. */
int sb_store_open(sb_store_t *s, const sb_store_admin_t *admin, const sb_config_t *config, int dry_run);
void sb_store_close(sb_store_t *s);

/* --- what the stores' administration is made of ------------------------------------------------- */

/* Prints "switchboard-ingest: <message>" to stderr. */
void sb_store_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * One blocking JSON call: `method` NULL is a GET without `body` and a POST
 * with one ("PUT" sends the body too); `body` is taken. Returns the parsed
 * 2xx answer, or NULL after saying why (naming `url_setting` or
 * `key_setting`); an answer with status `quiet` (e.g. 404) is only reported
 * through *status. `headers` is a NULL-terminated list of "Name: value", or NULL.
 */
json_t *sb_store_json(const char *what, const char *method, const char *url, char *const *headers, json_t *body, long quiet,
                      long *status, const char *url_setting, const char *key_setting);
/* A call to {s->url}{path} with the store's credentials (see sb_store_json). */
json_t *sb_store_call(sb_store_t *s, const char *what, const char *method, const char *path, json_t *body, long quiet,
                      long *status);
/* sb_store_call for a write whose answer only has to be JSON: 0, or -1 after saying why. */
int sb_store_send(sb_store_t *s, const char *what, const char *method, const char *path, json_t *body);
/* {s->url}{path}, then the query parameters `params` (name, value, ..., NULL; a NULL value is left out), escaped. Into url (init
 * here). */
void sb_store_url(sb_store_t *s, sb_buf_t *url, const char *path, const char *const *params);
/* `base` without its trailing slashes, then "/" and `path`, into b (init here, NUL-terminated). */
void sb_store_join(sb_buf_t *b, const char *base, const char *path);
/* Adds "Name: value" to the store's credentials. */
void sb_store_add_header(sb_store_t *s, const char *name, const char *value);
/* A passage's metadata in every store, what the retrieval backends read back: {source, heading, title, text}. New reference. */
json_t *sb_store_meta(const sb_kb_doc_t *d, const sb_kb_chunk_t *c);
/* Says that `what` got an answer without `expected` from {s->url}{path}. */
void sb_store_bad_shape(sb_store_t *s, const char *what, const char *path, const char *expected);

#endif
