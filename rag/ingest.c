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
 * A command-line tool, so it uses libpq's and libcurl's blocking calls. This
 * file is the command and its files; split.c splits them, ingest_pg.c writes
 * Postgres, ingest_vec.c a vector store through the store's own
 * administration (pinecone.c, qdrant.c, chroma.c).
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <h2o/memory.h>
#include <h2o/string_.h>
#include <sodium.h>

#include "ingest.h"
#include "jsonlex.h"
#include "sb/alloc.h"
#include "sb/buf.h"

#define MAX_DEPTH 32 /* folder recursion; guards against symlink loops */

/* The loadable stores by RAG_BACKEND; postgres is the default and has its own writer. */
static const struct {
    const char *name;
    const sb_store_admin_t *admin;
} stores[] = {{"chroma", &sb_store_chroma}, {"pinecone", &sb_store_pinecone}, {"qdrant", &sb_store_qdrant}};

/* ---- reading ---------------------------------------------------------------------------------------------------------- */

/* Strict UTF-8 (switchboard's own reading of it, jsonlex.h). Returns the offset of the first bad byte, or len. */
static size_t valid_utf8_prefix(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = s[i] < 0x80 ? 1 : sb_utf8_len(s + i, s + len);
        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

/* Reads a whole file as UTF-8 text without NUL bytes, a BOM or CRs. NULL after saying why. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        sb_store_say("cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    sb_buf_t b;
    sb_buf_init(&b, SB_KB_MAX_FILE);
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
            sb_store_say("%s is larger than %u MB; not a knowledge file?", path, SB_KB_MAX_FILE >> 20);
        else
            sb_store_say("cannot read %s: read error", path);
        sb_buf_dispose(&b);
        return NULL;
    }
    size_t len = b.len;
    const unsigned char *s = (const unsigned char *)(b.base ? b.base : "");
    if (memchr(s, '\0', len) != NULL) {
        sb_store_say("%s contains NUL bytes; not a text file", path);
        sb_buf_dispose(&b);
        return NULL;
    }
    size_t bad = valid_utf8_prefix(s, len);
    if (bad < len) {
        size_t line = 1;
        for (size_t i = 0; i < bad; ++i)
            line += s[i] == '\n';
        sb_store_say("%s is not UTF-8 (line %zu, byte offset %zu); convert it (e.g. iconv -t UTF-8) and run again", path, line,
                     bad);
        sb_buf_dispose(&b);
        return NULL;
    }
    /* Drops a byte order mark and carriage returns, so Windows-edited files hash like the same text saved elsewhere. */
    char *out = sb_alloc(len + 1);
    size_t o = 0, i = (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    for (; i < len; ++i)
        if (s[i] != '\r')
            out[o++] = (char)s[i];
    out[o] = '\0';
    sb_buf_dispose(&b);
    return out;
}

/* ---- finding files --------------------------------------------------------------------------------------------------- */

static int wanted_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot != NULL && (strcmp(dot, ".md") == 0 || strcmp(dot, ".markdown") == 0 || strcmp(dot, ".txt") == 0);
}

static int add_file(sb_ingest_t *r, const char *path, const char *source)
{
    for (size_t i = 0; i < r->ndocs; ++i) {
        if (strcmp(r->docs[i].source, source) == 0) {
            sb_store_say("%s and %s would both be stored as source \"%s\"; ingest them in separate folders", r->docs[i].path, path,
                         source);
            return -1;
        }
    }
    char *text = read_text(path);
    if (text == NULL)
        return -1;
    if (r->ndocs == r->capdocs) {
        r->capdocs = r->capdocs ? r->capdocs * 2 : 16;
        r->docs = sb_realloc(r->docs, r->capdocs * sizeof(*r->docs));
    }
    sb_kb_doc_t *d = &r->docs[r->ndocs++];
    memset(d, 0, sizeof(*d));
    d->path = sb_strdup(path);
    d->source = sb_strdup(source);
    sb_kb_split(d, text);
    free(text);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the knowledge files under `dir` (sorted, so positions and output are stable); `rel` is dir relative to the root. */
static int walk(sb_ingest_t *r, const char *dir, const char *rel, int depth)
{
    if (depth > MAX_DEPTH) {
        sb_store_say("%s: folders nested deeper than %d (a symlink loop?)", dir, MAX_DEPTH);
        return -1;
    }
    DIR *dh = opendir(dir);
    if (dh == NULL) {
        sb_store_say("cannot read folder %s: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        if (e->d_name[0] == '.') /* ., .. and hidden files such as editor swap files and .git */
            continue;
        if (n == cap)
            names = sb_realloc(names, (cap = cap ? cap * 2 : 32) * sizeof(*names));
        names[n++] = sb_strdup(e->d_name);
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
            sb_store_say("%s/%s: path too long", dir, names[i]);
            rc = -1;
        } else {
            struct stat st;
            if (stat(path.base, &st) != 0) {
                sb_store_say("cannot read %s: %s", path.base, strerror(errno));
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
static int add_path(sb_ingest_t *r, const char *arg)
{
    struct stat st;
    if (stat(arg, &st) != 0) {
        sb_store_say("cannot read %s: %s", arg, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        ++r->folders;
        char *dir = sb_strdup(arg);
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            dir[--n] = '\0';
        int rc = walk(r, dir, "", 0);
        free(dir);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        sb_store_say("%s is neither a file nor a folder", arg);
        return -1;
    }
    if (!wanted_ext(arg)) {
        sb_store_say("%s: only .md, .markdown and .txt files are ingested", arg);
        return -1;
    }
    const char *base = strrchr(arg, '/');
    return add_file(r, arg, base ? base + 1 : arg);
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

static void warn_setting(const char *message)
{
    fprintf(stderr, "switchboard-ingest: warning: %s\n", message);
}

int main(int argc, char **argv)
{
    sb_ingest_t r = {0};
    int npaths = 0, end_of_options = 0, curl_ready = 0;
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
            sb_store_say("unknown option %s", argv[i]);
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
    if (sb_config_load_env_file(env_file && *env_file ? env_file : ".env", warn_setting, err, sizeof(err)) != 0) {
        sb_store_say("%s", err);
        return 2;
    }
    static sb_config_t config;
    if (sb_config_load(&config, err, sizeof(err)) != 0) {
        sb_store_say("configuration: %s", err);
        return 2;
    }
    int rc = 1;
    r.config = &config;
    const char *backend = config.rag_backend != NULL ? config.rag_backend : "postgres";
    for (size_t i = 0; i < sizeof(stores) / sizeof(stores[0]); ++i)
        if (strcmp(backend, stores[i].name) == 0)
            r.vector = stores[i].admin;
    if (r.vector == NULL && strcmp(backend, "postgres") != 0) {
        sb_store_say("RAG_BACKEND=%s: this tool loads the postgres, chroma, pinecone and qdrant backends only", backend);
        goto out;
    }
    int vector = r.vector != NULL;
    if (vector && sb_ingest_vec_check(&config, r.vector) != 0)
        goto out;
    if (!vector && (config.database_url == NULL || config.database_url[0] == '\0') && !r.dry_run) {
        sb_store_say("DATABASE_URL is not set; it names the Postgres database to load (see env.example)");
        goto out;
    }
    if (sodium_init() < 0) {
        sb_store_say("cannot initialise libsodium");
        goto out;
    }

    /* Everything is read and split first, so a bad file stops the run before anything is written. */
    for (int i = 1; i <= npaths; ++i)
        if (add_path(&r, argv[i]) != 0)
            goto out;
    if (r.sync && r.folders == 0) {
        sb_store_say("--sync needs at least one folder: it deletes what is no longer in the given folders");
        goto out;
    }
    if (r.ndocs == 0) {
        sb_store_say("no .md, .markdown or .txt files found");
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
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
            sb_store_say("cannot initialise libcurl");
            goto out;
        }
        curl_ready = 1;
        if (sb_ingest_vec_open(&r) != 0)
            goto out;
    } else if ((r.conn = sb_ingest_pg_connect(&config)) == NULL) {
        goto out;
    }
    for (size_t i = 0; i < r.ndocs; ++i) {
        const sb_kb_doc_t *d = &r.docs[i];
        long a, rm;
        if ((vector ? sb_ingest_vec_store(&r, d, &a, &rm) : sb_ingest_pg_store(&r, d, &a, &rm)) != 0) {
            if (vector) /* upserts are per batch: a re-run finds what was written and completes the file */
                sb_store_say("%s: stopping; run again to complete this file", d->source);
            else
                sb_store_say("%s: nothing written for this file; stopping", d->source);
            goto out;
        }
        printf("%s %s: %zu chunks (%ld new, %ld removed)\n", r.dry_run ? "would ingest" : "ingested", d->source, d->nchunks, a, rm);
        fflush(stdout);
        total += d->nchunks;
        added += a;
        removed += rm;
    }
    long gone_sources = 0, gone_chunks = 0;
    if (r.sync &&
        (vector ? sb_ingest_vec_sync(&r, &gone_sources, &gone_chunks) : sb_ingest_pg_sync(&r, &gone_sources, &gone_chunks)) != 0)
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
    sb_store_close(&r.store);
    if (curl_ready)
        curl_global_cleanup();
    for (size_t i = 0; i < r.ndocs; ++i)
        sb_kb_doc_dispose(&r.docs[i]);
    free(r.docs);
    sb_config_dispose(&config);
    return rc;
}
