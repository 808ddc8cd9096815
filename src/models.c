/*
 * The model list (models.h). `created` is 0: switchboard knows no creation
 * date for a provider's model, and a made-up one would change from call to
 * call.
 */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "models.h"
#include "respond.h"
#include "worker.h"

static void add(json_t *data, const char *id)
{
    size_t i;
    json_t *m;
    json_array_foreach(data, i, m) if (strcmp(json_string_value(json_object_get(m, "id")), id) == 0) return;
    json_array_append_new(
        data, json_pack("{s:s, s:s, s:I, s:s}", "id", id, "object", "model", "created", (json_int_t)0, "owned_by", "switchboard"));
}

void sb_models_list(const sb_config_t *config, const sb_routes_t *routes, json_t *data)
{
    if (config->default_model != NULL && config->default_model[0] != '\0')
        add(data, config->default_model);
    for (size_t i = 0; i < routes->n; ++i) {
        const char *p = routes->v[i].pattern;
        if (routes->v[i].to.wire == NULL)
            add(data, "switchboard-sandbox");
        else if (p[0] != '\0' && p[strlen(p) - 1] != '*')
            add(data, p);
    }
}

void sb_models_handle(h2o_req_t *req)
{
    sb_worker_t *w = sb_worker_of(req);
    ssize_t hi = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (!sb_auth_check(hi >= 0 ? req->headers.entries[hi].value.base : NULL, hi >= 0 ? req->headers.entries[hi].value.len : 0)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        sb_worker_answer(req, SB_E_UNAUTHORIZED, NULL, NULL, NULL);
        return;
    }
    json_t *data = json_array();
    sb_models_list(w->config, &w->server->routes, data);
    json_t *list = json_pack("{s:s, s:o}", "object", "list", "data", data);
    char *text = json_dumps(list, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(list);
    sb_worker_answer(req, SB_OK, NULL, NULL, h2o_strdup(&req->pool, text, strlen(text)).base);
    free(text);
}
