/*
 * libFuzzer target for the agent profile parser (src/agents.c), which reads
 * a file an operator wrote, and the classifier its phrases build
 * (src/classify.c): any bytes parse to a table or to an error naming the
 * file, never a crash; a table that parses routes its own text, and the
 * routing decision names one of its agents, as does a router's answer that
 * names one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_route.h"
#include "agents.h"
#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sb_agents_t a;
    char err[512];
    err[0] = '\0';
    if (sb_agents_parse((const char *)data, size, "fuzz.json", &a, err, sizeof(err)) != 0) {
        if (strncmp(err, "AGENTS_FILE fuzz.json: ", 23) != 0)
            abort(); /* every error names the file */
        return 0;
    }
    if (a.n == 0 || a.n > SB_AGENTS_MAX || a.fallback >= a.n)
        abort();
    sb_str_t users[2] = {{(const char *)data, size / 2}, {(const char *)data + size / 2, size - size / 2}};
    sb_route_input_t in = {users, 2, 0, NULL, NULL, NULL};
    sb_agent_decision_t d;
    sb_agent_decide(&a, &in, &d);
    if (d.agent < a.v || d.agent >= a.v + a.n)
        abort();
    /* the same bytes as a router's answer: no agent, or one of the table's, which then answers */
    in.router_agent = sb_router_answer(&a, (const char *)data, size);
    sb_agent_decide(&a, &in, &d);
    if (in.router_agent != NULL && (d.agent != in.router_agent || d.routed_by != SB_ROUTED_ROUTER))
        abort();
    free(sb_agent_instructions(&d, users[1]));
    sb_agents_free(&a);
    return 0;
}
