/*
 * `switchboard-ingest [--sync] [--dry-run] PATH...`: loads a knowledge base of
 * Markdown and text files into rag_chunks, where the Postgres retrieval
 * backend (rag/pg_search.h) searches it.
 *
 * Each document is split along its headings (`#` title, `##`/`###`
 * sections) into passages of at most MAX_CHUNK bytes; a longer section is
 * cut at paragraph, then sentence, then word boundaries, and its pieces
 * overlap by about OVERLAP bytes so a sentence cut off at the end of one
 * piece still has its context at the start of the next.
 *
 * A chunk's id is a hash of (source, heading, content), so re-ingesting an
 * unchanged file inserts and deletes nothing, and an edited file changes only
 * the passages that changed. Every file is read and split before the database
 * is touched: an unreadable or non-UTF-8 file stops the run with nothing
 * written. Each source's changes are one transaction.
 *
 * With RAG_BACKEND=chroma the chunks go to a Chroma collection instead
 * (created if missing, cosine space): each new chunk is embedded through the
 * OpenAI-compatible embeddings endpoint, in batches, and upserted under the
 * same content-hash id with metadata {source, heading, title, text}. The store
 * is asked which ids a source already has, so an unchanged file is neither
 * embedded nor written, and ids a source no longer produces are deleted.
 *
 * RAG_BACKEND=pinecone and qdrant work the same way, with the same embeddings
 * and metadata. Pinecone's ids are "<hash of the source>#<content hash>", so
 * listing by prefix finds a source's ids, and --sync groups the index's ids
 * by prefix; its upserts carry at most 100 vectors. Qdrant takes only UUIDs
 * or integers as ids: a point's id is the content hash's first 16 bytes as a
 * UUID, and its payload keeps the full hash as chunk_id (a point without one
 * was not written here and is left alone). A missing Qdrant collection is
 * created, cosine distance, at the first upsert, which knows the dimension.
 *
 * A command-line tool, so it uses libpq's and libcurl's blocking calls.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <sodium.h>

#include "pgtext.h"
#include "sb/buf.h"
#include "sb/config.h"

#define MAX_CHUNK 1200            /* bytes of content per chunk: a few passages fit the model's context */
#define MIN_CHUNK 400             /* a piece is not cut shorter than this when a better boundary is further on */
#define OVERLAP 150               /* bytes repeated from the end of one piece at the start of the next */
#define MAX_FILE (16u << 20)      /* a knowledge file larger than this is almost certainly not one */
#define MAX_DEPTH 32              /* folder recursion; guards against symlink loops */
#define EMBED_BATCH 64            /* chunks per embeddings request: well inside providers' input limits */
#define MAX_RESPONSE (256u << 20) /* a --sync listing of a large collection, or a batch of 3072-dim embeddings */
#define DELETE_BATCH 1000         /* ids per delete request: Pinecone's limit */
#define FETCH_BATCH 50            /* Pinecone ids per fetch (they go in the URL) */
#define STORE_ID_MAX 100          /* a chunk's id in the store: Pinecone's "<32 hex>#<64 hex>" is the longest */

enum store { STORE_POSTGRES, STORE_CHROMA, STORE_PINECONE, STORE_QDRANT };

/* One passage of a document. */
struct chunk {
    char id[crypto_generichash_BYTES * 2 + 1];
    char sid[STORE_ID_MAX]; /* its id in a vector store (assign_store_ids) */
    char *heading;
    char *content;
};

/* One file to ingest: where it is read from, its name in rag_chunks, and its chunks. */
struct doc {
    char *path;
    char *source;
    char *title;
    struct chunk *chunks;
    size_t nchunks, capchunks;
};

struct run {
    struct doc *docs;
    size_t ndocs, capdocs;
    int sync, dry_run, folders;
    PGconn *conn;
    /* a vector store (RAG_BACKEND=chroma, pinecone or qdrant) */
    enum store store;
    const sb_config_t *config;
    CURL *curl;
    char *store_url;  /* Chroma's .../collections/{id}, Pinecone's https://{host}, Qdrant's .../collections/{name} */
    char *headers[3]; /* the store's credentials ("Name: value"), NULL-terminated */
    int missing;      /* the collection does not exist (yet): it has no ids */
    size_t dim;       /* Qdrant: the collection's vector size; 0 when not known */
};

__attribute__((format(printf, 1, 2))) static void fail_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("switchboard-ingest: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL)
        abort();
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = strndup(s, n);
    if (d == NULL)
        abort();
    return d;
}

static char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* ---- reading ---------------------------------------------------------------------------------------------------------- */

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). Returns the offset of the first bad byte, or len. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            ++i;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return i;
        }
        if (i + n >= len) /* truncated at the end of the file */
            return i;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k <= n; ++k)
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
        i += n + 1;
    }
    return len;
}

/* Reads a whole file as UTF-8 text without NUL bytes, a BOM or CRs. NULL after saying why. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fail_msg("cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    sb_buf_t b;
    sb_buf_init(&b, MAX_FILE);
    char block[65536];
    size_t n;
    int too_big = 0;
    while ((n = fread(block, 1, sizeof(block), f)) > 0) {
        if (sb_buf_append(&b, block, n) != 0) {
            too_big = 1;
            break;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err || too_big) {
        if (too_big)
            fail_msg("%s is larger than %u MB; not a knowledge file?", path, MAX_FILE >> 20);
        else
            fail_msg("cannot read %s: read error", path);
        sb_buf_dispose(&b);
        return NULL;
    }
    size_t len = b.len;
    const unsigned char *s = (const unsigned char *)(b.base ? b.base : "");
    if (memchr(s, '\0', len) != NULL) {
        fail_msg("%s contains NUL bytes; not a text file", path);
        sb_buf_dispose(&b);
        return NULL;
    }
    size_t bad = utf8_valid_prefix(s, len);
    if (bad < len) {
        size_t line = 1;
        for (size_t i = 0; i < bad; ++i)
            line += s[i] == '\n';
        fail_msg("%s is not UTF-8 (line %zu, byte offset %zu); convert it (e.g. iconv -t UTF-8) and run again", path, line, bad);
        sb_buf_dispose(&b);
        return NULL;
    }
    /* Drops a byte order mark and carriage returns, so Windows-edited files hash like the same text saved elsewhere. */
    char *out = xrealloc(NULL, len + 1);
    size_t o = 0, i = (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    for (; i < len; ++i)
        if (s[i] != '\r')
            out[o++] = (char)s[i];
    out[o] = '\0';
    sb_buf_dispose(&b);
    return out;
}

/* ---- splitting ------------------------------------------------------------------------------------------------------- */

static void add_chunk(struct doc *d, const char *heading, const char *text, size_t len)
{
    while (len > 0 && is_space(*text))
        ++text, --len;
    while (len > 0 && is_space(text[len - 1]))
        --len;
    if (len == 0)
        return;
    if (d->nchunks == d->capchunks) {
        d->capchunks = d->capchunks ? d->capchunks * 2 : 16;
        d->chunks = xrealloc(d->chunks, d->capchunks * sizeof(*d->chunks));
    }
    struct chunk *c = &d->chunks[d->nchunks++];
    c->heading = xstrdup(heading);
    c->content = xstrndup(text, len);

    /* The id covers the source and heading too: the same paragraph under two headings is two passages. */
    unsigned char hash[crypto_generichash_BYTES];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof(hash));
    crypto_generichash_update(&st, (const unsigned char *)d->source, strlen(d->source) + 1);
    crypto_generichash_update(&st, (const unsigned char *)c->heading, strlen(c->heading) + 1);
    crypto_generichash_update(&st, (const unsigned char *)c->content, len);
    crypto_generichash_final(&st, hash, sizeof(hash));
    sodium_bin2hex(c->id, sizeof(c->id), hash, sizeof(hash));
}

/* Is s[i] the start of a sentence: after ". ", "? ", "! " (optionally a closing quote or bracket) or a line break? */
static int sentence_start(const char *s, size_t i)
{
    if (i == 0)
        return 1;
    if (!is_space(s[i - 1]) || is_space(s[i]))
        return 0;
    if (s[i - 1] == '\n')
        return 1;
    size_t j = i - 1;
    while (j > 0 && is_space(s[j - 1]))
        --j;
    if (j == 0)
        return 0;
    char p = s[j - 1];
    if ((p == '"' || p == ')' || p == '\'') && j > 1)
        p = s[j - 2];
    return p == '.' || p == '?' || p == '!' || p == ':' || p == ';';
}

/*
 * Where to end a piece that starts at `start` of text[0..len) which is longer
 * than MAX_CHUNK from there: the last paragraph break, else the last sentence
 * start, else the last word start within the limit (but not before
 * MIN_CHUNK), else the last UTF-8 character boundary.
 */
static size_t cut_point(const char *s, size_t start, size_t len)
{
    size_t limit = start + MAX_CHUNK, floor = start + MIN_CHUNK;
    if (limit > len)
        limit = len;
    for (size_t i = limit; i > floor; --i)
        if (i >= 2 && s[i - 1] == '\n' && s[i - 2] == '\n')
            return i;
    for (size_t i = limit; i > floor; --i)
        if (sentence_start(s, i))
            return i;
    for (size_t i = limit; i > floor; --i)
        if (is_space(s[i - 1]) && !is_space(s[i]))
            return i;
    size_t i = limit;
    while (i > start + 1 && ((unsigned char)s[i] & 0xC0) == 0x80)
        --i;
    return i;
}

/* Where the next piece starts: about OVERLAP bytes before `end`, at a sentence start if there is one, else a word start. */
static size_t overlap_start(const char *s, size_t prev_start, size_t end)
{
    size_t from = end > prev_start + OVERLAP ? end - OVERLAP : prev_start + 1;
    for (size_t i = from; i < end; ++i)
        if (sentence_start(s, i))
            return i;
    for (size_t i = from; i < end; ++i)
        if (is_space(s[i - 1]) && !is_space(s[i]))
            return i;
    return end; /* one long word: no overlap rather than a cut inside it */
}

/* Adds one section's text as one chunk, or as overlapping pieces when it is longer than MAX_CHUNK. */
static void add_section(struct doc *d, const char *heading, const char *text, size_t len)
{
    while (len > 0 && is_space(*text))
        ++text, --len;
    while (len > 0 && is_space(text[len - 1]))
        --len;
    size_t start = 0;
    while (start < len) {
        if (len - start <= MAX_CHUNK) {
            add_chunk(d, heading, text + start, len - start);
            return;
        }
        size_t end = cut_point(text, start, len);
        add_chunk(d, heading, text + start, end - start);
        size_t next = overlap_start(text, start, end);
        start = next > start ? next : end;
    }
}

/* A Markdown ATX heading "#.. text": its level (1-6) and text, or 0. */
static int heading_level(const char *line, size_t len, const char **text, size_t *tlen)
{
    size_t lvl = 0;
    while (lvl < len && line[lvl] == '#')
        ++lvl;
    if (lvl == 0 || lvl > 6 || (lvl < len && line[lvl] != ' ' && line[lvl] != '\t'))
        return 0;
    const char *t = line + lvl;
    size_t n = len - lvl;
    while (n > 0 && is_space(*t))
        ++t, --n;
    while (n > 0 && (is_space(t[n - 1]) || t[n - 1] == '#')) /* closing #s are decoration */
        --n;
    *text = t;
    *tlen = n;
    return (int)lvl;
}

/* The file name without folders and extension: the title of a document that has no `#` line. */
static char *stem(const char *source)
{
    const char *base = strrchr(source, '/');
    base = base ? base + 1 : source;
    const char *dot = strrchr(base, '.');
    return xstrndup(base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
}

/*
 * Splits a document into sections. The first `#` line is the title; `##`
 * starts a section and `###` a subsection, whose heading keeps its parent's
 * ("Returns window / Plus members") because callers name the topic, not the
 * subtopic. Headings inside fenced code blocks are text.
 */
static void split_doc(struct doc *d, const char *text)
{
    sb_buf_t body, heading;
    char h2[512] = "";
    sb_buf_init(&body, MAX_FILE);
    sb_buf_init(&heading, 4096);
    sb_buf_append(&heading, "", 1);
    int fenced = 0;
    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        const char *t;
        size_t tlen;
        int lvl = 0;
        if (strncmp(p, "```", 3) == 0 || strncmp(p, "~~~", 3) == 0)
            fenced = !fenced;
        else if (!fenced)
            lvl = heading_level(p, len, &t, &tlen);
        if (lvl == 1 && d->title == NULL) {
            d->title = xstrndup(t, tlen);
        } else if (lvl >= 1 && lvl <= 3) {
            add_section(d, heading.base, body.base ? body.base : "", body.len);
            sb_buf_reset(&body);
            sb_buf_reset(&heading);
            if (lvl <= 2) {
                snprintf(h2, sizeof(h2), "%.*s", (int)tlen, t);
                sb_buf_append(&heading, t, tlen);
            } else {
                if (h2[0] != '\0')
                    sb_buf_appendf(&heading, "%s / ", h2);
                sb_buf_append(&heading, t, tlen);
            }
            sb_buf_append(&heading, "", 1);
        } else {
            sb_buf_append(&body, p, len);
            sb_buf_append(&body, "\n", 1);
        }
        p += len + (nl != NULL);
    }
    add_section(d, heading.base, body.base ? body.base : "", body.len);
    if (d->title == NULL)
        d->title = stem(d->source);
    sb_buf_dispose(&body);
    sb_buf_dispose(&heading);
}

/* ---- finding files --------------------------------------------------------------------------------------------------- */

static int wanted_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot != NULL && (strcmp(dot, ".md") == 0 || strcmp(dot, ".markdown") == 0 || strcmp(dot, ".txt") == 0);
}

static int add_file(struct run *r, const char *path, const char *source)
{
    for (size_t i = 0; i < r->ndocs; ++i) {
        if (strcmp(r->docs[i].source, source) == 0) {
            fail_msg("%s and %s would both be stored as source \"%s\"; ingest them in separate folders", r->docs[i].path, path,
                     source);
            return -1;
        }
    }
    char *text = read_text(path);
    if (text == NULL)
        return -1;
    if (r->ndocs == r->capdocs) {
        r->capdocs = r->capdocs ? r->capdocs * 2 : 16;
        r->docs = xrealloc(r->docs, r->capdocs * sizeof(*r->docs));
    }
    struct doc *d = &r->docs[r->ndocs++];
    memset(d, 0, sizeof(*d));
    d->path = xstrdup(path);
    d->source = xstrdup(source);
    split_doc(d, text);
    free(text);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the knowledge files under `dir` (sorted, so positions and output are stable); `rel` is dir relative to the root. */
static int walk(struct run *r, const char *dir, const char *rel, int depth)
{
    if (depth > MAX_DEPTH) {
        fail_msg("%s: folders nested deeper than %d (a symlink loop?)", dir, MAX_DEPTH);
        return -1;
    }
    DIR *dh = opendir(dir);
    if (dh == NULL) {
        fail_msg("cannot read folder %s: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        if (e->d_name[0] == '.') /* ., .. and hidden files such as editor swap files and .git */
            continue;
        if (n == cap)
            names = xrealloc(names, (cap = cap ? cap * 2 : 32) * sizeof(*names));
        names[n++] = xstrdup(e->d_name);
    }
    closedir(dh);
    qsort(names, n, sizeof(*names), by_name);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; ++i) {
        sb_buf_t path, sub;
        sb_buf_init(&path, 8192);
        sb_buf_init(&sub, 8192);
        if (sb_buf_appendf(&path, "%s/%s%c", dir, names[i], '\0') != 0 ||
            sb_buf_appendf(&sub, "%s%s%s%c", rel, rel[0] ? "/" : "", names[i], '\0') != 0) {
            fail_msg("%s/%s: path too long", dir, names[i]);
            rc = -1;
        } else {
            struct stat st;
            if (stat(path.base, &st) != 0) {
                fail_msg("cannot read %s: %s", path.base, strerror(errno));
                rc = -1;
            } else if (S_ISDIR(st.st_mode)) {
                rc = walk(r, path.base, sub.base, depth + 1);
            } else if (S_ISREG(st.st_mode) && wanted_ext(names[i])) {
                rc = add_file(r, path.base, sub.base);
            }
        }
        sb_buf_dispose(&path);
        sb_buf_dispose(&sub);
    }
    for (size_t i = 0; i < n; ++i)
        free(names[i]);
    free(names);
    return rc;
}

/* A command-line PATH: a folder is walked (its files' sources are relative to it); a file is its own source by name. */
static int add_path(struct run *r, const char *arg)
{
    struct stat st;
    if (stat(arg, &st) != 0) {
        fail_msg("cannot read %s: %s", arg, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        ++r->folders;
        char *dir = xstrdup(arg);
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            dir[--n] = '\0';
        int rc = walk(r, dir, "", 0);
        free(dir);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        fail_msg("%s is neither a file nor a folder", arg);
        return -1;
    }
    if (!wanted_ext(arg)) {
        fail_msg("%s: only .md, .markdown and .txt files are ingested", arg);
        return -1;
    }
    const char *base = strrchr(arg, '/');
    return add_file(r, arg, base ? base + 1 : arg);
}

/* ---- the database ---------------------------------------------------------------------------------------------------- */

static PGconn *connect_db(const sb_config_t *config)
{
    char where[512], timeout[16] = "", buf[1024];
    if (sb_pg_describe_target(config->database_url, where, sizeof(where)) != 0) {
        /* libpq's parse error may quote the URL, password and all, so it is not shown. */
        fail_msg("DATABASE_URL is not a valid Postgres connection URI");
        return NULL;
    }
    if (config->pg_connect_timeout_ms > 0)
        snprintf(timeout, sizeof(timeout), "%u", (config->pg_connect_timeout_ms + 999) / 1000);
    /* client_encoding after the URL: the text we send is UTF-8 whatever the URL says. */
    const char *keys[] = {"fallback_application_name", "connect_timeout", "dbname", "client_encoding", NULL};
    const char *vals[] = {"switchboard-ingest", timeout, config->database_url, "UTF8", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL)
        abort();
    if (PQstatus(conn) != CONNECTION_OK) {
        fail_msg("cannot connect to the database at %s (DATABASE_URL): %s", where,
                 sb_pg_trimmed(PQerrorMessage(conn), buf, sizeof(buf)));
        PQfinish(conn);
        return NULL;
    }
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
    return conn;
}

/* Runs a parameterized statement; NULL after printing the server's message. */
static PGresult *query(PGconn *conn, const char *what, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return res;
    char buf[1024];
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    fail_msg("%s failed: %s", what, msg ? msg : sb_pg_trimmed(PQerrorMessage(conn), buf, sizeof(buf)));
    PQclear(res);
    return NULL;
}

static int exec_ok(PGconn *conn, const char *what, const char *sql, int n, const char *const *params, long *affected)
{
    PGresult *res = query(conn, what, sql, n, params);
    if (res == NULL)
        return -1;
    if (affected != NULL)
        *affected = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return 0;
}

/* Ends a source's transaction: COMMIT, or ROLLBACK for --dry-run. A COMMIT that turned into a ROLLBACK is a failure. */
static int finish_tx(struct run *r, const char *what)
{
    PGresult *res = PQexec(r->conn, r->dry_run ? "ROLLBACK" : "COMMIT");
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(res), r->dry_run ? "ROLLBACK" : "COMMIT") == 0;
    if (!ok) {
        char buf[1024];
        fail_msg("%s: committing failed: %s", what, sb_pg_trimmed(PQerrorMessage(r->conn), buf, sizeof(buf)));
    }
    PQclear(res);
    return ok ? 0 : -1;
}

/* The ids as a Postgres array literal; hex needs no quoting. */
static char *id_array(const struct doc *d)
{
    sb_buf_t b;
    sb_buf_init(&b, (size_t)-1);
    sb_buf_append(&b, "{", 1);
    for (size_t i = 0; i < d->nchunks; ++i) {
        if (i > 0)
            sb_buf_append(&b, ",", 1);
        sb_buf_appendz(&b, d->chunks[i].id);
    }
    sb_buf_append(&b, "}", 2);
    return b.base;
}

/*
 * Writes one document: inserts the chunks that are new, keeps title and
 * position current on the others (writing only when they changed), and
 * deletes the source's chunks this run no longer produces. One transaction.
 */
static int store_doc(struct run *r, const struct doc *d, long *added, long *removed)
{
    *added = *removed = 0;
    if (exec_ok(r->conn, d->source, "BEGIN", 0, NULL, NULL) != 0)
        return -1;
    for (size_t i = 0; i < d->nchunks; ++i) {
        const struct chunk *c = &d->chunks[i];
        char pos[24];
        snprintf(pos, sizeof(pos), "%zu", i);
        const char *p[] = {c->id, d->source, d->title, c->heading, c->content, pos};
        long n;
        if (exec_ok(r->conn, d->source,
                    "INSERT INTO rag_chunks (id, source, title, heading, content, position) "
                    "VALUES ($1, $2, $3, $4, $5, $6::integer) ON CONFLICT (id) DO NOTHING",
                    6, p, &n) != 0)
            goto fail;
        *added += n;
        /* An unchanged chunk moved by an edit elsewhere in the file, or a new title: the id stays, these columns follow. */
        const char *u[] = {c->id, d->title, pos};
        if (n == 0 && exec_ok(r->conn, d->source,
                              "UPDATE rag_chunks SET title = $2, position = $3::integer WHERE id = $1 "
                              "AND (title, position) IS DISTINCT FROM ($2, $3::integer)",
                              3, u, NULL) != 0)
            goto fail;
    }
    char *ids = id_array(d);
    const char *p[] = {d->source, ids};
    int rc = exec_ok(r->conn, d->source, "DELETE FROM rag_chunks WHERE source = $1 AND id <> ALL ($2::text[])", 2, p, removed);
    free(ids);
    if (rc != 0)
        goto fail;
    return finish_tx(r, d->source);
fail:
    PQclear(PQexec(r->conn, "ROLLBACK"));
    return -1;
}

/* --sync: deletes the chunks of every source this run did not find. One transaction; prints each source removed. */
static int sync_removed(struct run *r, long *sources, long *chunks)
{
    *sources = *chunks = 0;
    sb_buf_t b;
    sb_buf_init(&b, (size_t)-1);
    sb_buf_append(&b, "{", 1);
    for (size_t i = 0; i < r->ndocs; ++i) {
        if (i > 0)
            sb_buf_append(&b, ",", 1);
        sb_buf_append(&b, "\"", 1);
        for (const char *s = r->docs[i].source; *s != '\0'; ++s) {
            if (*s == '"' || *s == '\\')
                sb_buf_append(&b, "\\", 1);
            sb_buf_append(&b, s, 1);
        }
        sb_buf_append(&b, "\"", 1);
    }
    sb_buf_append(&b, "}", 2);
    const char *p[] = {b.base};
    int rc = -1;
    if (exec_ok(r->conn, "--sync", "BEGIN", 0, NULL, NULL) != 0)
        goto out;
    PGresult *res = query(r->conn, "--sync",
                          "WITH gone AS (DELETE FROM rag_chunks WHERE source <> ALL ($1::text[]) RETURNING source) "
                          "SELECT source, count(*) FROM gone GROUP BY source ORDER BY source",
                          1, p);
    if (res == NULL) {
        PQclear(PQexec(r->conn, "ROLLBACK"));
        goto out;
    }
    for (int i = 0; i < PQntuples(res); ++i) {
        long n = strtol(PQgetvalue(res, i, 1), NULL, 10);
        printf("%s %s: %ld chunks (source no longer exists)\n", r->dry_run ? "would remove" : "removed", PQgetvalue(res, i, 0), n);
        ++*sources;
        *chunks += n;
    }
    PQclear(res);
    rc = finish_tx(r, "--sync");
out:
    sb_buf_dispose(&b);
    return rc;
}

/* The table comes from `switchboard migrate`; this tool never changes the schema. */
static int check_table(PGconn *conn)
{
    PGresult *res = query(conn, "checking for rag_chunks", "SELECT to_regclass('rag_chunks') IS NOT NULL", 0, NULL);
    if (res == NULL)
        return -1;
    int have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!have)
        fail_msg("the database has no rag_chunks table; run `switchboard migrate` first");
    return have ? 0 : -1;
}

/* ---- vector stores --------------------------------------------------------------------------------------------------- */

static size_t collect(char *p, size_t size, size_t nmemb, void *userp)
{
    return sb_buf_append(userp, p, size * nmemb) == 0 ? size * nmemb : 0; /* 0 stops an oversized answer */
}

/* The setting that names where `headers` go and the one holding their key: a call that fails names what to check. */
static void settings_for(const struct run *r, char *const *headers, const char **where, const char **key)
{
    if (headers != r->headers) {
        *where = "EMBEDDING_BASE_URL";
        *key = "EMBEDDING_API_KEY or OPENAI_API_KEY";
    } else if (r->store == STORE_PINECONE) {
        *where = "PINECONE_HOST";
        *key = "PINECONE_API_KEY";
    } else if (r->store == STORE_QDRANT) {
        *where = "QDRANT_URL";
        *key = "QDRANT_API_KEY";
    } else {
        *where = "CHROMA_URL";
        *key = "CHROMA_API_KEY";
    }
}

/*
 * The message in an error body: Chroma's {"error","message"}, Pinecone's
 * {"message"}, Qdrant's {"status":{"error"}}, OpenAI's {"error":{"message"}},
 * or the text itself. A refused key names its setting.
 */
static void print_error_body(const char *what, const char *url, long status, const sb_buf_t *b, const char *key_setting)
{
    json_t *root = json_loadb(b->base ? b->base : "", b->len, 0, NULL);
    json_t *err = json_object_get(root, "error");
    json_t *msg = json_object_get(json_is_object(err) ? err : root, "message");
    if (!json_is_string(msg))
        msg = json_is_string(err) ? err : NULL;
    if (msg == NULL && json_is_string(json_object_get(json_object_get(root, "status"), "error")))
        msg = json_object_get(json_object_get(root, "status"), "error");
    char hint[128] = "";
    if (status == 401 || status == 403)
        snprintf(hint, sizeof(hint), " (check %s)", key_setting);
    if (msg != NULL)
        fail_msg("%s failed: HTTP %ld from %s: %.300s%s", what, status, url, json_string_value(msg), hint);
    else
        fail_msg("%s failed: HTTP %ld from %s: %.300s%s", what, status, url, b->len ? b->base : "(empty answer)", hint);
    json_decref(root);
}

/*
 * One blocking JSON call: `method` NULL is a GET without `body` and a POST
 * with one ("PUT" sends the body too). Returns the parsed 2xx answer, or NULL
 * after printing why; an answer with status `quiet` (e.g. 404) is only
 * reported through *status. `headers` (the credentials) is a NULL-terminated
 * list, or NULL.
 */
static json_t *call(struct run *r, const char *what, const char *method, const char *url, char *const *headers, const json_t *body,
                    long *status, long quiet)
{
    CURL *e = r->curl;
    curl_easy_reset(e);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    for (size_t i = 0; headers != NULL && headers[i] != NULL; ++i)
        h = curl_slist_append(h, headers[i]);
    char *payload = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    sb_buf_t resp;
    sb_buf_init(&resp, MAX_RESPONSE);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (method != NULL)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (payload != NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(payload));
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 300000L); /* a large embeddings batch on a slow provider */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "switchboard-ingest/" SB_VERSION);
    CURLcode rc = curl_easy_perform(e);
    *status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    const char *where, *key;
    settings_for(r, headers, &where, &key);
    json_t *out = NULL;
    if (rc != CURLE_OK) {
        fail_msg("%s failed: %s: %s (check %s)", what, url, errbuf[0] ? errbuf : curl_easy_strerror(rc), where);
    } else if (*status < 200 || *status > 299) {
        if (*status != quiet)
            print_error_body(what, url, *status, &resp, key);
    } else if ((out = json_loadb(resp.base ? resp.base : "{}", resp.base ? resp.len : 2, 0, NULL)) == NULL) {
        fail_msg("%s failed: %s answered something that is not JSON (check %s)", what, url, where);
    }
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
    sb_buf_dispose(&resp);
    free(payload);
    curl_slist_free_all(h);
    return out;
}

/* Adds "Name: value" to the store's headers. They hold keys: printed nowhere, wiped when the run ends. */
static void add_header(struct run *r, const char *name, const char *value)
{
    size_t i = 0;
    while (r->headers[i] != NULL)
        ++i;
    if (i + 1 >= sizeof(r->headers) / sizeof(r->headers[0]))
        abort();
    sb_buf_t b;
    sb_buf_init(&b, (size_t)-1);
    sb_buf_appendf(&b, "%s: %s", name, value);
    r->headers[i] = b.base;
}

/* `url` + "/" + `path`, NUL-terminated; aborts past the ceiling, which only absurd settings reach. */
static void url_join(sb_buf_t *b, const char *base, const char *path)
{
    sb_buf_init(b, 16384);
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        --n;
    if (sb_buf_append(b, base, n) != 0 || sb_buf_appendf(b, "/%s%c", path, '\0') != 0)
        abort();
}

/* Appends `s` as one percent-encoded path segment or query value. */
static void append_segment(struct run *r, sb_buf_t *b, const char *s)
{
    char *esc = curl_easy_escape(r->curl, s, 0);
    if (esc == NULL || sb_buf_appendz(b, esc) != 0)
        abort();
    curl_free(esc);
}

/*
 * {store_url}{path}, then the query parameters `params` (name, value, ...,
 * NULL; a NULL value leaves its parameter out), percent-encoded.
 */
static void store_url(struct run *r, sb_buf_t *url, const char *path, const char *const *params)
{
    sb_buf_init(url, (size_t)-1);
    sb_buf_appendz(url, r->store_url);
    sb_buf_appendz(url, path);
    char sep = strchr(path, '?') != NULL ? '&' : '?';
    for (; params != NULL && params[0] != NULL; params += 2) {
        if (params[1] == NULL)
            continue;
        sb_buf_append(url, &sep, 1);
        sep = '&';
        sb_buf_appendz(url, params[0]);
        sb_buf_append(url, "=", 1);
        append_segment(r, url, params[1]);
    }
}

/* A call to {store_url}{path} with the store's credentials; takes `body` (NULL: a GET). The answer, or NULL after saying why. */
static json_t *store_call(struct run *r, const char *what, const char *method, const char *path, json_t *body, long quiet,
                          long *status)
{
    sb_buf_t url;
    store_url(r, &url, path, NULL);
    long st;
    json_t *out = call(r, what, method, url.base, r->headers, body, status != NULL ? status : &st, quiet);
    sb_buf_dispose(&url);
    json_decref(body);
    return out;
}

/* Says that `what` got an answer of an unexpected shape from the store. */
static void bad_shape(struct run *r, const char *what, const char *path, const char *expected)
{
    fail_msg("%s failed: %s%s answered without %s", what, r->store_url, path, expected);
}

/*
 * Finds the Chroma collection, creating it (cosine space, which chroma.c's
 * scores assume) unless this is a dry run. In a dry run a missing collection
 * is left missing: everything would be new.
 */
static int open_chroma(struct run *r)
{
    const sb_config_t *c = r->config;
    if (c->chroma_api_key != NULL)
        add_header(r, "x-chroma-token", c->chroma_api_key);
    sb_buf_t base;
    url_join(&base, c->chroma_url, "api/v2/tenants/");
    base.len--; /* the NUL */
    append_segment(r, &base, c->chroma_tenant);
    sb_buf_appendz(&base, "/databases/");
    append_segment(r, &base, c->chroma_database);
    sb_buf_appendz(&base, "/collections");
    sb_buf_t url;
    sb_buf_init(&url, 16384);
    sb_buf_append(&url, base.base, base.len);
    json_t *coll;
    long status;
    if (r->dry_run) {
        sb_buf_appendz(&url, "/");
        append_segment(r, &url, c->chroma_collection);
        sb_buf_append(&url, "", 1);
        coll = call(r, "finding the Chroma collection", NULL, url.base, r->headers, NULL, &status, 404);
        if (coll == NULL && status == 404) {
            r->missing = 1;
            sb_buf_dispose(&url);
            sb_buf_dispose(&base);
            return 0;
        }
    } else {
        sb_buf_append(&url, "", 1);
        json_t *body =
            json_pack("{s:s, s:b, s:{s:s}}", "name", c->chroma_collection, "get_or_create", 1, "metadata", "hnsw:space", "cosine");
        coll = call(r, "creating the Chroma collection", NULL, url.base, r->headers, body, &status, 0);
        json_decref(body);
    }
    sb_buf_dispose(&url);
    const char *id = json_string_value(json_object_get(coll, "id"));
    if (coll != NULL && id == NULL)
        fail_msg("Chroma's answer about collection %s (CHROMA_COLLECTION) has no id", c->chroma_collection);
    if (id != NULL) {
        sb_buf_appendz(&base, "/");
        append_segment(r, &base, id);
        r->store_url = xstrdup(base.base);
    }
    json_decref(coll);
    sb_buf_dispose(&base);
    return id != NULL ? 0 : -1;
}

/* Pinecone: {PINECONE_HOST} (https:// unless it names its scheme, as rag/pinecone.c does), and the two headers. */
static int open_pinecone(struct run *r)
{
    const sb_config_t *c = r->config;
    const char *host = c->pinecone_host;
    size_t n = strlen(host);
    while (n > 0 && host[n - 1] == '/')
        --n;
    sb_buf_t b;
    sb_buf_init(&b, (size_t)-1);
    if (strncmp(host, "http://", 7) != 0 && strncmp(host, "https://", 8) != 0)
        sb_buf_appendz(&b, "https://");
    sb_buf_append(&b, host, n);
    r->store_url = b.base;
    add_header(r, "Api-Key", c->pinecone_api_key);
    add_header(r, "X-Pinecone-Api-Version", c->pinecone_api_version);
    return 0;
}

/* Qdrant: a collection's vector size, or 0 when it does not say (-1: it has only named vectors, which switchboard does not use). */
static long qdrant_size(json_t *info)
{
    json_t *vectors =
        json_object_get(json_object_get(json_object_get(json_object_get(info, "result"), "config"), "params"), "vectors");
    json_t *size = json_object_get(vectors, "size");
    if (json_is_integer(size) && json_integer_value(size) > 0)
        return (long)json_integer_value(size);
    return json_is_object(vectors) && json_object_size(vectors) > 0 ? -1 : 0;
}

/* Qdrant: {QDRANT_URL}/collections/{QDRANT_COLLECTION}, and whether it exists yet (it is created at the first upsert, which knows
 * the dimension). */
static int open_qdrant(struct run *r)
{
    const sb_config_t *c = r->config;
    if (c->qdrant_api_key != NULL)
        add_header(r, "api-key", c->qdrant_api_key);
    sb_buf_t b;
    url_join(&b, c->qdrant_url, "collections/");
    b.len--; /* the NUL */
    append_segment(r, &b, c->qdrant_collection);
    r->store_url = b.base;
    long status;
    json_t *info = store_call(r, "finding the Qdrant collection", NULL, "", NULL, 404, &status);
    if (info == NULL && status == 404) {
        r->missing = 1;
        return 0;
    }
    if (info == NULL)
        return -1;
    long size = qdrant_size(info);
    json_decref(info);
    if (size < 0) {
        fail_msg("Qdrant collection %s (QDRANT_COLLECTION) has only named vectors; switchboard reads and writes the unnamed "
                 "vector: name a new collection and it is created",
                 c->qdrant_collection);
        return -1;
    }
    r->dim = (size_t)size;
    return 0;
}

/* Qdrant: creates the collection (cosine distance, which qdrant.c's scores assume) for `dim`-dimensional vectors. */
static int create_qdrant(struct run *r, size_t dim)
{
    long status;
    json_t *body = json_pack("{s:{s:I, s:s}}", "vectors", "size", (json_int_t)dim, "distance", "Cosine");
    json_t *res = store_call(r, "creating the Qdrant collection", "PUT", "", body, 409, &status);
    if (res == NULL && status != 409) /* 409: created meanwhile by someone else */
        return -1;
    json_decref(res);
    r->missing = 0;
    r->dim = status == 409 ? 0 : dim;
    return 0;
}

/*
 * Pinecone: the ids in the namespace that start with `prefix` (NULL: all of
 * them), following the listing's pagination. An array, or NULL after saying why.
 */
static json_t *pinecone_list(struct run *r, const char *what, const char *prefix)
{
    json_t *ids = json_array();
    char *token = NULL;
    for (;;) {
        const char *params[] = {"prefix", prefix, "namespace", r->config->pinecone_namespace, "paginationToken", token, NULL};
        sb_buf_t url;
        store_url(r, &url, "/vectors/list", params);
        long status;
        json_t *res = call(r, what, NULL, url.base, r->headers, NULL, &status, 0);
        sb_buf_dispose(&url);
        json_t *vectors = json_object_get(res, "vectors"), *v;
        if (!json_is_array(vectors)) {
            if (res != NULL)
                bad_shape(r, what, "/vectors/list", "a \"vectors\" list");
            json_decref(res);
            json_decref(ids);
            free(token);
            return NULL;
        }
        size_t i;
        json_array_foreach(vectors, i, v)
        {
            const char *id = json_string_value(json_object_get(v, "id"));
            if (id != NULL)
                json_array_append_new(ids, json_string(id));
        }
        const char *next = json_string_value(json_object_get(json_object_get(res, "pagination"), "next"));
        int more = next != NULL && next[0] != '\0' && (token == NULL || strcmp(next, token) != 0);
        free(token);
        token = more ? xstrdup(next) : NULL;
        json_decref(res);
        if (!more)
            return ids;
    }
}

/*
 * Qdrant: the points matching `filter` (NULL: all of them) with the payload
 * keys `with`, following next_page_offset. Takes both. An array of points
 * {id, payload}, or NULL after saying why.
 */
static json_t *qdrant_scroll(struct run *r, const char *what, json_t *filter, json_t *with)
{
    json_t *points = json_array(), *offset = NULL;
    for (;;) {
        json_t *body = json_object();
        if (filter != NULL)
            json_object_set(body, "filter", filter);
        json_object_set_new(body, "limit", json_integer(256));
        json_object_set(body, "with_payload", with);
        json_object_set_new(body, "with_vector", json_false());
        if (offset != NULL)
            json_object_set(body, "offset", offset);
        json_t *res = store_call(r, what, NULL, "/points/scroll", body, 0, NULL);
        json_t *result = json_object_get(res, "result"), *page = json_object_get(result, "points");
        if (!json_is_array(page)) {
            if (res != NULL)
                bad_shape(r, what, "/points/scroll", "a \"result.points\" list");
            json_decref(res);
            json_decref(points);
            points = NULL;
            break;
        }
        json_array_extend(points, page);
        json_t *next = json_object_get(result, "next_page_offset");
        int more =
            next != NULL && !json_is_null(next) && json_array_size(page) > 0 && !(offset != NULL && json_equal(next, offset));
        json_decref(offset);
        offset = more ? json_incref(next) : NULL;
        json_decref(res);
        if (!more)
            break;
    }
    json_decref(offset);
    json_decref(filter);
    json_decref(with);
    return points;
}

/*
 * Each chunk's id in the store. Chroma's is the content hash. Pinecone's is
 * "<hash of the source>#<content hash>", so one listing by prefix finds a
 * source's ids. Qdrant takes only UUIDs and integers: the content hash's
 * first 16 bytes, written as a UUID.
 */
static void source_prefix(const char *source, char out[33])
{
    unsigned char h[16];
    crypto_generichash(h, sizeof(h), (const unsigned char *)source, strlen(source), NULL, 0);
    sodium_bin2hex(out, 33, h, sizeof(h));
}

static void assign_store_ids(struct run *r)
{
    for (size_t i = 0; i < r->ndocs; ++i) {
        struct doc *d = &r->docs[i];
        char prefix[33];
        source_prefix(d->source, prefix);
        for (size_t j = 0; j < d->nchunks; ++j) {
            struct chunk *c = &d->chunks[j];
            if (r->store == STORE_PINECONE)
                snprintf(c->sid, sizeof(c->sid), "%s#%s", prefix, c->id);
            else if (r->store == STORE_QDRANT)
                snprintf(c->sid, sizeof(c->sid), "%.8s-%.4s-%.4s-%.4s-%.12s", c->id, c->id + 8, c->id + 12, c->id + 16, c->id + 20);
            else
                snprintf(c->sid, sizeof(c->sid), "%s", c->id);
        }
    }
}

/* Is `id` one this tool writes to Pinecone: 32 hex digits, '#', 64 hex digits? */
static int pinecone_ours(const char *id)
{
    size_t n = strlen(id);
    if (n != 32 + 1 + 64 || id[32] != '#')
        return 0;
    for (size_t i = 0; i < n; ++i)
        if (i != 32 && !((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

/* The ids the store holds for `d` (an empty array when the collection does not exist yet), or NULL after saying why. */
static json_t *existing_ids(struct run *r, const struct doc *d)
{
    if (r->missing)
        return json_array();
    if (r->store == STORE_PINECONE) {
        char prefix[34];
        source_prefix(d->source, prefix);
        prefix[32] = '#';
        prefix[33] = '\0';
        return pinecone_list(r, d->source, prefix);
    }
    if (r->store == STORE_QDRANT) {
        json_t *filter = json_pack("{s:[{s:s, s:{s:s}}]}", "must", "key", "source", "match", "value", d->source);
        json_t *points = qdrant_scroll(r, d->source, filter, json_pack("[s]", "chunk_id")), *p;
        json_t *ids = points != NULL ? json_array() : NULL;
        size_t i;
        json_array_foreach(points, i, p)
        {
            /* a point without a chunk_id was not written by this tool: it is left alone */
            if (json_is_string(json_object_get(json_object_get(p, "payload"), "chunk_id")) && json_object_get(p, "id") != NULL)
                json_array_append(ids, json_object_get(p, "id"));
        }
        json_decref(points);
        return ids;
    }
    json_t *res =
        store_call(r, d->source, NULL, "/get", json_pack("{s:{s:s}, s:[]}", "where", "source", d->source, "include"), 0, NULL);
    json_t *ids = json_object_get(res, "ids");
    if (res != NULL && !json_is_array(ids))
        bad_shape(r, d->source, "/get", "an \"ids\" list");
    ids = json_is_array(ids) ? json_incref(ids) : NULL;
    json_decref(res);
    return ids;
}

/* Deletes `ids` from the store, DELETE_BATCH at a time. */
static int delete_ids(struct run *r, const char *what, json_t *ids)
{
    const char *ns = r->config->pinecone_namespace;
    for (size_t from = 0; from < json_array_size(ids); from += DELETE_BATCH) {
        json_t *batch = json_array();
        for (size_t i = from; i < from + DELETE_BATCH && i < json_array_size(ids); ++i)
            json_array_append(batch, json_array_get(ids, i));
        json_t *res;
        if (r->store == STORE_PINECONE) {
            json_t *body = json_pack("{s:o}", "ids", batch);
            if (ns != NULL)
                json_object_set_new(body, "namespace", json_string(ns));
            res = store_call(r, what, NULL, "/vectors/delete", body, 0, NULL);
        } else if (r->store == STORE_QDRANT) {
            res = store_call(r, what, NULL, "/points/delete?wait=true", json_pack("{s:o}", "points", batch), 0, NULL);
        } else {
            res = store_call(r, what, NULL, "/delete", json_pack("{s:o}", "ids", batch), 0, NULL);
        }
        if (res == NULL)
            return -1;
        json_decref(res);
    }
    return 0;
}

static int has_id(json_t *ids, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), id) == 0)
            return 1;
    }
    return 0;
}

/*
 * Embeds `inputs` (an array of strings) with one request to
 * {EMBEDDING_BASE_URL}/embeddings. An array of as many vectors, in input
 * order, or NULL after saying why.
 */
static json_t *embed(struct run *r, json_t *inputs)
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
    url_join(&url, c->embedding_base_url != NULL ? c->embedding_base_url : c->llm_base_url, "embeddings");
    json_t *body = json_pack("{s:s, s:O}", "model", c->embedding_model, "input", inputs);
    long status;
    json_t *res = call(r, "embedding", NULL, url.base, auth, body, &status, 0);
    if (h.base != NULL)
        sodium_memzero(h.base, h.len);
    sb_buf_dispose(&h);
    json_decref(body);
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
            fail_msg("embedding failed: %s answered without a usable vector for every input (model %s, OPENAI_EMBEDDING_MODEL)",
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
static json_t *embed_input(const struct doc *d, const struct chunk *c)
{
    sb_buf_t b;
    sb_buf_init(&b, (size_t)-1);
    sb_buf_appendf(&b, "%s%s%s\n\n%s", d->title, c->heading[0] ? " — " : "", c->heading, c->content);
    json_t *s = json_stringn(b.base, b.len);
    sb_buf_dispose(&b);
    return s;
}

/* A chunk's metadata in every store: what the retrieval backends read back. */
static json_t *chunk_meta(const struct doc *d, const struct chunk *c)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "source", d->source, "heading", c->heading, "title", d->title, "text", c->content);
}

/* Writes one batch: the chunks of `d` at idx[from..to) with their vectors `vecs`. */
static int write_batch(struct run *r, const struct doc *d, const size_t *idx, size_t from, size_t to, json_t *vecs)
{
    json_t *res;
    if (r->store == STORE_PINECONE) {
        json_t *vectors = json_array();
        for (size_t i = from; i < to; ++i) {
            const struct chunk *c = &d->chunks[idx[i]];
            json_array_append_new(vectors, json_pack("{s:s, s:O, s:o}", "id", c->sid, "values", json_array_get(vecs, i - from),
                                                     "metadata", chunk_meta(d, c)));
        }
        json_t *body = json_pack("{s:o}", "vectors", vectors);
        if (r->config->pinecone_namespace != NULL)
            json_object_set_new(body, "namespace", json_string(r->config->pinecone_namespace));
        res = store_call(r, d->source, NULL, "/vectors/upsert", body, 0, NULL);
    } else if (r->store == STORE_QDRANT) {
        size_t dim = json_array_size(json_array_get(vecs, 0));
        if (r->missing && create_qdrant(r, dim) != 0)
            return -1;
        if (r->dim != 0 && r->dim != dim) {
            fail_msg("%s: the embedding model %s (OPENAI_EMBEDDING_MODEL) gives %zu-dimensional vectors, but Qdrant collection %s "
                     "(QDRANT_COLLECTION) holds %zu-dimensional ones; use the model it was loaded with, or a new collection",
                     d->source, r->config->embedding_model, dim, r->config->qdrant_collection, r->dim);
            return -1;
        }
        json_t *points = json_array();
        for (size_t i = from; i < to; ++i) {
            const struct chunk *c = &d->chunks[idx[i]];
            json_t *payload = chunk_meta(d, c);
            json_object_set_new(payload, "chunk_id", json_string(c->id));
            json_array_append_new(
                points, json_pack("{s:s, s:O, s:o}", "id", c->sid, "vector", json_array_get(vecs, i - from), "payload", payload));
        }
        res = store_call(r, d->source, "PUT", "/points?wait=true", json_pack("{s:o}", "points", points), 0, NULL);
    } else {
        json_t *ids = json_array(), *docs = json_array(), *metas = json_array();
        for (size_t i = from; i < to; ++i) {
            const struct chunk *c = &d->chunks[idx[i]];
            json_array_append_new(ids, json_string(c->sid));
            json_array_append_new(docs, json_string(c->content));
            json_array_append_new(metas, chunk_meta(d, c));
        }
        res = store_call(r, d->source, NULL, "/upsert",
                         json_pack("{s:o, s:O, s:o, s:o}", "ids", ids, "embeddings", vecs, "documents", docs, "metadatas", metas),
                         0, NULL);
    }
    if (res == NULL)
        return -1;
    json_decref(res);
    return 0;
}

_Static_assert(EMBED_BATCH <= 100, "Pinecone takes at most 100 vectors per upsert, and each embeddings batch is one upsert");

/* Embeds and upserts the chunks of `d` at `idx[0..n)`, EMBED_BATCH at a time. */
static int upsert(struct run *r, const struct doc *d, const size_t *idx, size_t n)
{
    for (size_t from = 0; from < n; from += EMBED_BATCH) {
        size_t to = from + EMBED_BATCH < n ? from + EMBED_BATCH : n;
        json_t *inputs = json_array();
        for (size_t i = from; i < to; ++i)
            json_array_append_new(inputs, embed_input(d, &d->chunks[idx[i]]));
        json_t *vecs = embed(r, inputs);
        json_decref(inputs);
        if (vecs == NULL)
            return -1;
        int rc = write_batch(r, d, idx, from, to, vecs);
        json_decref(vecs);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/*
 * Writes one document to the vector store: embeds and upserts the chunks the
 * store does not have (by id), and deletes the source's ids this run no
 * longer produces. An unchanged file costs one lookup.
 */
static int store_doc_vec(struct run *r, const struct doc *d, long *added, long *removed)
{
    *added = *removed = 0;
    json_t *have = existing_ids(r, d);
    if (have == NULL)
        return -1;
    size_t *fresh = xrealloc(NULL, (d->nchunks + 1) * sizeof(*fresh)), nfresh = 0;
    for (size_t i = 0; i < d->nchunks; ++i) {
        int dup = has_id(have, d->chunks[i].sid); /* a repeated passage within the file is one point */
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
            kept = strcmp(d->chunks[j].sid, json_string_value(v) ? json_string_value(v) : "") == 0;
        if (!kept)
            json_array_append(stale, v);
    }
    int rc = 0;
    if (!r->dry_run && nfresh > 0)
        rc = upsert(r, d, fresh, nfresh);
    if (rc == 0 && !r->dry_run && json_array_size(stale) > 0)
        rc = delete_ids(r, d->source, stale);
    *added = (long)nfresh;
    *removed = (long)json_array_size(stale);
    free(fresh);
    json_decref(stale);
    json_decref(have);
    return rc;
}

static int is_current(const struct run *r, const char *source)
{
    for (size_t j = 0; j < r->ndocs; ++j)
        if (strcmp(r->docs[j].source, source) == 0)
            return 1;
    return 0;
}

/*
 * Pinecone, for --sync: the ids of sources this run did not find, as
 * {"id","source"} pairs appended to `out`. The listing gives ids only; a
 * source's ids share the prefix of its hash, so they are grouped by prefix,
 * and one id of each group is fetched to name the source.
 */
static int pinecone_gone(struct run *r, json_t *out)
{
    json_t *ids = pinecone_list(r, "--sync", NULL), *v;
    if (ids == NULL)
        return -1;
    json_t *groups = json_object(); /* prefix → [ids] */
    size_t i;
    json_array_foreach(ids, i, v)
    {
        const char *id = json_string_value(v);
        if (!pinecone_ours(id))
            continue; /* not written by this tool */
        char prefix[33];
        snprintf(prefix, sizeof(prefix), "%.32s", id);
        json_t *g = json_object_get(groups, prefix);
        if (g == NULL)
            json_object_set_new(groups, prefix, g = json_array());
        json_array_append(g, v);
    }
    for (size_t j = 0; j < r->ndocs; ++j) {
        char prefix[33];
        source_prefix(r->docs[j].source, prefix);
        json_object_del(groups, prefix);
    }
    const char *ns = r->config->pinecone_namespace;
    int rc = 0;
    void *it = json_object_iter(groups);
    while (it != NULL && rc == 0) {
        /* up to FETCH_BATCH groups per fetch: GET /vectors/fetch?ids=a&ids=b&namespace=... */
        void *first = it;
        sb_buf_t url;
        store_url(r, &url, "/vectors/fetch", NULL);
        char sep = '?';
        for (size_t k = 0; it != NULL && k < FETCH_BATCH; ++k, it = json_object_iter_next(groups, it)) {
            sb_buf_appendf(&url, "%cids=", sep);
            sep = '&';
            append_segment(r, &url, json_string_value(json_array_get(json_object_iter_value(it), 0)));
        }
        if (ns != NULL) {
            sb_buf_appendz(&url, "&namespace=");
            append_segment(r, &url, ns);
        }
        long status;
        json_t *res = call(r, "--sync", NULL, url.base, r->headers, NULL, &status, 0);
        sb_buf_dispose(&url);
        json_t *vectors = json_object_get(res, "vectors");
        if (res != NULL && !json_is_object(vectors))
            bad_shape(r, "--sync", "/vectors/fetch", "a \"vectors\" object");
        if (!json_is_object(vectors)) {
            rc = -1;
        } else {
            for (void *g = first; g != it; g = json_object_iter_next(groups, g)) {
                json_t *members = json_object_iter_value(g);
                const char *id = json_string_value(json_array_get(members, 0));
                const char *src =
                    json_string_value(json_object_get(json_object_get(json_object_get(vectors, id), "metadata"), "source"));
                sb_buf_t name;
                sb_buf_init(&name, (size_t)-1);
                if (src != NULL)
                    sb_buf_appendz(&name, src);
                else /* written by this tool, but its metadata is gone: named by its ids */
                    sb_buf_appendf(&name, "(ids %s#...)", json_object_iter_key(g));
                json_array_foreach(members, i, v)
                {
                    json_array_append_new(out, json_pack("{s:O, s:s}", "id", v, "source", name.base));
                }
                sb_buf_dispose(&name);
            }
        }
        json_decref(res);
    }
    json_decref(groups);
    json_decref(ids);
    return rc;
}

/* For --sync: every record this tool wrote, as {"id","source"} pairs (Pinecone: only those of sources gone). NULL after saying why.
 */
static json_t *list_all(struct run *r)
{
    json_t *out = json_array(), *v;
    size_t i;
    if (r->missing)
        return out;
    if (r->store == STORE_PINECONE) {
        if (pinecone_gone(r, out) == 0)
            return out;
        json_decref(out);
        return NULL;
    }
    if (r->store == STORE_QDRANT) {
        json_t *points = qdrant_scroll(r, "--sync", NULL, json_pack("[s, s]", "source", "chunk_id"));
        if (points == NULL) {
            json_decref(out);
            return NULL;
        }
        json_array_foreach(points, i, v)
        {
            json_t *payload = json_object_get(v, "payload"), *id = json_object_get(v, "id");
            const char *src = json_string_value(json_object_get(payload, "source"));
            if (src != NULL && id != NULL && json_is_string(json_object_get(payload, "chunk_id")))
                json_array_append_new(out, json_pack("{s:O, s:s}", "id", id, "source", src));
        }
        json_decref(points);
        return out;
    }
    json_t *res = store_call(r, "--sync", NULL, "/get", json_pack("{s:[s]}", "include", "metadatas"), 0, NULL);
    if (res == NULL) {
        json_decref(out);
        return NULL;
    }
    json_t *ids = json_object_get(res, "ids"), *metas = json_object_get(res, "metadatas");
    json_array_foreach(ids, i, v)
    {
        const char *src = json_string_value(json_object_get(json_array_get(metas, i), "source"));
        if (src != NULL) /* else not written by this tool */
            json_array_append_new(out, json_pack("{s:O, s:s}", "id", v, "source", src));
    }
    json_decref(res);
    return out;
}

static int by_source(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "source")),
                  json_string_value(json_object_get(*(json_t *const *)b, "source")));
}

/* --sync for a vector store: deletes the ids of every source this run did not find; prints each source removed. */
static int sync_removed_vec(struct run *r, long *sources, long *chunks)
{
    *sources = *chunks = 0;
    json_t *all = list_all(r);
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
        rc = delete_ids(r, "--sync", gone);
    if (rc == 0) {
        size_t n = json_object_size(bysrc), k = 0;
        json_t **rows = xrealloc(NULL, (n + 1) * sizeof(*rows));
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
static int check_store_settings(const sb_config_t *c, enum store store)
{
    if (store == STORE_CHROMA) {
        if (!http_url(c->chroma_url)) {
            fail_msg("RAG_BACKEND=chroma needs CHROMA_URL (http:// or https://), the Chroma server to load");
            return -1;
        }
        if (has_control(c->chroma_api_key)) {
            fail_msg("CHROMA_API_KEY must not contain control characters");
            return -1;
        }
    } else if (store == STORE_PINECONE) {
        if (c->pinecone_api_key == NULL || c->pinecone_api_key[0] == '\0') {
            fail_msg("RAG_BACKEND=pinecone needs PINECONE_API_KEY");
            return -1;
        }
        if (c->pinecone_host == NULL || c->pinecone_host[0] == '\0') {
            fail_msg("RAG_BACKEND=pinecone needs PINECONE_HOST, the index's host from the Pinecone console");
            return -1;
        }
        if ((strstr(c->pinecone_host, "://") != NULL && !http_url(c->pinecone_host)) || strpbrk(c->pinecone_host, " \t") != NULL ||
            has_control(c->pinecone_host)) {
            fail_msg("PINECONE_HOST must be a host name, optionally with https://");
            return -1;
        }
        if (has_control(c->pinecone_api_key)) {
            fail_msg("PINECONE_API_KEY must not contain control characters");
            return -1;
        }
        if (c->pinecone_api_version == NULL || c->pinecone_api_version[0] == '\0' || has_control(c->pinecone_api_version)) {
            fail_msg("PINECONE_API_VERSION must be a version such as 2024-07");
            return -1;
        }
    } else if (store == STORE_QDRANT) {
        if (!http_url(c->qdrant_url)) {
            fail_msg("RAG_BACKEND=qdrant needs QDRANT_URL (http:// or https://), the Qdrant server to load");
            return -1;
        }
        if (c->qdrant_collection == NULL || c->qdrant_collection[0] == '\0') {
            fail_msg("RAG_BACKEND=qdrant needs QDRANT_COLLECTION, the collection to load (created if missing)");
            return -1;
        }
        if (has_control(c->qdrant_api_key)) {
            fail_msg("QDRANT_API_KEY must not contain control characters");
            return -1;
        }
    }
    return 0;
}

/* ---- main ------------------------------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fputs("usage: switchboard-ingest [--sync] [--dry-run] PATH...\n"
          "Loads the .md, .markdown and .txt files under each PATH (files or folders, recursively)\n"
          "into the rag_chunks table of DATABASE_URL, split along their headings; with RAG_BACKEND=chroma,\n"
          "pinecone or qdrant, embeds them (EMBEDDING_BASE_URL, OPENAI_EMBEDDING_MODEL) into CHROMA_COLLECTION,\n"
          "the PINECONE_HOST index (PINECONE_NAMESPACE) or QDRANT_COLLECTION instead.\n"
          "  --sync     also delete the chunks of files that no longer exist (PATHs are the whole knowledge base)\n"
          "  --dry-run  report what would change without writing or embedding (postgres without DATABASE_URL:\n"
          "             just split the files)\n"
          "Settings come from the environment and .env (SWITCHBOARD_ENV_FILE), as for switchboard.\n",
          f);
}

static void free_run(struct run *r)
{
    for (size_t i = 0; i < r->ndocs; ++i) {
        struct doc *d = &r->docs[i];
        for (size_t j = 0; j < d->nchunks; ++j) {
            free(d->chunks[j].heading);
            free(d->chunks[j].content);
        }
        free(d->chunks);
        free(d->path);
        free(d->source);
        free(d->title);
    }
    free(r->docs);
}

int main(int argc, char **argv)
{
    struct run r = {0};
    int npaths = 0, end_of_options = 0;
    for (int i = 1; i < argc; ++i) {
        if (!end_of_options && strcmp(argv[i], "--sync") == 0) {
            r.sync = 1;
        } else if (!end_of_options && strcmp(argv[i], "--dry-run") == 0) {
            r.dry_run = 1;
        } else if (!end_of_options && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
            usage(stdout);
            return 0;
        } else if (!end_of_options && strcmp(argv[i], "--") == 0) {
            end_of_options = 1;
        } else if (!end_of_options && argv[i][0] == '-' && argv[i][1] != '\0') {
            fail_msg("unknown option %s", argv[i]);
            usage(stderr);
            return 2;
        } else {
            argv[++npaths] = argv[i]; /* compacts the paths to argv[1..npaths] */
        }
    }
    if (npaths == 0) {
        usage(stderr);
        return 2;
    }

    char err[512];
    const char *env_file = getenv("SWITCHBOARD_ENV_FILE");
    if (sb_config_load_env_file(env_file && *env_file ? env_file : ".env", err, sizeof(err)) != 0) {
        fail_msg("%s", err);
        return 2;
    }
    static sb_config_t config;
    if (sb_config_load(&config, err, sizeof(err)) != 0) {
        fail_msg("configuration: %s", err);
        return 2;
    }
    int rc = 1;
    r.config = &config;
    const char *backend = config.rag_backend != NULL ? config.rag_backend : "postgres";
    if (strcmp(backend, "chroma") == 0) {
        r.store = STORE_CHROMA;
    } else if (strcmp(backend, "pinecone") == 0) {
        r.store = STORE_PINECONE;
    } else if (strcmp(backend, "qdrant") == 0) {
        r.store = STORE_QDRANT;
    } else if (strcmp(backend, "postgres") != 0) {
        fail_msg("RAG_BACKEND=%s: this tool loads the postgres, chroma, pinecone and qdrant backends only", backend);
        goto out;
    }
    int vector = r.store != STORE_POSTGRES;
    if (vector && check_store_settings(&config, r.store) != 0)
        goto out;
    if (!vector && (config.database_url == NULL || config.database_url[0] == '\0') && !r.dry_run) {
        fail_msg("DATABASE_URL is not set; it names the Postgres database to load (see env.example)");
        goto out;
    }
    if (sodium_init() < 0) {
        fail_msg("cannot initialise libsodium");
        goto out;
    }

    /* Everything is read and split first, so a bad file stops the run before anything is written. */
    for (int i = 1; i <= npaths; ++i)
        if (add_path(&r, argv[i]) != 0)
            goto out;
    if (r.sync && r.folders == 0) {
        fail_msg("--sync needs at least one folder: it deletes what is no longer in the given folders");
        goto out;
    }
    if (r.ndocs == 0) {
        fail_msg("no .md, .markdown or .txt files found");
        goto out;
    }

    size_t total = 0;
    long added = 0, removed = 0;
    if (!vector && (config.database_url == NULL || config.database_url[0] == '\0')) {
        for (size_t i = 0; i < r.ndocs; ++i) {
            printf("would ingest %s: %zu chunks (not compared with a database: DATABASE_URL is not set)\n", r.docs[i].source,
                   r.docs[i].nchunks);
            total += r.docs[i].nchunks;
        }
        printf("dry run: %zu files, %zu chunks\n", r.ndocs, total);
        rc = 0;
        goto out;
    }
    if (vector) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || (r.curl = curl_easy_init()) == NULL) {
            fail_msg("cannot initialise libcurl");
            goto out;
        }
        assign_store_ids(&r);
        if ((r.store == STORE_CHROMA ? open_chroma(&r) : r.store == STORE_PINECONE ? open_pinecone(&r) : open_qdrant(&r)) != 0)
            goto out;
    } else if ((r.conn = connect_db(&config)) == NULL || check_table(r.conn) != 0) {
        goto out;
    }
    for (size_t i = 0; i < r.ndocs; ++i) {
        const struct doc *d = &r.docs[i];
        long a, rm;
        if ((vector ? store_doc_vec(&r, d, &a, &rm) : store_doc(&r, d, &a, &rm)) != 0) {
            if (vector) /* upserts are per batch: a re-run finds what was written and completes the file */
                fail_msg("%s: stopping; run again to complete this file", d->source);
            else
                fail_msg("%s: nothing written for this file; stopping", d->source);
            goto out;
        }
        printf("%s %s: %zu chunks (%ld new, %ld removed)\n", r.dry_run ? "would ingest" : "ingested", d->source, d->nchunks, a, rm);
        fflush(stdout);
        total += d->nchunks;
        added += a;
        removed += rm;
    }
    long gone_sources = 0, gone_chunks = 0;
    if (r.sync && (vector ? sync_removed_vec(&r, &gone_sources, &gone_chunks) : sync_removed(&r, &gone_sources, &gone_chunks)) != 0)
        goto out;
    printf("%s%zu files, %zu chunks: %ld new, %ld removed", r.dry_run ? "dry run, nothing written: " : "", r.ndocs, total, added,
           removed + gone_chunks);
    if (r.sync)
        printf(" (%ld of them from %ld files that no longer exist)", gone_chunks, gone_sources);
    putchar('\n');
    rc = 0;
out:
    if (r.conn != NULL)
        PQfinish(r.conn);
    if (r.curl != NULL) {
        curl_easy_cleanup(r.curl);
        curl_global_cleanup();
    }
    free(r.store_url);
    for (size_t i = 0; r.headers[i] != NULL; ++i) {
        sodium_memzero(r.headers[i], strlen(r.headers[i]));
        free(r.headers[i]);
    }
    free_run(&r);
    sb_config_dispose(&config);
    return rc;
}
