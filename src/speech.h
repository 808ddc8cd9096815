/*
 * Words for the offline sandbox model to say: Markdown made into plain
 * sentences (nothing a text-to-speech engine would read out as symbols), the
 * sentence of a passage that best answers a question, and whether a
 * caller's words name a tool. Pure functions on text; nothing is kept.
 */
#ifndef SB_SPEECH_H
#define SB_SPEECH_H

#include <stddef.h>

#include "chunk.h"
#include "sb/buf.h"

/*
 * Appends `md` (`len` bytes of Markdown) to `out` as plain sentences, one a
 * line, each ending in '.', '!' or '?' (a closing quote may follow): headings, code blocks, rules and
 * table header rows are left out; list markers, quote marks, emphasis, code
 * marks and link targets are taken off; a table row becomes "first cell:
 * other cells". Returns 0, or -1 when `out`'s ceiling was reached (what fit
 * is kept, ending at a whole sentence).
 */
int sb_speech_plain(sb_buf_t *out, const char *md, size_t len);

/*
 * The line of `text` (sentences one a line, as sb_speech_plain writes them)
 * that best answers `question` (NUL-terminated), borrowed from `text`,
 * without its newline; {NULL, 0} when `text` has no sentence. speech.c says
 * how sentences are scored.
 */
sb_str_t sb_speech_best_sentence(const char *text, size_t len, const char *question);

/*
 * Whether `said` (the caller's words, NUL-terminated) names the tool `name`
 * (`len` bytes): it contains the name itself, or every word of the name
 * (split at '_', '-', '.' and lower-to-upper case changes) other than a
 * generic verb such as get, fetch or create ("what's the weather" names
 * get_weather). A name of no such words is named only by itself.
 */
int sb_speech_names_tool(const char *said, const char *name, size_t len);

#endif
