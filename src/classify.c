/*
 * The intent classifier (classify.h says the rule). Phrases live in one
 * array, chained from a bucket per hash of their first word; scoring cuts
 * the text into word hashes on the stack and walks each word's chain, so an
 * utterance costs a few hundred nanoseconds and allocates nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "classify.h"
#include "sb/alloc.h"

#define MAX_WORD 32    /* bytes of a word that count; a longer one is cut (its hash stays stable) */
#define MAX_TOKENS 768 /* words read from one utterance: SB_CLASSIFIER_MAX_TEXT / 2 + 1 at most, rounded up */
#define BUCKETS 2048   /* power of two */

struct phrase {
    uint32_t words[SB_CLASSIFIER_MAX_WORDS];
    unsigned n, label;
    float weight;
    int next; /* the next phrase in the bucket, -1 at the end */
};

struct sb_classifier {
    struct phrase *v;
    size_t n, cap;
    int bucket[BUCKETS];
};

static int ends(const char *w, size_t len, const char *suffix, size_t slen)
{
    return len >= slen && memcmp(w + len - slen, suffix, slen) == 0;
}

static int vowel(char c)
{
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

/* "shipp" (from shipping, shipped) is "ship"; "bill", "pass" and "buzz" keep their doubles. */
static size_t undouble(const char *w, size_t len)
{
    if (len >= 3 && w[len - 1] == w[len - 2] && !vowel(w[len - 1]) && w[len - 1] != 'l' && w[len - 1] != 's' && w[len - 1] != 'z')
        return len - 1;
    return len;
}

size_t sb_classifier_stem(char *w, size_t len)
{
    /* plurals and third persons: refunds, deliveries, charges; not status, address, this */
    if (len > 4 && ends(w, len, "ies", 3)) {
        w[len - 3] = 'y';
        len -= 2;
    } else if (len > 4 && ends(w, len, "sses", 4)) {
        len -= 2;
    } else if (len > 3 && w[len - 1] == 's' && !ends(w, len, "ss", 2) && !ends(w, len, "us", 2) && !ends(w, len, "is", 2)) {
        len -= 1;
    }
    /* tenses: charged, charging, shipped */
    if (len > 5 && ends(w, len, "ing", 3))
        len = undouble(w, len - 3);
    else if (len > 4 && ends(w, len, "ed", 2))
        len = undouble(w, len - 2);
    /* a silent e, so that charge meets charged: both are "charg" */
    if (len > 4 && w[len - 1] == 'e')
        len -= 1;
    return len;
}

static uint32_t hash(const char *w, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; ++i)
        h = (h ^ (unsigned char)w[i]) * 16777619u;
    return h;
}

/* The stemmed words of `text` as hashes into out (at most `max`); returns how many. */
static size_t words_of(const char *text, size_t len, uint32_t *out, size_t max)
{
    size_t n = 0;
    char w[MAX_WORD];
    size_t wl = 0;
    int in = 0;
    if (len > SB_CLASSIFIER_MAX_TEXT)
        len = SB_CLASSIFIER_MAX_TEXT;
    for (size_t i = 0; i <= len; ++i) {
        unsigned char c = i < len ? (unsigned char)text[i] : ' ';
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            if (wl < MAX_WORD)
                w[wl++] = (char)c;
            in = 1;
            continue;
        }
        /* an apostrophe inside a word (that's, don't; also U+2019 as phones type it) joins its halves */
        if (in && c == '\'' && i + 1 < len && ((text[i + 1] | 0x20) >= 'a' && (text[i + 1] | 0x20) <= 'z'))
            continue;
        if (in && c == 0xE2 && i + 3 < len && (unsigned char)text[i + 1] == 0x80 && (unsigned char)text[i + 2] == 0x99 &&
            ((text[i + 3] | 0x20) >= 'a' && (text[i + 3] | 0x20) <= 'z')) {
            i += 2;
            continue;
        }
        if (in && n < max)
            out[n++] = hash(w, sb_classifier_stem(w, wl));
        in = 0;
        wl = 0;
    }
    return n;
}

sb_classifier_t *sb_classifier_create(void)
{
    sb_classifier_t *c = sb_calloc(1, sizeof(*c));
    for (size_t i = 0; i < BUCKETS; ++i)
        c->bucket[i] = -1;
    return c;
}

void sb_classifier_destroy(sb_classifier_t *c)
{
    if (c == NULL)
        return;
    free(c->v);
    free(c);
}

int sb_classifier_add(sb_classifier_t *c, unsigned label, const char *phrase, size_t len, float weight)
{
    uint32_t words[SB_CLASSIFIER_MAX_WORDS + 1];
    size_t n = words_of(phrase, len, words, SB_CLASSIFIER_MAX_WORDS + 1);
    if (n == 0 || n > SB_CLASSIFIER_MAX_WORDS || label >= SB_CLASSIFIER_MAX_LABELS || c->n == SB_CLASSIFIER_MAX_PHRASES)
        return -1;
    unsigned b = words[0] & (BUCKETS - 1);
    for (int i = c->bucket[b]; i >= 0; i = c->v[i].next)
        if (c->v[i].label == label && c->v[i].n == n && memcmp(c->v[i].words, words, n * sizeof(words[0])) == 0)
            return -2;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = sb_realloc(c->v, c->cap * sizeof(*c->v));
    }
    struct phrase *p = &c->v[c->n];
    memset(p, 0, sizeof(*p));
    memcpy(p->words, words, n * sizeof(words[0]));
    p->n = (unsigned)n;
    p->label = label;
    p->weight = weight;
    p->next = c->bucket[b];
    c->bucket[b] = (int)c->n++;
    return 0;
}

void sb_classifier_score(const sb_classifier_t *c, const char *text, size_t len, float *scores, unsigned nlabels)
{
    uint32_t words[MAX_TOKENS];
    int seen[MAX_TOKENS]; /* phrases matched so far: each counts once */
    size_t nseen = 0;
    for (unsigned i = 0; i < nlabels; ++i)
        scores[i] = 0;
    size_t n = words_of(text, len, words, MAX_TOKENS);
    for (size_t at = 0; at < n; ++at) {
        for (int i = c->bucket[words[at] & (BUCKETS - 1)]; i >= 0; i = c->v[i].next) {
            const struct phrase *p = &c->v[i];
            if (p->words[0] != words[at] || p->n > n - at || p->label >= nlabels)
                continue;
            if (p->n > 1 && memcmp(p->words + 1, words + at + 1, (p->n - 1) * sizeof(words[0])) != 0)
                continue;
            size_t k = 0;
            while (k < nseen && seen[k] != i)
                ++k;
            if (k < nseen)
                continue;
            if (nseen < MAX_TOKENS)
                seen[nseen++] = i;
            scores[p->label] += p->weight;
        }
    }
}
