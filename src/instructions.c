/*
 * The layered instructions of a turn (instructions.h says the order): the
 * deployment's and the teams' texts, read once at start-up, and the one call
 * a turn makes to route itself and stack them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "instructions.h"
#include "sb/alloc.h"

static char *platform;
static json_t *teams; /* team name -> instructions */

/* Reads `path` whole (at most SB_INSTRUCTIONS_MAX_FILE bytes, UTF-8) into a new string; NULL with err naming `setting`. */
static char *read_text(const char *setting, const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        snprintf(err, errlen, "%s %s: cannot be read: %s", setting, path, strerror(errno));
        return NULL;
    }
    char *buf = sb_alloc(SB_INSTRUCTIONS_MAX_FILE + 2);
    size_t len = fread(buf, 1, SB_INSTRUCTIONS_MAX_FILE + 1, fp);
    fclose(fp);
    buf[len] = '\0';
    json_t *check = len <= SB_INSTRUCTIONS_MAX_FILE && strlen(buf) == len ? json_stringn(buf, len) : NULL;
    if (check == NULL) {
        snprintf(err, errlen, "%s %s: must be UTF-8 text of at most %u bytes", setting, path, SB_INSTRUCTIONS_MAX_FILE);
        free(buf);
        return NULL;
    }
    json_decref(check);
    return buf;
}

static int load_teams(const sb_config_t *c, char *err, size_t errlen)
{
    const char *path = c->team_instructions_file;
    json_error_t jerr;
    teams = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(teams)) {
        snprintf(err, errlen, "TEAM_INSTRUCTIONS_FILE %s: must be a JSON object of team name to instructions (%.128s)", path,
                 teams == NULL ? jerr.text : "not an object");
        return -1;
    }
    const char *team;
    json_t *text;
    json_object_foreach(teams, team, text)
    {
        size_t n = strlen(team);
        if (n == 0 || n > 32 || strspn(team, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n || !json_is_string(text) ||
            json_string_length(text) > SB_INSTRUCTIONS_MAX_FILE) {
            snprintf(err, errlen,
                     "TEAM_INSTRUCTIONS_FILE %s: team \"%.40s\": names are 1 to 32 of a-z, 0-9, _ and -; "
                     "instructions are a string of at most %u bytes",
                     path, team, SB_INSTRUCTIONS_MAX_FILE);
            return -1;
        }
    }
    for (size_t i = 0; i < c->api_key_count; ++i) /* a team key whose team says nothing is a typo */
        if (c->api_key_teams[i] != NULL && json_object_get(teams, c->api_key_teams[i]) == NULL) {
            snprintf(err, errlen, "SWITCHBOARD_API_KEYS names team \"%s\", which TEAM_INSTRUCTIONS_FILE %s does not have",
                     c->api_key_teams[i], path);
            return -1;
        }
    return 0;
}

int sb_instructions_init(const sb_config_t *c, char *err, size_t errlen)
{
    sb_instructions_dispose();
    if (c->platform_instructions != NULL) {
        json_t *check = json_string(c->platform_instructions);
        if (check == NULL) {
            snprintf(err, errlen, "PLATFORM_INSTRUCTIONS must be UTF-8 text");
            return -1;
        }
        json_decref(check);
        platform = sb_strdup(c->platform_instructions);
    } else if (c->platform_instructions_file != NULL &&
               (platform = read_text("PLATFORM_INSTRUCTIONS_FILE", c->platform_instructions_file, err, errlen)) == NULL) {
        return -1;
    }
    if (c->team_instructions_file != NULL && load_teams(c, err, errlen) != 0)
        return -1;
    return 0;
}

void sb_instructions_dispose(void)
{
    free(platform);
    platform = NULL;
    json_decref(teams);
    teams = NULL;
}

void sb_instructions_route(const sb_chat_request_t *r, const sb_agent_t *chosen, sb_agent_decision_t *out)
{
    const sb_agents_t *agents = sb_agents();
    memset(out, 0, sizeof(*out));
    if (agents == NULL)
        return;
    sb_str_t users[SB_ROUTE_HISTORY + 1];
    sb_route_input_t in = {users, 0, 0, r->agent_asked, sb_agents_find(r->stored_agent, strlen(r->stored_agent)), chosen};
    in.nusers = sb_chat_request_user_texts(r, users, SB_ROUTE_HISTORY + 1, &in.tool_results);
    sb_agent_decide(agents, &in, out);
}

void sb_instructions_apply(sb_chat_request_t *r, const sb_agent_decision_t *d)
{
    char *agent_text = NULL;
    if (d->agent != NULL) {
        sb_str_t last[1];
        unsigned tool_results;
        size_t n = sb_chat_request_user_texts(r, last, 1, &tool_results);
        agent_text = sb_agent_instructions(d, n > 0 ? last[0] : (sb_str_t){"", 0});
        sb_chat_request_use_agent(r, d->agent, d->max_tokens);
    }
    const char *layers[] = {agent_text, platform, r->team != NULL ? json_string_value(json_object_get(teams, r->team)) : NULL};
    sb_chat_request_add_instructions(r, layers, sizeof(layers) / sizeof(layers[0]));
    free(agent_text);
}
