/*
 * What switchboard-ingest's files share: the run (the documents read and
 * split, the options, the destination) and the two writers, Postgres
 * (ingest_pg.c) and a vector store (ingest_vec.c).
 */
#ifndef SB_RAG_INGEST_H
#define SB_RAG_INGEST_H

#include <libpq-fe.h>

#include "sb/config.h"
#include "split.h"
#include "store.h"

typedef struct sb_ingest {
    sb_kb_doc_t *docs;
    size_t ndocs, capdocs;
    int sync, dry_run, folders;
    const sb_config_t *config;
    PGconn *conn;                   /* RAG_BACKEND=postgres */
    const sb_store_admin_t *vector; /* a vector store, or NULL for Postgres */
    sb_store_t store;
} sb_ingest_t;

/* --- Postgres (ingest_pg.c) --- */

/* Connects to DATABASE_URL and checks that `switchboard migrate` made rag_chunks. NULL after saying why. */
PGconn *sb_ingest_pg_connect(const sb_config_t *config);
/* Writes one document (one transaction): its new chunks, its moved ones, and deletes the ones it no longer has. */
int sb_ingest_pg_store(sb_ingest_t *r, const sb_kb_doc_t *d, long *added, long *removed);
/* --sync: deletes the chunks of every source this run did not find; prints each source removed. */
int sb_ingest_pg_sync(sb_ingest_t *r, long *sources, long *chunks);

/* --- a vector store (ingest_vec.c) --- */

/* The store's settings, as its search checks them; 0, or -1 after naming the setting. */
int sb_ingest_vec_check(const sb_config_t *c, const sb_store_admin_t *store);
/* Gives every chunk its id in the store and opens it. 0, or -1 after saying why. */
int sb_ingest_vec_open(sb_ingest_t *r);
/* Embeds and upserts the chunks the store does not have, and deletes the source's ids this run no longer produces. */
int sb_ingest_vec_store(sb_ingest_t *r, const sb_kb_doc_t *d, long *added, long *removed);
/* --sync for a vector store: deletes the points of every source this run did not find; prints each source removed. */
int sb_ingest_vec_sync(sb_ingest_t *r, long *sources, long *chunks);

#endif
