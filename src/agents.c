/*
 * Agent profiles: the strict reading of the profile file, and the
 * process's table made from it at start-up (agents.h says what a profile
 * holds; README "Agents" shows the file).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agents.h"
#include "sb/alloc.h"
#include "sb/log.h"
#include "sb/tools.h"

#define DEFAULT_FILE "tools/agents.json"
#define MAX_INSTRUCTIONS 16384
#define MAX_DESCRIPTION 1024
#define MAX_PHRASES 256 /* per agent */
#define MAX_PHRASE 96   /* bytes of one phrase */
#define MAX_MODEL 256
#define MAX_WEIGHT 10.0

static sb_agents_t table;
static int loaded;

__attribute__((format(printf, 5, 6))) static int fail(char *err, size_t errlen, const char *file, const char *agent,
                                                      const char *fmt, ...)
{
    char what[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (agent != NULL)
        snprintf(err, errlen, "AGENTS_FILE %s: agent \"%.32s\": %s", file, agent, what);
    else
        snprintf(err, errlen, "AGENTS_FILE %s: %s", file, what);
    return -1;
}

/* Whether every key of `obj` is one of `known` (NULL-terminated); the first that is not into *unknown. */
static int only_known(json_t *obj, const char *const *known, const char **unknown)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        const char *const *k = known;
        while (*k != NULL && strcmp(*k, key) != 0)
            ++k;
        if (*k == NULL) {
            *unknown = key;
            return 0;
        }
    }
    return 1;
}

static int valid_name(const char *s, size_t len)
{
    return len > 0 && len <= SB_AGENT_NAME_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == len;
}

static int parse_tools(json_t *tools, sb_agent_t *a, const char *file, char *err, size_t errlen)
{
    size_t ntable;
    const sb_tool_t *rows = sb_tools_table(&ntable);
    if (!json_is_array(tools) || json_array_size(tools) > ntable)
        return fail(err, errlen, file, a->name, "tools must be an array of at most %zu of switchboard's tool names", ntable);
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        if (!json_is_string(t))
            return fail(err, errlen, file, a->name, "tools[%zu] must be a string", i);
        size_t row = 0;
        while (row < ntable && strcmp(rows[row].name, json_string_value(t)) != 0)
            ++row;
        if (row == ntable)
            return fail(err, errlen, file, a->name, "tools[%zu] \"%.64s\" is not one of switchboard's tools", i,
                        json_string_value(t));
        if (a->tools & (1u << row))
            return fail(err, errlen, file, a->name, "tools[%zu] \"%s\" is listed twice", i, rows[row].name);
        a->tools |= 1u << row;
    }
    return 0;
}

static int parse_routing(json_t *routing, sb_agent_t *a, unsigned label, sb_classifier_t *cls, const char *file, char *err,
                         size_t errlen)
{
    static const char *const known[] = {"description", "phrases", NULL};
    const char *unknown;
    if (!json_is_object(routing))
        return fail(err, errlen, file, a->name, "routing must be an object with description and phrases");
    if (!only_known(routing, known, &unknown))
        return fail(err, errlen, file, a->name, "routing.%.64s is not a field (description, phrases)", unknown);
    json_t *d = json_object_get(routing, "description");
    if (!json_is_string(d) || json_string_length(d) == 0 || json_string_length(d) > MAX_DESCRIPTION)
        return fail(err, errlen, file, a->name, "routing.description must be a string of 1 to %d bytes", MAX_DESCRIPTION);
    a->description = sb_strdup(json_string_value(d));
    json_t *phrases = json_object_get(routing, "phrases");
    if (!json_is_object(phrases) || json_object_size(phrases) > MAX_PHRASES)
        return fail(err, errlen, file, a->name, "routing.phrases must be an object of at most %d phrases with their weights",
                    MAX_PHRASES);
    const char *phrase;
    json_t *w;
    json_object_foreach(phrases, phrase, w)
    {
        double weight = json_number_value(w);
        if (!json_is_number(w) || weight < -MAX_WEIGHT || weight > MAX_WEIGHT || weight == 0)
            return fail(err, errlen, file, a->name, "routing.phrases \"%.64s\" must weigh a number from -10 to 10, not 0", phrase);
        size_t len = strlen(phrase);
        int rc = len <= MAX_PHRASE ? sb_classifier_add(cls, label, phrase, len, (float)weight) : -1;
        if (rc == -1)
            return fail(err, errlen, file, a->name, "routing.phrases \"%.64s\" must be 1 to %d words in at most %d bytes", phrase,
                        SB_CLASSIFIER_MAX_WORDS, MAX_PHRASE);
        if (rc == -2)
            return fail(err, errlen, file, a->name, "routing.phrases \"%.64s\" repeats another phrase once stemmed", phrase);
    }
    return 0;
}

static int parse_agent(const char *name, json_t *o, sb_agent_t *a, unsigned label, sb_classifier_t *cls, const char *file,
                       char *err, size_t errlen)
{
    static const char *const known[] = {"instructions", "tools",     "model",   "temperature",
                                        "max_tokens",   "retrieval", "routing", NULL};
    const char *unknown;
    memset(a, 0, sizeof(*a));
    a->temperature = -1;
    snprintf(a->name, sizeof(a->name), "%s", name);
    if (!json_is_object(o))
        return fail(err, errlen, file, a->name, "must be an object");
    if (!only_known(o, known, &unknown))
        return fail(err, errlen, file, a->name,
                    "%.64s is not a field (instructions, tools, model, temperature, max_tokens, retrieval, routing)", unknown);
    json_t *v = json_object_get(o, "instructions");
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > MAX_INSTRUCTIONS)
        return fail(err, errlen, file, a->name, "instructions must be a string of 1 to %d bytes", MAX_INSTRUCTIONS);
    a->instructions = sb_strdup(json_string_value(v));
    if ((v = json_object_get(o, "tools")) == NULL)
        return fail(err, errlen, file, a->name, "tools is required (the names of the tools it may call; [] for none)");
    if (parse_tools(v, a, file, err, errlen) != 0)
        return -1;
    if ((v = json_object_get(o, "model")) != NULL && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > MAX_MODEL ||
            strncmp(json_string_value(v), "agent:", 6) == 0)
            return fail(err, errlen, file, a->name, "model must be a model name of at most %d bytes, or null", MAX_MODEL);
        a->model = sb_strdup(json_string_value(v));
    }
    if ((v = json_object_get(o, "temperature")) != NULL && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 2)
            return fail(err, errlen, file, a->name, "temperature must be a number from 0 to 2");
        a->temperature = json_number_value(v);
    }
    if ((v = json_object_get(o, "max_tokens")) != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 100000)
            return fail(err, errlen, file, a->name, "max_tokens must be a whole number from 1 to 100000");
        a->max_tokens = (unsigned)json_integer_value(v);
    }
    a->retrieval = 1;
    if ((v = json_object_get(o, "retrieval")) != NULL) {
        static const char *const rknown[] = {"enabled", "top_k", NULL};
        json_t *on = json_object_get(v, "enabled"), *k = json_object_get(v, "top_k");
        if (!json_is_object(v) || !json_is_boolean(on))
            return fail(err, errlen, file, a->name, "retrieval must be an object with enabled (true or false) and top_k");
        if (!only_known(v, rknown, &unknown))
            return fail(err, errlen, file, a->name, "retrieval.%.64s is not a field (enabled, top_k)", unknown);
        a->retrieval = json_is_true(on);
        if (k != NULL && !json_is_null(k)) {
            if (!json_is_integer(k) || json_integer_value(k) < 1 || json_integer_value(k) > 20)
                return fail(err, errlen, file, a->name, "retrieval.top_k must be a whole number from 1 to 20");
            a->top_k = (unsigned)json_integer_value(k);
        }
    }
    if ((v = json_object_get(o, "routing")) == NULL)
        return fail(err, errlen, file, a->name, "routing is required (description and phrases)");
    return parse_routing(v, a, label, cls, file, err, errlen);
}

static void free_agent(sb_agent_t *a)
{
    free(a->instructions);
    free(a->offered);
    free(a->offered_calls);
    free(a->model);
    free(a->description);
    free(a->rag_config); /* a shallow copy: its strings are the server's */
}

void sb_agents_free(sb_agents_t *a)
{
    for (size_t i = 0; i < a->n; ++i)
        free_agent(&a->v[i]);
    free(a->v);
    sb_classifier_destroy(a->classifier);
    memset(a, 0, sizeof(*a));
}

int sb_agents_parse(const char *text, size_t len, const char *file, sb_agents_t *out, char *err, size_t errlen)
{
    static const char *const known[] = {"default", "agents", NULL};
    memset(out, 0, sizeof(*out));
    if (len > SB_AGENTS_MAX_FILE)
        return fail(err, errlen, file, NULL, "is larger than %u bytes", SB_AGENTS_MAX_FILE);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return fail(err, errlen, file, NULL, "not valid JSON: %.128s at line %d column %d", jerr.text, jerr.line, jerr.column);
    sb_agents_t a = {0};
    const char *unknown;
    int rc = -1;
    json_t *agents = json_object_get(root, "agents"), *def = json_object_get(root, "default");
    if (!json_is_object(root) || !json_is_object(agents) || json_object_size(agents) == 0 ||
        json_object_size(agents) > SB_AGENTS_MAX) {
        fail(err, errlen, file, NULL, "must be an object whose \"agents\" holds 1 to %d agents by name", SB_AGENTS_MAX);
        goto out;
    }
    if (!only_known(root, known, &unknown)) {
        fail(err, errlen, file, NULL, "%.64s is not a field (default, agents)", unknown);
        goto out;
    }
    a.classifier = sb_classifier_create();
    a.v = sb_calloc(json_object_size(agents), sizeof(*a.v));
    const char *name;
    json_t *o;
    json_object_foreach(agents, name, o)
    {
        if (!valid_name(name, strlen(name))) {
            fail(err, errlen, file, NULL, "agent name \"%.40s\" must be 1 to %d of a-z, 0-9, _ and -", name, SB_AGENT_NAME_MAX);
            goto out;
        }
        int bad = parse_agent(name, o, &a.v[a.n], (unsigned)a.n, a.classifier, file, err, errlen);
        ++a.n; /* freed whole or half-filled alike */
        if (bad)
            goto out;
    }
    if (def != NULL) {
        if (!json_is_string(def)) {
            fail(err, errlen, file, NULL, "default must name one of the agents");
            goto out;
        }
        while (a.fallback < a.n && strcmp(a.v[a.fallback].name, json_string_value(def)) != 0)
            ++a.fallback;
        if (a.fallback == a.n) {
            fail(err, errlen, file, NULL, "default \"%.40s\" is not one of the agents", json_string_value(def));
            goto out;
        }
    }
    *out = a;
    memset(&a, 0, sizeof(a));
    rc = 0;
out:
    sb_agents_free(&a);
    json_decref(root);
    return rc;
}

/* Reads `path` whole (at most SB_AGENTS_MAX_FILE bytes) into a new buffer; NULL with errno when it cannot. */
static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    char *buf = sb_alloc(SB_AGENTS_MAX_FILE + 1);
    *len = fread(buf, 1, SB_AGENTS_MAX_FILE + 1, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    return buf;
}

int sb_agents_init(const sb_config_t *config, char *err, size_t errlen)
{
    sb_agents_dispose();
    if (!config->agents || config->agents_file == NULL || strcmp(config->agents_file, "none") == 0)
        return 0;
    const char *path = config->agents_file;
    size_t len = 0;
    char *text = read_file(path, &len);
    const char *file = path;
    if (text == NULL && errno == ENOENT && strcmp(path, DEFAULT_FILE) == 0) {
        /* a container or an installed binary has no source tree: the default profiles travel inside it */
        file = DEFAULT_FILE " (built in)";
    } else if (text == NULL) {
        return fail(err, errlen, path, NULL, "cannot be read: %s", strerror(errno));
    }
    int rc = sb_agents_parse(text != NULL ? text : sb_agents_builtin, text != NULL ? len : sb_agents_builtin_len, file, &table, err,
                             errlen);
    free(text);
    if (rc != 0)
        return -1;
    for (size_t i = 0; i < table.n; ++i) {
        sb_agent_t *a = &table.v[i];
        a->offered = sb_tools_serialize(a->tools & ~sb_tools_calls());
        a->offered_calls = sb_tools_serialize(a->tools);
        if (a->top_k != 0) { /* retrieval reads its settings from a config: this one differs only in RAG_TOP_K */
            a->rag_config = sb_alloc(sizeof(*a->rag_config));
            *a->rag_config = *config;
            a->rag_config->rag_top_k = a->top_k;
        }
    }
    loaded = 1;
    char names[SB_AGENTS_MAX * (SB_AGENT_NAME_MAX + 2)] = "";
    for (size_t i = 0, used = 0; i < table.n; ++i)
        used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", i ? ", " : "", table.v[i].name);
    sb_log_info("agents from %s: %s (default %s)", file, names, table.v[table.fallback].name);
    return 0;
}

void sb_agents_dispose(void)
{
    sb_agents_free(&table);
    loaded = 0;
}

const sb_agents_t *sb_agents(void)
{
    return loaded ? &table : NULL;
}

const sb_agent_t *sb_agents_find(const char *name, size_t len)
{
    for (size_t i = 0; loaded && i < table.n; ++i)
        if (strlen(table.v[i].name) == len && memcmp(table.v[i].name, name, len) == 0)
            return &table.v[i];
    return NULL;
}
