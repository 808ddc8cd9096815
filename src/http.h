/*
 * The HTTP surface: the route table and the filters around it (ambiguous
 * body lengths, the 413 h2o answers by itself). Handlers run on the worker's
 * loop thread.
 */
#ifndef SB_HTTP_H
#define SB_HTTP_H

#include <h2o.h>

#include "worker.h"

/* Registers switchboard's handler (and the error-body filter) on `hostconf`. */
void sb_http_register(h2o_hostconf_t *hostconf);

#endif
