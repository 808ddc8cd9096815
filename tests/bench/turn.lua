-- wrk script for the throughput part of tests/bench/run: POSTs one chat turn
-- per request (body from $BENCH_BODY_FILE, bearer key $BENCH_KEY) and counts
-- the responses that are 200 and end with the SSE [DONE] event, or with
-- BENCH_EXPECT=json (a stream:false turn) hold one chat.completion.
-- done() prints one line "BENCH_JSON {...}" that relay.mjs parses.
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  bad = 0
end

local tail = "data: [DONE]\n\n"
local json = os.getenv("BENCH_EXPECT") == "json"

function response(status, headers, body)
  local whole = body ~= nil and (json and body:find('"object":"chat.completion"', 1, true) ~= nil or
                                 not json and body:sub(-#tail) == tail)
  if status == 200 and whole then
    ok = ok + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local n_ok, n_bad = 0, 0
  for _, t in ipairs(threads) do
    n_ok = n_ok + t:get("ok")
    n_bad = n_bad + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"ok":%d,"bad":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_p50_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, n_ok, n_bad,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
