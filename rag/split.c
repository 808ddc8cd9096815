/*
 * The splitter (split.h). Sizes are bytes of UTF-8; a cut never falls inside
 * a character.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>
#include <h2o/string_.h>
#include <sodium.h>

#include "sb/alloc.h"
#include "sb/buf.h"
#include "split.h"

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void add_chunk(sb_kb_doc_t *d, const char *heading, const char *text, size_t len)
{
    while (len > 0 && is_space(*text))
        ++text, --len;
    while (len > 0 && is_space(text[len - 1]))
        --len;
    if (len == 0)
        return;
    if (d->nchunks == d->capchunks) {
        d->capchunks = d->capchunks ? d->capchunks * 2 : 16;
        d->chunks = sb_realloc(d->chunks, d->capchunks * sizeof(*d->chunks));
    }
    sb_kb_chunk_t *c = &d->chunks[d->nchunks++];
    c->heading = sb_strdup(heading);
    c->content = sb_strndup(text, len);

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
 * than SB_KB_MAX_CHUNK from there: the last paragraph break, else the last sentence
 * start, else the last word start within the limit (but not before
 * SB_KB_MIN_CHUNK), else the last UTF-8 character boundary.
 */
static size_t cut_point(const char *s, size_t start, size_t len)
{
    size_t limit = start + SB_KB_MAX_CHUNK, floor = start + SB_KB_MIN_CHUNK;
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

/* Where the next piece starts: about SB_KB_OVERLAP bytes before `end`, at a sentence start if there is one, else a word start. */
static size_t overlap_start(const char *s, size_t prev_start, size_t end)
{
    size_t from = end > prev_start + SB_KB_OVERLAP ? end - SB_KB_OVERLAP : prev_start + 1;
    for (size_t i = from; i < end; ++i)
        if (sentence_start(s, i))
            return i;
    for (size_t i = from; i < end; ++i)
        if (is_space(s[i - 1]) && !is_space(s[i]))
            return i;
    return end; /* one long word: no overlap rather than a cut inside it */
}

/* Adds one section's text as one chunk, or as overlapping pieces when it is longer than SB_KB_MAX_CHUNK. */
static void add_section(sb_kb_doc_t *d, const char *heading, const char *text, size_t len)
{
    while (len > 0 && is_space(*text))
        ++text, --len;
    while (len > 0 && is_space(text[len - 1]))
        --len;
    size_t start = 0;
    while (start < len) {
        if (len - start <= SB_KB_MAX_CHUNK) {
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
    return sb_strndup(base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
}

/*
 * Splits a document into sections. The first `#` line is the title; `##`
 * starts a section and `###` a subsection, whose heading keeps its parent's
 * ("Returns window / Plus members") because callers name the topic, not the
 * subtopic. Headings inside fenced code blocks are text.
 */
void sb_kb_split(sb_kb_doc_t *d, const char *text)
{
    sb_buf_t body, heading;
    char h2[512] = "";
    sb_buf_init(&body, SB_KB_MAX_FILE);
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
            d->title = sb_strndup(t, tlen);
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

void sb_kb_doc_dispose(sb_kb_doc_t *d)
{
    for (size_t j = 0; j < d->nchunks; ++j) {
        free(d->chunks[j].heading);
        free(d->chunks[j].content);
    }
    free(d->chunks);
    free(d->path);
    free(d->source);
    free(d->title);
}
