// The measuring half of tests/bench/run (which starts the processes and passes
// their ports and pids in the environment). Three paths to the same fake
// upstream are measured in one run, interleaved so machine noise hits them alike:
//   direct       client → fake upstream
//   nginx        client → nginx (proxy_buffering off, keep-alive upstream) → fake upstream
//   switchboard  client → switchboard → fake upstream
// Parts: memory (open streams held by switchboard), latency (time to the first
// content token, full stream time), throughput (wrk, concurrency 1 and 50).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pct, cpuMs, reapedChildrenCpuMs, childPids, machineCpuMs, voiceTurnBody } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const num = (name, dflt) => (env[name] !== undefined && env[name] !== '' ? Number(env[name]) : dflt);

const CFG = {
  turns: num('BENCH_TURNS', 2000), // measured latency turns per path and scenario
  warmupTurns: num('BENCH_WARMUP_TURNS', 50),
  tpSeconds: num('BENCH_TP_SECONDS', 1), // wrk run length per path, level and round
  tpRounds: num('BENCH_TP_ROUNDS', 8),
  tpLevels: [1, 50],
  streams: num('BENCH_STREAMS', 200),
  holdMs: 2000, // how long the open streams are held while CPU is sampled
  deadlineS: num('BENCH_DEADLINE_S', 280),
  workers: num('BENCH_WORKERS', 2),
};

const KEY = env.BENCH_KEY;
const PATHS = [
  { name: 'direct', port: Number(env.BENCH_UPSTREAM_PORT) },
  { name: 'nginx', port: Number(env.BENCH_NGINX_PORT) },
  { name: 'switchboard', port: Number(env.BENCH_SB_PORT) },
];
const PID = { fake: Number(env.BENCH_FAKE_PID), nginx: Number(env.BENCH_NGINX_PID), sb: Number(env.BENCH_SB_PID) };
const FILE = 'openai_chat_content_usage_stream.sse';
const ROUTE = '/v1/chat/completions';

// A run never outlives its deadline, whatever hangs.
const children = new Set();
const deadline = setTimeout(() => {
  console.error(`[bench] deadline of ${CFG.deadlineS} s passed; giving up`);
  for (const c of children) c.kill('SIGKILL');
  process.exit(2);
}, CFG.deadlineS * 1000);
deadline.unref();
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const c of children) c.kill('SIGKILL');
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- request bodies ------------------------------------------------------------------------------

const WORDS = 'Sure, I can help with that. Your table for four is booked at seven tonight, and I sent the confirmation to your phone.';
const WORDS_HOLD = 'one two three four five six seven eight nine ten';

const scen = (params) => 'fake?' + new URLSearchParams(params).toString();
const BODY_TEXT = Buffer.from(voiceTurnBody(scen({ text: WORDS })));
const BODY_JSON = Buffer.from(voiceTurnBody(scen({ text: WORDS }), false)); // stream:false: one chat.completion back
const BODY_FILE = Buffer.from(voiceTurnBody(scen({ file: FILE })));
const BODY_HOLD = Buffer.from(voiceTurnBody(scen({ text: WORDS_HOLD, pace_ms: '400' })));

// The content each scenario must deliver, whatever the path.
function contentOf(sseText) {
  let content = '';
  for (const block of sseText.split(/\r?\n\r?\n/)) {
    const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.replace(/^data: ?/, '')).join('\n');
    if (!data || data === '[DONE]') continue;
    try {
      content += JSON.parse(data).choices?.[0]?.delta?.content ?? '';
    } catch {
      return null;
    }
  }
  return content;
}
const EXPECT_TEXT = WORDS;
const EXPECT_FILE = contentOf(fs.readFileSync(path.join(env.BENCH_FIXTURES, FILE), 'utf8'));

// --- one streamed turn -----------------------------------------------------------------------------

// The first SSE event carrying non-empty "content" (the role chunk's "content":"" does not count).
const CONTENT_RE = /"content":"[^"]/;

function headersFor(body) {
  return { 'content-type': 'application/json', 'content-length': String(body.length), authorization: `Bearer ${KEY}` };
}
const HEADERS_TEXT = headersFor(BODY_TEXT);
const HEADERS_FILE = headersFor(BODY_FILE);
const HEADERS_HOLD = headersFor(BODY_HOLD);

/** One POST; resolves {status, ttft, total, body} (ms since the request was made), or {error}. */
function turn(p, agent, body, headers, { onFirstData, sockets } = {}) {
  return new Promise((resolve) => {
    let tFirst = 0;
    let tail = '';
    const chunks = [];
    const t0 = performance.now();
    const req = http.request({ host: '127.0.0.1', port: p.port, method: 'POST', path: ROUTE, agent, headers }, (res) => {
      res.on('data', (d) => {
        if (tFirst === 0) {
          const s = tail + d.toString('latin1');
          if (CONTENT_RE.test(s)) tFirst = performance.now();
          else tail = s.slice(-32);
        }
        chunks.push(d);
        if (chunks.length === 1 && onFirstData) onFirstData(req, res);
      });
      res.on('end', () => {
        const t1 = performance.now();
        resolve({ status: res.statusCode, ttft: tFirst ? tFirst - t0 : NaN, total: t1 - t0, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (error) => resolve({ error }));
      res.on('aborted', () => resolve({ error: new Error('aborted') }));
    });
    if (sockets) req.once('socket', (sock) => sockets.add(sock));
    req.setTimeout(15000, () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ error }));
    req.end(body);
  });
}

function check(r, expect) {
  if (r.error) return `error: ${r.error.message}`;
  if (r.status !== 200) return `status ${r.status}: ${r.body.slice(0, 200)}`;
  if (!r.body.endsWith('data: [DONE]\n\n')) return 'stream does not end with data: [DONE]';
  const c = contentOf(r.body);
  if (c !== expect) return `content differs: ${JSON.stringify(c)?.slice(0, 120)}`;
  if (!(r.ttft > 0)) return 'no content event';
  return null;
}

// --- process figures -------------------------------------------------------------------------------

function procStatus(pid) {
  const out = {};
  for (const line of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const m = /^(VmRSS|RssAnon|VmHWM|Threads):\s+(\d+)/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out; // KiB, except Threads
}
const cpuUs = (pid) => cpuMs(pid) * 1000;
/** CPU time of this process's reaped children: wrk's, once it has exited. */
const childrenCpuUs = () => reapedChildrenCpuMs() * 1000;
const nginxWorkers = () => childPids(PID.nginx);
function cpuOf(which) {
  if (which === 'nginx') return [PID.nginx, ...nginxWorkers()].reduce((a, p) => a + cpuUs(p), 0);
  return cpuUs(PID[which]);
}
function rssOf(which) {
  if (which === 'nginx') return nginxWorkers().reduce((a, p) => a + procStatus(p).VmRSS, 0);
  return procStatus(PID[which]).VmRSS;
}
/**
 * TCP connections to or from `port` now in TIME_WAIT, as a set of address pairs. A
 * connection to the fake upstream shows up here once it has been closed, so the
 * entries that appear during a run count the upstream connections a proxy let go of.
 */
function timeWaitOf(port) {
  const hex = ':' + port.toString(16).toUpperCase().padStart(4, '0');
  const set = new Set();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try { text = fs.readFileSync(f, 'utf8'); } catch { continue; }
    for (const line of text.split('\n')) {
      const c = line.trim().split(/\s+/);
      if (c[3] === '06' && (c[1].endsWith(hex) || c[2].endsWith(hex))) set.add(`${c[1]}-${c[2]}`);
    }
  }
  return set;
}
const newIn = (before, after) => [...after].filter((x) => !before.has(x)).length;
/** Busy CPU time of the whole machine (all cores, µs). */
const machineBusyUs = () => machineCpuMs().busy * 1000;
let wrkCpuTotalUs = 0; // every wrk run adds its CPU time here
/** CPU time of everything this benchmark runs: servers, this client, wrk. */
function ourCpuUs() {
  const self = process.cpuUsage();
  return cpuOf('fake') + cpuOf('nginx') + cpuOf('sb') + self.user + self.system + wrkCpuTotalUs;
}
const fdCount = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length;
function alive(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) [ZX] /.test(s);
  } catch {
    return false;
  }
}
function assertAlive() {
  for (const [k, pid] of Object.entries(PID)) if (!alive(pid)) throw new Error(`${k} (pid ${pid}) is not running`);
}

// --- statistics --------------------------------------------------------------------------------------

function stats(xs) {
  const s = xs.filter((x) => Number.isFinite(x));
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  const us = (ms) => Math.round(ms * 1000);
  return { n: s.length, p50_us: us(pct(s, 50)), p90_us: us(pct(s, 90)), p99_us: us(pct(s, 99)), max_us: us(pct(s, 100)), mean_us: us(mean) };
}
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : Math.round((s[m - 1] + s[m]) / 2);
}
const ratio = (a, b) => Math.round((a / b) * 100) / 100;

// --- phases ------------------------------------------------------------------------------------------

async function waitReady() {
  const t = Date.now();
  for (;;) {
    try {
      const urls = [
        `http://127.0.0.1:${PATHS[0].port}/_health`,
        `http://127.0.0.1:${PATHS[1].port}/_health`,
        `http://127.0.0.1:${PATHS[2].port}/ping`,
      ];
      const rs = await Promise.all(urls.map((u) => fetch(u)));
      if (rs.every((r) => r.ok)) return;
    } catch { /* not yet */ }
    assertAlive();
    if (Date.now() - t > 10000) throw new Error('the servers did not come up within 10 s');
    await sleep(50);
  }
}

/** Every path gives the same content for both scenarios before anything is measured. */
async function sanity() {
  for (const p of PATHS) {
    const a = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (const [body, headers, expect] of [[BODY_TEXT, HEADERS_TEXT, EXPECT_TEXT], [BODY_FILE, HEADERS_FILE, EXPECT_FILE]]) {
      const r = await turn(p, a, body, headers);
      const bad = check(r, expect);
      if (bad) throw new Error(`sanity check failed on ${p.name}: ${bad}`);
    }
    a.destroy();
  }
}

/**
 * Opens `n` paced streams through `p` at once, holds them open, samples the
 * proxy's RSS and CPU, then hangs up on all of them.
 */
async function holdStreams(p, which, n) {
  const before = { rss_kib: rssOf(which), fds: which === 'sb' ? fdCount(PID.sb) : null };
  const reqs = [];
  let open = 0;
  let failed = 0;
  const allOpen = new Promise((resolve) => {
    const opened = () => { if (++open === n) resolve(); };
    for (let i = 0; i < n; ++i) {
      const pr = turn(p, false, BODY_HOLD, HEADERS_HOLD, {
        onFirstData: (req, res) => { reqs.push(req); if (res.statusCode === 200) opened(); else ++failed; },
      });
      pr.then((r) => { if (r.error && r.error.message !== 'socket hang up' && r.error.message !== 'aborted') ++failed; });
    }
  });
  const t0 = performance.now();
  await Promise.race([allOpen, sleep(10000)]);
  const openMs = performance.now() - t0;
  if (open < n) log(`only ${open} of ${n} streams opened through ${p.name} (${failed} failed)`);
  await sleep(300);
  const cpu0 = cpuOf(which);
  const c0 = performance.now();
  let peak = 0;
  let peakStatus = null;
  for (let t = 0; t < CFG.holdMs; t += 250) {
    await sleep(250);
    const r = rssOf(which);
    if (r > peak) { peak = r; peakStatus = which === 'sb' ? procStatus(PID.sb) : null; }
  }
  const cpuPct = ((cpuOf(which) - cpu0) / ((performance.now() - c0) * 1000)) * 100;
  const fdsOpen = which === 'sb' ? fdCount(PID.sb) : null;
  for (const r of reqs) r.destroy();
  // switchboard should let go of both sides of every stream
  let fdsAfter = null;
  if (which === 'sb') {
    const t1 = Date.now();
    while (fdCount(PID.sb) > before.fds + 2 && Date.now() - t1 < 5000) await sleep(50);
    fdsAfter = fdCount(PID.sb);
  } else {
    await sleep(500);
  }
  await sleep(200);
  const after = rssOf(which);
  return {
    streams: n,
    opened: open,
    failed,
    open_ms: Math.round(openMs),
    rss_before_kib: before.rss_kib,
    rss_open_kib: peak,
    rss_after_close_kib: after,
    kib_per_stream: Math.round(((peak - before.rss_kib) / n) * 10) / 10,
    cpu_pct_while_holding: Math.round(cpuPct * 10) / 10,
    ...(which === 'sb' ? { rss_anon_open_kib: peakStatus?.RssAnon, threads: peakStatus?.Threads, fds_before: before.fds, fds_open: fdsOpen, fds_after_close: fdsAfter } : {}),
  };
}

async function memoryPhase() {
  const idleStart = procStatus(PID.sb);
  // a few turns so one-time initialisation (curl, TLS tables, pools) is not counted per stream
  const a = new http.Agent({ keepAlive: true, maxSockets: 4 });
  await Promise.all(Array.from({ length: 8 }, () => turn(PATHS[2], a, BODY_TEXT, HEADERS_TEXT)));
  a.destroy();
  await sleep(300);
  const idle = procStatus(PID.sb);
  log(`memory: holding ${CFG.streams} paced streams through switchboard, then nginx`);
  const sb = await holdStreams(PATHS[2], 'sb', CFG.streams);
  assertAlive();
  const ngx = await holdStreams(PATHS[1], 'nginx', CFG.streams);
  return { sb_rss_start_kib: idleStart.VmRSS, sb_rss_idle_kib: idle.VmRSS, switchboard: sb, nginx: ngx };
}

async function latencyPhase() {
  log(`latency: ${CFG.turns} interleaved turns per path and scenario (+${CFG.warmupTurns} warm-up)`);
  // fresh keep-alive connections, one per path, reused across turns like an engine's
  const agents = PATHS.map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  const socketSets = PATHS.map(() => new Set());
  const res = PATHS.map(() => ({ text_ttft: [], text_total: [], file_ttft: [], file_total: [], errors: 0, firstError: null }));
  const rounds = CFG.warmupTurns + CFG.turns;
  const tw0 = timeWaitOf(PATHS[0].port);
  for (let i = 0; i < rounds; ++i) {
    const measured = i >= CFG.warmupTurns;
    for (const [body, headers, expect, kind] of [[BODY_TEXT, HEADERS_TEXT, EXPECT_TEXT, 'text'], [BODY_FILE, HEADERS_FILE, EXPECT_FILE, 'file']]) {
      for (let k = 0; k < PATHS.length; ++k) {
        const j = (i + k) % PATHS.length; // rotate which path goes first
        const r = await turn(PATHS[j], agents[j], body, headers, { sockets: socketSets[j] });
        const bad = check(r, expect);
        // Collect the client's garbage between turns (node --expose-gc), not during one.
        globalThis.gc?.({ type: 'minor', execution: 'sync' });
        if (bad) {
          res[j].errors++;
          res[j].firstError ??= bad;
          continue;
        }
        if (!measured) continue;
        res[j][`${kind}_ttft`].push(r.ttft);
        res[j][`${kind}_total`].push(r.total);
      }
    }
    if (i % 200 === 0) assertAlive();
  }
  const upstreamClosed = newIn(tw0, timeWaitOf(PATHS[0].port));
  // the connections really were reused: one socket per path for the whole phase
  const sockets = socketSets.map((set) => set.size);
  agents.forEach((a) => a.destroy());
  const out = { upstream_conns_closed: upstreamClosed };
  PATHS.forEach((p, j) => {
    out[p.name] = {
      ttft: stats(res[j].text_ttft),
      text_stream: stats(res[j].text_total),
      file_ttft: stats(res[j].file_ttft),
      full_stream: stats(res[j].file_total),
      errors: res[j].errors,
      first_error: res[j].firstError,
      connections_used: sockets[j],
    };
  });
  return out;
}

/** `kind`: 'text' posts the streamed turn, 'json' the same turn with stream:false. */
function runWrk(p, conns, seconds, kind = 'text') {
  return new Promise((resolve, reject) => {
    const args = ['-t1', `-c${conns}`, `-d${seconds}s`, '--timeout', '5s', '-s', path.join(here, 'turn.lua'), `http://127.0.0.1:${p.port}${ROUTE}`];
    const reaped0 = childrenCpuUs();
    const child = spawn('wrk', args, {
      env: { ...process.env, BENCH_BODY_FILE: path.join(env.BENCH_TMP, `body_${kind}.json`), BENCH_EXPECT: kind, BENCH_KEY: KEY },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 15) * 1000);
    child.on('exit', (code) => {
      child.wrkCpu = childrenCpuUs() - reaped0; // wrk's CPU time, counted once node has reaped it
      clearTimeout(timer);
      children.delete(child);
      const m = /^BENCH_JSON (.*)$/m.exec(out);
      if (code !== 0 || !m) return reject(new Error(`wrk failed (${code}): ${err || out}`));
      wrkCpuTotalUs += child.wrkCpu ?? 0;
      resolve({ ...JSON.parse(m[1]), wrk_cpu_us: child.wrkCpu ?? null });
    });
  });
}

async function throughputPhase() {
  fs.writeFileSync(path.join(env.BENCH_TMP, 'body_text.json'), BODY_TEXT);
  fs.writeFileSync(path.join(env.BENCH_TMP, 'body_json.json'), BODY_JSON);
  // the streamed turn at each level, then stream:false at the highest (what a non-streaming client costs a proxy)
  const levels = [...CFG.tpLevels.map((c) => ({ key: `c${c}`, c, kind: 'text' })), { key: `json_c${CFG.tpLevels.at(-1)}`, c: CFG.tpLevels.at(-1), kind: 'json' }];
  log(`throughput: wrk, concurrency ${CFG.tpLevels.join(' and ')}, and stream:false at ${CFG.tpLevels.at(-1)}; ${CFG.tpRounds} × ${CFG.tpSeconds} s per path and level`);
  // warm-up: every path's connection pools filled at the highest level
  for (const p of PATHS) await runWrk(p, CFG.tpLevels.at(-1), 1);
  const out = {};
  for (const { key, c, kind } of levels) {
    const acc = PATHS.map(() => ({ requests: 0, duration_us: 0, ok: 0, bad: 0, errors: 0, p50: [], p99: [], cpu: { sb: 0, nginx: 0, fake: 0 }, wrk_cpu_us: 0, closed: 0, rounds: [] }));
    for (let round = 0; round < CFG.tpRounds; ++round) {
      for (let k = 0; k < PATHS.length; ++k) {
        const j = (round + k) % PATHS.length;
        const c0 = { sb: cpuOf('sb'), nginx: cpuOf('nginx'), fake: cpuOf('fake') };
        const tw0 = timeWaitOf(PATHS[0].port);
        const r = await runWrk(PATHS[j], c, CFG.tpSeconds, kind);
        const a = acc[j];
        a.closed += newIn(tw0, timeWaitOf(PATHS[0].port));
        for (const w of ['sb', 'nginx', 'fake']) a.cpu[w] += cpuOf(w) - c0[w];
        a.requests += r.requests;
        a.duration_us += r.duration_us;
        a.ok += r.ok;
        a.bad += r.bad;
        a.errors += r.err_connect + r.err_read + r.err_write + r.err_status + r.err_timeout;
        a.p50.push(r.lat_p50_us);
        a.p99.push(r.lat_p99_us);
        a.rounds.push({ turns_per_s: Math.round(r.requests / (r.duration_us / 1e6)), p50_us: r.lat_p50_us, p99_us: r.lat_p99_us, max_us: r.lat_max_us });
        a.wrk_cpu_us += r.wrk_cpu_us ?? 0;
        assertAlive();
      }
    }
    out[key] = {};
    PATHS.forEach((p, j) => {
      const a = acc[j];
      const proxy = p.name === 'nginx' ? a.cpu.nginx : p.name === 'switchboard' ? a.cpu.sb : 0;
      out[key][p.name] = {
        turns_per_s: Math.round(a.requests / (a.duration_us / 1e6)),
        requests: a.requests,
        ok: a.ok,
        bad_streams: a.bad,
        socket_errors: a.errors,
        // wrk's per-turn latency: the median over the rounds (each round's figures are in `rounds`)
        latency_p50_us: median(a.p50),
        latency_p99_us: median(a.p99),
        proxy_cpu_us_per_turn: p.name === 'direct' ? null : Math.round(proxy / Math.max(1, a.requests)),
        upstream_cpu_us_per_turn: Math.round(a.cpu.fake / Math.max(1, a.requests)),
        upstream_cpu_pct: Math.round((a.cpu.fake / a.duration_us) * 100), // the fake upstream is one thread: ~100 means it is the limit
        client_cpu_pct: Math.round((a.wrk_cpu_us / a.duration_us) * 100),
        // the proxy's upstream connections closed during its runs (direct: wrk's own, closed at the end of each run)
        upstream_conns_closed: a.closed,
        upstream_conns_closed_per_1000_turns: Math.round((a.closed / Math.max(1, a.requests)) * 10000) / 10,
        rounds: a.rounds,
      };
    });
  }
  return out;
}

// --- report ------------------------------------------------------------------------------------------

function ratios(lat, tp) {
  const r = { latency: {}, throughput: {} };
  for (const [metric, key] of [['ttft', 'ttft'], ['full_stream', 'full_stream']]) {
    for (const q of ['p50_us', 'p99_us']) {
      const sb = lat.switchboard[key][q];
      const d = lat.direct[key][q];
      const n = lat.nginx[key][q];
      r.latency[`${metric}_${q.replace('_us', '')}`] = {
        switchboard_over_direct: ratio(sb, d),
        switchboard_over_nginx: ratio(sb, n),
        added_us_vs_direct: sb - d,
        added_us_vs_nginx: sb - n,
      };
    }
  }
  for (const level of Object.keys(tp)) {
    const t = tp[level];
    r.throughput[level] = {
      switchboard_over_direct: ratio(t.switchboard.turns_per_s, t.direct.turns_per_s),
      switchboard_over_nginx: ratio(t.switchboard.turns_per_s, t.nginx.turns_per_s),
    };
  }
  return r;
}

const pad = (s, n) => String(s).padStart(n);
const padr = (s, n) => String(s).padEnd(n);
function table(report) {
  const { latency: lat, throughput: tp, memory: mem, ratios: rt } = report;
  const L = [];
  const row = (cells, widths) => cells.map((c, i) => (i === 0 ? padr(c, widths[0]) : pad(c, widths[i]))).join('  ');
  const W = [30, 9, 9, 12, 10, 10, 12, 12];
  L.push(`switchboard relay benchmark — ${report.machine.cpus} cores (${report.machine.cpu_model}), ${report.when}`);
  L.push('');
  L.push(`Latency, µs (${report.config.turns} sequential turns per path, one keep-alive connection per path)`);
  L.push(row(['', 'direct', 'nginx', 'switchboard', 'sb/direct', 'sb/nginx', '+µs direct', '+µs nginx'], W));
  const kb = `${(report.config.file_bytes / 1000).toFixed(1)} KB`;
  for (const [label, key] of [['first content token p50', 'ttft'], ['first content token p99', 'ttft'], [`full stream (${kb} file) p50`, 'full_stream'], [`full stream (${kb} file) p99`, 'full_stream']]) {
    const q = label.endsWith('p50') ? 'p50' : 'p99';
    const rr = rt.latency[`${key}_${q}`];
    L.push(row([label, lat.direct[key][`${q}_us`], lat.nginx[key][`${q}_us`], lat.switchboard[key][`${q}_us`], rr.switchboard_over_direct.toFixed(2), rr.switchboard_over_nginx.toFixed(2), rr.added_us_vs_direct, rr.added_us_vs_nginx], W));
  }
  const errs = PATHS.map((p) => `${p.name} ${lat[p.name].errors}`).join(', ');
  L.push(`  failed or wrong turns: ${errs}; client connections used: ${PATHS.map((p) => lat[p.name].connections_used).join('/')}; ` +
    `upstream connections closed: ${lat.upstream_conns_closed}`);
  L.push('');
  L.push(`Throughput, completed streamed turns/s (wrk, ${report.config.tp_rounds} × ${report.config.tp_seconds} s per path and level, ${report.config.text_words}-word stream)`);
  const W2 = [30, 9, 9, 12, 10, 10, 30];
  L.push(row(['', 'direct', 'nginx', 'switchboard', 'sb/direct', 'sb/nginx', 'proxy CPU µs/turn nginx / sb'], W2));
  for (const level of Object.keys(tp)) {
    const t = tp[level];
    const label = level.startsWith('json_') ? `stream:false, concurrency ${level.slice(6)}` : `concurrency ${level.slice(1)}`;
    L.push(row([label, t.direct.turns_per_s, t.nginx.turns_per_s, t.switchboard.turns_per_s, rt.throughput[level].switchboard_over_direct.toFixed(2), rt.throughput[level].switchboard_over_nginx.toFixed(2), `${t.nginx.proxy_cpu_us_per_turn} / ${t.switchboard.proxy_cpu_us_per_turn}`], W2));
    L.push(row([`  turn latency p50/p99 µs (median of rounds)`, '', '', '', '', '', ''], W2).trimEnd() + ' ' +
      PATHS.map((p) => `${p.name} ${t[p.name].latency_p50_us}/${t[p.name].latency_p99_us}`).join(', '));
    const bad = PATHS.map((p) => `${p.name} ${t[p.name].bad_streams + t[p.name].socket_errors}`).join(', ');
    L.push(`  CPU, % of a core: fake upstream ${PATHS.map((p) => `${t[p.name].upstream_cpu_pct}`).join('/')}, wrk ${PATHS.map((p) => `${t[p.name].client_cpu_pct}`).join('/')} (direct/nginx/switchboard)`);
    L.push(`  bad streams + socket errors: ${bad}; ` +
      `upstream connections closed per 1000 turns: nginx ${t.nginx.upstream_conns_closed_per_1000_turns}, switchboard ${t.switchboard.upstream_conns_closed_per_1000_turns}`);
  }
  L.push('');
  const s = mem.switchboard;
  const n = mem.nginx;
  L.push(`Memory (${s.streams} concurrent open streams, paced 400 ms/word)`);
  L.push(`  switchboard RSS: ${mem.sb_rss_start_kib} KiB at start, ${mem.sb_rss_idle_kib} KiB idle after warm-up, ${s.rss_open_kib} KiB with ${s.opened} open streams → ${s.kib_per_stream} KiB per open stream`);
  L.push(`  switchboard after the streams closed: ${s.rss_after_close_kib} KiB; fds ${s.fds_before} → ${s.fds_open} open → ${s.fds_after_close} after; CPU while holding them ${s.cpu_pct_while_holding}% of a core`);
  L.push(`  nginx workers for reference: ${n.rss_before_kib} → ${n.rss_open_kib} KiB → ${n.kib_per_stream} KiB per open stream; CPU while holding ${n.cpu_pct_while_holding}%`);
  L.push(`  switchboard idle RSS at the end of the run: ${report.end.sb_rss_kib} KiB (peak ${report.end.sb_hwm_kib} KiB), ${report.end.sb_fds} fds`);
  const oth = report.end.other_processes_cpu_pct;
  L.push('');
  L.push(`Other processes on the machine used ${Object.entries(oth).map(([k, v]) => `${v}% (${k})`).join(', ')} of all cores meanwhile.`);
  if (report.end.sb_stderr_lines.length) L.push(`  switchboard stderr: ${report.end.sb_stderr_lines.length} lines, e.g. ${report.end.sb_stderr_lines[0]}`);
  return L.join('\n');
}

async function main() {
  await waitReady();
  await sanity();
  const t0 = Date.now();
  const phaseS = {};
  const others = {};
  const timed = async (name, fn) => {
    const t = Date.now();
    const m0 = machineBusyUs();
    const o0 = ourCpuUs();
    const v = await fn();
    const wall = (Date.now() - t) * 1000;
    phaseS[name] = Math.round(wall / 1e5) / 10;
    // CPU other processes on the machine used meanwhile, in % of all cores: the noise the run had to live with
    others[name] = Math.max(0, Math.round((((machineBusyUs() - m0) - (ourCpuUs() - o0)) / (wall * os.cpus().length)) * 100));
    assertAlive();
    return v;
  };
  const memory = await timed('memory', memoryPhase);
  const latency = await timed('latency', latencyPhase);
  const afterLatency = procStatus(PID.sb);
  const throughput = await timed('throughput', throughputPhase);
  await sleep(500);
  const endStatus = procStatus(PID.sb);
  const stderrLines = fs.readFileSync(env.BENCH_SB_STDERR, 'utf8').split('\n').filter((l) => l && !/"level":"info"/.test(l));
  const cpus = os.cpus();
  const report = {
    when: new Date().toISOString(),
    machine: { cpus: cpus.length, cpu_model: cpus[0]?.model.trim(), kernel: os.release(), node: process.version },
    config: {
      turns: CFG.turns, warmup_turns: CFG.warmupTurns, tp_seconds: CFG.tpSeconds, tp_rounds: CFG.tpRounds, tp_levels: CFG.tpLevels,
      streams: CFG.streams, workers: CFG.workers, request_body_bytes: BODY_TEXT.length, file: FILE,
      file_bytes: fs.statSync(path.join(env.BENCH_FIXTURES, FILE)).size,
      text_words: WORDS.split(' ').length,
    },
    latency,
    throughput,
    memory,
    ratios: ratios(latency, throughput),
    end: {
      sb_rss_after_latency_kib: afterLatency.VmRSS,
      sb_rss_kib: endStatus.VmRSS,
      sb_hwm_kib: endStatus.VmHWM,
      sb_fds: fdCount(PID.sb),
      sb_stderr_lines: stderrLines.slice(0, 20),
      duration_s: Math.round((Date.now() - t0) / 1000),
      phase_s: phaseS,
      other_processes_cpu_pct: others,
    },
  };
  const text = table(report);
  console.log(text);
  fs.mkdirSync(path.dirname(env.BENCH_OUT), { recursive: true });
  fs.writeFileSync(env.BENCH_OUT, JSON.stringify(report, null, 2) + '\n');
  log(`wrote ${path.relative(process.cwd(), env.BENCH_OUT)} (measuring took ${report.end.duration_s} s)`);
  const failures = PATHS.reduce((a, p) => a + latency[p.name].errors, 0);
  if (failures) log(`warning: ${failures} latency turns failed`);
}

main().then(() => process.exit(0), (e) => {
  console.error(`[bench] failed: ${e.stack || e}`);
  process.exit(1);
});
