/*
 * switchboard-ingest's vector-store writer: each new passage is embedded
 * through the OpenAI-compatible embeddings endpoint, in batches, and upserted
 * under its id in the store with metadata {source, heading, title, text}. The
 * store is asked which ids a source already has, so an unchanged file is
 * neither embedded nor written, and ids a source no longer produces are
 * deleted. What differs from store to store (addressing, ids, listing) is the
 * store's own administration (store.h), next to its search.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>
#include <jansson.h>
#include <sodium.h>

#include "ingest.h"
#include "sb/alloc.h"
#include "sb/buf.h"

/*
 * Embeds `inputs` (an array of strings) with one request to
 * {EMBEDDING_BASE_URL}/embeddings. An array of as many vectors, in input
 * order, or NULL after saying why.
 */
static json_t *embed(sb_ingest_t *r, json_t *inputs)
{
    const sb_config_t *c = r->config;
    const char *key = c->embedding_api_key != NULL ? c->embedding_api_key : c->llm_api_key;
    char *auth[2] = {NULL, NULL};
    sb_buf_t h;
    sb_buf_init(&h, (size_t)-1);
    if (key != NULL) {
        sb_buf_appendf(&h, "Authorization: Bearer %s", key);
        auth[0] = h.base;
    }
    sb_buf_t url;
    sb_store_join(&url, c->embedding_base_url != NULL ? c->embedding_base_url : c->llm_base_url, "embeddings");
    json_t *body = json_pack("{s:s, s:O}", "model", c->embedding_model, "input", inputs);
    long status;
    json_t *res = sb_store_json("embedding", NULL, url.base, auth, body, 0, &status, "EMBEDDING_BASE_URL",
                                "EMBEDDING_API_KEY or OPENAI_API_KEY");
    if (h.base != NULL)
        sodium_memzero(h.base, h.len);
    sb_buf_dispose(&h);
    size_t n = json_array_size(inputs), dim = 0, i;
    json_t *data = json_object_get(res, "data"), *item;
    json_t *out = res != NULL ? json_array() : NULL;
    for (i = 0; out != NULL && i < n; ++i)
        json_array_append_new(out, json_null());
    json_array_foreach(data, i, item)
    {
        json_t *idx = json_object_get(item, "index"), *vec = json_object_get(item, "embedding");
        size_t at = json_is_integer(idx) ? (size_t)json_integer_value(idx) : i;
        if (out == NULL || at >= n || !json_is_array(vec) || json_array_size(vec) == 0 || (dim && json_array_size(vec) != dim))
            break;
        dim = json_array_size(vec);
        json_array_set(out, at, vec);
    }
    for (i = 0; out != NULL && i < n; ++i) {
        if (!json_is_array(json_array_get(out, i))) {
            sb_store_say("embedding failed: %s answered without a usable vector for every input (model %s, OPENAI_EMBEDDING_MODEL)",
                         url.base, c->embedding_model);
            json_decref(out);
            out = NULL;
        }
    }
    sb_buf_dispose(&url);
    json_decref(res);
    return out;
}

/* What is embedded for a chunk: the title and heading name the topic a caller asks about, so they go in with the text. */
static json_t *embed_input(const sb_kb_doc_t *d, const sb_kb_chunk_t *c)
{
    sb_buf_t b;
    sb_buf_init(&b, (size_t)-1);
    sb_buf_appendf(&b, "%s%s%s\n\n%s", d->title, c->heading[0] ? " — " : "", c->heading, c->content);
    json_t *s = json_stringn(b.base, b.len);
    sb_buf_dispose(&b);
    return s;
}

/* Embeds and upserts the chunks of `d` at `idx[0..n)`, SB_STORE_BATCH at a time. */
static int upsert(sb_ingest_t *r, const sb_kb_doc_t *d, const size_t *idx, size_t n)
{
    for (size_t from = 0; from < n; from += SB_STORE_BATCH) {
        size_t to = from + SB_STORE_BATCH < n ? from + SB_STORE_BATCH : n;
        json_t *inputs = json_array();
        for (size_t i = from; i < to; ++i)
            json_array_append_new(inputs, embed_input(d, &d->chunks[idx[i]]));
        json_t *vecs = embed(r, inputs);
        json_decref(inputs);
        if (vecs == NULL)
            return -1;
        sb_store_point_t points[SB_STORE_BATCH];
        for (size_t i = from; i < to; ++i)
            points[i - from] = (sb_store_point_t){d, &d->chunks[idx[i]], json_array_get(vecs, i - from)};
        int rc = r->vector->upsert(&r->store, points, to - from);
        json_decref(vecs);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Deletes `ids` from the store, SB_STORE_DELETE_BATCH at a time. */
static int remove_ids(sb_ingest_t *r, json_t *ids)
{
    for (size_t from = 0; from < json_array_size(ids); from += SB_STORE_DELETE_BATCH) {
        json_t *batch = json_array();
        for (size_t i = from; i < from + SB_STORE_DELETE_BATCH && i < json_array_size(ids); ++i)
            json_array_append(batch, json_array_get(ids, i));
        int rc = r->vector->remove(&r->store, batch);
        json_decref(batch);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Whether the store's id `v` (a string, or Qdrant's UUID as a string) is `sid`. */
static int same_id(json_t *v, const char *sid)
{
    return json_is_string(v) && strcmp(json_string_value(v), sid) == 0;
}

int sb_ingest_vec_store(sb_ingest_t *r, const sb_kb_doc_t *d, long *added, long *removed)
{
    *added = *removed = 0;
    json_t *have = r->vector->source_ids(&r->store, d->source);
    if (have == NULL)
        return -1;
    size_t *fresh = sb_alloc((d->nchunks + 1) * sizeof(*fresh)), nfresh = 0;
    for (size_t i = 0; i < d->nchunks; ++i) {
        int dup = 0; /* a repeated passage within the file is one point */
        size_t k;
        json_t *v;
        json_array_foreach(have, k, v) dup |= same_id(v, d->chunks[i].sid);
        for (size_t j = 0; j < nfresh && !dup; ++j)
            dup = strcmp(d->chunks[fresh[j]].sid, d->chunks[i].sid) == 0;
        if (!dup)
            fresh[nfresh++] = i;
    }
    json_t *stale = json_array(), *v;
    size_t i;
    json_array_foreach(have, i, v)
    {
        int kept = 0;
        for (size_t j = 0; j < d->nchunks && !kept; ++j)
            kept = same_id(v, d->chunks[j].sid);
        if (!kept)
            json_array_append(stale, v);
    }
    int rc = 0;
    if (!r->dry_run && nfresh > 0)
        rc = upsert(r, d, fresh, nfresh);
    if (rc == 0 && !r->dry_run && json_array_size(stale) > 0)
        rc = remove_ids(r, stale);
    *added = (long)nfresh;
    *removed = (long)json_array_size(stale);
    free(fresh);
    json_decref(stale);
    json_decref(have);
    return rc;
}

static int is_current(const sb_ingest_t *r, const char *source)
{
    for (size_t j = 0; j < r->ndocs; ++j)
        if (strcmp(r->docs[j].source, source) == 0)
            return 1;
    return 0;
}

static int by_source(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "source")),
                  json_string_value(json_object_get(*(json_t *const *)b, "source")));
}

int sb_ingest_vec_sync(sb_ingest_t *r, long *sources, long *chunks)
{
    *sources = *chunks = 0;
    const char **current = sb_alloc((r->ndocs + 1) * sizeof(*current));
    for (size_t j = 0; j < r->ndocs; ++j)
        current[j] = r->docs[j].source;
    json_t *all = r->vector->written(&r->store, current, r->ndocs);
    free(current);
    if (all == NULL)
        return -1;
    json_t *gone = json_array(), *bysrc = json_object(), *v;
    size_t i;
    json_array_foreach(all, i, v)
    {
        const char *src = json_string_value(json_object_get(v, "source"));
        if (is_current(r, src))
            continue;
        json_array_append(gone, json_object_get(v, "id"));
        json_t *n = json_object_get(bysrc, src);
        json_object_set_new(bysrc, src, json_integer(n ? json_integer_value(n) + 1 : 1));
    }
    int rc = 0;
    if (!r->dry_run && json_array_size(gone) > 0)
        rc = remove_ids(r, gone);
    if (rc == 0) {
        size_t n = json_object_size(bysrc), k = 0;
        json_t **rows = sb_alloc((n + 1) * sizeof(*rows));
        const char *src;
        json_object_foreach(bysrc, src, v)
        {
            rows[k++] = json_pack("{s:s, s:O}", "source", src, "n", v);
        }
        qsort(rows, n, sizeof(*rows), by_source);
        for (k = 0; k < n; ++k) {
            long cnt = (long)json_integer_value(json_object_get(rows[k], "n"));
            printf("%s %s: %ld chunks (source no longer exists)\n", r->dry_run ? "would remove" : "removed",
                   json_string_value(json_object_get(rows[k], "source")), cnt);
            ++*sources;
            *chunks += cnt;
            json_decref(rows[k]);
        }
        free(rows);
    }
    json_decref(bysrc);
    json_decref(gone);
    json_decref(all);
    return rc;
}

int sb_ingest_vec_open(sb_ingest_t *r)
{
    for (size_t i = 0; i < r->ndocs; ++i) {
        sb_kb_doc_t *d = &r->docs[i];
        for (size_t j = 0; j < d->nchunks; ++j)
            r->vector->point_id(d->source, d->chunks[j].id, d->chunks[j].sid, sizeof(d->chunks[j].sid));
    }
    return sb_store_open(&r->store, r->vector, r->config, r->dry_run);
}

/* A value that goes into a header must not be able to start another one. */
static int has_control(const char *s)
{
    for (; s != NULL && *s != '\0'; ++s)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int http_url(const char *s)
{
    return s != NULL && (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0);
}

/* The vector store's settings, as rag/chroma.c, pinecone.c and qdrant.c check them; a message naming the setting when wrong. */
int sb_ingest_vec_check(const sb_config_t *c, const sb_store_admin_t *store)
{
    if (store == &sb_store_chroma) {
        if (!http_url(c->chroma_url)) {
            sb_store_say("RAG_BACKEND=chroma needs CHROMA_URL (http:// or https://), the Chroma server to load");
            return -1;
        }
        if (has_control(c->chroma_api_key)) {
            sb_store_say("CHROMA_API_KEY must not contain control characters");
            return -1;
        }
    } else if (store == &sb_store_pinecone) {
        if (c->pinecone_api_key == NULL || c->pinecone_api_key[0] == '\0') {
            sb_store_say("RAG_BACKEND=pinecone needs PINECONE_API_KEY");
            return -1;
        }
        if (c->pinecone_host == NULL || c->pinecone_host[0] == '\0') {
            sb_store_say("RAG_BACKEND=pinecone needs PINECONE_HOST, the index's host from the Pinecone console");
            return -1;
        }
        if ((strstr(c->pinecone_host, "://") != NULL && !http_url(c->pinecone_host)) || strpbrk(c->pinecone_host, " \t") != NULL ||
            has_control(c->pinecone_host)) {
            sb_store_say("PINECONE_HOST must be a host name, optionally with https://");
            return -1;
        }
        if (has_control(c->pinecone_api_key)) {
            sb_store_say("PINECONE_API_KEY must not contain control characters");
            return -1;
        }
        if (c->pinecone_api_version == NULL || c->pinecone_api_version[0] == '\0' || has_control(c->pinecone_api_version)) {
            sb_store_say("PINECONE_API_VERSION must be a version such as 2024-07");
            return -1;
        }
    } else if (store == &sb_store_qdrant) {
        if (!http_url(c->qdrant_url)) {
            sb_store_say("RAG_BACKEND=qdrant needs QDRANT_URL (http:// or https://), the Qdrant server to load");
            return -1;
        }
        if (c->qdrant_collection == NULL || c->qdrant_collection[0] == '\0') {
            sb_store_say("RAG_BACKEND=qdrant needs QDRANT_COLLECTION, the collection to load (created if missing)");
            return -1;
        }
        if (has_control(c->qdrant_api_key)) {
            sb_store_say("QDRANT_API_KEY must not contain control characters");
            return -1;
        }
    }
    return 0;
}
