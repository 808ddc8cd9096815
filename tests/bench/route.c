/*
 * The routing benchmark: how long the intent classifier takes per caller
 * utterance, and a whole routing decision (the history replayed, the
 * strategy chosen, the agent's instructions written) per turn, over the
 * labelled utterances in tests/fixtures/agents/utterances.json with the
 * default profiles. Many timed iterations on one core; prints µs per
 * utterance and per turn. Run it with tests/bench/route-run, or under
 * callgrind for instruction counts.
 *
 *     route-bench UTTERANCES.json [ROUNDS [--classifier-only]]
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent_route.h"
#include "agents.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: route-bench UTTERANCES.json [ROUNDS]\n");
        return 2;
    }
    long rounds = argc > 2 ? strtol(argv[2], NULL, 10) : 2000;
    if (rounds < 1)
        rounds = 1;
    json_error_t jerr;
    json_t *doc = json_load_file(argv[1], 0, &jerr);
    json_t *list = json_object_get(doc, "utterances");
    size_t n = json_array_size(list);
    if (n == 0) {
        fprintf(stderr, "%s: no utterances (%s)\n", argv[1], jerr.text);
        return 1;
    }
    sb_agents_t agents;
    char err[512];
    if (sb_agents_parse(sb_agents_builtin, sb_agents_builtin_len, "built in", &agents, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    sb_agent_route_init();
    sb_str_t *texts = calloc(n, sizeof(*texts));
    size_t bytes = 0;
    for (size_t i = 0; i < n; ++i) {
        json_t *t = json_object_get(json_array_get(list, i), "text");
        texts[i] = (sb_str_t){json_string_value(t), json_string_length(t)};
        bytes += texts[i].len;
    }

    /* the classifier alone: one utterance scored for every agent */
    float scores[SB_AGENTS_MAX];
    volatile float sink = 0;
    double t0 = now_us();
    for (long r = 0; r < rounds; ++r)
        for (size_t i = 0; i < n; ++i) {
            sb_classifier_score(agents.classifier, texts[i].base, texts[i].len, scores, (unsigned)agents.n);
            sink += scores[0];
        }
    double per_utterance = (now_us() - t0) / ((double)rounds * (double)n);

    /* a whole turn: seven utterances of history replayed, the strategy, the instructions written */
    enum { HISTORY = 8 };
    sb_str_t conv[HISTORY];
    long turns = argc > 3 && strcmp(argv[3], "--classifier-only") == 0 ? 0 : rounds / 4 > 0 ? rounds / 4 : 1;
    t0 = now_us();
    for (long r = 0; r < turns; ++r)
        for (size_t i = 0; i < n; ++i) {
            for (size_t k = 0; k < HISTORY; ++k)
                conv[k] = texts[(i + k) % n];
            sb_route_input_t in = {conv, HISTORY, 0, NULL, NULL, NULL};
            sb_agent_decision_t d;
            sb_agent_decide(&agents, &in, &d);
            char *text = sb_agent_instructions(&d, conv[HISTORY - 1]);
            sink += (float)text[0];
            free(text);
        }
    double per_turn = turns ? (now_us() - t0) / ((double)turns * (double)n) : 0;

    printf("utterances: %zu (%.0f bytes on average), rounds: %ld\n", n, (double)bytes / (double)n, rounds);
    printf("classifier: %.3f us/utterance (target <= 20)\n", per_utterance);
    printf("routing decision with %d utterances of history, strategy and instructions: %.3f us/turn\n", HISTORY, per_turn);
    (void)sink;
    free(texts);
    sb_agents_free(&agents);
    sb_agent_route_dispose();
    json_decref(doc);
    return per_utterance <= 20 ? 0 : 1;
}
