/*
 * Unit tests for src/agents.c (the profile file), src/classify.c (the
 * classifier) and src/agent_route.c (the routing rule and the strategy),
 * with the routing accuracy over tests/fixtures/agents/utterances.json.
 */
#include <jansson.h>
#include <stdlib.h>

#include "agent_route.h"
#include "agents.h"
#include "classify.h"
#include "router.h"
#include "tap.h"

#define FILE_NAME "tools/agents.json"

static sb_agents_t agents;

static void stems(const char *word, const char *want)
{
    char w[64];
    size_t n = strlen(word);
    memcpy(w, word, n);
    w[sb_classifier_stem(w, n)] = '\0';
    is_str(w, want, "%s stems to %s", word, want);
}

static void test_classifier(void)
{
    stems("refunds", "refund");
    stems("refunded", "refund");
    stems("charges", "charg");
    stems("charging", "charg");
    stems("deliveries", "delivery");
    stems("shipped", "ship");
    stems("billing", "bill");
    stems("status", "status");
    stems("address", "address");

    sb_classifier_t *c = sb_classifier_create();
    ok(sb_classifier_add(c, 0, "money back", 10, 2) == 0, "a phrase of two words");
    ok(sb_classifier_add(c, 1, "order", 5, 1) == 0, "a word");
    ok(sb_classifier_add(c, 1, "orders", 6, 1) == -2, "the same word once stemmed is refused");
    ok(sb_classifier_add(c, 1, "a b c d e", 9, 1) == -1, "five words are too many");
    ok(sb_classifier_add(c, 1, " ,.", 3, 1) == -1, "no word at all is refused");
    float s[2];
    const char *t = "I want my MONEY back for these orders, my order!";
    sb_classifier_score(c, t, strlen(t), s, 2);
    ok(s[0] == 2 && s[1] == 1, "a phrase matches its words in a row, any case; a phrase counts once (%g, %g)", s[0], s[1]);
    t = "money, and back";
    sb_classifier_score(c, t, strlen(t), s, 2);
    ok(s[0] == 0, "a phrase's words apart do not match");
    sb_classifier_add(c, 1, "that's all", 10, 3);
    t = "thanks, that\xE2\x80\x99s all";
    sb_classifier_score(c, t, strlen(t), s, 2);
    ok(s[1] == 3, "a typographic apostrophe is one too");
    char junk[300];
    for (size_t i = 0; i < sizeof(junk); ++i)
        junk[i] = (char)(i * 37 + 11);
    sb_classifier_score(c, junk, sizeof(junk), s, 2);
    ok(1, "any bytes score without harm");
    sb_classifier_destroy(c);
}

static void refuses(const char *text, const char *want, const char *what)
{
    sb_agents_t a;
    char err[512] = "";
    int rc = sb_agents_parse(text, strlen(text), FILE_NAME, &a, err, sizeof(err));
    ok(rc == -1 && strstr(err, want) != NULL, "refuses %s", what);
    if (rc == 0)
        sb_agents_free(&a);
    else if (strstr(err, want) == NULL)
        printf("#   got:  %s\n#   want: ...%s...\n", err, want);
}

#define AGENT(body) "{\"agents\":{\"orders\":{" body "}}}"
#define GOOD "\"instructions\":\"x\",\"tools\":[],\"routing\":{\"description\":\"d\",\"phrases\":{\"order\":1}}"

static void test_parse(void)
{
    char err[512] = "";
    ok(sb_agents_parse(sb_agents_builtin, sb_agents_builtin_len, FILE_NAME, &agents, err, sizeof(err)) == 0,
       "the built-in profiles parse: %s", err);
    ok(agents.n == 3 && strcmp(agents.v[0].name, "support") == 0 && strcmp(agents.v[1].name, "orders") == 0 &&
           strcmp(agents.v[2].name, "billing") == 0,
       "support, orders and billing, in file order");
    is_str(agents.v[agents.fallback].name, "support", "support is the default");
    ok(agents.v[1].tools != 0 && agents.v[1].temperature == 0.3 && agents.v[1].max_tokens == 250 && agents.v[1].top_k == 3,
       "the orders agent's tools, temperature, token limit and retrieval");

    sb_agents_t a;
    ok(sb_agents_parse(AGENT(GOOD), strlen(AGENT(GOOD)), FILE_NAME, &a, err, sizeof(err)) == 0 && a.v[0].retrieval == 1 &&
           a.v[0].temperature < 0 && a.v[0].model == NULL,
       "the least an agent needs; retrieval on, the rest unset: %s", err);
    sb_agents_free(&a);

    refuses(AGENT("\"instructions\":\"x\",\"tools\":[\"get_order_status\",\"fetch_recent_orders\",\"refund_all\"],"
                  "\"routing\":{\"description\":\"d\",\"phrases\":{}}"),
            "AGENTS_FILE tools/agents.json: agent \"orders\": tools[2] \"refund_all\" is not one of switchboard's tools",
            "a tool switchboard does not have, naming file, agent and field");
    refuses(AGENT(GOOD ",\"colour\":1"), "agent \"orders\": colour is not a field", "an unknown field");
    refuses("{\"agents\":{\"a\":{" GOOD "}},\"extra\":1}", "AGENTS_FILE tools/agents.json: extra is not a field",
            "an unknown top-level field");
    refuses(AGENT("\"tools\":[],\"routing\":{\"description\":\"d\",\"phrases\":{}}"), "agent \"orders\": instructions must be",
            "an agent without instructions");
    refuses(AGENT("\"instructions\":\"x\",\"routing\":{\"description\":\"d\",\"phrases\":{}}"),
            "agent \"orders\": tools is required", "an agent without tools");
    refuses(AGENT(GOOD ",\"temperature\":3"), "agent \"orders\": temperature must be", "a temperature out of range");
    refuses(AGENT(GOOD ",\"max_tokens\":0"), "agent \"orders\": max_tokens must be", "no tokens");
    refuses(AGENT(GOOD ",\"model\":\"agent:billing\""), "agent \"orders\": model must be", "a model that is an agent");
    refuses(AGENT(GOOD ",\"retrieval\":{\"enabled\":true,\"top_k\":99}"), "agent \"orders\": retrieval.top_k", "top_k too large");
    refuses(AGENT(GOOD ",\"retrieval\":{\"enabled\":true,\"k\":1}"), "agent \"orders\": retrieval.k is not a field",
            "an unknown retrieval field");
    refuses(AGENT("\"instructions\":\"x\",\"tools\":[],\"routing\":{\"description\":\"d\",\"phrases\":{\"order\":11}}"),
            "agent \"orders\": routing.phrases \"order\" must weigh", "a weight out of range");
    refuses(AGENT("\"instructions\":\"x\",\"tools\":[],\"routing\":{\"description\":\"d\",\"phrases\":{\"order\":1,\"orders\":1}}"),
            "agent \"orders\": routing.phrases \"orders\" repeats", "a phrase that repeats another once stemmed");
    refuses(AGENT("\"instructions\":\"x\",\"tools\":[\"get_order_status\",\"get_order_status\"],\"routing\":{\"description\":"
                  "\"d\",\"phrases\":{}}"),
            "agent \"orders\": tools[1] \"get_order_status\" is listed twice", "a tool listed twice");
    refuses("{\"default\":\"nobody\",\"agents\":{\"a\":{" GOOD "}}}", "default \"nobody\" is not one of the agents",
            "a default that is no agent");
    refuses("{\"agents\":{\"Big Name\":{" GOOD "}}}", "agent name \"Big Name\" must be", "an agent name with spaces");
    refuses("{\"agents\":{}}", "holds 1 to 16 agents", "no agents");
    refuses("{\"agents\":{\"a\":{" GOOD "},\"a\":{" GOOD "}}}", "not valid JSON", "an agent named twice");
    refuses("[1,2", "not valid JSON", "broken JSON");
}

/* The user messages of a conversation, as the decision reads them, with the agent memory stored and the router's. */
static void decide_with(const char *const *users, size_t n, const sb_agent_t *stored, const sb_agent_t *router,
                        sb_agent_decision_t *d)
{
    sb_str_t s[8];
    for (size_t i = 0; i < n; ++i)
        s[i] = (sb_str_t){users[i], strlen(users[i])};
    sb_route_input_t in = {s, n, 0, NULL, stored, router};
    sb_agent_decide(&agents, &in, d);
}

static void decide(const char *const *users, size_t n, unsigned tools, const sb_agent_t *explicit, sb_agent_decision_t *d)
{
    sb_str_t s[8];
    for (size_t i = 0; i < n; ++i)
        s[i] = (sb_str_t){users[i], strlen(users[i])};
    sb_route_input_t in = {s, n, tools, explicit, NULL, NULL};
    sb_agent_decide(&agents, &in, d);
}

static void test_accuracy(void)
{
    json_error_t jerr;
    json_t *doc = json_load_file(SB_SOURCE_ROOT "/tests/fixtures/agents/utterances.json", 0, &jerr);
    json_t *list = json_object_get(doc, "utterances");
    size_t i, right = 0, n = json_array_size(list);
    json_t *u;
    size_t unsure = 0, unsure_wrong = 0;
    json_array_foreach(list, i, u)
    {
        const char *text = json_string_value(json_object_get(u, "text"));
        const char *want = json_string_value(json_object_get(u, "agent"));
        sb_agent_decision_t d;
        decide(&text, 1, 0, NULL, &d);
        unsure += d.unsure;
        unsure_wrong += d.unsure && strcmp(d.agent->name, want) != 0;
        if (strcmp(d.agent->name, want) == 0)
            ++right;
        else
            printf("# misrouted to %s (%s, score %.1f), wanted %s: %s\n", d.agent->name, sb_routed_by_name(d.routed_by), d.score,
                   want, text);
    }
    double accuracy = n ? (double)right / (double)n : 0;
    printf("# routing accuracy: %zu of %zu utterances, %.3f\n", right, n, accuracy);
    printf("# unsure of %zu of them (the router would be asked), %zu of those misrouted; misrouted in all: %zu\n", unsure,
           unsure_wrong, n - right);
    ok(n >= 60 && accuracy >= 0.9, "the classifier routes at least 90%% of %zu labelled utterances right (%.3f)", n, accuracy);
    json_decref(doc);
}

static void test_decide(void)
{
    sb_agent_decision_t d;
    const char *first[] = {"hello there"};
    decide(first, 1, 0, NULL, &d);
    ok(strcmp(d.agent->name, "support") == 0 && d.routed_by == SB_ROUTED_DEFAULT && d.previous == NULL,
       "words that route nowhere go to the default agent");

    const char *orders[] = {"where is my package, it was supposed to arrive yesterday"};
    decide(orders, 1, 0, NULL, &d);
    ok(strcmp(d.agent->name, "orders") == 0 && d.routed_by == SB_ROUTED_CLASSIFIER, "the classifier picks orders");

    decide(orders, 1, 0, &agents.v[2], &d);
    ok(strcmp(d.agent->name, "billing") == 0 && d.routed_by == SB_ROUTED_EXPLICIT, "an explicit choice wins over the words");

    const char *sticky[] = {"where is my package, it was supposed to arrive yesterday", "ok, and what about the price?"};
    decide(sticky, 2, 0, NULL, &d);
    ok(strcmp(d.agent->name, "orders") == 0 && d.routed_by == SB_ROUTED_STICKY && d.previous == d.agent,
       "a question that leans to billing only a little stays with orders (%.1f vs %.1f)", d.score, d.previous_score);

    const char *change[] = {"where is my package, it was supposed to arrive yesterday", "also I was charged twice on my card"};
    decide(change, 2, 0, NULL, &d);
    ok(strcmp(d.agent->name, "billing") == 0 && d.routed_by == SB_ROUTED_CLASSIFIER && strcmp(d.previous->name, "orders") == 0,
       "a clear change of topic moves to billing, from orders");
    char *text = sb_agent_instructions(&d, (sb_str_t){change[1], strlen(change[1])});
    static const char handover[] = "You are taking over this call from the orders agent; the caller has just asked about: "
                                   "\"also I was charged twice on my card\".";
    ok(strncmp(text, handover, sizeof(handover) - 1) == 0, "the new agent's instructions begin with the hand-over line");
    if (strncmp(text, "You are taking over", 19) != 0 || strstr(text, "twice on my card\".") == NULL)
        printf("#   got: %.200s\n", text);
    ok(strstr(text, agents.v[2].instructions) != NULL, "then its own instructions");
    free(text);

    const char *after[] = {"where is my package", "also I was charged twice on my card", "ok and when does it come back"};
    decide(after, 3, 0, NULL, &d);
    ok(strcmp(d.agent->name, "billing") == 0 && d.routed_by == SB_ROUTED_STICKY, "the next turn stays with billing");
    text = sb_agent_instructions(&d, (sb_str_t){after[2], strlen(after[2])});
    ok(strstr(text, "taking over") == NULL, "and is not told of a hand-over again");
    free(text);

    const char *from_default[] = {"hi", "my package never came"};
    decide(from_default, 2, 0, NULL, &d);
    ok(strcmp(d.agent->name, "orders") == 0 && strcmp(d.previous->name, "support") == 0,
       "the default agent hands over as soon as the words choose another");

    const char *bye[] = {"where is my package", "great, thanks, that's all"};
    decide(bye, 2, 0, NULL, &d);
    ok(d.strategy == SB_STRATEGY_WRAPPING_UP && d.max_tokens == 125, "thanks, that's all: wrapping up, half the tokens (%u)",
       d.max_tokens);
    const char *number[] = {"what's happening with order 4417"};
    decide(number, 1, 0, NULL, &d);
    ok(d.strategy == SB_STRATEGY_TOOL_HEAVY && d.max_tokens == 250, "an order number: tool-heavy");
    const char *plain[] = {"do you ship to canada"};
    decide(plain, 1, 0, NULL, &d);
    ok(d.strategy == SB_STRATEGY_CONCISE, "a plain question: concise");
    decide(plain, 1, 2, NULL, &d);
    ok(d.strategy == SB_STRATEGY_TOOL_HEAVY, "after tool results: tool-heavy");
    const char *why[] = {"why was my bill higher this month than last"};
    decide(why, 1, 0, NULL, &d);
    ok(d.strategy == SB_STRATEGY_ANALYTICAL && d.max_tokens == 600, "why: analytical, twice the tokens (%u)", d.max_tokens);
    text = sb_agent_instructions(&d, (sb_str_t){why[0], strlen(why[0])});
    ok(strstr(text, "For this turn: the caller wants an explanation") != NULL, "the strategy's line ends the instructions");
    free(text);
    decide(NULL, 0, 0, NULL, &d);
    ok(d.agent == &agents.v[agents.fallback], "no user message at all: the default agent");

    char long_words[400];
    memset(long_words, 'a', sizeof(long_words) - 1);
    long_words[sizeof(long_words) - 1] = '\0';
    const char *lw[] = {"my package", long_words};
    d.agent = &agents.v[2];
    d.previous = &agents.v[1];
    d.strategy = SB_STRATEGY_CONCISE;
    text = sb_agent_instructions(&d, (sb_str_t){lw[1], strlen(lw[1])});
    ok(strstr(text, "\"aaaa") != NULL && strstr(text, " ...\".") != NULL && strlen(text) < 1200,
       "a long utterance is quoted in part");
    free(text);
}

static void test_stored(void)
{
    sb_agent_decision_t d;
    const sb_agent_t *support = &agents.v[0], *orders = &agents.v[1], *billing = &agents.v[2];
    const char *after_choice[] = {"I have a question about something", "yes, from last month"};
    decide_with(after_choice, 2, billing, NULL, &d);
    ok(d.agent == billing && d.routed_by == SB_ROUTED_STICKY && d.previous == billing && !d.unsure,
       "the stored agent (an explicit choice or the router's, which the words cannot replay) is the conversation's: the turn "
       "sticks, sure");
    decide(after_choice, 2, 0, NULL, &d);
    ok(d.agent == support && d.routed_by == SB_ROUTED_STICKY && d.unsure,
       "without it the words found only the default agent, and the router would be asked again");
    const char *from_default[] = {"hi", "my package never came"};
    decide_with(from_default, 2, support, NULL, &d);
    ok(d.agent == orders && d.routed_by == SB_ROUTED_CLASSIFIER,
       "a stored agent that is the one the words found changes nothing: the default still hands over at the minimum score");
}

static void test_unsure(void)
{
    sb_agent_decision_t d;
    const sb_agent_t *support = &agents.v[0], *orders = &agents.v[1], *billing = &agents.v[2];
    const char *nothing[] = {"hello there"};
    decide(nothing, 1, 0, NULL, &d);
    ok(d.unsure && d.routed_by == SB_ROUTED_DEFAULT, "no agent reaches the minimum score: unsure");
    decide(nothing, 1, 0, billing, &d);
    ok(!d.unsure && d.routed_by == SB_ROUTED_EXPLICIT, "an explicit choice is never unsure");
    const char *clear[] = {"where is my package, it was supposed to arrive yesterday"};
    decide(clear, 1, 0, NULL, &d);
    ok(!d.unsure && d.routed_by == SB_ROUTED_CLASSIFIER, "one agent well ahead: sure");
    const char *close[] = {"what is the delivery fee"};
    decide(close, 1, 0, NULL, &d);
    ok(d.unsure && d.agent == billing, "a first choice within %.1f of the runner-up: unsure (%s)", SB_ROUTE_UNSURE_MARGIN,
       d.agent->name);
    const char *leaning[] = {"where is my package, it was supposed to arrive yesterday", "ok, and what about the price?"};
    decide(leaning, 2, 0, NULL, &d);
    ok(d.unsure && d.agent == orders && d.routed_by == SB_ROUTED_STICKY,
       "another agent ahead of the conversation's by less than the switch margin: unsure, and sticky until the router says");
    const char *staying[] = {"where is my package, it was supposed to arrive yesterday", "ok, thank you"};
    decide(staying, 2, 0, NULL, &d);
    ok(!d.unsure && d.agent == orders, "nothing pulls away from the conversation's agent: sure");
    const char *moving[] = {"where is my package, it was supposed to arrive yesterday", "also I was charged twice on my card"};
    decide(moving, 2, 0, NULL, &d);
    ok(!d.unsure && d.agent == billing, "a clear change of topic: sure");

    decide_with(leaning, 2, NULL, billing, &d);
    ok(d.agent == billing && d.routed_by == SB_ROUTED_ROUTER && d.previous == orders && d.max_tokens == 300,
       "the router's choice wins, from the conversation's agent, with its own strategy's limit");
    char *text = sb_agent_instructions(&d, (sb_str_t){leaning[1], strlen(leaning[1])});
    ok(strncmp(text, "You are taking over this call from the orders agent", 51) == 0, "and is told it takes over");
    free(text);
    decide_with(clear, 1, NULL, support, &d);
    ok(d.agent == support && d.routed_by == SB_ROUTED_ROUTER && d.previous == NULL, "on a first choice, no one to take over from");
    is_str(sb_routed_by_name(SB_ROUTED_ROUTER), "router", "its name in the logs");

    ok(sb_router_answer(&agents, "billing", 7) == billing, "the router's answer: a name");
    ok(sb_router_answer(&agents, " Orders\n", 8) == orders, "white space around it and any case");
    static const char *const refused[] = {"billing.",        "billing orders", "",         "  ", "bill", "billingx",
                                          "I think billing", "\"billing\"",    "billing\0"};
    int none = 1;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); ++i)
        none &= sb_router_answer(&agents, refused[i], strlen(refused[i]) + (i == 8)) == NULL;
    ok(none, "anything else names no agent");
}

int main(void)
{
    sb_agent_route_init();
    test_classifier();
    test_parse();
    test_accuracy();
    test_decide();
    test_stored();
    test_unsure();
    sb_agents_free(&agents);
    sb_agent_route_dispose();
    return done_testing();
}
