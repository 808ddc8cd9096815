/*
 * The Postgres full-text backend: the default when DATABASE_URL is set, no
 * embeddings or accounts needed. One statement on the worker's pool
 * (pg_search.h says how it ranks).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o.h>

#include "backend.h"
#include "pg_search.h"
#include "sb/alloc.h"
#include "sb/json.h"

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

/* The statement's one value, [{"source","title","heading","text","score"}], as rows; how many, or -1 when it is not that. */
static long rows_from(char *json, size_t len, sb_json_doc_t *doc, sb_passage_t *rows)
{
    const sb_json_value_t *arr, *r;
    size_t i, n = 0;
    if (sb_json_parse(doc, json, len, 1 << 18) != 0 || !sb_json_is(arr = sb_json_root(doc), SB_JSON_ARRAY))
        return -1;
    sb_json_array_foreach(arr, i, r)
    {
        const char *source = sb_json_string(sb_json_get(r, "source")), *heading = sb_json_string(sb_json_get(r, "heading"));
        const char *text = sb_json_string(sb_json_get(r, "text"));
        if (source != NULL && text != NULL && n < SB_RAG_MAX_ROWS)
            rows[n++] = (sb_passage_t){source, heading != NULL ? heading : "", text, sb_json_number(sb_json_get(r, "score"))};
    }
    return (long)n;
}

static void on_result(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    struct search *s = data;
    sb_rag_rows_cb done = s->done;
    void *cbdata = s->data;
    free(s);
    sb_passage_t rows[SB_RAG_MAX_ROWS];
    sb_json_doc_t doc = {0};
    long n = -1;
    char *json = NULL;
    if (err == SB_OK && PQntuples(res) == 1) {
        size_t len = (size_t)PQgetlength(res, 0, 0);
        /* a copy: the reader decodes strings in place, and libpq's result is not ours to change */
        json = sb_alloc(len + 1);
        memcpy(json, PQgetvalue(res, 0, 0), len);
        n = rows_from(json, len, &doc, rows);
    }
    done(cbdata, rows, n > 0 ? (size_t)n : 0, n >= 0 ? SB_OK : err != SB_OK ? err : SB_E_DB_ERROR);
    sb_json_doc_dispose(&doc);
    free(json);
}

static sb_rag_search_t *search(const sb_rag_env_t *env, const char *question, const float *vec, size_t dim, unsigned k,
                               sb_rag_rows_cb done, void *data)
{
    struct search *s = sb_calloc(1, sizeof(*s));
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
