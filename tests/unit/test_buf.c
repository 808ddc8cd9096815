/* Unit tests for src/buf.c: the ceiling and JSON escaping. */
#include <stdlib.h>

#include "sb/buf.h"
#include "tap.h"

int main(void)
{
    sb_buf_t b;
    sb_buf_init(&b, 8);
    is_int(sb_buf_append(&b, "12345678", 8), 0, "append up to the ceiling");
    is_int(sb_buf_append(&b, "9", 1), -1, "one byte past the ceiling fails");
    is_int(b.len, 8, "a failed append leaves the buffer as it was");
    sb_buf_consume(&b, 3);
    is_str(b.base, "45678", "consume drops the front");
    is_int(sb_buf_appendf(&b, "%d%d%d%d", 1, 2, 3, 4), -1, "appendf past the ceiling fails");
    sb_buf_dispose(&b);

    sb_buf_init(&b, 1024);
    sb_buf_append_json_escaped(&b, "a\"b\\c\n\t\x01\xc3\xa9", 10);
    is_str(b.base, "a\\\"b\\\\c\\n\\t\\u0001\xc3\xa9", "json escaping of quotes, controls, and UTF-8 kept as is");
    sb_buf_dispose(&b);

    sb_buf_init(&b, 6);
    sb_buf_appendz(&b, "ab");
    is_int(sb_buf_append_json_escaped(&b, "\"\"\"", 3), -1, "escaping past the ceiling fails");
    is_str(b.base, "ab", "and leaves no half-escaped bytes");
    sb_buf_dispose(&b);

    sb_buf_init(&b, 8);
    sb_buf_append_json_string(&b, "a\n", 2);
    sb_buf_append_json_string(&b, NULL, 0);
    is_str(b.base, "\"a\\n\"\"\"", "a JSON string is quoted and escaped; none is an empty one");
    is_int(sb_buf_append_json_string(&b, "xy", 2), -1, "a string past the ceiling fails");
    is_str(b.base, "\"a\\n\"\"\"", "and leaves no opening quote behind");
    sb_buf_dispose(&b);

    sb_buf_init(&b, 1 << 20);
    char big[1000];
    memset(big, 'x', sizeof(big));
    for (int i = 0; i < 1000; ++i)
        sb_buf_append(&b, big, sizeof(big));
    is_int(b.len, 1000000, "grows geometrically to a large size");
    sb_buf_dispose(&b);
    return done_testing();
}
