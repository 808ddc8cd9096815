/* Unit tests for src/speech.c: what the sandbox model says, made plain, and the sentence it picks. Pure: text in, text out. */
#include <stdlib.h>
#include <string.h>

#include "../../src/speech.h"
#include "tap.h"

/* The plain sentences of `md`, one a line, as a new string. */
static char *plain(const char *md)
{
    sb_buf_t b;
    sb_buf_init(&b, 1 << 16);
    sb_speech_plain(&b, md, strlen(md));
    sb_buf_append(&b, "", 1);
    return b.base;
}

static char *best(const char *md, const char *question)
{
    char *text = plain(md);
    sb_str_t s = sb_speech_best_sentence(text, strlen(text), question);
    char *out = s.base ? strndup(s.base, s.len) : NULL;
    free(text);
    return out;
}

static void test_plain(void)
{
    char *s = plain("## If your refund hasn't arrived\n\n1. **Check the order status.** If it still says \"returned\", wait.\n"
                    "2. Count _business_ days from the `refund` date\n- See [the Returns page](https://example.com/returns) "
                    "or ![a photo](x.png) of ~~it~~.\n> Quoted words here\n\n---\n```\ncode line\n```\n<br>After a tag. "
                    "Kettle & Co. gift cards work. Use get_order_status:\n");
    is_str(s,
           "Check the order status.\nIf it still says \"returned\", wait.\nCount business days from the refund date.\n"
           "See the Returns page or a photo of it.\nQuoted words here.\nAfter a tag.\nKettle & Co. gift cards work.\n"
           "Use get_order_status.\n",
           "headings, list markers, emphasis, code, links, quotes, rules and code blocks are not said");
    free(s);
    s = plain("| Payment method | Time to appear |\n|---|:--:|\n| Card (Visa, Mastercard) | 5 to 10 business days |\n"
              "| Kettle & Co. gift card | Instant, added back |\n");
    is_str(s, "Card (Visa, Mastercard): 5 to 10 business days.\nKettle & Co. gift card: Instant, added back.\n",
           "a table row is said as its cells; the header row is not");
    free(s);
    sb_buf_t b;
    sb_buf_init(&b, 30);
    ok(sb_speech_plain(&b, "First sentence here. Second sentence is longer.", 47) == -1, "a full buffer is reported");
    ok(b.len == strlen("First sentence here.\n") && memcmp(b.base, "First sentence here.\n", b.len) == 0,
       "and what fit ends at a whole sentence");
    sb_buf_dispose(&b);
    s = plain("****\n|\n| |\n- \n1.\n\xE2\x80\x99\n");
    is_str(s, "", "lines of symbols alone say nothing");
    free(s);
}

static void test_best(void)
{
    const char *refunds = "Refunds go back to the payment method used for the order. The time counts from the day the refund is "
                          "issued.\n\n| Payment method | Time to appear |\n|---|---|\n| Credit or debit card | 5 to 10 business "
                          "days |\n| PayPal | 3 to 5 business days |\n";
    char *s = best(refunds, "how long do refunds take?");
    is_str(s, "Credit or debit card: 5 to 10 business days.", "\"how long\" prefers a sentence stating a duration");
    free(s);
    s = best(refunds, "how many days for a PayPal refund?");
    is_str(s, "PayPal: 3 to 5 business days.", "then the one with most of the question's words");
    free(s);
    s = best(refunds, "where do refunds go?");
    is_str(s, "Refunds go back to the payment method used for the order.", "without a duration asked, words decide");
    free(s);
    s = best("One. Two. Three.", "nothing in common");
    is_str(s, "One.", "no match: the first sentence");
    free(s);
    ok(sb_speech_best_sentence("", 0, "anything").base == NULL, "no sentence, none picked");
}

static void test_names_tool(void)
{
    ok(sb_speech_names_tool("What's the weather in Paris?", "get_weather", 11), "a name's word names it");
    ok(sb_speech_names_tool("call get_weather now", "get_weather", 11), "the name itself names it");
    ok(sb_speech_names_tool("I'd like to book flights", "bookFlight", 10), "camelCase words, stemmed");
    ok(!sb_speech_names_tool("I'd like to book a hotel", "book_flight", 11), "every word of the name must be said");
    ok(sb_speech_names_tool("please get it", "get", 3), "a name of a generic word alone is named by itself");
    ok(!sb_speech_names_tool("please get it", "get_", 4), "a name of no words is named only by itself");
    ok(!sb_speech_names_tool("anything", "", 0), "an empty name is never named");
    char big[200];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ok(!sb_speech_names_tool(big, big, strlen(big)), "a name past 64 bytes is never named");
}

int main(void)
{
    test_plain();
    test_best();
    test_names_tool();
    return done_testing();
}
