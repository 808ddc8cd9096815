/* Unit tests for rag/split.c: the Markdown splitter switchboard-ingest loads knowledge with. Pure: no files, no database. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../../rag/split.h"
#include "tap.h"

static sb_kb_doc_t split(const char *source, const char *text)
{
    sb_kb_doc_t d;
    memset(&d, 0, sizeof(d));
    d.source = strdup(source);
    sb_kb_split(&d, text);
    return d;
}

static int valid_utf8_cut(const char *s)
{
    size_t n = strlen(s);
    return n == 0 || ((unsigned char)s[0] & 0xC0) != 0x80;
}

static void test_headings(void)
{
    sb_kb_doc_t d = split("policies/returns.md", "# Returns and refunds\n\nIntro text.\n\n## Returns window\n\nThirty days.\n\n"
                                                 "### Plus members\n\nSixty days.\n\n```\n## not a heading\n```\n\n## Refunds\n\n"
                                                 "5 to 10 business days.\n");
    is_str(d.title, "Returns and refunds", "the first # line is the title");
    is_int(d.nchunks, 4, "the intro and three sections");
    is_str(d.chunks[0].heading, "", "the intro has no heading");
    is_str(d.chunks[0].content, "Intro text.", "trimmed");
    is_str(d.chunks[1].heading, "Returns window", "a ## section");
    is_str(d.chunks[2].heading, "Returns window / Plus members", "a ### section keeps its parent's name");
    ok(strstr(d.chunks[2].content, "## not a heading") != NULL, "a heading inside a fenced block is text");
    is_str(d.chunks[3].heading, "Refunds", "the next ## section");
    is_str(d.chunks[3].content, "5 to 10 business days.", "with its text");
    sb_kb_doc_dispose(&d);

    d = split("faq/shipping-times.md", "No title here.\n");
    is_str(d.title, "shipping-times", "without a # line the file name is the title");
    sb_kb_doc_dispose(&d);
}

static void test_long_sections(void)
{
    /* one section of many sentences, with multi-byte letters everywhere */
    char *text = malloc(20000);
    size_t n = (size_t)snprintf(text, 20000, "# T\n\n## Long\n\n");
    for (int i = 0; n < 9000; ++i)
        n += (size_t)snprintf(text + n, 20000 - n, "Sentence %d says éèà something useful about returns. ", i);
    sb_kb_doc_t d = split("long.md", text);
    ok(d.nchunks >= 7, "a section of 9 KB is cut into pieces (%zu)", d.nchunks);
    int within = 1, starts = 1, overlap = 1, utf8 = 1;
    for (size_t i = 0; i < d.nchunks; ++i) {
        size_t len = strlen(d.chunks[i].content);
        within &= len <= SB_KB_MAX_CHUNK && (i + 1 == d.nchunks || len >= SB_KB_MIN_CHUNK);
        starts &= strncmp(d.chunks[i].content, "Sentence ", 9) == 0;
        utf8 &= valid_utf8_cut(d.chunks[i].content);
        if (i > 0) { /* the piece starts with words the previous one ended with */
            char head[40];
            snprintf(head, sizeof(head), "%.30s", d.chunks[i].content);
            overlap &= strstr(d.chunks[i - 1].content, head) != NULL;
        }
    }
    ok(within, "every piece is at most %d bytes, and none but the last under %d", SB_KB_MAX_CHUNK, SB_KB_MIN_CHUNK);
    ok(starts, "each piece starts at a sentence");
    ok(overlap, "each piece repeats the end of the one before");
    ok(utf8, "no piece starts inside a character");
    sb_kb_doc_dispose(&d);

    /* no boundaries at all: one long word is cut on a character boundary */
    n = 0;
    for (int i = 0; i < 1000; ++i)
        n += (size_t)snprintf(text + n, 20000 - n, "é");
    d = split("word.md", text);
    ok(d.nchunks == 2 && strlen(d.chunks[0].content) <= SB_KB_MAX_CHUNK && valid_utf8_cut(d.chunks[1].content),
       "a 2000-byte word is cut where a character begins");
    sb_kb_doc_dispose(&d);
    free(text);
}

static void test_ids(void)
{
    sb_kb_doc_t a = split("a.md", "## One\n\nSame words.\n\n## Two\n\nSame words.\n");
    sb_kb_doc_t b = split("b.md", "## One\n\nSame words.\n");
    sb_kb_doc_t a2 = split("a.md", "## One\n\nSame words.\n\n## Two\n\nSame words.\n");
    ok(strlen(a.chunks[0].id) == 64, "an id is a 64-digit hash");
    ok(strcmp(a.chunks[0].id, a.chunks[1].id) != 0, "the same words under two headings are two passages");
    ok(strcmp(a.chunks[0].id, b.chunks[0].id) != 0, "and in two files too");
    ok(strcmp(a.chunks[0].id, a2.chunks[0].id) == 0 && strcmp(a.chunks[1].id, a2.chunks[1].id) == 0,
       "the same file gives the same ids: re-ingesting writes nothing");
    sb_kb_doc_dispose(&a);
    sb_kb_doc_dispose(&b);
    sb_kb_doc_dispose(&a2);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    test_headings();
    test_long_sections();
    test_ids();
    return done_testing();
}
