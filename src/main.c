/*
 * switchboard's entry point: reads the settings, starts one worker per CPU it
 * may use (affinity and cgroup quota), and on SIGTERM/SIGINT stops accepting,
 * lets open streams finish (up to the drain deadline) and exits 0.
 */
#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agents.h"
#include "auth.h"
#include "conversation.h"
#include "cors.h"
#include "forget.h"
#include "http.h"
#include "instructions.h"
#include "limit.h"
#include "llm.h"
#include "metrics.h"
#include "request.h"
#include "route.h"
#include "migrate.h"
#include "worker.h"
#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/log.h"
#include "session_token.h"
#include "sb/rag.h"
#include "sb/tools.h"

/*
 * PORT's TLS context from TLS_CERT_FILE and TLS_KEY_FILE: TLS 1.2 and up,
 * HTTP/2 or HTTP/1.1 by ALPN. NULL with err when a file cannot be used.
 */
static SSL_CTX *tls_context(const sb_config_t *c, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot set up TLS");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    const char *bad = NULL;
    if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert_file) != 1)
        bad = "TLS_CERT_FILE: cannot read a PEM certificate chain from it";
    else if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key_file, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1)
        bad = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH || ERR_peek_last_error() == 0
                  ? "TLS_KEY_FILE is not the key of the certificate in TLS_CERT_FILE"
                  : "TLS_KEY_FILE: cannot read a PEM private key from it";
    ERR_clear_error(); /* OpenSSL's own words can quote the files: the message above names the setting instead */
    if (bad != NULL) {
        snprintf(err, errlen, "%s", bad);
        SSL_CTX_free(ctx);
        return NULL;
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_alpn_protocols);
    return ctx;
}

static void usage(FILE *out)
{
    fputs("usage: switchboard [--help | --version | --settings]\n"
          "       switchboard migrate [--seed]   apply the database schema (and the demo data)\n"
          "       switchboard forget --customer-id N | --email ADDRESS | --conversation ID\n"
          "                                      erase one caller's stored conversations, messages and events\n"
          "\n"
          "Serves OpenAI-compatible chat completions for voice agents on PORT.\n"
          "Settings come from the environment and an optional .env file\n"
          "(SWITCHBOARD_ENV_FILE); --settings lists them with their defaults.\n",
          out);
}

static void print_settings(void)
{
    size_t n;
    const sb_setting_info_t *s = sb_config_settings(&n);
    for (size_t i = 0; i < n; ++i)
        printf("# %s\n%s%s=%s\n\n", s[i].help, s[i].default_value ? "" : "# ", s[i].name,
               s[i].default_value ? s[i].default_value : "");
}

/* A cgroup CPU limit in whole CPUs (rounded up), or 0 when there is none: cgroup v2's cpu.max, else v1's CFS quota. */
static long cgroup_cpus(void)
{
    long long quota = -1, period = 0;
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f != NULL) {
        char q[32];
        if (fscanf(f, "%31s %lld", q, &period) == 2 && strcmp(q, "max") != 0)
            quota = strtoll(q, NULL, 10);
        fclose(f);
    } else if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r")) != NULL) {
        if (fscanf(f, "%lld", &quota) != 1)
            quota = -1;
        fclose(f);
        if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r")) != NULL) {
            if (fscanf(f, "%lld", &period) != 1)
                period = 0;
            fclose(f);
        }
    }
    return quota > 0 && period > 0 ? (long)((quota + period - 1) / period) : 0;
}

/* The CPUs this process may use: its affinity mask, capped by a cgroup quota (a container's CPU limit). */
static unsigned usable_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        n = CPU_COUNT(&set);
    long quota = cgroup_cpus();
    if (quota > 0 && quota < n)
        n = quota;
    return n > 0 ? (unsigned)n : 1;
}

static void warn_setting(const char *message)
{
    sb_log_warn("%s", message);
}

int main(int argc, char **argv)
{
    int forget = argc > 1 && strcmp(argv[1], "forget") == 0;
    int migrate = argc > 1 && strcmp(argv[1], "migrate") == 0;
    int seed = migrate && argc > 2 && strcmp(argv[2], "--seed") == 0;
    for (int i = 1 + migrate + seed; i < argc && !forget; ++i) {
        if (strcmp(argv[i], "--version") == 0) {
            puts("switchboard " SB_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "--settings") == 0) {
            print_settings();
            return 0;
        }
        usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr);
        return strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }

    char err[512];
    const char *env_file = getenv("SWITCHBOARD_ENV_FILE");
    if (sb_config_load_env_file(env_file && *env_file ? env_file : ".env", warn_setting, err, sizeof(err)) != 0) {
        sb_log_error("%s", err);
        return 2;
    }
    static sb_config_t config;
    if (sb_config_load(&config, err, sizeof(err)) != 0) {
        sb_log_error("configuration: %s", err);
        return 2;
    }
    if (forget) {
        int rc = sb_forget_run(&config, argc - 2, argv + 2, stdout, stderr);
        sb_config_dispose(&config);
        return rc;
    }
    if (migrate) {
        int rc = sb_migrate_run(&config, seed, stderr);
        sb_config_dispose(&config);
        return rc;
    }
    if (sb_config_check_serving(&config, err, sizeof(err)) != 0 || sb_tools_init(&config, err, sizeof(err)) != 0 ||
        sb_rag_check(&config, err, sizeof(err)) != 0 || sb_cors_check(&config, err, sizeof(err)) != 0 ||
        sb_agents_init(&config, err, sizeof(err)) != 0 || sb_instructions_init(&config, err, sizeof(err)) != 0) {
        sb_log_error("configuration: %s", err);
        return 2;
    }
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        sb_log_error("cannot initialise libsodium or libcurl");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    sb_limit_raise();
    sb_agent_route_init();
    sb_auth_init(&config);
    sb_chat_request_init(&config);
    sb_conversation_init(&config);
    sb_session_token_init(&config);

    static sb_server_t server;
    server.config = &config;
    if (sb_routes_init(&server.routes, &config, err, sizeof(err)) != 0) {
        sb_log_error("configuration: %s", err);
        return 2;
    }
    server.provider = &sb_provider_routed;

    h2o_config_init(&server.h2o);
    server.h2o.server_name = h2o_iovec_init(H2O_STRLIT("switchboard"));
    /*
     * h2o refuses a body past its own limit before switchboard sees it, and
     * over HTTP/2 it does so with a stream reset (REFUSED_STREAM, which
     * clients retry) rather than an answer. So h2o reads bodies somewhat past
     * MAX_BODY_BYTES and switchboard answers those with its 413, on both
     * protocols; only a body past this second, hard limit is cut by h2o.
     */
    size_t slack = config.max_body_bytes * 3 < (16u << 20) ? config.max_body_bytes * 3 : 16u << 20;
    server.h2o.max_request_entity_size = config.max_body_bytes + slack;
    /* h2o's fixed 10 s would cut a large body on a slow uplink (900 KB at 60 KB/s takes 15 s) */
    server.h2o.http1.req_timeout = config.request_read_timeout_ms;
    sb_http_register(h2o_config_register_host(&server.h2o, h2o_iovec_init(H2O_STRLIT("default")), 65535));

    server.nworkers = config.workers ? config.workers : usable_cpus();
    server.workers = sb_calloc(server.nworkers, sizeof(*server.workers));

    /* Workers inherit this mask: only the main thread takes the shutdown signals. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    if (config.metrics)
        server.metrics = sb_metrics_create(server.nworkers);
    if (config.tls_cert_file != NULL && (server.tls = tls_context(&config, err, sizeof(err))) == NULL) {
        sb_log_error("configuration: %s", err);
        return 2;
    }
    struct {
        const char *name;
        unsigned port;
    } ports[] = {{"PORT", config.port}, {"METRICS_PORT", server.metrics != NULL ? config.metrics_port : 0}};
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); ++i) {
        int taken = ports[i].port != 0 ? sb_worker_check_port(&config, ports[i].port) : 0;
        if (taken == -EADDRINUSE) {
            sb_log_error("cannot listen on %s:%u: another process already serves %s %u (stop it, or set %s)", config.host,
                         ports[i].port, ports[i].name, ports[i].port, ports[i].name);
            return 1;
        }
        if (taken != 0) {
            sb_log_error("cannot listen on %s:%u (HOST, %s): %s", config.host, ports[i].port, ports[i].name, strerror(-taken));
            return 1;
        }
    }
    for (unsigned i = 0; i < server.nworkers; ++i) {
        int rc = sb_worker_init(&server.workers[i], &server, i);
        if (rc != 0) {
            sb_log_error("cannot listen on %s (HOST, PORT, METRICS_PORT): %s", config.host, strerror(-rc));
            return 1;
        }
    }
    for (unsigned i = 0; i < server.nworkers; ++i)
        pthread_create(&server.workers[i].thread, NULL, sb_worker_run, &server.workers[i]);

    if (config.api_key_count == 0)
        sb_log_warn("SWITCHBOARD_ALLOW_UNAUTHENTICATED is on: anyone who can reach port %u can use the model", config.port);
    if (config.sandbox)
        sb_log_warn("no provider configured (OPENAI_API_KEY, LLM_BASE_URL): the offline sandbox model answers every turn");
    const sb_route_t *dflt = sb_routes_match(&server.routes, "*");
    sb_log_info("switchboard %s listening on %s://%s:%u with %u workers; provider %s%s%s", SB_VERSION,
                server.tls ? "https" : "http", config.host, config.port, server.nworkers, dflt->to.provider,
                dflt->to.base_url ? " at " : "", dflt->to.base_url ? dflt->to.base_url : "");
    if (server.routes.n > 1 || server.routes.nfallback > 0)
        sb_routes_log(&server.routes);
    if (server.metrics != NULL)
        sb_log_info("metrics at /metrics on port %u%s", config.metrics_port ? config.metrics_port : config.port,
                    config.metrics_token ? " (METRICS_TOKEN required)" : "");

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    sb_log_info("received %s: draining (up to %u ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT", config.drain_timeout_ms);
    for (unsigned i = 0; i < server.nworkers; ++i)
        sb_worker_request_drain(&server.workers[i]);
    for (unsigned i = 0; i < server.nworkers; ++i)
        pthread_join(server.workers[i].thread, NULL);
    sb_log_info("stopped");
    return 0;
}
