/*
 * The hot-path JSON reader and vector writer: what the reader accepts and
 * refuses, how values are found in the flat array, number conversion against
 * strtod, the float writer digit for digit against printf's "%.9g", and the
 * dump of jansson trees byte for byte against json_dumps.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sb/json.h"
#include "tap.h"

/* Parses a copy of `text` (the reader decodes in place); 0 or -1. The copy is kept in *keep until freed. */
static int parse(sb_json_doc_t *doc, const char *text, size_t len, size_t max, char **keep)
{
    *keep = malloc(len + 1);
    memcpy(*keep, text, len);
    return sb_json_parse(doc, *keep, len, max);
}

static int accepts(const char *text, size_t len)
{
    sb_json_doc_t doc = {0};
    char *copy;
    int rc = parse(&doc, text, len, 1000, &copy);
    sb_json_doc_dispose(&doc);
    free(copy);
    return rc == 0;
}

#define ACCEPTS(lit) accepts(lit, sizeof(lit) - 1)

static void test_navigation(void)
{
    const char text[] = " {\"data\": [{\"object\": \"embedding\", \"embedding\": [0.5, -1e-3, 12]}, null],"
                        " \"model\": \"m\\u00e9\\n\", \"n\": {\"x\": [[], {}]}, \"last\": true} ";
    sb_json_doc_t doc = {0};
    char *copy;
    ok(parse(&doc, text, sizeof(text) - 1, 100, &copy) == 0, "a document with nesting parses");
    const sb_json_value_t *root = sb_json_root(&doc);
    ok(sb_json_is(root, SB_JSON_OBJECT) && root->len == 4 && root->span == doc.n, "the root spans everything");
    const sb_json_value_t *data = sb_json_get(root, "data");
    ok(sb_json_is(data, SB_JSON_ARRAY) && data->len == 2, "an array member");
    const sb_json_value_t *emb = sb_json_get(sb_json_at(data, 0), "embedding");
    size_t i;
    const sb_json_value_t *e;
    double want[] = {0.5, -1e-3, 12}, got[3] = {0};
    sb_json_array_foreach(emb, i, e) got[i] = sb_json_number(e);
    ok(i == 3 && memcmp(got, want, sizeof(want)) == 0, "the numbers of a nested array");
    ok(sb_json_is(sb_json_at(data, 1), SB_JSON_NULL) && sb_json_at(data, 2) == NULL, "sb_json_at stops at the end");
    is_str(sb_json_string(sb_json_get(root, "model")), "m\xc3\xa9\n", "escapes are decoded");
    ok(sb_json_get(root, "model")->len == 4, "the decoded length");
    ok(sb_json_is(sb_json_get(root, "last"), SB_JSON_TRUE), "the member after a nested container is found");
    ok(sb_json_get(root, "missing") == NULL && sb_json_get(data, "data") == NULL && sb_json_get(NULL, "x") == NULL,
       "absent keys and non-objects give NULL");
    ok(sb_json_string(data) == NULL && sb_json_number(data) == 0.0, "wrong kinds give NULL and 0");
    sb_json_array_foreach(sb_json_get(root, "model"), i, e) ok(0, "foreach over a non-array runs no iteration");
    const sb_json_value_t *n = sb_json_get(sb_json_get(root, "n"), "x");
    ok(n->len == 2 && sb_json_at(n, 0)->span == 1 && sb_json_is(sb_json_at(n, 1), SB_JSON_OBJECT), "empty containers");
    sb_json_doc_dispose(&doc);
    free(copy);

    const char dup[] = "{\"a\":1,\"a\":2}";
    parse(&doc, dup, sizeof(dup) - 1, 100, &copy);
    ok(sb_json_number(sb_json_get(sb_json_root(&doc), "a")) == 1, "a repeated key: the first counts");
    sb_json_doc_dispose(&doc);
    free(copy);

    ok(ACCEPTS("\"top\"") && ACCEPTS("0") && ACCEPTS("null") && ACCEPTS(" [ ] ") && ACCEPTS("\t{\r\n}\n"), "any value at the top");
}

static void test_refusals(void)
{
    static const char *const bad[] = {
        "",
        "   ",
        "[1,]",
        "{\"a\":1,}",
        "[1 2]",
        "{\"a\" 1}",
        "{a:1}",
        "{'a':1}",
        "[01]",
        "[-01]",
        "[1.]",
        "[.5]",
        "[-]",
        "[+1]",
        "[1e]",
        "[1e+]",
        "[0x10]",
        "[NaN]",
        "[Infinity]",
        "[1e400]",
        "[-1e400]",
        "[tru]",
        "[nul]",
        "[True]",
        "{} x",
        "[] []",
        "[\"a\\x\"]",
        "[\"\\u00g0\"]",
        "[\"\\u0000\"]",
        "[\"\\ud800\"]",
        "[\"\\udc00\"]",
        "[\"\\ud800\\u0041\"]",
        "[\"\\ud800x\"]",
        "[\"\\u12\"]",
        "[\"tab\there\"]",
        "[\"nl\nhere\"]",
        "[\"open]",
        "[\"\xc0\x80\"]",         /* an overlong NUL */
        "[\"\xed\xa0\x80\"]",     /* a surrogate in UTF-8 */
        "[\"\xf4\x90\x80\x80\"]", /* past U+10FFFF */
        "[\"\xe2\x82\"]",         /* cut short */
        "[\"\xff\"]",
        "[\"\x80\"]",
        "[/* no */ 1]",
        "[1]\x00",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        size_t len = i == sizeof(bad) / sizeof(bad[0]) - 1 ? 4 : strlen(bad[i]);
        char shown[64] = ""; /* the input, printable, for the test's name (an empty input shows as nothing) */
        size_t n = 0;
        for (size_t j = 0; j < len && n < sizeof(shown) - 5; ++j)
            n += (size_t)snprintf(shown + n, sizeof(shown) - n, bad[i][j] >= 0x20 && bad[i][j] < 0x7f ? "%c" : "\\x%02x",
                                  (unsigned char)bad[i][j]);
        ok(!accepts(bad[i], len), "refused: %s", shown);
    }
    ok(ACCEPTS("[\"\\ud83d\\ude00 \xf0\x9f\x98\x80 \xe2\x82\xac \xc3\xa9 \\/\\b\\f\\r\\t\\\"\\\\\"]"),
       "surrogate pairs, UTF-8 and every escape");
    ok(ACCEPTS("[-0, 0.0, 1E5, 1e-400, -2.5e+3, 123456789012345678901234567890]"), "the number grammar's corners");

    char deep[300];
    for (int i = 0; i < 129; ++i)
        deep[i] = '[', deep[129 + i] = ']';
    ok(accepts(deep + 1, 256), "128 levels of nesting");
    ok(!accepts(deep, 258), "not 129");

    sb_json_doc_t doc = {0};
    char *copy;
    ok(parse(&doc, "[1,2,3]", 7, 4, &copy) == 0, "max_values counts every value");
    free(copy);
    ok(parse(&doc, "[1,2,3]", 7, 3, &copy) == -1 && sb_json_root(&doc) == NULL, "one more is refused, leaving nothing");
    free(copy);
    ok(parse(&doc, "{\"a\":1}", 7, 2, &copy) == -1, "keys count as values");
    free(copy);
    sb_json_doc_dispose(&doc);
}

/* The nearest double to `s`, as the reader gives it. */
static double read_number(const char *s)
{
    sb_json_doc_t doc = {0};
    char *copy;
    double v = NAN;
    if (parse(&doc, s, strlen(s), 10, &copy) == 0)
        v = sb_json_number(sb_json_root(&doc));
    sb_json_doc_dispose(&doc);
    free(copy);
    return v;
}

static void test_numbers(void)
{
    static const char *const nums[] = {
        "0",
        "-0",
        "1",
        "-1",
        "0.1",
        "0.5",
        "-0.44721359",
        "0.0023064255",
        "1e22",
        "1e23",
        "9007199254740993",
        "123456789012345678",
        "1234567890123456789012",
        "0.000001",
        "1e-5",
        "4.9e-324",
        "2.2250738585072014e-308",
        "1.7976931348623157e308",
        "0.30000000000000004",
        "3.14159e0",
        "100000000000000000000000",
        "0.000000000000000000000000000001",
        "-1.5E-7",
        "7e-10",
    };
    int good = 1;
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); ++i) {
        double got = read_number(nums[i]), want = strtod(nums[i], NULL);
        if (memcmp(&got, &want, sizeof(got)) != 0) {
            good = 0;
            printf("# %s: got %.17g, want %.17g\n", nums[i], got, want);
        }
    }
    ok(good, "numbers convert as strtod does, sign of zero included");

    /* the fast path against strtod over many short decimals, as providers print floats */
    srand(7);
    good = 1;
    for (int i = 0; i < 100000 && good; ++i) {
        char s[48];
        int digits = 1 + rand() % 15, e = rand() % 45 - 22;
        long long m = 0;
        for (int j = 0; j < digits; ++j)
            m = m * 10 + rand() % 10;
        snprintf(s, sizeof(s), "%s%llde%d", rand() % 2 ? "-" : "", m, e);
        double got = read_number(s), want = strtod(s, NULL);
        if (memcmp(&got, &want, sizeof(got)) != 0) {
            good = 0;
            printf("# %s: got %.17g, want %.17g\n", s, got, want);
        }
    }
    ok(good, "100000 random decimals convert exactly");
}

/* Whether sb_json_format_float(f) is printf's "%.9g" of f and reads back as f. */
static int writes_like_printf(float f)
{
    char got[SB_JSON_FLOAT_MAX], want[64];
    size_t n = sb_json_format_float(got, f);
    snprintf(want, sizeof(want), "%.9g", (double)f);
    if (n != strlen(got) || strcmp(got, want) != 0 || strtof(got, NULL) != f) {
        printf("# %a: got '%s', want '%s'\n", (double)f, got, want);
        return 0;
    }
    return 1;
}

static void test_floats(void)
{
    static const float edge[] = {0.0f,        -0.0f,          1.0f,         -1.0f,         0.1f,         0.5f,         1e-4f,
                                 1e-5f,       9.99999975e-5f, 1e8f,         1e9f,          123456789.0f, 16777216.0f,  16777215.0f,
                                 FLT_MAX,     -FLT_MAX,       FLT_MIN,      1e-23f,        1e-24f,       1e-38f,       1.4e-45f,
                                 0.44721359f, -0.0023064255f, 0.999999999f, 9.9999999e-5f, 99999999.5f,  0.3333333333f};
    int good = 1;
    for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); ++i)
        good &= writes_like_printf(edge[i]);
    ok(good, "edge values print as %%.9g does");

    good = 1;
    for (int p = -149; p <= 127; ++p) /* every power of two, and its neighbours */
        for (int s = -1; s <= 1; ++s) {
            float f = ldexpf(1.0f, p);
            good &= writes_like_printf(s < 0 ? nextafterf(f, 0) : s > 0 ? nextafterf(f, INFINITY) : f);
        }
    for (int p = -45; p <= 38; ++p) { /* the floats around every power of ten, where the exponent turns */
        float f = (float)pow(10, p);
        for (int s = 0; s < 8; ++s, f = nextafterf(f, INFINITY))
            good &= writes_like_printf(f) & writes_like_printf(-f);
        f = (float)pow(10, p);
        for (int s = 0; s < 8; ++s, f = nextafterf(f, 0))
            good &= writes_like_printf(f);
    }
    ok(good, "powers of two and of ten, and their neighbours");

    uint64_t x = 88172645463325252ull; /* xorshift64: every bit pattern of a float is as likely */
    good = 1;
    for (int i = 0; i < 300000 && good; ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t bits = (uint32_t)x;
        float f;
        memcpy(&f, &bits, sizeof(f));
        if (isfinite(f))
            good &= writes_like_printf(f);
    }
    ok(good, "300000 random floats print as %%.9g does");
    good = 1;
    for (int i = 0; i < 300000 && good; ++i) { /* and the range embeddings live in */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        good &= writes_like_printf((float)((double)(x >> 11) / 9007199254740992.0 * 2 - 1) / 8);
    }
    ok(good, "300000 random embedding components print as %%.9g does");

    char out[SB_JSON_FLOAT_MAX];
    sb_json_format_float(out, NAN);
    is_str(out, "0", "NaN, which JSON cannot carry, is written as 0");
    sb_json_format_float(out, -INFINITY);
    is_str(out, "0", "so is an infinity");

    sb_buf_t b;
    sb_buf_init(&b, 1 << 20);
    float v[] = {0.25f, -1e-7f, 3.0f};
    ok(sb_json_append_floats(&b, v, 3) == 0, "a vector is appended");
    is_str(b.base, "[0.25,-1.00000001e-07,3]", "as a JSON array");
    sb_buf_reset(&b);
    ok(sb_json_append_floats(&b, v, 0) == 0, "an empty vector");
    is_str(b.base, "[]", "is []");
    sb_buf_dispose(&b);

    float big[1536];
    for (int i = 0; i < 1536; ++i)
        big[i] = (float)((i * 7919) % 2000 - 1000) / 31337.0f;
    sb_buf_init(&b, 1 << 20);
    ok(sb_json_append_floats(&b, big, 1536) == 0, "1536 dimensions, over several chunks");
    sb_json_doc_t doc = {0};
    int same = sb_json_parse(&doc, b.base, b.len, 2000) == 0 && sb_json_root(&doc)->len == 1536;
    for (int i = 0; same && i < 1536; ++i)
        same = (float)sb_json_number(sb_json_at(sb_json_root(&doc), (size_t)i)) == big[i];
    ok(same, "read back, every component is the same float");
    sb_json_doc_dispose(&doc);
    sb_buf_dispose(&b);
    sb_buf_init(&b, 100);
    ok(sb_json_append_floats(&b, big, 1536) == -1, "past the buffer's ceiling: -1");
    sb_buf_dispose(&b);
}

static uint64_t rnd_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13, rnd_state ^= rnd_state >> 7, rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* A random UTF-8 string: control characters, quotes, backslashes, multi-byte characters and plain text. */
static json_t *random_string(void)
{
    static const char *const parts[] = {"a",
                                        "hello ",
                                        "\"",
                                        "\\",
                                        "/",
                                        "\n",
                                        "\t",
                                        "\r",
                                        "\b",
                                        "\f",
                                        "\x01",
                                        "\x1f",
                                        "\x7f",
                                        "\xc3\xa9",
                                        "\xe2\x82\xac",
                                        "\xf0\x9f\x98\x80",
                                        "\xe2\x80\xa8",
                                        "<<<reference",
                                        " "};
    char s[256];
    size_t n = 0, parts_n = rnd() % 12;
    for (size_t i = 0; i < parts_n; ++i) {
        const char *p = parts[rnd() % (sizeof(parts) / sizeof(parts[0]))];
        memcpy(s + n, p, strlen(p));
        n += strlen(p);
    }
    return json_stringn(s, n);
}

static json_t *random_tree(int depth)
{
    switch (rnd() % (depth > 4 ? 6 : 8)) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(rnd() % 2);
    case 2: {
        static const json_int_t ints[] = {0, 1, -1, 200, INT64_MAX, INT64_MIN, 1730000000000};
        return json_integer(rnd() % 2 ? ints[rnd() % 7] : (json_int_t)rnd());
    }
    case 3: {
        static const double reals[] = {0.3, -0.0, 1e300, 1e-300, 0.1 + 0.2, 123456789.125, 2.5e-7, 1e21, 100.0};
        double d;
        uint64_t bits = rnd();
        memcpy(&d, &bits, sizeof(d));
        return json_real(rnd() % 2 || !isfinite(d) ? reals[rnd() % 9] : d);
    }
    case 4:
    case 5:
        return random_string();
    case 6: {
        json_t *a = json_array();
        for (uint64_t i = rnd() % 5; i > 0; --i)
            json_array_append_new(a, random_tree(depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (uint64_t i = rnd() % 5; i > 0; --i) {
            json_t *k = random_string();
            json_object_setn_new(o, json_string_value(k), json_string_length(k), random_tree(depth + 1));
            json_decref(k);
        }
        return o;
    }
    }
}

static void test_dumps(void)
{
    int same = 1;
    for (int i = 0; i < 5000 && same; ++i) {
        json_t *t = random_tree(0);
        int precision = i % 3 == 0 ? 15 : i % 3 == 1 ? 17 : 9;
        char *want = json_dumps(t, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(precision));
        char *got = sb_json_dumps(t, precision);
        same = want != NULL && got != NULL && strcmp(want, got) == 0;
        if (!same)
            printf("# want: %s\n#  got: %s\n", want, got);
        free(want);
        free(got);
        json_decref(t);
    }
    ok(same, "5000 random trees dump as json_dumps dumps them");
    int agree = 1;
    for (int i = 0; i < 20000 && agree; ++i) { /* mostly text, with now and then a byte that may break a sequence */
        char s[40];
        size_t n = rnd() % sizeof(s);
        for (size_t j = 0; j < n; ++j)
            s[j] = rnd() % 4 ? (char)(0x20 + rnd() % 0x5f) : (char)(0x80 + rnd() % 0x80);
        json_t *js = json_stringn(s, n);
        agree = sb_json_is_utf8(s, n) == (js != NULL);
        json_decref(js);
    }
    ok(agree, "sb_json_is_utf8 agrees with jansson on 20000 strings");
    static const char good[] = "pl\xc3\xa9in ascii and more than eight", bad[] = "eight ok\xed\xa0\x80";
    ok(sb_json_is_utf8(good, sizeof(good) - 1) && !sb_json_is_utf8(bad, sizeof(bad) - 1),
       "a surrogate after a whole word of ASCII is found");
    char *out = sb_json_dumps(NULL, 15);
    ok(out == NULL, "NULL dumps to NULL");
}

/* sb_json_loadb against json_loadb(JSON_REJECT_DUPLICATES): the same tree, or the same error. */
static void same_as_jansson(const char *text, const char *what)
{
    json_error_t e1, e2;
    json_t *fast = sb_json_loadb(text, strlen(text), &e1);
    json_t *slow = json_loadb(text, strlen(text), JSON_REJECT_DUPLICATES, &e2);
    if (slow != NULL)
        ok(fast != NULL && json_equal(fast, slow), "%s: the same tree", what);
    else
        ok(fast == NULL && strcmp(e1.text, e2.text) == 0 && e1.position == e2.position, "%s: the same error (%s)", what, e2.text);
    json_decref(fast);
    json_decref(slow);
}

static void test_loadb(void)
{
    same_as_jansson("{\"model\":\"gpt-4o\",\"stream\":true,\"temperature\":0.7,\"max_tokens\":256,\"n\":-0,"
                    "\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9llo \\ud83d\\ude00\"}],\"x\":null,\"e\":1e3}",
                    "a request");
    same_as_jansson("{\"a\":1,\"a\":2}", "a repeated key");
    same_as_jansson("{\"a\":{\"b\":1,\"b\":1}}", "a repeated key inside");
    same_as_jansson("{\"big\":9223372036854775807,\"small\":-9223372036854775808}", "the largest integers");
    same_as_jansson("{\"big\":9223372036854775808}", "an integer past json_int_t");
    same_as_jansson("\"a string\"", "a string at the top");
    same_as_jansson("[1,2", "a cut document");
    same_as_jansson("{\"a\":1} x", "bytes after the document");
    same_as_jansson("{\"a\":1e999}", "a real past a double");
    char deep[600];
    size_t n = 0;
    for (int i = 0; i < 200; ++i)
        deep[n++] = '[';
    for (int i = 0; i < 200; ++i)
        deep[n++] = ']';
    deep[n] = '\0';
    same_as_jansson(deep, "200 levels (past this reader's limit, within jansson's)");
}

int main(void)
{
    test_navigation();
    test_loadb();
    test_refusals();
    test_numbers();
    test_floats();
    test_dumps();
    return done_testing();
}
