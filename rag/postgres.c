/*
 * The Postgres full-text backend: the default when DATABASE_URL is set, no
 * embeddings or accounts needed. One statement on the worker's pool
 * (pg_search.h says how it ranks).
 */
#include <stdio.h>
#include <stdlib.h>

#include <h2o.h>

#include "backend.h"
#include "pg_search.h"

struct search {
    sb_rag_search_t super;
    sb_pgquery_t *query;
    sb_rag_rows_cb done;
    void *data;
};

static int check(const sb_config_t *c, char *err, size_t errlen)
{
    if (c->database_url == NULL) {
        snprintf(err, errlen, "RAG_BACKEND=postgres needs DATABASE_URL");
        return -1;
    }
    return 0;
}

static void on_result(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    struct search *s = data;
    sb_rag_rows_cb done = s->done;
    void *cbdata = s->data;
    free(s);
    json_t *rows = NULL;
    if (err == SB_OK && PQntuples(res) == 1)
        rows = json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, NULL);
    done(cbdata, rows, rows != NULL ? SB_OK : err != SB_OK ? err : SB_E_DB_ERROR);
    json_decref(rows);
}

static sb_rag_search_t *search(const sb_rag_env_t *env, const char *question, const float *vec, size_t dim, unsigned k,
                               sb_rag_rows_cb done, void *data)
{
    struct search *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->super.backend = &sb_rag_postgres;
    s->done = done;
    s->data = data;
    char kbuf[16];
    snprintf(kbuf, sizeof(kbuf), "%u", k);
    const char *values[2] = {question, kbuf};
    s->query = sb_pgpool_query(env->pg, SB_RAG_PG_SEARCH_SQL, 2, values, on_result, s);
    return &s->super;
}

static void cancel(sb_rag_search_t *base)
{
    struct search *s = H2O_STRUCT_FROM_MEMBER(struct search, super, base);
    sb_pgquery_cancel(s->query); /* the statement may finish on the server; its result is dropped */
    free(s);
}

const sb_rag_backend_t sb_rag_postgres = {"postgres", 0, check, search, cancel};
