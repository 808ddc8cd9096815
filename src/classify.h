/*
 * The intent classifier: weighted words and phrases, each with a label,
 * scored over an utterance in one pass. Deterministic, no model call; what
 * routes a caller's words to an agent (agent_route.c) and tells a closing
 * "thanks, that's all" from a question. Built once at start-up, read-only
 * after: any thread may score with it.
 *
 * The rule: the text is cut into words (runs of ASCII letters and digits;
 * an apostrophe inside a word is dropped, so "that's" is "thats"), lowered
 * and lightly stemmed (sb_classifier_stem); a phrase is one to four such
 * words, matched where they appear in a row. A label's score is the sum of
 * the weights of its phrases, counted once each however often they appear.
 */
#ifndef SB_CLASSIFY_H
#define SB_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

#define SB_CLASSIFIER_MAX_LABELS 16
#define SB_CLASSIFIER_MAX_WORDS 4      /* words in one phrase */
#define SB_CLASSIFIER_MAX_PHRASES 8192 /* phrases in one classifier */
#define SB_CLASSIFIER_MAX_TEXT 4096    /* bytes of an utterance read; the rest is ignored */

typedef struct sb_classifier sb_classifier_t;

/* A new, empty classifier (sb_classifier_destroy). */
sb_classifier_t *sb_classifier_create(void);
void sb_classifier_destroy(sb_classifier_t *c);
/*
 * Adds `phrase` (len bytes) for `label` (< SB_CLASSIFIER_MAX_LABELS) with
 * `weight`. Returns 0; -1 when the phrase holds no word or more than
 * SB_CLASSIFIER_MAX_WORDS, or the classifier is full; -2 when the same
 * phrase was added for the label already.
 */
int sb_classifier_add(sb_classifier_t *c, unsigned label, const char *phrase, size_t len, float weight);
/* Scores `text` (len bytes, any bytes): scores[label] for every label below `nlabels`, zeroed first. */
void sb_classifier_score(const sb_classifier_t *c, const char *text, size_t len, float *scores, unsigned nlabels);
/* Stems the lowercase word in `w` (len bytes) in place; returns its new length. */
size_t sb_classifier_stem(char *w, size_t len);

#endif
