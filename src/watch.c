/*
 * A turn's observers and its access-log line, whatever channel carried it.
 */
#include <stdio.h>
#include <string.h>

#include "respond.h"
#include "sb/rag.h"
#include "watch.h"

static double ms_since(uint64_t from_ns, uint64_t to_ns)
{
    return (double)(to_ns - from_ns) / 1e6;
}

static void on_recorded_done(sb_sink_t *sink, const sb_turn_end_t *end)
{
    sb_turn_watch_t *tw = H2O_STRUCT_FROM_MEMBER(sb_turn_watch_t, recorder, sink);
    if (tw->end == NULL)
        tw->end = end->how;
    tw->has_usage = end->has_usage;
    tw->prompt_tokens = end->prompt_tokens;
    tw->completion_tokens = end->completion_tokens;
}

static const sb_sink_ops_t recorder_ops = {
    .name = "access-log",
    .live = 0,     /* an observer writes nothing */
    .model = NULL, /* the channel's sink keeps it */
    .delta = NULL,
    .tool_started = NULL,
    .tool_finished = NULL,
    .retrieval = NULL, /* read from the turn when the line is written */
    .done = on_recorded_done,
    .agent = NULL, /* read from the turn when the line is written */
};

sb_sink_t *sb_turn_watch_start(sb_turn_watch_t *tw, sb_worker_t *w, const sb_chat_request_t *creq, const char *route)
{
    memset(tw, 0, sizeof(*tw));
    tw->w = w;
    tw->t_start = uv_hrtime();
    snprintf(tw->route, sizeof(tw->route), "%s", route);
    memcpy(tw->request_id, creq->request_id, sizeof(tw->request_id));
    snprintf(tw->model, sizeof(tw->model), "%s", creq->model);
    tw->recorder.ops = &recorder_ops;
    if (w->server->metrics != NULL) {
        sb_metrics_turn_start(&tw->metrics, sb_routes_match(&w->server->routes, creq->model)->to.provider,
                              sb_rag_backend_name(w->config));
        tw->recorder.next = &tw->metrics.super;
    }
    sb_eventlog_turn_start(&tw->eventlog, w->eventlog, creq);
    if (tw->eventlog.record != NULL) /* last in the chain: the access log and metrics hear done first */
        (tw->recorder.next != NULL ? &tw->metrics.super : &tw->recorder)->next = &tw->eventlog.super;
    return &tw->recorder;
}

void sb_turn_watch_forget(sb_turn_watch_t *tw, sb_turn_t *turn)
{
    tw->retrieval = sb_turn_retrieval(turn);
    tw->shadowed = sb_turn_request(turn)->shadowed;
    tw->agent = *sb_turn_agent(turn);
}

void sb_turn_watch_log(sb_turn_watch_t *tw, const sb_turn_written_t *written)
{
    if (tw->logged)
        return;
    char shadowed[512];
    sb_tools_names(tw->shadowed, shadowed, sizeof(shadowed));
    const sb_agent_decision_t *d = &tw->agent;
    sb_access_t a = {
        .request_id = tw->request_id,
        .method = written->status == 101 ? "GET" : "POST",
        .route = tw->route,
        .model = written->model != NULL && written->model[0] ? written->model : tw->model,
        .status = written->status ? written->status : 499,
        .ttfb_ms = written->t_first ? ms_since(tw->t_start, written->t_first) : -1,
        .total_ms = ms_since(tw->t_start, uv_hrtime()),
        .bytes = written->bytes,
        .prompt_tokens = tw->has_usage ? tw->prompt_tokens : -1,
        .completion_tokens = tw->has_usage ? tw->completion_tokens : -1,
        .end = tw->end ? tw->end : "client_gone",
        .retrieval = tw->retrieval,
        .shadowed = shadowed[0] ? shadowed : NULL,
        .agent = d->agent != NULL ? d->agent->name : NULL,
        .agent_from = d->previous != NULL && d->previous != d->agent ? d->previous->name : NULL,
        .routed_by = d->agent != NULL ? sb_routed_by_name(d->routed_by) : NULL,
        .strategy = d->agent != NULL ? sb_strategy_name(d->strategy) : NULL,
        .router = d->agent != NULL ? d->router : NULL,
        .router_ms = d->router_ms,
        .worker = tw->w->id,
    };
    sb_access_log(tw->w->config->access_log, &a);
    sb_metrics_request(a.route, a.status, a.end);
    sb_metrics_turn_finish(&tw->metrics);
    tw->logged = 1;
}

void sb_turn_watch_dispose(sb_turn_watch_t *tw)
{
    sb_eventlog_turn_dispose(&tw->eventlog);
}
