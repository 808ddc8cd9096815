/*
 * The knowledge base's documents split into passages, for switchboard-ingest:
 * Markdown along its headings (`#` the title, `##` sections, `###`
 * subsections that keep their parent's name), a long section cut at a
 * paragraph, then sentence, then word boundary into pieces that overlap a
 * little, each passage named by a hash of its source, heading and content.
 * Pure: no files, no database, no network.
 */
#ifndef SB_RAG_SPLIT_H
#define SB_RAG_SPLIT_H

#include <stddef.h>

#define SB_KB_MAX_CHUNK 1200       /* bytes of content per chunk: a few passages fit the model's context */
#define SB_KB_MIN_CHUNK 400        /* a piece is not cut shorter than this when a better boundary is further on */
#define SB_KB_OVERLAP 150          /* bytes repeated from the end of one piece at the start of the next */
#define SB_KB_MAX_FILE (16u << 20) /* a knowledge file larger than this is almost certainly not one */
#define SB_KB_STORE_ID_MAX 100     /* a chunk's id in a vector store: Pinecone's "<32 hex>#<64 hex>" is the longest */

/* One passage of a document. */
typedef struct sb_kb_chunk {
    char id[65];                  /* hash of (source, heading, content), hex */
    char sid[SB_KB_STORE_ID_MAX]; /* its id in a vector store, set by switchboard-ingest */
    char *heading;
    char *content;
} sb_kb_chunk_t;

/* One document: where it was read from, its name (`source`) in the store, its title and chunks. */
typedef struct sb_kb_doc {
    char *path;
    char *source;
    char *title;
    sb_kb_chunk_t *chunks;
    size_t nchunks, capchunks;
} sb_kb_doc_t;

/*
 * Splits `text` (UTF-8, NUL-terminated, without CRs) into d's chunks and
 * title; d->source must be set (it names the title when the text has no `#`
 * line, and goes into every id). Headings inside fenced code blocks are text.
 */
void sb_kb_split(sb_kb_doc_t *d, const char *text);
/* Frees what the document holds (path, source, title, chunks). */
void sb_kb_doc_dispose(sb_kb_doc_t *d);

#endif
