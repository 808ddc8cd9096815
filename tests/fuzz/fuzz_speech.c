/*
 * libFuzzer target for the sandbox's speech helpers (src/speech.c), which
 * read knowledge passages and the caller's words: any bytes, as Markdown,
 * become plain sentences, never an empty line nor a code fence, each line
 * ending in '.', '!' or '?' (a closing quote or bracket may follow); the best
 * sentence is one of those
 * lines; a tool name of any bytes is matched without reading past either.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "speech.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the input's first line is the question (and a tool name), the rest the passage */
    const uint8_t *nl = memchr(data, '\n', size);
    size_t qlen = nl ? (size_t)(nl - data) : size;
    char *question = malloc(qlen + 1);
    memcpy(question, data, qlen);
    question[qlen] = '\0';
    const char *md = (const char *)data + (nl ? qlen + 1 : size);
    size_t mdlen = nl ? size - qlen - 1 : 0;

    sb_buf_t plain;
    sb_buf_init(&plain, 1u << 20);
    sb_speech_plain(&plain, md, mdlen);
    for (size_t at = 0; at < plain.len;) {
        const char *eol = memchr(plain.base + at, '\n', plain.len - at);
        size_t n = eol ? (size_t)(eol - (plain.base + at)) : plain.len - at;
        const char *p = plain.base + at;
        size_t end = n;
        while (end > 0 && memchr("\"')]", p[end - 1], 4)) /* closing quotes and brackets may follow the stop */
            --end;
        if (end == 0 || !memchr(".!?", p[end - 1], 3) || (n >= 3 && memcmp(p, "```", 3) == 0))
            abort(); /* an empty line, an unended sentence, or a code fence read aloud */
        for (size_t i = 0; i < n; ++i)
            if ((unsigned char)p[i] < 0x20)
                abort(); /* a control byte */
        at += n + 1;
    }
    sb_str_t best = sb_speech_best_sentence(plain.base ? plain.base : "", plain.len, question);
    if (best.base != NULL && (best.base < plain.base || best.base + best.len > plain.base + plain.len))
        abort(); /* the best sentence is borrowed from the text */
    sb_speech_names_tool(question, md, mdlen < 256 ? mdlen : 256);
    sb_buf_dispose(&plain);
    free(question);
    return 0;
}
