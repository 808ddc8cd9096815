/*
 * Routing a turn to an agent and choosing its strategy (agent_route.h says
 * the rule). Everything here is a pure function of the request's words and
 * the profiles, so replicas agree and tests need no server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_route.h"
#include "sb/buf.h"

#define HANDOVER_QUOTE 160 /* bytes of the caller's words the hand-over line repeats */

enum { CLOSING, EXPLAINING, NSIGNALS };

/* The caller's words that set the strategy, with their weights; a signal counts at 2 (closing) or 1 (explaining). */
static const struct signal {
    unsigned label;
    const char *phrase;
    float weight;
} signals[] = {
    {CLOSING, "that's all", 2},
    {CLOSING, "that is all", 2},
    {CLOSING, "that's everything", 2},
    {CLOSING, "that's it", 1.5f},
    {CLOSING, "nothing else", 2},
    {CLOSING, "no that's fine", 1.5f},
    {CLOSING, "goodbye", 2},
    {CLOSING, "bye", 2},
    {CLOSING, "have a good day", 2},
    {CLOSING, "have a nice day", 2},
    {CLOSING, "have a great day", 2},
    {CLOSING, "all set", 1.5f},
    {CLOSING, "you've been helpful", 1.5f},
    {CLOSING, "thank you", 0.5f},
    {CLOSING, "thanks", 0.5f},
    {CLOSING, "appreciate it", 0.5f},
    {CLOSING, "that helps", 1},
    {CLOSING, "talk to you later", 2},
    {EXPLAINING, "why", 1},
    {EXPLAINING, "explain", 1},
    {EXPLAINING, "how come", 1},
    {EXPLAINING, "difference", 1},
    {EXPLAINING, "compare", 1},
    {EXPLAINING, "how does", 1},
    {EXPLAINING, "how do", 1},
    {EXPLAINING, "what happens if", 1},
    {EXPLAINING, "walk me through", 1},
    {EXPLAINING, "understand", 1},
    {EXPLAINING, "in detail", 1},
};
static const float signal_min[NSIGNALS] = {2, 1};
#define LONG_UTTERANCE 30 /* words: a caller who says this much wants more than a sentence back */

static sb_classifier_t *strategy_words;

void sb_agent_route_init(void)
{
    sb_agent_route_dispose();
    strategy_words = sb_classifier_create();
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); ++i)
        sb_classifier_add(strategy_words, signals[i].label, signals[i].phrase, strlen(signals[i].phrase), signals[i].weight);
}

void sb_agent_route_dispose(void)
{
    sb_classifier_destroy(strategy_words);
    strategy_words = NULL;
}

/* The best-scoring agent (the first in file order on a tie). */
static size_t best_of(const sb_agents_t *a, const float *s)
{
    size_t b = 0;
    for (size_t i = 1; i < a->n; ++i)
        if (s[i] > s[b])
            b = i;
    return b;
}

/* Where a conversation is, after one utterance of the caller's. */
struct place {
    long agent;     /* -1: nobody yet */
    int by_default; /* nothing in the caller's words chose it: the default agent answered */
};

/* One step of the rule: returns the agent the utterance with scores `s` goes to from `at`; *switched when it took over. */
static struct place step(const sb_agents_t *a, struct place at, const float *s, sb_routed_by_t *by)
{
    size_t b = best_of(a, s);
    if (at.agent < 0 || at.by_default) {
        if (s[b] >= SB_ROUTE_MIN_SCORE) {
            *by = SB_ROUTED_CLASSIFIER;
            return (struct place){(long)b, 0};
        }
        *by = at.agent < 0 ? SB_ROUTED_DEFAULT : SB_ROUTED_STICKY;
        return (struct place){(long)a->fallback, 1};
    }
    if ((long)b != at.agent && s[b] >= s[at.agent] + SB_ROUTE_SWITCH_MARGIN) {
        *by = SB_ROUTED_CLASSIFIER;
        return (struct place){(long)b, 0};
    }
    *by = SB_ROUTED_STICKY;
    return at;
}

static int has_number(sb_str_t s)
{
    size_t run = 0;
    for (size_t i = 0; i < s.len; ++i) {
        run = s.base[i] >= '0' && s.base[i] <= '9' ? run + 1 : 0;
        if (run >= 3)
            return 1;
    }
    return 0;
}

static size_t count_words(sb_str_t s)
{
    size_t n = 0;
    for (size_t i = 0, in = 0; i < s.len; ++i) {
        int space = s.base[i] == ' ' || s.base[i] == '\n' || s.base[i] == '\t';
        n += !space && !in;
        in = !space;
    }
    return n;
}

static sb_strategy_t strategy_of(const sb_route_input_t *in, const sb_agent_t *agent)
{
    sb_str_t last = in->nusers > 0 ? in->users[in->nusers - 1] : (sb_str_t){"", 0};
    float s[NSIGNALS] = {0, 0};
    if (strategy_words != NULL)
        sb_classifier_score(strategy_words, last.base, last.len, s, NSIGNALS);
    if (s[CLOSING] >= signal_min[CLOSING])
        return SB_STRATEGY_WRAPPING_UP;
    if (agent->tools != 0 && (in->tool_results > 0 || has_number(last)))
        return SB_STRATEGY_TOOL_HEAVY;
    if (s[EXPLAINING] >= signal_min[EXPLAINING] || count_words(last) >= LONG_UTTERANCE)
        return SB_STRATEGY_ANALYTICAL;
    return SB_STRATEGY_CONCISE;
}

/* Whether the classifier is unsure of the utterance with scores `s`, from `at` (agent_route.h says when). */
static int unsure(const sb_agents_t *a, struct place at, const float *s)
{
    size_t b = best_of(a, s);
    if (at.agent < 0 || at.by_default) {
        if (s[b] < SB_ROUTE_MIN_SCORE)
            return 1;
        for (size_t i = 0; i < a->n; ++i)
            if (i != b && s[i] > s[b] - SB_ROUTE_UNSURE_MARGIN)
                return 1;
        return 0;
    }
    return (long)b != at.agent && s[b] >= SB_ROUTE_MIN_SCORE && s[b] > s[at.agent] && s[b] < s[at.agent] + SB_ROUTE_SWITCH_MARGIN;
}

/* The agent the previous turn had: the rule over the earlier utterances, oldest first, or the stored one when it differs. */
static struct place conversation_agent(const sb_agents_t *agents, const sb_route_input_t *in)
{
    struct place at = {-1, 0};
    float h[SB_AGENTS_MAX];
    sb_routed_by_t by;
    size_t earlier = in->nusers > 0 ? in->nusers - 1 : 0;
    for (size_t i = earlier > SB_ROUTE_HISTORY ? earlier - SB_ROUTE_HISTORY : 0; i < earlier; ++i) {
        sb_classifier_score(agents->classifier, in->users[i].base, in->users[i].len, h, (unsigned)agents->n);
        at = step(agents, at, h, &by);
    }
    if (in->stored_agent != NULL && in->stored_agent - agents->v != at.agent)
        at = (struct place){in->stored_agent - agents->v, 0};
    return at;
}

void sb_agent_decide(const sb_agents_t *agents, const sb_route_input_t *in, sb_agent_decision_t *out)
{
    float s[SB_AGENTS_MAX] = {0};
    memset(out, 0, sizeof(*out));
    sb_str_t last = in->nusers > 0 ? in->users[in->nusers - 1] : (sb_str_t){"", 0};
    sb_classifier_score(agents->classifier, last.base, last.len, s, (unsigned)agents->n);
    if (in->explicit_agent != NULL) {
        out->agent = in->explicit_agent;
        out->routed_by = SB_ROUTED_EXPLICIT;
        out->score = s[in->explicit_agent - agents->v];
    } else {
        sb_routed_by_t by;
        struct place at = conversation_agent(agents, in);
        struct place now = step(agents, at, s, &by);
        out->unsure = unsure(agents, at, s);
        if (in->router_agent != NULL) {
            now.agent = in->router_agent - agents->v;
            by = SB_ROUTED_ROUTER;
        }
        out->agent = &agents->v[now.agent];
        out->routed_by = by;
        out->score = s[now.agent];
        if (at.agent >= 0) {
            out->previous = &agents->v[at.agent];
            out->previous_score = s[at.agent];
        }
    }
    out->strategy = strategy_of(in, out->agent);
    static const unsigned twice[] = {2, 4, 2, 1}; /* the token limit per strategy, in halves of the agent's */
    if (out->agent->max_tokens > 0) {
        unsigned m = out->agent->max_tokens * twice[out->strategy] / 2;
        out->max_tokens = m > 0 ? m : 1;
    }
}

char *sb_agent_instructions(const sb_agent_decision_t *d, sb_str_t last)
{
    static const char *const lines[] = {
        "For this turn: answer in one or two short spoken sentences.",
        "For this turn: the caller wants an explanation; use up to four short spoken sentences, one idea each.",
        "For this turn: look the facts up with your tools before you answer, then say what you found in plain words.",
        "For this turn: the caller is finishing; confirm in one sentence what was done, and say goodbye.",
    };
    sb_buf_t b;
    sb_buf_init(&b, 65536); /* more than its parts can be: a profile's instructions (16 KiB) and a short quote */
    if (d->previous != NULL && d->previous != d->agent) {
        size_t n = last.len;
        if (n > HANDOVER_QUOTE) { /* cut at a word, never inside a UTF-8 character */
            n = HANDOVER_QUOTE;
            while (n > 0 && last.base[n] != ' ')
                --n;
            for (n = n > 0 ? n : HANDOVER_QUOTE; n > 0 && ((unsigned char)last.base[n] & 0xC0) == 0x80;)
                --n; /* one word longer than the quote: cut between characters */
        }
        sb_buf_appendf(&b, "You are taking over this call from the %s agent; the caller has just asked about: \"",
                       d->previous->name);
        for (size_t i = 0; i < n; ++i) /* one line: the quote cannot break the instructions' layout */
            sb_buf_append(&b, last.base[i] == '\n' || last.base[i] == '"' ? " " : &last.base[i], 1);
        sb_buf_appendf(&b, "%s\". Do not greet the caller again; answer that.\n\n", n < last.len ? " ..." : "");
    }
    sb_buf_appendz(&b, d->agent->instructions);
    sb_buf_appendf(&b, "\n\n%s", lines[d->strategy]);
    sb_buf_append(&b, "", 1);
    return b.base;
}

const char *sb_routed_by_name(sb_routed_by_t r)
{
    static const char *const names[] = {"explicit", "classifier", "sticky", "default", "router"};
    return names[r];
}

const char *sb_strategy_name(sb_strategy_t s)
{
    static const char *const names[] = {"concise", "analytical", "tool-heavy", "wrapping-up"};
    return names[s];
}
