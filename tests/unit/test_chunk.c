/*
 * Unit tests for src/chunk.c: reading upstream chunks into deltas. Every case
 * is also read by the jansson reading the scanner replaced (tests/fuzz/
 * chunk_ref.c), which must agree except where the scanner is stricter on
 * purpose (nesting depth) or laxer (the range of real numbers).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>

#include "../fuzz/chunk_ref.h"
#include "chunk.h"
#include "sb/sse.h"
#include "tap.h"

#define FIXTURES SB_SOURCE_ROOT "/tests/fixtures/upstream-streams/"

/* The last input and its scratch room, each exactly as large as the input so that ASan sees any access past them. */
static char *in, *scratch;
static size_t in_len;

static int parse_n(const char *s, size_t n, sb_delta_t *d)
{
    free(in);
    free(scratch);
    in = malloc(n ? n : 1);
    scratch = malloc(n ? n : 1);
    if (in == NULL || scratch == NULL)
        abort();
    memcpy(in, s, n);
    in_len = n;
    return sb_chunk_parse(in, n, d, scratch);
}

/* Single quotes in `s` stand for double quotes, to keep the cases readable. */
static int parse(const char *s, sb_delta_t *d)
{
    size_t n = strlen(s);
    char *t = malloc(n + 1);
    if (t == NULL)
        abort();
    for (size_t i = 0; i <= n; ++i)
        t[i] = s[i] == '\'' ? '"' : s[i];
    int rc = parse_n(t, n, d);
    free(t);
    return rc;
}

static int str_is(sb_str_t s, const char *want)
{
    return s.base != NULL && s.len == strlen(want) && memcmp(s.base, want, s.len) == 0;
}

static int in_input(sb_str_t s)
{
    return s.base >= in && s.base + s.len <= in + in_len;
}

static int in_scratch(sb_str_t s)
{
    return s.base >= scratch && s.base + s.len <= scratch + in_len;
}

static int same_str(sb_str_t a, sb_str_t b)
{
    if (a.base == NULL || b.base == NULL)
        return a.base == b.base;
    return a.len == b.len && memcmp(a.base, b.base, a.len) == 0;
}

static int same(const sb_delta_t *a, const sb_delta_t *b)
{
    int eq = same_str(a->content, b->content) && same_str(a->finish_reason, b->finish_reason) && same_str(a->model, b->model) &&
             same_str(a->error_message, b->error_message) && same_str(a->error_type, b->error_type) &&
             same_str(a->error_code, b->error_code) && a->ntools == b->ntools && a->has_usage == b->has_usage &&
             a->prompt_tokens == b->prompt_tokens && a->completion_tokens == b->completion_tokens &&
             a->total_tokens == b->total_tokens && a->is_error == b->is_error;
    for (size_t i = 0; eq && i < a->ntools; ++i) {
        const sb_tool_delta_t *x = &a->tools[i], *y = &b->tools[i];
        eq = x->index == y->index && same_str(x->id, y->id) && same_str(x->type, y->type) && same_str(x->name, y->name) &&
             same_str(x->arguments, y->arguments);
    }
    return eq;
}

/* The reference's verdict on the last input agrees with the scanner's (rc) and, on success, its delta with *d. */
static int agrees(int rc, const sb_delta_t *d)
{
    sb_delta_t want;
    json_t *holder;
    json_error_t error;
    int ref = ref_chunk_parse(in, in_len, &want, &holder, &error);
    int eq = (ref == 0) == (rc == 0) && (rc != 0 || same(d, &want)); /* the reference does not tell -1 from -2 */
    json_decref(holder);
    return eq;
}

typedef struct {
    const char *json; /* single quotes stand for double quotes */
    int rc;
    const char *what;
} case_t;

static void run_cases(const char *group, const case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        sb_delta_t d;
        int rc = parse(cases[i].json, &d);
        is_int(rc < 0 ? -1 : rc, cases[i].rc, "%s: %s", group, cases[i].what); /* which failure: test_failure_kinds */
        ok(agrees(rc, &d), "%s: %s: the jansson reading agrees", group, cases[i].what);
    }
}

#define RUN(group, cases) run_cases(group, cases, sizeof(cases) / sizeof(cases[0]))

static void test_shapes(void)
{
    sb_delta_t d;
    is_int(parse("{'id':'x','model':'m','choices':[{'index':0,'delta':{'role':'assistant','content':'Hi'},"
                 "'finish_reason':null}],'x_groq':{'id':'r'},'obfuscation':'abc'}",
                 &d),
           0, "a content chunk with vendor fields parses");
    ok(str_is(d.content, "Hi") && in_input(d.content), "content is read, in place");
    ok(str_is(d.model, "m") && d.finish_reason.base == NULL && d.ntools == 0 && !d.has_usage && !d.is_error,
       "model read, no finish, tools, usage or error");

    is_int(parse("{'choices':[{'index':0,'delta':{'tool_calls':[{'index':1,'id':'call_1','type':'function',"
                 "'function':{'name':'f','arguments':'{\\'a'}}]},'finish_reason':null}]}",
                 &d),
           0, "a tool-call fragment parses");
    ok(d.ntools == 1 && d.tools[0].index == 1 && str_is(d.tools[0].id, "call_1") && str_is(d.tools[0].type, "function") &&
           str_is(d.tools[0].name, "f") && str_is(d.tools[0].arguments, "{\"a"),
       "index, id, type, name and argument fragment are read");
    ok(in_scratch(d.tools[0].arguments), "an escaped string is decoded into scratch");

    is_int(parse("{'choices':[{'delta':{'tool_calls':[{'id':'a','function':{'name':'f','arguments':'{}'}},{'id':'b'},"
                 "{'index':7,'function':null}]}}]}",
                 &d),
           0, "whole calls without index parse");
    ok(d.ntools == 3 && d.tools[0].index == 0 && d.tools[1].index == 1 && d.tools[2].index == 7, "a missing index is the position");
    ok(d.tools[1].name.base == NULL && d.tools[1].arguments.base == NULL && d.tools[2].name.base == NULL,
       "absent and null function leave name and arguments absent");

    is_int(parse("{'choices':[],'usage':{'prompt_tokens':5,'completion_tokens':7,'total_tokens':12}}", &d), 0,
           "a usage-only chunk with empty choices parses");
    ok(d.has_usage && d.prompt_tokens == 5 && d.completion_tokens == 7 && d.total_tokens == 12, "usage is read");
    is_int(parse("{'usage':{'prompt_tokens':null,'completion_tokens':3}}", &d), 0, "usage with null and missing counts");
    ok(d.has_usage && d.prompt_tokens == 0 && d.completion_tokens == 3 && d.total_tokens == 0, "they read as 0");
    is_int(parse("{'usage':{'prompt_tokens':9223372036854775807}}", &d), 0, "the largest count");
    ok(d.prompt_tokens == 9223372036854775807LL, "is read exactly");

    is_int(parse("{'error':{'message':'boom','type':'invalid_request_error','code':'tool_use_failed','status_code':400}}", &d), 0,
           "an in-band error object parses");
    ok(d.is_error && str_is(d.error_message, "boom") && str_is(d.error_type, "invalid_request_error") &&
           str_is(d.error_code, "tool_use_failed"),
       "and is flagged as an error with its message, type and code");
    is_int(parse("{'error':{'message':'m','code':400,'type':7}}", &d), 0, "an error with a numeric code parses");
    ok(d.is_error && str_is(d.error_message, "m") && d.error_code.base == NULL && d.error_type.base == NULL,
       "fields of other types are left out");
    is_int(parse("{'error':'boom'}", &d), 0, "an error string parses");
    ok(d.is_error && str_is(d.error_message, "boom"), "it is the message");
    is_int(parse("{'model':'m','usage':{'prompt_tokens':1},'choices':[{'delta':{'content':'x'}}],'error':{}}", &d), 0,
           "an error alongside a whole chunk parses");
    ok(d.is_error && d.error_message.base == NULL && d.model.base == NULL && !d.has_usage && d.content.base == NULL,
       "only the error is reported");
    is_int(parse("{'model':5,'usage':'x','choices':7,'error':'e'}", &d), 0, "an error makes the other fields' types irrelevant");
    ok(d.is_error && str_is(d.error_message, "e"), "the error is reported");
    is_int(parse("{'error':null,'model':'m'}", &d), 0, "a null error is no error");
    ok(!d.is_error && str_is(d.model, "m"), "the rest is read");
    is_int(parse("{'choices':[{'delta':{'content':'a'}},{'delta':{'content':'b'}},5]}", &d), 0, "further choices are not read");
    ok(str_is(d.content, "a"), "choice 0 is read");

    static const case_t cases[] = {
        {"{}", 0, "an empty object"},
        {"{'choices':null,'usage':null,'model':null,'error':null}", 0, "null for every field"},
        {"{'choices':[{}]}", 0, "an empty choice"},
        {"{'choices':[{'delta':null,'finish_reason':'stop'}]}", 0, "a null delta"},
        {"{'choices':[{'delta':{'content':null,'tool_calls':null}}]}", 0, "null content and tool_calls"},
        {"{'choices':[{'delta':{'tool_calls':[]}}]}", 0, "empty tool_calls"},
        {"{'choices':[{'delta':{'tool_calls':[{}]}}]}", 0, "an empty tool call"},
        {"{'choices':[{'delta':{'tool_calls':[{'index':1023}]}}]}", 0, "tool index 1023"},
        {"{'choices':[{'delta':{'tool_calls':[{'index':-0}]}}]}", 0, "tool index -0"},
        {"{'choices':[{'delta':{'tool_calls':[{'id':null,'type':null,'function':{'name':null,'arguments':null}}]}}]}", 0,
         "null id, type, name and arguments"},
        {"[1,2]", -1, "an array"},
        {"'x'", -1, "a string"},
        {"5", -1, "a number"},
        {"null", -1, "null"},
        {"{'model':5}", -1, "a numeric model"},
        {"{'usage':'x'}", -1, "usage a string"},
        {"{'usage':[]}", -1, "usage an array"},
        {"{'usage':{'prompt_tokens':-1}}", -1, "a negative count"},
        {"{'usage':{'completion_tokens':1.0}}", -1, "a real count"},
        {"{'usage':{'total_tokens':1e2}}", -1, "a count with an exponent"},
        {"{'usage':{'prompt_tokens':'5'}}", -1, "a count as a string"},
        {"{'usage':{'prompt_tokens':true}}", -1, "a count as a boolean"},
        {"{'choices':{}}", -1, "choices an object"},
        {"{'choices':'x'}", -1, "choices a string"},
        {"{'choices':[5]}", -1, "choice 0 a number"},
        {"{'choices':[null]}", -1, "choice 0 null"},
        {"{'choices':[{'finish_reason':1}]}", -1, "a numeric finish_reason"},
        {"{'choices':[{'delta':[]}]}", -1, "delta an array"},
        {"{'choices':[{'delta':{'content':5}}]}", -1, "numeric content"},
        {"{'choices':[{'delta':{'content':{}}}]}", -1, "content an object"},
        {"{'choices':[{'delta':{'content':['a']}}]}", -1, "content an array of parts"},
        {"{'choices':[{'delta':{'tool_calls':{}}}]}", -1, "tool_calls an object"},
        {"{'choices':[{'delta':{'tool_calls':[5]}}]}", -1, "a tool call that is a number"},
        {"{'choices':[{'delta':{'tool_calls':[{'index':'1'}]}}]}", -1, "a string tool index"},
        {"{'choices':[{'delta':{'tool_calls':[{'index':1.0}]}}]}", -1, "a real tool index"},
        {"{'choices':[{'delta':{'tool_calls':[{'index':1024}]}}]}", -1, "tool index 1024"},
        {"{'choices':[{'delta':{'tool_calls':[{'index':-1}]}}]}", -1, "a negative tool index"},
        {"{'choices':[{'delta':{'tool_calls':[{'index':null}]}}]}", -1, "a null tool index"},
        {"{'choices':[{'delta':{'tool_calls':[{'index':99999999999999999}]}}]}", -1, "a huge tool index"},
        {"{'choices':[{'delta':{'tool_calls':[{'id':5}]}}]}", -1, "a numeric tool id"},
        {"{'choices':[{'delta':{'tool_calls':[{'type':true}]}}]}", -1, "a boolean tool type"},
        {"{'choices':[{'delta':{'tool_calls':[{'function':'f'}]}}]}", -1, "function a string"},
        {"{'choices':[{'delta':{'tool_calls':[{'function':{'name':5}}]}}]}", -1, "a numeric function name"},
        {"{'choices':[{'delta':{'tool_calls':[{'function':{'arguments':{}}}]}}]}", -1, "arguments an object"},
        {"{'error':5}", -1, "error a number"},
        {"{'error':[]}", -1, "error an array"},
        {"{'error':true}", -1, "error true"},
        {"{'error':false,'model':'m'}", -1, "error false"},
    };
    RUN("shape", cases);
}

static void test_tool_limit(void)
{
    static const char head[] = "{\"choices\":[{\"delta\":{\"tool_calls\":[{}", call[] = ",{\"index\":1}";
    char buf[4096];
    size_t at = sizeof(head) - 1;
    memcpy(buf, head, at);
    for (int i = 1; i < SB_CHUNK_MAX_TOOLS; ++i, at += sizeof(call) - 1)
        memcpy(buf + at, call, sizeof(call) - 1);
    memcpy(buf + at, "]}}]}", 6);
    sb_delta_t d;
    is_int(parse(buf, &d), 0, "%d tool-call fragments parse", SB_CHUNK_MAX_TOOLS);
    ok(d.ntools == SB_CHUNK_MAX_TOOLS && agrees(0, &d), "all are read");
    memcpy(buf + at, ",{}]}}]}", 9);
    is_int(parse(buf, &d), -2, "one more is past the limit");
    ok(d.problem != NULL && strstr(d.problem, "more tool calls in one chunk") != NULL, "and the limit is named: %s",
       d.problem ? d.problem : "(none)");
    ok(agrees(-2, &d), "the jansson reading agrees");
    memcpy(buf + at, ",5,[}]}}]}", 11);
    is_int(parse(buf, &d), -1, "past the limit, the rest must still be valid JSON");
}

/* Not JSON (-1) is told from a field switchboard cannot use (-2), and a bad tool index is named for the operator. */
static void test_failure_kinds(void)
{
    sb_delta_t d;
    is_int(parse("{'choices':[", &d), -1, "cut-off JSON is not valid JSON");
    is_int(parse("[1]", &d), -1, "an array is not a chunk");
    is_int(parse("{'model':5}", &d), -2, "a numeric model is a wrong field");
    ok(d.problem == NULL, "which is not named in particular");
    const char *const indexes[] = {"-1", "1024", "1099511627776", "1.5", "'3'"};
    for (size_t i = 0; i < sizeof(indexes) / sizeof(indexes[0]); ++i) {
        char buf[128];
        snprintf(buf, sizeof(buf), "{'choices':[{'delta':{'tool_calls':[{'index':%s,'id':'c'}]}}]}", indexes[i]);
        is_int(parse(buf, &d), -2, "tool index %s: a wrong field", indexes[i]);
        ok(d.problem != NULL && strstr(d.problem, "index") != NULL, "tool index %s: named as the index", indexes[i]);
    }
}

static void test_duplicates(void)
{
    sb_delta_t d;
    is_int(parse("{'choices':[{'delta':{'content':'a','content':'b'}}]}", &d), 0, "repeated content");
    ok(str_is(d.content, "b") && agrees(0, &d), "the last one counts");
    is_int(parse("{'choices':[{'delta':{'content':'a','tool_calls':[{'id':'x'}]},'finish_reason':'stop'}],'choices':null}", &d), 0,
           "choices, then null choices");
    ok(d.content.base == NULL && d.ntools == 0 && d.finish_reason.base == NULL && agrees(0, &d), "nothing of the first is left");
    is_int(parse("{'choices':[{'delta':{'content':'a'},'finish_reason':'x'}],'choices':[{'finish_reason':'y'}]}", &d), 0,
           "choices twice");
    ok(d.content.base == NULL && str_is(d.finish_reason, "y") && agrees(0, &d), "only the second is read");
    is_int(parse("{'choices':[{'delta':{'content':'a','tool_calls':[{'id':'x'}]},'delta':{}}]}", &d), 0, "delta twice");
    ok(d.content.base == NULL && d.ntools == 0 && agrees(0, &d), "the second replaces the first");
    is_int(parse("{'choices':[{'delta':{'tool_calls':[{'id':'x'},{'id':'y'}],'tool_calls':[{'id':'z'}]}}]}", &d), 0,
           "tool_calls twice");
    ok(d.ntools == 1 && str_is(d.tools[0].id, "z") && agrees(0, &d), "the second replaces the first");
    is_int(
        parse("{'choices':[{'delta':{'tool_calls':[{'index':1,'index':2,'function':{'name':'f'},'function':{'arguments':'a'}}]}}]}",
              &d),
        0, "index and function twice in a call");
    ok(d.tools[0].index == 2 && d.tools[0].name.base == NULL && str_is(d.tools[0].arguments, "a") && agrees(0, &d),
       "the last ones count");
    is_int(parse("{'usage':{'prompt_tokens':5},'usage':null}", &d), 0, "usage, then null usage");
    ok(!d.has_usage && d.prompt_tokens == 0 && agrees(0, &d), "no usage");
    is_int(parse("{'usage':{'prompt_tokens':5},'usage':{'total_tokens':2}}", &d), 0, "usage twice");
    ok(d.has_usage && d.prompt_tokens == 0 && d.total_tokens == 2 && agrees(0, &d), "the second replaces the first");
    is_int(parse("{'error':{'message':'a'},'error':null,'model':'m'}", &d), 0, "error, then null error");
    ok(!d.is_error && d.error_message.base == NULL && str_is(d.model, "m") && agrees(0, &d), "no error");
    is_int(parse("{'error':null,'error':'b'}", &d), 0, "null error, then an error");
    ok(d.is_error && str_is(d.error_message, "b") && agrees(0, &d), "an error");
    is_int(parse("{'error':{'message':'a','message':5}}", &d), 0, "repeated error message of another type");
    ok(d.is_error && d.error_message.base == NULL && agrees(0, &d), "is left out");

    static const case_t cases[] = {
        {"{'model':5,'model':'m'}", 0, "a wrong type replaced by a right one"},
        {"{'model':'m','model':5}", -1, "a right type replaced by a wrong one"},
        {"{'usage':{'prompt_tokens':1.5,'prompt_tokens':3}}", 0, "a wrong count replaced"},
        {"{'choices':5,'choices':[]}", 0, "wrong choices replaced"},
        {"{'choices':[],'choices':5}", -1, "choices replaced by wrong ones"},
        {"{'choices':[{'delta':{'content':1},'delta':{'content':'a'}}]}", 0, "a wrong delta replaced"},
        {"{'choices':[{'delta':{'tool_calls':[{'index':-1,'index':0}]}}]}", 0, "a wrong index replaced"},
        {"{'choices':[{'delta':{'tool_calls':[5],'tool_calls':null}}]}", 0, "wrong tool_calls replaced"},
        {"{'error':5,'error':null}", 0, "a wrong error replaced by null"},
        {"{'error':'e','error':5}", -1, "an error replaced by a wrong one"},
        {"{'model':5,'error':'e','model':6}", 0, "wrong fields around an error"},
    };
    RUN("duplicates", cases);
}

static void test_strings(void)
{
    sb_delta_t d;
    is_int(parse("{'choices':[{'delta':{'content':'a\\'b\\\\c\\/d\\be\\ff\\ng\\rh\\ti'}}]}", &d), 0, "the short escapes");
    ok(str_is(d.content, "a\"b\\c/d\be\ff\ng\rh\ti") && in_scratch(d.content) && agrees(0, &d), "are decoded");
    is_int(parse("{'choices':[{'delta':{'content':'\\u0041\\u00e9\\u00E9\\u20ac\\uFFFF\\ud83c\\udf89\\uDBFF\\uDFFF.'}}]}", &d), 0,
           "\\u escapes and surrogate pairs");
    ok(str_is(d.content, "A\xC3\xA9\xC3\xA9\xE2\x82\xAC\xEF\xBF\xBF\xF0\x9F\x8E\x89\xF4\x8F\xBF\xBF.") && agrees(0, &d),
       "are decoded to UTF-8");
    is_int(parse("{'choices':[{'delta':{'content':'h\xC3\xA9llo \xF0\x9F\x8E\x89 \xE6\x97\xA5\x7F'}}]}", &d), 0,
           "raw UTF-8 and DEL");
    ok(str_is(d.content, "h\xC3\xA9llo \xF0\x9F\x8E\x89 \xE6\x97\xA5\x7F") && in_input(d.content) && agrees(0, &d),
       "are kept in place");
    is_int(parse("{'model':'\\u0078','choices':[{'delta':{'content':'\\n','tool_calls':[{'id':'\\t','function':{'arguments':"
                 "'\\'\\''}}]}}],'x':'\\n\\n\\n\\n'}",
                 &d),
           0, "several escaped strings");
    ok(str_is(d.model, "x") && str_is(d.content, "\n") && str_is(d.tools[0].id, "\t") && str_is(d.tools[0].arguments, "\"\"") &&
           agrees(0, &d),
       "each keeps its own room in scratch");
    is_int(parse("{'\\u0063ontent':1,'choices':[{'delta':{'con\\u0074ent':'k','\\u0063ontent':'x\\u0079'}}]}", &d), 0,
           "escaped keys");
    ok(str_is(d.content, "xy") && agrees(0, &d), "are matched once decoded");
    is_int(parse("{'choices':[{'delta':{'content':''}}]}", &d), 0, "an empty string");
    ok(d.content.base != NULL && d.content.len == 0, "is present and empty");

    static const case_t cases[] = {
        {"{'a':'\\x'}", -1, "an unknown escape"},
        {"{'a':'\\U0041'}", -1, "\\U"},
        {"{'a':'\\u12'}", -1, "a short \\u"},
        {"{'a':'\\u12G4'}", -1, "a \\u with a non-hex digit"},
        {"{'a':'\\u0000'}", -1, "\\u0000"},
        {"{'\\u0000':1}", -1, "\\u0000 in a key"},
        {"{'a':'\\ud83c'}", -1, "a lone high surrogate"},
        {"{'a':'\\ud83cx'}", -1, "a high surrogate before a character"},
        {"{'a':'\\ud83c\\u0041'}", -1, "a high surrogate before a non-surrogate"},
        {"{'a':'\\ud83c\\ud83c'}", -1, "two high surrogates"},
        {"{'a':'\\udf89'}", -1, "a lone low surrogate"},
        {"{'a':'\\udf89\\ud83c'}", -1, "a reversed pair"},
        {"{'a':'\\ud83c\\n'}", -1, "a high surrogate before another escape"},
        {"{'a':'\\'}", -1, "an escaped closing quote"},
        {"{'a':'\\", -1, "input ending in an escape"},
        {"{'a':'\\ud83c\\udf8", -1, "input ending in a pair"},
        {"{'a':'x}", -1, "an unterminated string"},
        {"{'a':'\xC3'}", -1, "a truncated 2-byte sequence"},
        {"{'a':'\xE6\x97'}", -1, "a truncated 3-byte sequence"},
        {"{'a':'\xF0\x9F\x8E'}", -1, "a truncated 4-byte sequence"},
        {"{'a':'\x80'}", -1, "a lone continuation byte"},
        {"{'a':'\xC0\xAF'}", -1, "an overlong 2-byte '/'"},
        {"{'a':'\xC1\xBF'}", -1, "an overlong 2-byte DEL"},
        {"{'a':'\xE0\x80\xAF'}", -1, "an overlong 3-byte '/'"},
        {"{'a':'\xE0\x9F\xBF'}", -1, "an overlong 3-byte U+07FF"},
        {"{'a':'\xF0\x80\x80\xAF'}", -1, "an overlong 4-byte '/'"},
        {"{'a':'\xF0\x8F\xBF\xBF'}", -1, "an overlong 4-byte U+FFFF"},
        {"{'a':'\xED\xA0\x80'}", -1, "a UTF-8 encoded high surrogate"},
        {"{'a':'\xED\xBF\xBF'}", -1, "a UTF-8 encoded low surrogate"},
        {"{'a':'\xF4\x90\x80\x80'}", -1, "past U+10FFFF"},
        {"{'a':'\xF5\x80\x80\x80'}", -1, "lead byte F5"},
        {"{'a':'\xFF'}", -1, "byte FF"},
        {"{'a':'\xC3\x28'}", -1, "a lead byte before ASCII"},
        {"{'a':'x\\n\xC3'}", -1, "a truncated sequence after an escape"},
        {"{'a':'x\\n\xED\xA0\x80'}", -1, "an encoded surrogate after an escape"},
        {"{'\xC3':1}", -1, "invalid UTF-8 in a key"},
        {"{'choices':[{'delta':{'content':'\xFF'}}]}", -1, "invalid UTF-8 in content"},
        {"{'a':'\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF\xC2\x80\xDF\xBF\xE0\xA0\x80'}", 0,
         "the edges of valid UTF-8"},
        {"{'a':'x\\n\xED\x9F\xBF\xF4\x8F\xBF\xBF'}", 0, "valid UTF-8 after an escape"},
        {"{'a':'\x01'}", -1, "a raw control character"},
        {"{'a':'\t'}", -1, "a raw tab"},
        {"{'a':'\n'}", -1, "a raw newline"},
        {"{'a':'x\\n\x1F'}", -1, "a raw control character after an escape"},
    };
    RUN("strings", cases);

    static const char nul[] = "{\"a\":\"x\0y\"}";
    is_int(parse_n(nul, sizeof(nul) - 1, &d), -1, "strings: a raw NUL byte");
    ok(agrees(-1, &d), "strings: a raw NUL byte: the jansson reading agrees");
    is_int(parse_n("{}\0", 3, &d), -1, "a NUL byte after the object");
    /* jansson 2.14 skips a NUL byte after a number or literal (its lexer's unget loses it): the scanner is stricter. */
    is_int(parse_n("{\"a\":2\0}", 8, &d), -1, "a NUL byte after a number");
    is_int(parse_n("{\"a\":true\0}", 11, &d), -1, "a NUL byte after a literal");
    is_int(parse_n("{\"a\":'x'}", 9, &d), -1, "single quotes");
}

static void test_numbers(void)
{
    static const case_t cases[] = {
        {"{'a':[0,-0,1,-1,10,1.5,-0.5,0.0,1e5,1E5,1e+5,1e-5,1.5e10,-1.5E-10,0e0,123456789012345678]}", 0, "valid forms"},
        {"{'a':9223372036854775807,'b':-9223372036854775808}", 0, "the long long limits"},
        {"{'a':00}", -1, "a leading zero"},
        {"{'a':01}", -1, "a leading zero before a digit"},
        {"{'a':-01}", -1, "a negative leading zero"},
        {"{'a':-}", -1, "a lone minus"},
        {"{'a':+1}", -1, "a plus sign"},
        {"{'a':1.}", -1, "a point without digits"},
        {"{'a':.5}", -1, "a leading point"},
        {"{'a':1.e5}", -1, "a point before the exponent"},
        {"{'a':1e}", -1, "an empty exponent"},
        {"{'a':1e+}", -1, "a signed empty exponent"},
        {"{'a':0x10}", -1, "hex"},
        {"{'a':Infinity}", -1, "Infinity"},
        {"{'a':NaN}", -1, "NaN"},
        {"{'a':-Infinity}", -1, "-Infinity"},
        {"{'a':1 2}", -1, "two numbers"},
        {"{'a':9223372036854775808}", -1, "an integer past long long"},
        {"{'a':-9223372036854775809}", -1, "a negative integer past long long"},
        {"{'a':18446744073709551616}", -1, "2^64"},
        {"{'a':99999999999999999999}", -1, "20 digits"},
        {"{'a':1e308,'b':-1e-400,'c':99999999999999999999.5}", 0, "reals near and past the double range"},
        {"{'a':-", -1, "input ending in a number's sign"},
        {"{'a':1", -1, "input ending in a number"},
    };
    RUN("numbers", cases);

    /* The scanner checks a real's form only: jansson refuses one that overflows a double. */
    sb_delta_t d;
    is_int(parse("{'a':1e400}", &d), 0, "numbers: a real past the double range is accepted");
    is_int(parse("{'usage':{'prompt_tokens':1e400}}", &d), -2, "numbers: but never as a count (a wrong field)");
}

static void test_syntax(void)
{
    static const case_t cases[] = {
        {"", -1, "empty input"},
        {" \t\r\n", -1, "only whitespace"},
        {" \t\r\n{ 'model' : 'm' , 'choices' : [ { 'delta' : { } } ] } \t\r\n", 0, "whitespace everywhere"},
        {"{}{}", -1, "two objects"},
        {"{} x", -1, "text after the object"},
        {"{}]", -1, "a stray bracket"},
        {"{", -1, "an open object"},
        {"{'a'", -1, "a key alone"},
        {"{'a':}", -1, "a missing value"},
        {"{'a' 1}", -1, "a missing colon"},
        {"{'a':1 'b':2}", -1, "a missing comma"},
        {"{'a':1,}", -1, "a trailing comma"},
        {"{,'a':1}", -1, "a leading comma"},
        {"{'a':[1,]}", -1, "a trailing comma in an array"},
        {"{'a':[,1]}", -1, "a leading comma in an array"},
        {"{'a':[1 2]}", -1, "a missing comma in an array"},
        {"{'a':[}", -1, "a mismatched bracket"},
        {"{'a':{]}", -1, "a mismatched brace"},
        {"{1:2}", -1, "a numeric key"},
        {"{a:1}", -1, "a bare key"},
        {"{'a':True}", -1, "True"},
        {"{'a':nul}", -1, "a short null"},
        {"{'a':nulll}", -1, "a long null"},
        {"{'a':truex}", -1, "true followed by a letter"},
        {"{'a':true,'b':false,'c':null,'d':[true,false,null,{},[]]}", 0, "literals"},
        {"\xEF\xBB\xBF{}", -1, "a byte order mark"},
        {"{'a':1}\x0B", -1, "a vertical tab after the object"},
        {"{'a':\x0C 1}", -1, "a form feed as whitespace"},
        {"{'choices':[{'delta':{'content':'a'}}],'x':[", -1, "a truncated vendor field"},
        {"{'choices':[{'delta':{'content':'a'}}]", -1, "a missing final brace"},
    };
    RUN("syntax", cases);
}

static void test_vendor(void)
{
    sb_delta_t d;
    is_int(parse("{'id':'x','object':'chat.completion.chunk','created':1727346168,'system_fingerprint':null,"
                 "'x_groq':{'id':'r','usage':{'queue_time':0.00491786,'prompt_tokens':'not ours'}},'provider':'OpenAI',"
                 "'choices':[{'index':0,'delta':{'reasoning':'think','channel':'analysis','refusal':null,"
                 "'tool_calls':[{'index':0,'extra':[1,{'a':[true]}],'function':{'name':'f','strict':true}}]},"
                 "'logprobs':{'content':[{'token':'x','logprob':-0.5,'bytes':[120]}]},'native_finish_reason':5}],"
                 "'usage':{'prompt_tokens':1,'cost':0.0133176,'is_byok':false,'prompt_tokens_details':{'cached_tokens':0}},"
                 "'obfuscation':'C63r','\\u00e9':'\\ud83c\\udf89'}",
                 &d),
           0, "vendor fields of every type are skipped");
    ok(str_is(d.tools[0].name, "f") && d.has_usage && d.prompt_tokens == 1 && d.content.base == NULL && agrees(0, &d),
       "and the fields switchboard uses are read");
    static const case_t cases[] = {
        {"{'x':[1,2,}", -1, "a vendor array with a trailing comma"},
        {"{'x':{'a':01}}", -1, "a vendor number with a leading zero"},
        {"{'x':'\\q'}", -1, "a vendor string with a bad escape"},
        {"{'choices':[{'delta':{'reasoning':'\xC0\x80'}}]}", -1, "a vendor string with invalid UTF-8"},
        {"{'choices':[{},{'delta':{'content':[}}]}", -1, "a later choice that is not JSON"},
        {"{'choices':[{},{'delta':{'content':5}}]}", 0, "a later choice of another shape"},
    };
    RUN("vendor", cases);
}

/* `levels` nested arrays inside the root object's "x" (so the nesting is levels + 1). */
static char *nested(size_t levels)
{
    char *s = malloc(2 * levels + 16);
    if (s == NULL)
        abort();
    memcpy(s, "{\"x\":", 5);
    memset(s + 5, '[', levels);
    memset(s + 5 + levels, ']', levels);
    memcpy(s + 5 + 2 * levels, "}", 2);
    return s;
}

static void test_depth(void)
{
    sb_delta_t d;
    char *s = nested(SB_CHUNK_MAX_DEPTH - 1);
    is_int(parse(s, &d), 0, "nesting of exactly SB_CHUNK_MAX_DEPTH");
    ok(agrees(0, &d), "the jansson reading agrees");
    free(s);
    s = nested(SB_CHUNK_MAX_DEPTH);
    is_int(parse(s, &d), -1, "one level deeper is refused (jansson allows 2048)");
    free(s);

    /* A whole event of brackets (the SSE ceiling is 1 MiB): refused, without exhausting the stack. */
    size_t n = (size_t)1 << 20;
    char *deep = malloc(n);
    if (deep == NULL)
        abort();
    deep[0] = '{';
    memcpy(deep + 1, "\"x\":", 4);
    for (size_t i = 5; i < n; ++i)
        deep[i] = i % 2 ? '[' : '{';
    is_int(parse_n(deep, n, &d), -1, "1 MiB of open brackets and braces");
    for (size_t i = 5; i + 5 <= n; i += 5)
        memcpy(deep + i, "{\"a\":", 5);
    is_int(parse_n(deep, n, &d), -1, "1 MiB of nested objects");
    memset(deep + 5, '[', n - 5);
    is_int(parse_n(deep, n, &d), -1, "1 MiB of open brackets");
    free(deep);
}

/* ---- recorded provider streams ---- */

typedef struct {
    size_t events, parsed, agreed;
    char content[1024];
    size_t content_len;
    char finish[32];
    char model[64];
    char error[256];
    long long prompt, completion, total;
    char name[2][64], args[2][256]; /* tool calls 0 and 1, assembled */
    size_t nfragments;
} stream_t;

static void append(char *dst, size_t cap, sb_str_t s)
{
    size_t have = strlen(dst), n = s.len < cap - 1 - have ? s.len : cap - 1 - have;
    memcpy(dst + have, s.base, n);
    dst[have + n] = '\0';
}

static int on_event(void *ctx, const sb_sse_event_t *ev)
{
    stream_t *st = ctx;
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
        return 0;
    ++st->events;
    sb_delta_t d;
    int rc = parse_n(ev->data, ev->data_len, &d);
    st->parsed += rc == 0;
    st->agreed += agrees(rc, &d);
    if (rc != 0)
        return 0;
    if (d.content.base != NULL) {
        append(st->content, sizeof(st->content), d.content);
        st->content_len += d.content.len;
    }
    if (d.finish_reason.base != NULL) {
        st->finish[0] = '\0';
        append(st->finish, sizeof(st->finish), d.finish_reason);
    }
    if (d.model.base != NULL) {
        st->model[0] = '\0';
        append(st->model, sizeof(st->model), d.model);
    }
    if (d.is_error && d.error_message.base != NULL)
        append(st->error, sizeof(st->error), d.error_message);
    if (d.has_usage) {
        st->prompt = d.prompt_tokens;
        st->completion = d.completion_tokens;
        st->total = d.total_tokens;
    }
    for (size_t i = 0; i < d.ntools; ++i) {
        const sb_tool_delta_t *t = &d.tools[i];
        ++st->nfragments;
        if (t->index > 1)
            continue;
        if (t->name.base != NULL)
            append(st->name[t->index], sizeof(st->name[0]), t->name);
        if (t->arguments.base != NULL)
            append(st->args[t->index], sizeof(st->args[0]), t->arguments);
    }
    return 0;
}

typedef struct {
    const char *file;
    size_t events;           /* JSON events, [DONE] aside */
    const char *content;     /* assembled content: exact, or its start when it ends in "..." */
    const char *finish;      /* last finish_reason, "" for none */
    long long prompt, total; /* last usage */
    const char *name0, *args0, *name1, *args1;
    const char *error; /* start of the in-band error message, or NULL */
} fixture_t;

static const fixture_t fixtures[] = {
    {"anthropic_messages_text_tooluse_stream.sse", 21, "", "", 0, 0, "", "", "", "", NULL},
    /* Gemini's events are no chat chunks: they parse, with nothing switchboard reads there (wire_gemini.c reads them) */
    {"gemini_stream_after_function_result_stream.sse", 2, "", "", 0, 0, "", "", "", "", NULL},
    {"gemini_stream_functioncall_stream.sse", 1, "", "", 0, 0, "", "", "", "", NULL},
    {"gemini_stream_single_chunk_stream.sse", 1, "", "", 0, 0, "", "", "", "", NULL},
    {"gemini_stream_text_long_stream.sse", 123, "", "", 0, 0, "", "", "", "", NULL},
    {"groq_chat_midstream_error_stream.sse", 95, "", "", 0, 0, "", "", "", "", "Tool call validation failed: tool call"},
    {"groq_chat_toolcall_usage_stream.sse", 25, "", "tool_calls", 304, 353, "get_something_by_name", "{\"name\":\"example\"}", "",
     "", NULL},
    {"openai_chat_audio_shaped_stream.sse", 9, "", "stop", 21, 59, "", "", "", "", NULL},
    {"openai_chat_content_usage_stream.sse", 33,
     "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, I recommend checking a "
     "reliable weather website or a weather app.",
     "stop", 14, 44, "", "", "", "", NULL},
    {"openai_chat_finish_length_stream.sse", 4, "{\"", "length", 79, 80, "", "", "", "", NULL},
    {"openai_chat_parallel_toolcalls_stream.sse", 25, "", "tool_calls", 149, 209, "GetWeatherArgs",
     "{\"city\": \"Edinburgh\", \"country\": \"GB\", \"units\": \"c\"}", "get_stock_price",
     "{\"ticker\": \"AAPL\", \"exchange\": \"NASDAQ\"}", NULL},
    {"openai_chat_toolcall_obfuscation_usage_stream.sse", 8, "", "tool_calls", 53, 68, "get_capital", "{\"country\":\"UK\"}", "",
     "", NULL},
    {"openai_chat_toolcall_stream.sse", 17, "", "tool_calls", 76, 100, "GetWeatherArgs",
     "{\"city\":\"Edinburgh\",\"country\":\"UK\",\"units\":\"c\"}", "", "", NULL},
    {"openai_responses_function_call_stream.sse", 11, "", "", 0, 0, "", "", "", "", NULL},
    {"openai_responses_text_stream.sse", 15, "", "", 0, 0, "", "", "", "", NULL},
    {"openrouter_chat_sse_comments_stream.sse", 14, "https://github...", "stop", 8174, 8204, "", "", "", "", NULL},
};

/* want ending in "..." means: starts with what comes before it. */
static int matches(const char *got, const char *want)
{
    size_t n = strlen(want);
    if (n >= 3 && strcmp(want + n - 3, "...") == 0)
        return strncmp(got, want, n - 3) == 0;
    return strcmp(got, want) == 0;
}

static void test_fixture(const fixture_t *f)
{
    char path[512];
    snprintf(path, sizeof(path), "%s%s", FIXTURES, f->file);
    FILE *fp = fopen(path, "rb");
    if (!ok(fp != NULL, "%s: read", f->file))
        return;
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);

    stream_t st = {0};
    sb_sse_decoder_t dec;
    sb_sse_decoder_init(&dec, sizeof(buf));
    sb_sse_decoder_feed(&dec, buf, len, on_event, &st);
    sb_sse_decoder_finish(&dec, on_event, &st);
    sb_sse_decoder_dispose(&dec);

    is_int(st.events, f->events, "%s: JSON events", f->file);
    is_int(st.parsed, st.events, "%s: every event parses", f->file);
    is_int(st.agreed, st.events, "%s: the jansson reading agrees on every event", f->file);
    if (!ok(matches(st.content, f->content), "%s: content", f->file))
        printf("#   got: '%s'\n", st.content);
    is_str(st.finish, f->finish, "%s: finish_reason", f->file);
    ok(st.prompt == f->prompt && st.total == f->total, "%s: usage %lld/%lld", f->file, st.prompt, st.total);
    ok(matches(st.name[0], f->name0) && matches(st.args[0], f->args0) && matches(st.name[1], f->name1) &&
           matches(st.args[1], f->args1),
       "%s: tool calls ('%s' '%s', '%s' '%s')", f->file, st.name[0], st.args[0], st.name[1], st.args[1]);
    ok(f->error == NULL ? st.error[0] == '\0' : strncmp(st.error, f->error, strlen(f->error)) == 0, "%s: error '%.40s'", f->file,
       st.error);
}

static void test_fixtures(void)
{
    /* Every recording in the folder is covered. */
    size_t n = 0, want = sizeof(fixtures) / sizeof(fixtures[0]);
    DIR *dir = opendir(FIXTURES);
    struct dirent *de;
    while (dir != NULL && (de = readdir(dir)) != NULL) {
        size_t k = strlen(de->d_name);
        if (k <= 4 || strcmp(de->d_name + k - 4, ".sse") != 0)
            continue;
        ++n;
        const fixture_t *f = NULL;
        for (size_t i = 0; i < want; ++i)
            if (strcmp(fixtures[i].file, de->d_name) == 0)
                f = &fixtures[i];
        if (ok(f != NULL, "%s has expectations", de->d_name))
            test_fixture(f);
    }
    if (dir != NULL)
        closedir(dir);
    is_int(n, want, "the fixture folder holds the %zu known recordings", want);
}

/* A whole, non-streamed chat.completion read into one delta (sb_chunk_parse_whole). */
static void test_whole(void)
{
    static const char answer[] =
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o-mini\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi \\\"there\\\"\",\"refusal\":null,"
        "\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"one\",\"arguments\":\"{}\"}},"
        "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"two\",\"arguments\":\"{\\\"x\\\":1}\"}}]},"
        "\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],"
        "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}";
    size_t n = sizeof(answer) - 1;
    char *copy = malloc(n), *room = malloc(n);
    memcpy(copy, answer, n);
    sb_delta_t d;
    is_int(sb_chunk_parse_whole(copy, n, &d, room), 0, "a whole answer reads");
    ok(str_is(d.content, "Hi \"there\""), "its message's words, unescaped");
    ok(str_is(d.model, "gpt-4o-mini") && str_is(d.finish_reason, "tool_calls"), "its model and finish reason");
    ok(d.ntools == 2 && d.tools[0].index == 0 && d.tools[1].index == 1, "its calls, indexed by position");
    ok(str_is(d.tools[0].id, "call_a") && str_is(d.tools[1].name, "two") && str_is(d.tools[1].arguments, "{\"x\":1}"),
       "each call whole: id, name, arguments");
    ok(d.has_usage && d.prompt_tokens == 12 && d.completion_tokens == 7 && d.total_tokens == 19, "and the usage");
    is_int(sb_chunk_parse(copy, n, &d, room), 0, "the same bytes read as a chunk");
    ok(d.content.base == NULL && d.ntools == 0, "carry no delta: a chunk's words are in `delta` only");
    static const char chunk[] = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}";
    is_int(sb_chunk_parse_whole(chunk, sizeof(chunk) - 1, &d, room), 0, "a chunk read as a whole answer");
    ok(d.content.base == NULL, "carries no words: an answer's are in `message` only");
    static const char err[] = "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}";
    is_int(sb_chunk_parse_whole(err, sizeof(err) - 1, &d, room), 0, "an error object reads");
    ok(d.is_error && str_is(d.error_message, "overloaded"), "as an error with its words");
    static const char bad[] = "{\"choices\":[{\"message\":{\"content\":5}}]}";
    is_int(sb_chunk_parse_whole(bad, sizeof(bad) - 1, &d, room), -2, "words of the wrong type are refused");
    free(copy);
    free(room);
}

int main(void)
{
    test_shapes();
    test_whole();
    test_tool_limit();
    test_failure_kinds();
    test_duplicates();
    test_strings();
    test_numbers();
    test_syntax();
    test_vendor();
    test_depth();
    test_fixtures();
    free(in);
    free(scratch);
    return done_testing();
}
