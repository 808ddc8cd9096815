/*
 * GET /v1/models: the models a caller may name, in OpenAI's list shape
 * ({"object":"list","data":[{id, object:"model", created, owned_by}]}).
 * Loop thread only.
 */
#ifndef SB_MODELS_H
#define SB_MODELS_H

#include <h2o.h>
#include <jansson.h>

#include "route.h"
#include "sb/config.h"

/*
 * Appends the models switchboard answers for to `data` (a JSON array,
 * borrowed): the default model (OPENAI_MODEL), the model names the provider
 * table routes by name (a prefix such as claude-* names no model, and is left
 * out), and switchboard-sandbox when the sandbox answers a route.
 */
void sb_models_list(const sb_config_t *config, const sb_routes_t *routes, json_t *data);
/* Answers the request (bearer key required, as for turns). */
void sb_models_handle(h2o_req_t *req);

#endif
