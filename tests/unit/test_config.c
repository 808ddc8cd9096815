/* Unit tests for src/config.c: defaults, strict parsing, and env.example covering every setting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb/config.h"
#include "tap.h"

static char warned[512];
static int warnings;

static void on_warn(const char *message)
{
    snprintf(warned, sizeof(warned), "%s", message);
    ++warnings;
}

static void clear_env(void)
{
    size_t n;
    const sb_setting_info_t *s = sb_config_settings(&n);
    for (size_t i = 0; i < n; ++i)
        unsetenv(s[i].name);
}

int main(void)
{
    sb_config_t c;
    char err[512];

    clear_env();
    is_int(sb_config_load(&c, err, sizeof(err)), 0, "defaults load");
    is_int(sb_config_check_serving(&c, err, sizeof(err)), -1, "no inbound key and no explicit opt-out refuses to serve");
    ok(strstr(err, "SWITCHBOARD_API_KEYS") != NULL, "and names the variable");
    sb_config_dispose(&c);

    setenv("SWITCHBOARD_ALLOW_UNAUTHENTICATED", "true", 1);
    is_int(sb_config_load(&c, err, sizeof(err)), 0, "unauthenticated use when asked for");
    is_int(sb_config_check_serving(&c, err, sizeof(err)), 0, "and then it serves");
    ok(c.port == 3000 && c.max_body_bytes == 1048576 && c.sandbox, "defaults: port 3000, 1 MiB bodies, sandbox without provider");
    is_str(c.llm_base_url, "https://api.openai.com/v1", "default provider base URL");
    sb_config_dispose(&c);

    setenv("LLM_BASE_URL", "http://127.0.0.1:11434/v1/", 1);
    is_int(sb_config_load(&c, err, sizeof(err)), 0, "a keyless local provider");
    ok(!c.sandbox, "LLM_BASE_URL alone turns the sandbox off");
    is_str(c.llm_base_url, "http://127.0.0.1:11434/v1", "trailing slashes are dropped");
    sb_config_dispose(&c);

    setenv("LLM_BASE_URL", "https://api.example.com/v1/chat/completions", 1);
    is_int(sb_config_load(&c, err, sizeof(err)), -1, "a base URL that ends in /chat/completions is refused");
    ok(strstr(err, "write https://api.example.com/v1") != NULL, "saying what to write instead: %s", err);
    sb_config_dispose(&c);
    unsetenv("LLM_BASE_URL");

    setenv("LLM_CA_FILE", "/nonexistent/ca.pem", 1);
    is_int(sb_config_load(&c, err, sizeof(err)), -1, "an LLM_CA_FILE that cannot be read stops start-up");
    ok(strstr(err, "LLM_CA_FILE") != NULL && strstr(err, "/nonexistent/ca.pem") != NULL, "naming the setting and the file: %s",
       err);
    sb_config_dispose(&c);
    unsetenv("LLM_CA_FILE");

    setenv("DATABASE_URL", "postgresql://user:p%zzw@host/db", 1); /* libpq would quote the bad token */
    is_int(sb_config_load(&c, err, sizeof(err)), -1, "a DATABASE_URL libpq cannot parse stops start-up");
    ok(strstr(err, "DATABASE_URL is not a valid Postgres connection URI") != NULL && strstr(err, "zz") == NULL,
       "naming the setting, never its password: %s", err);
    sb_config_dispose(&c);
    setenv("DATABASE_URL", "postgresql://user:pw@127.0.0.1:5432/db", 1);
    is_int(sb_config_load(&c, err, sizeof(err)), 0, "a well-formed one loads (reaching it is the pool's business)");
    sb_config_dispose(&c);
    unsetenv("DATABASE_URL");

    is_str(sb_config_closest_setting("OPENAI_MODLE"), "OPENAI_MODEL", "a swapped pair of letters is one edit away");
    is_str(sb_config_closest_setting("LLM_BASEURL"), "LLM_BASE_URL", "a dropped underscore too");
    ok(sb_config_closest_setting("OPENAI_MODEL") == NULL, "a known setting has no closest other");
    ok(sb_config_closest_setting("HOME") == NULL && sb_config_closest_setting("NODE_ENV") == NULL,
       "another program's variable is not taken for a typo");
    char path[] = "/tmp/sb-test-envXXXXXX";
    int fd = mkstemp(path);
    FILE *envf = fdopen(fd, "w");
    fputs("# comment\nOPENAI_MODLE=gpt-4o\nNODE_ENV=production\nPORT=3100\n", envf);
    fclose(envf);
    is_int(sb_config_load_env_file(path, on_warn, err, sizeof(err)), 0, "an .env file with a misspelt setting loads");
    ok(warnings == 1 && strstr(warned, ":2: switchboard has no setting OPENAI_MODLE; did you mean OPENAI_MODEL?") != NULL,
       "one warning, naming the line and the closest setting: %s", warned);
    unlink(path);
    unsetenv("OPENAI_MODLE");
    unsetenv("NODE_ENV");
    unsetenv("PORT");

    setenv("SWITCHBOARD_API_KEYS", " key-aaaaaaaaaaaaaaaa , key-bbbbbbbbbbbbbbbb,,", 1);
    is_int(sb_config_load(&c, err, sizeof(err)), 0, "several inbound keys");
    ok(c.api_key_count == 2 && strcmp(c.api_keys[1], "key-bbbbbbbbbbbbbbbb") == 0, "keys are split and trimmed");
    sb_config_dispose(&c);

    setenv("SWITCHBOARD_API_KEYS", "short", 1);
    is_int(sb_config_load(&c, err, sizeof(err)), -1, "a short inbound key is refused");
    sb_config_dispose(&c);
    unsetenv("SWITCHBOARD_API_KEYS");

    const char *bad[][2] = {{"PORT", "0"},
                            {"PORT", "70000"},
                            {"PORT", "80x"},
                            {"WORKERS", "-1"},
                            {"ACCESS_LOG", "maybe"},
                            {"LLM_BASE_URL", "ftp://x"},
                            {"MAX_BODY_BYTES", ""},
                            {"RETELL_SECRET", "fifteen-chars-x"},
                            {"RETELL_SECRET", "a-long-enough-secret&x=1"},
                            {"RETELL_SECRET", "a long enough secret, with spaces"},
                            {"RETELL_MAX_MESSAGE_BYTES", "1024"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        setenv(bad[i][0], bad[i][1], 1);
        int rc = sb_config_load(&c, err, sizeof(err));
        if (bad[i][1][0] == '\0')
            ok(rc == 0, "an empty %s means its default", bad[i][0]);
        else
            ok(rc == -1 && strstr(err, bad[i][0]) != NULL, "%s=%s is refused, naming the variable", bad[i][0], bad[i][1]);
        sb_config_dispose(&c);
        unsetenv(bad[i][0]);
    }

    setenv("RETELL_SECRET", "Retell-secret_0123.456~789", 1);
    is_int(sb_config_load(&c, err, sizeof(err)), 0, "a RETELL_SECRET of the characters a URL carries as they are");
    sb_config_dispose(&c);
    unsetenv("RETELL_SECRET");

    /* env.example documents every setting, with its default. */
    FILE *fp = fopen(SB_SOURCE_ROOT "/env.example", "r");
    ok(fp != NULL, "env.example exists");
    char text[65536] = "";
    size_t len = fp ? fread(text, 1, sizeof(text) - 1, fp) : 0;
    text[len] = '\0';
    if (fp)
        fclose(fp);
    size_t n;
    const sb_setting_info_t *s = sb_config_settings(&n);
    for (size_t i = 0; i < n; ++i) {
        char line[256];
        snprintf(line, sizeof(line), "%s=%s\n", s[i].name, s[i].default_value ? s[i].default_value : "");
        ok(strstr(text, line) != NULL, "env.example lists %s with its default", s[i].name);
    }
    return done_testing();
}
