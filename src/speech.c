/*
 * Words for the sandbox model to say (speech.h). The knowledge base is
 * Markdown; a voice caller must hear its sentences, not its symbols. Words
 * are compared after a light stemming (refunds, refunded -> refund), enough
 * to match a question's words to a passage's without a dictionary.
 */
#include <stdint.h>
#include <string.h>

#include "speech.h"

#define WORD_MAX 32       /* longer words are compared by their first 31 bytes */
#define QUESTION_WORDS 32 /* content words of a question that count; a spoken question has fewer */
#define SAID_WORDS 64     /* words of an utterance looked at for a tool's name */
#define TOOL_NAME_MAX 64  /* OpenAI's limit on a function name: longer ones are never named */

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alnum(char c)
{
    return is_alpha(c) || is_digit(c);
}

static int is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static char lower(char c)
{
    return is_upper(c) ? (char)(c - 'A' + 'a') : c;
}

static int listed(const char *const *list, const char *w)
{
    for (; *list != NULL; ++list)
        if (strcmp(*list, w) == 0)
            return 1;
    return 0;
}

/* --- words --------------------------------------------------------------------------------------- */

/* Words that carry no topic: a question's own scaffolding ("how long do ... take?") and pronouns. */
static const char *const stopwords[] = {
    "a",     "about",  "after", "all",    "also", "am",    "an",     "and",    "any",    "are",     "as",    "at",
    "be",    "been",   "but",   "by",     "can",  "can't", "could",  "did",    "didn't", "do",      "does",  "doesn't",
    "don't", "for",    "from",  "get",    "got",  "had",   "has",    "hasn't", "have",   "haven't", "hello", "hi",
    "how",   "i",      "i'd",   "i'll",   "i'm",  "i've",  "if",     "in",     "into",   "is",      "isn't", "it",
    "it's",  "its",    "just",  "know",   "let",  "long",  "me",     "much",   "many",   "my",      "need",  "no",
    "not",   "now",    "of",    "on",     "or",   "our",   "please", "should", "so",     "some",    "tell",  "than",
    "thank", "thanks", "that",  "that's", "the",  "their", "them",   "then",   "there",  "these",   "they",  "this",
    "to",    "too",    "us",    "want",   "was",  "we",    "were",   "what",   "what's", "when",    "where", "where's",
    "which", "who",    "why",   "will",   "with", "would", "yes",    "you",    "your",   "you're",  NULL,
};

/* Verbs a tool's name may start with that the caller need not say: "what's the weather" asks for get_weather. */
static const char *const generic_verbs[] = {"get",  "fetch", "find",   "lookup",   "look",  "list", "show",
                                            "read", "query", "search", "retrieve", "check", NULL};

/* Units of time, stemmed, and words that stand for a number ("two weeks"). */
static const char *const time_units[] = {"minut", "hour", "day", "week", "month", "year", NULL};
static const char *const number_words[] = {"one", "two",    "three",  "four",     "five",   "six", "seven",   "eight",  "nine",
                                           "ten", "eleven", "twelve", "fourteen", "thirty", "few", "several", "couple", NULL};
/* What may stand between a number and its unit: "5 to 10 business days". */
static const char *const duration_joiners[] = {"to", "or", "and", "business", "working", "calendar", "more", "than", NULL};

/*
 * The next word in [*p, end): a run of ASCII letters and digits, with an
 * apostrophe inside it kept (hasn't; a typographic one too), lowercased and
 * cut to WORD_MAX - 1 bytes into `w`. Moves *p past it; 0 when none is left.
 */
static int next_word(const char **p, const char *end, char *w)
{
    const char *s = *p;
    while (s < end && !is_alnum(*s))
        ++s;
    size_t n = 0;
    while (s < end) {
        if (is_alnum(*s)) {
            if (n < WORD_MAX - 1)
                w[n++] = lower(*s);
            ++s;
            continue;
        }
        size_t mark = *s == '\'' ? 1 : end - s >= 3 && memcmp(s, "\xE2\x80\x99", 3) == 0 ? 3 : 0;
        if (mark == 0 || n == 0 || s + mark >= end || !is_alpha(s[mark]))
            break;
        if (n < WORD_MAX - 1)
            w[n++] = '\'';
        s += mark;
    }
    w[n] = '\0';
    *p = s;
    return n > 0;
}

/*
 * A light stemmer, so the forms of a word compare equal: a possessive 's,
 * then one of -ies (to -y), -ing, -ed, a plural -s (not -ss, -us, -is), then
 * a final -e and a doubled final consonant. refunds, refunded, refunding ->
 * refund; take, takes, taking -> tak; shipped, shipping -> ship.
 */
static void stem(char *w)
{
    size_t n = strlen(w);
    if (n > 2 && strcmp(w + n - 2, "'s") == 0)
        w[n -= 2] = '\0';
    if (n > 4 && strcmp(w + n - 3, "ies") == 0) {
        w[n - 3] = 'y';
        w[n -= 2] = '\0';
    } else if (n > 5 && strcmp(w + n - 3, "ing") == 0) {
        w[n -= 3] = '\0';
    } else if (n > 4 && strcmp(w + n - 2, "ed") == 0) {
        w[n -= 2] = '\0';
    } else if (n > 3 && w[n - 1] == 's' && strchr("siu", w[n - 2]) == NULL) {
        w[--n] = '\0';
    }
    if (n > 3 && w[n - 1] == 'e')
        w[--n] = '\0';
    if (n > 3 && w[n - 1] == w[n - 2] && strchr("bdgmnprt", w[n - 1]) != NULL)
        w[--n] = '\0';
}

static int is_number(const char *w)
{
    return is_digit(w[0]) || listed(number_words, w);
}

/* --- Markdown into plain sentences ----------------------------------------------------------------- */

static int blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* A line of only `set` characters, with at least one of `need`: a table's header rule, a thematic break. */
static int only_of(const char *s, size_t n, const char *set, const char *need)
{
    int seen = 0;
    for (size_t i = 0; i < n; ++i) {
        if (s[i] == '\0' || strchr(set, s[i]) == NULL)
            return 0;
        seen |= strchr(need, s[i]) != NULL;
    }
    return seen;
}

static int is_table_rule(const char *s, size_t n)
{
    return n > 0 && s[0] == '|' && only_of(s, n, "|-: \t", "-");
}

/* The next line of [p, end) without its surrounding blanks; *next goes past its newline. */
static const char *trimmed_line(const char *p, const char *end, size_t *n, const char **next)
{
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL)
        eol = end;
    *next = eol < end ? eol + 1 : end;
    while (p < eol && blank(*p))
        ++p;
    while (eol > p && blank(eol[-1]))
        --eol;
    *n = (size_t)(eol - p);
    return p;
}

/*
 * Appends the inline text [s, s + n) without its Markdown: emphasis and code
 * marks, strike-through, link and image targets (their words stay), HTML
 * tags, backslash escapes; runs of blanks become one space. An underscore
 * inside a word (snake_case) stays.
 */
static void inline_plain(sb_buf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        char c = s[i];
        if (c == '*' || c == '`' || (c == '!' && i + 1 < n && s[i + 1] == '[') || c == '[')
            continue;
        if (c == '~' && i + 1 < n && s[i + 1] == '~') {
            ++i;
            continue;
        }
        if (c == ']') { /* the end of a link's words: its target, "(url)" or "[ref]", is not said */
            char open = i + 1 < n ? s[i + 1] : '\0';
            const char *close = open == '(' || open == '[' ? memchr(s + i + 1, open == '(' ? ')' : ']', n - i - 1) : NULL;
            if (close != NULL)
                i = (size_t)(close - s);
            continue;
        }
        if (c == '_') {
            size_t run = i;
            while (run < n && s[run] == '_')
                ++run;
            if (i > 0 && run < n && is_alnum(s[i - 1]) && is_alnum(s[run]))
                sb_buf_append(b, s + i, run - i);
            i = run - 1;
            continue;
        }
        if (c == '<') { /* an HTML tag goes; an autolink <https://...> keeps its address */
            const char *close = memchr(s + i, '>', n - i < 128 ? n - i : 128);
            if (close != NULL && i + 1 < n && (is_alpha(s[i + 1]) || s[i + 1] == '/')) {
                size_t inner = (size_t)(close - s) - i - 1;
                if ((inner > 4 && memcmp(s + i + 1, "http", 4) == 0) || (inner > 7 && memcmp(s + i + 1, "mailto:", 7) == 0))
                    sb_buf_append(b, s + i + 1, inner);
                else if (b->len > 0 && b->base[b->len - 1] != ' ')
                    sb_buf_append(b, " ", 1);
                i = (size_t)(close - s);
                continue;
            }
        }
        if (c == '\\' && i + 1 < n && !is_alnum(s[i + 1]) && !blank(s[i + 1])) { /* an escaped mark is said as itself */
            if ((unsigned char)s[++i] >= 0x20 && s[i] != 0x7f)
                sb_buf_append(b, s + i, 1);
            continue;
        }
        if (blank(c)) {
            if (b->len > 0 && b->base[b->len - 1] != ' ')
                sb_buf_append(b, " ", 1);
            continue;
        }
        if ((unsigned char)c < 0x20 || c == 0x7f) /* a control byte is nothing a voice can say */
            continue;
        sb_buf_append(b, &c, 1);
    }
}

/* A table row's cells, plain: "first cell: second, third". Each cell's trailing stop goes (it is not the end). */
static void row_plain(sb_buf_t *b, const char *s, size_t n)
{
    size_t cells = 0;
    for (size_t i = s[0] == '|' ? 1 : 0; i < n;) {
        const char *bar = memchr(s + i, '|', n - i);
        size_t len = bar != NULL ? (size_t)(bar - s) - i : n - i;
        size_t at = b->len;
        sb_buf_appendz(b, cells == 0 ? "" : cells == 1 ? ": " : ", ");
        size_t start = b->len;
        inline_plain(b, s + i, len);
        while (b->len > start && (b->base[b->len - 1] == ' ' || b->base[b->len - 1] == '.'))
            --b->len;
        if (b->len == start || (b->base[start] == ' ' && b->len == start + 1))
            b->len = at; /* an empty cell says nothing */
        else
            ++cells;
        i += len + 1;
    }
}

/*
 * Splits one plain line into sentences, one a line in `out`: a sentence ends
 * at '.', '!' or '?' (and any closing quote) before a space and a capital, a
 * digit or an opening quote ("Co. gift card" is not an end), or at the end
 * of the line, where a missing stop is added. Returns -1 when `out` is full.
 */
static int sentences(sb_buf_t *out, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; ++i) {
        size_t end = i;
        if (i < n) {
            if (s[i] != '.' && s[i] != '!' && s[i] != '?')
                continue;
            end = i + 1;
            while (end < n && (s[end] == '"' || s[end] == '\'' || s[end] == ')'))
                ++end;
            if (!(end == n || (end + 1 < n && s[end] == ' ' &&
                               (is_upper(s[end + 1]) || is_digit(s[end + 1]) || s[end + 1] == '"' || s[end + 1] == '('))))
                continue;
        }
        while (start < end && s[start] == ' ')
            ++start;
        size_t len = end - start;
        while (len > 0 &&
               (s[start + len - 1] == ' ' || s[start + len - 1] == ':' || s[start + len - 1] == ';' || s[start + len - 1] == ','))
            --len;
        int words = 0;
        for (size_t k = start; k < start + len && !words; ++k)
            words = is_alnum(s[k]);
        if (words) {
            char last = s[start + len - 1];
            char before = len > 1 ? s[start + len - 2] : '\0';
            int stop = last == '.' || last == '!' || last == '?' ||
                       ((last == '"' || last == ')') && (before == '.' || before == '!' || before == '?'));
            if (out->max - out->len < len + 2)
                return -1;
            sb_buf_append(out, s + start, len);
            sb_buf_appendz(out, stop ? "\n" : ".\n");
        }
        start = end;
        i = end - (end > i ? 1 : 0);
    }
    return 0;
}

int sb_speech_plain(sb_buf_t *out, const char *md, size_t len)
{
    const char *p = md, *end = md + len;
    int fenced = 0;
    sb_buf_t line;
    sb_buf_init(&line, 2 * len + 16); /* a table's "|" may become ", " */
    int rc = 0;
    while (p < end && rc == 0) {
        size_t n;
        const char *next;
        const char *s = trimmed_line(p, end, &n, &next);
        p = next;
        if (n >= 3 && (memcmp(s, "```", 3) == 0 || memcmp(s, "~~~", 3) == 0)) {
            fenced = !fenced;
            continue;
        }
        if (fenced || n == 0 || s[0] == '#' || is_table_rule(s, n) || (n >= 3 && only_of(s, n, "-*_ \t", "-*_")))
            continue;
        while (n > 0 && s[0] == '>') { /* a quote */
            for (++s, --n; n > 0 && blank(s[0]); ++s, --n)
                ;
        }
        if (n >= 2 && (s[0] == '-' || s[0] == '*' || s[0] == '+') && s[1] == ' ') { /* a bullet */
            s += 2;
            n -= 2;
        } else {
            size_t d = 0;
            while (d < n && d < 9 && is_digit(s[d]))
                ++d;
            if (d > 0 && d < n && (s[d] == '.' || s[d] == ')') && (d + 1 == n || s[d + 1] == ' ')) { /* a numbered item */
                s += d + 1;
                n -= d + 1;
            }
        }
        sb_buf_reset(&line);
        if (n > 0 && s[0] == '|') {
            size_t nn;
            const char *after;
            const char *following = trimmed_line(p, end, &nn, &after);
            if (is_table_rule(following, nn))
                continue; /* a header row names the columns; the rows below say the facts */
            row_plain(&line, s, n);
        } else {
            inline_plain(&line, s, n);
        }
        rc = sentences(out, line.base, line.len);
    }
    sb_buf_dispose(&line);
    return rc;
}

/* --- the sentence that answers --------------------------------------------------------------------- */

struct question {
    char words[QUESTION_WORDS][WORD_MAX]; /* distinct content words, stemmed */
    size_t n;
    int wants_duration; /* "how long", "how soon", "how many days" */
};

static void read_question(struct question *q, const char *text)
{
    const char *p = text, *end = text + strlen(text);
    char w[WORD_MAX], w1[WORD_MAX] = "", w2[WORD_MAX] = ""; /* this word, the one before, and the one before that */
    q->n = 0;
    q->wants_duration = 0;
    while (next_word(&p, end, w)) {
        char raw[WORD_MAX];
        memcpy(raw, w, sizeof(w));
        int stop = listed(stopwords, w);
        stem(w);
        if (strcmp(w1, "how") == 0 &&
            (strcmp(raw, "long") == 0 || strcmp(raw, "soon") == 0 || strcmp(raw, "quickly") == 0 || strcmp(raw, "fast") == 0))
            q->wants_duration = 1;
        if (strcmp(w2, "how") == 0 && strcmp(w1, "many") == 0 && listed(time_units, w))
            q->wants_duration = 1;
        memcpy(w2, w1, sizeof(w1));
        memcpy(w1, raw, sizeof(raw));
        if (stop)
            continue;
        size_t i = 0;
        while (i < q->n && strcmp(q->words[i], w) != 0)
            ++i;
        if (i == q->n && q->n < QUESTION_WORDS)
            memcpy(q->words[q->n++], w, sizeof(w));
    }
}

/* How many of the question's words the sentence has, and whether it states an amount of time ("5 to 10 business days"). */
static unsigned score(const struct question *q, const char *s, size_t n, int *duration)
{
    uint32_t seen = 0;
    int after_number = 0; /* words still allowed between a number and its unit */
    char w[WORD_MAX];
    const char *p = s, *end = s + n;
    *duration = 0;
    while (next_word(&p, end, w)) {
        int number = is_number(w), joiner = listed(duration_joiners, w);
        stem(w);
        if (after_number > 0 && listed(time_units, w))
            *duration = 1;
        after_number = number ? 3 : joiner && after_number > 0 ? after_number - 1 : 0;
        for (size_t i = 0; i < q->n; ++i)
            if (strcmp(q->words[i], w) == 0)
                seen |= 1u << i;
    }
    unsigned count = 0;
    for (; seen != 0; seen &= seen - 1)
        ++count;
    return count;
}

/*
 * The rule: a sentence scores one point for each distinct content word of
 * the question (stopwords left out, both sides stemmed) that it contains.
 * When the question asks for an amount of time ("how long", "how soon",
 * "how many days"), sentences that state one come first, by their points.
 * The highest wins; of equals, the earliest (a passage says its main point
 * first). A passage none of whose sentences scores gives its first.
 */
sb_str_t sb_speech_best_sentence(const char *text, size_t len, const char *question)
{
    struct question q;
    read_question(&q, question);
    sb_str_t best = {NULL, 0};
    unsigned best_key = 0;
    for (const char *p = text, *end = text + len; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol != NULL ? (size_t)(eol - p) : (size_t)(end - p);
        int duration;
        unsigned key = score(&q, p, n, &duration);
        if (q.wants_duration && duration)
            key += QUESTION_WORDS + 1;
        if (n > 0 && (best.base == NULL || key > best_key)) {
            best = (sb_str_t){p, n};
            best_key = key;
        }
        p += n + 1;
    }
    return best;
}

/* --- tool names ------------------------------------------------------------------------------------- */

int sb_speech_names_tool(const char *said, const char *name, size_t len)
{
    if (len == 0 || len > TOOL_NAME_MAX)
        return 0;
    size_t said_len = strlen(said);
    for (size_t i = 0; i + len <= said_len; ++i) { /* the name itself, in any case */
        size_t k = 0;
        while (k < len && lower(said[i + k]) == lower(name[k]))
            ++k;
        if (k == len)
            return 1;
    }
    char words[SAID_WORDS][WORD_MAX];
    size_t nsaid = 0;
    const char *p = said, *end = said + said_len;
    while (nsaid < SAID_WORDS && next_word(&p, end, words[nsaid])) {
        stem(words[nsaid]);
        ++nsaid;
    }
    /* the name's words: split at separators and where a lower-case letter meets a capital (getWeather) */
    size_t needed = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && !is_alnum(name[i]))
            ++i;
        char w[WORD_MAX];
        size_t n = 0;
        while (i < len && is_alnum(name[i])) {
            if (n < WORD_MAX - 1)
                w[n++] = lower(name[i]);
            ++i;
            if (i < len && is_upper(name[i]) && !is_upper(name[i - 1]))
                break;
        }
        w[n] = '\0';
        if (n == 0 || listed(generic_verbs, w) || listed(stopwords, w))
            continue;
        stem(w);
        size_t k = 0;
        while (k < nsaid && strcmp(words[k], w) != 0)
            ++k;
        if (k == nsaid)
            return 0;
        ++needed;
    }
    return needed > 0;
}
