/*
 * The keys a reader acts on, for readers that walk objects with many members
 * (wire_gemini.c, wire_responses.c):
 *
 * - found by comparison: a key written plainly is exactly its bytes between
 *   quotes, so comparing the bytes at the cursor with the literal and its
 *   quotes is the whole check, and costs less than scanning the key as a
 *   string (the literals hold no byte a string must escape). A key that
 *   matches none of them, an unknown one or one written with escapes, is
 *   scanned and decoded as any string and compared decoded, so the answer is
 *   the same however the key is written;
 * - refused when repeated, by the rule in jscan.h ("Repeated keys"): each key
 *   a reader acts on in an object has a bit, marked as it is met; the keys it
 *   does not act on have none (0) and are never looked for.
 */
#ifndef SB_JSCAN_KEYS_H
#define SB_JSCAN_KEYS_H

#include <limits.h>

#include "jscan.h"

/* Steps to the next member: returns 1 with the cursor at its key's opening quote, 0 after the closing brace, or
 * SB_JSCAN_SYNTAX. Call with *first set right after the opening brace. */
static inline SB_JSCAN_INLINE int sb_jscan_next_key(sb_jscan_t *s, int *first)
{
    int c = sb_jscan_peek(s);
    if (c == '}') {
        ++s->p;
        return 0;
    }
    if (!*first) {
        if (c != ',')
            return SB_JSCAN_SYNTAX;
        ++s->p;
        c = sb_jscan_peek(s);
    }
    *first = 0;
    return c == '"' ? 1 : SB_JSCAN_SYNTAX;
}

/* Whether the key at the cursor is `quoted` (a literal with its quotes, n bytes) written plainly: then steps past it. */
static inline SB_JSCAN_INLINE int sb_jscan_take_key(sb_jscan_t *s, const char *quoted, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, quoted, n) != 0)
        return 0;
    s->p += n;
    return 1;
}

/* Past the colon that follows a key: SB_JSCAN_OK, or SB_JSCAN_SYNTAX. */
static inline SB_JSCAN_INLINE int sb_jscan_colon(sb_jscan_t *s)
{
    if (sb_jscan_peek(s) != ':')
        return SB_JSCAN_SYNTAX;
    ++s->p;
    return SB_JSCAN_OK;
}

/* What SB_JSCAN_NEXT_MEMBER gives besides a key's value. */
#define SB_JSCAN_NO_KEY UINT_MAX       /* bad syntax */
#define SB_JSCAN_END (UINT_MAX - 1)    /* the object's closing brace (the cursor past it) */
#define SB_JSCAN_MISSED (UINT_MAX - 2) /* (inside SB_JSCAN_NEXT_MEMBER: no key of the list written the common way) */

/* The steps of SB_JSCAN_NEXT_MEMBER, on the scanner sk_ it declares. */
#define SB_JSCAN_TAKE_FIRST_(value, lit) sb_jscan_take_key(sk_, "\"" lit "\":", sizeof(lit) + 2) ? (value):
#define SB_JSCAN_TAKE_NEXT_(value, lit) sb_jscan_take_key(sk_, ",\"" lit "\":", sizeof(lit) + 3) ? (value):
#define SB_JSCAN_TAKE_(value, lit) sb_jscan_take_key(sk_, "\"" lit "\"", sizeof(lit) + 1) ? (value):
#define SB_JSCAN_SAME_(value, lit) SB_JSCAN_KEY(key_, lit) ? (value):
/* Which key the member at the cursor (its key's opening quote) has, the cursor then past the colon. */
#define SB_JSCAN_WHICH_KEY_(KEYS, other)                                                                                           \
    ({                                                                                                                             \
        sb_str_t key_ = {NULL, 0};                                                                                                 \
        unsigned which_ =                                                                                                          \
            KEYS(SB_JSCAN_TAKE_) sb_jscan_string(sk_, &key_, 0) != SB_JSCAN_OK ? SB_JSCAN_NO_KEY : KEYS(SB_JSCAN_SAME_)(other);    \
        if (which_ != SB_JSCAN_NO_KEY && sb_jscan_colon(sk_) != SB_JSCAN_OK)                                                       \
            which_ = SB_JSCAN_NO_KEY;                                                                                              \
        which_;                                                                                                                    \
    })

/*
 * The next member of an object, for a reader that knows its keys (call with
 * *first set right after the opening brace). KEYS is an X-list, X(value,
 * "literal") for each key the reader knows, most frequent first; a value may
 * be 0, for a key known only to be skipped (listed because it is in every
 * event). Evaluates to the member's key's value, with the cursor at the
 * member's value; `other` for a key not listed; SB_JSCAN_END after the
 * closing brace; SB_JSCAN_NO_KEY on bad syntax.
 *
 * A member written the common way, its comma (but for the first), quoted key
 * and colon with nothing between them, is found by one comparison per key,
 * and one space after the colon is taken too (Gemini writes one). Anything
 * else goes the general way: whitespace, then the key compared as written
 * (quotes included), and failing that scanned and decoded as any string and
 * compared decoded. Every way gives the same answer.
 */
#define SB_JSCAN_NEXT_MEMBER(s, first, KEYS, other)                                                                                \
    ({                                                                                                                             \
        sb_jscan_t *sk_ = (s);                                                                                                     \
        unsigned next_ = *(first) ? KEYS(SB_JSCAN_TAKE_FIRST_) SB_JSCAN_MISSED : KEYS(SB_JSCAN_TAKE_NEXT_) SB_JSCAN_MISSED;        \
        if (next_ != SB_JSCAN_MISSED) {                                                                                            \
            *(first) = 0;                                                                                                          \
            if (sk_->p < sk_->end && *sk_->p == ' ')                                                                               \
                ++sk_->p;                                                                                                          \
        } else {                                                                                                                   \
            int rc_ = sb_jscan_next_key(sk_, (first));                                                                             \
            next_ = rc_ < 0 ? SB_JSCAN_NO_KEY : rc_ == 0 ? SB_JSCAN_END : SB_JSCAN_WHICH_KEY_(KEYS, (other));                      \
        }                                                                                                                          \
        next_;                                                                                                                     \
    })

/* Marks `bit` (a key acted on, or 0 for any other) in the object's `seen`; SB_JSCAN_SYNTAX when it was marked already. */
static inline SB_JSCAN_INLINE int sb_jscan_once(unsigned *seen, unsigned bit)
{
    if (*seen & bit)
        return SB_JSCAN_SYNTAX;
    *seen |= bit;
    return SB_JSCAN_OK;
}

#endif
