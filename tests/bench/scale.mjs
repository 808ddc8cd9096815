// The scale benchmark (`tests/bench/run scale`): thousands of open paced voice
// streams through one switchboard worker and through one nginx worker, in
// front of the same fake provider, in one run. Each scenario starts both
// proxies fresh (so RSS growth is the streams' own), warms each with a few
// turns, then lets `scale-load` (scale_load.c) open STREAMS keep-alive
// connections over a ramp, each running TURNS turns of 32 tokens 100 ms apart
// back to back. Reported per path: first content token p50/p99 at the client,
// proxy CPU per 1,000 streams (turns), memory per open stream (peak RSS over
// the idle RSS, over the peak of open streams), errors, and the new
// connections the proxy opened to the provider (the fake upstream's accept
// count, or the TLS front's stub_status for the TLS scenario).
//
// The TLS scenario puts the fake provider behind an nginx TLS front speaking
// HTTP/2 (nginx-tls.conf.in, started by `run`): switchboard reaches it with
// HTTP/2 over TLS, the nginx baseline with proxy_ssl over HTTP/1.1 (nginx
// cannot proxy to an upstream over HTTP/2).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { childPids, cpuMs, freePort, machineCpuMs, voiceTurnBody } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const num = (name, def) => (env[name] ? Number(env[name]) : def);
const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const ALL = [
  { id: '1000', streams: 1000, turns: 3, rampMs: 2000, tls: false },
  { id: '4000', streams: 4000, turns: 2, rampMs: 3000, tls: false },
  { id: '9000', streams: 9000, turns: 2, rampMs: 4000, tls: false },
  { id: 'tls4000', streams: 4000, turns: 2, rampMs: 3000, tls: true },
];
const wanted = (env.BENCH_SCALE || '1000,4000,9000,tls4000').split(',');
const SCENARIOS = ALL.filter((s) => wanted.includes(s.id));
// `baseline`: another commit's switchboard (BENCH_BASELINE_REV), measured beside the work tree's in the same run
const PATHS = (env.BENCH_SCALE_PATHS || (env.BENCH_BASELINE_BIN ? 'nginx,switchboard,baseline' : 'nginx,switchboard')).split(',');
const TOKENS = 32;
const PACE_MS = num('BENCH_PACE_MS', 100);
// Rounds per scenario: each path is measured this many times, the order alternating, and its run of median CPU is reported
// (the CPU of one run moves with how the machine's two cores happen to share the work; latency and memory move less).
const ROUNDS = num('BENCH_SCALE_ROUNDS', 1);
const NOFILE = num('BENCH_NOFILE', 1024);
const KEY = env.BENCH_KEY;
const children = new Set();

setTimeout(() => {
  log('deadline of 900 s passed; giving up');
  for (const c of children) c.kill('SIGKILL');
  process.exit(2);
}, 900000).unref();
for (const sig of ['SIGINT', 'SIGTERM'])
  process.on(sig, () => {
    for (const c of children) c.kill('SIGKILL');
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });

// --- the request --------------------------------------------------------------------------------------

const scen = (params) => 'fake?' + new URLSearchParams(params).toString();
const BODY_PACED = path.join(env.BENCH_TMP, 'paced.json');
const BODY_WARM = path.join(env.BENCH_TMP, 'warm.json');
// gen_words: one short word a chunk, and a short model name in every chunk, as a real provider's stream has
fs.writeFileSync(BODY_PACED, voiceTurnBody(scen({ gen_words: String(TOKENS), pace_ms: String(PACE_MS) })));
fs.writeFileSync(BODY_WARM, voiceTurnBody(scen({ gen_words: String(TOKENS) })));

// --- processes ---------------------------------------------------------------------------------------

function rssKiB(pid) {
  try {
    return Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  } catch {
    return 0;
  }
}

function waitPort(port, ms) {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > until) reject(new Error(`port ${port} not ready`));
        else setTimeout(attempt, 20);
      });
    };
    attempt();
  });
}

function fill(template, values) {
  let text = fs.readFileSync(path.join(here, template), 'utf8');
  for (const [k, v] of Object.entries(values)) text = text.replaceAll(`@${k}@`, v);
  return text;
}

/** Starts a proxy for a scenario: {pids() (the processes whose CPU and RSS count), port, stop()}. */
async function startProxy(name, sc) {
  const port = await freePort();
  const upstream = sc.tls ? Number(env.BENCH_TLS_PORT) : Number(env.BENCH_UPSTREAM_PORT);
  let child;
  let pids;
  if (name === 'nginx') {
    const dir = path.join(env.BENCH_TMP, `nginx-${sc.id}`);
    fs.mkdirSync(dir, { recursive: true });
    const tls = sc.tls
      ? `proxy_ssl_trusted_certificate ${env.BENCH_CERT}; proxy_ssl_verify on; proxy_ssl_name localhost; proxy_ssl_session_reuse on;`
      : '';
    const conf = fill('nginx.conf.in', {
      DIR: dir,
      UPSTREAM_PORT: String(upstream),
      PORT: String(port),
      WORKERS: '1',
      NOFILE: String(NOFILE),
      CONNECTIONS: String(Math.min(NOFILE - 64, sc.streams * 2 + 512)),
      KEEPALIVE: String(sc.streams), // as many idle provider connections as streams: nginx at its best
      SCHEME: sc.tls ? 'https' : 'http',
      PROXY_TLS: tls,
      USER_LINE: env.BENCH_USER_LINE || '',
    });
    fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
    child = spawn(env.BENCH_NGINX_BIN, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log'), '-g', 'daemon off;'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    pids = () => childPids(child.pid); // the worker: the master only waits
  } else {
    const dir = path.join(env.BENCH_TMP, `${name}-${sc.id}`);
    fs.mkdirSync(dir, { recursive: true });
    const base = sc.tls ? `https://localhost:${upstream}/v1` : `http://127.0.0.1:${upstream}/v1`;
    const sbEnv = {
      PATH: env.PATH,
      HOST: '127.0.0.1',
      PORT: String(port),
      WORKERS: '1',
      SWITCHBOARD_API_KEYS: KEY,
      LLM_BASE_URL: base,
      OPENAI_API_KEY: 'sk-bench-provider-key',
      ACCESS_LOG: 'false',
    };
    if (sc.tls) sbEnv.LLM_CA_FILE = env.BENCH_CERT;
    for (const kv of (env.BENCH_SB_ENV || '').split(/\s+/).filter(Boolean)) sbEnv[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
    child = spawn(name === 'baseline' ? env.BENCH_BASELINE_BIN : env.BENCH_SB_BIN, [], { cwd: dir, env: sbEnv, stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'stderr.log'), 'w')] });
    pids = () => [child.pid];
  }
  children.add(child);
  const exited = new Promise((r) => child.once('exit', r));
  await waitPort(port, 10000);
  return {
    port,
    pids,
    dir: path.join(env.BENCH_TMP, `${name}-${sc.id}`),
    async stop() {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15000);
      await exited;
      clearTimeout(t);
      children.delete(child);
    },
  };
}

/** Runs scale-load; resolves with its JSON report. `onTick` runs every 100 ms while it does. */
function runLoad(port, conns, turns, rampMs, body, onTick) {
  const args = ['--port', String(port), '--conns', String(conns), '--turns', String(turns), '--ramp-ms', String(rampMs), '--body', body];
  args.push('--key', KEY, '--tokens', String(TOKENS), '--timeout-ms', '60000');
  const child = spawn(env.BENCH_LOAD_BIN, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const tick = onTick ? setInterval(onTick, 100) : null;
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => {
      children.delete(child);
      if (tick) clearInterval(tick);
      if (code !== 0) reject(new Error(`scale-load exited ${code}`));
      else resolve({ ...JSON.parse(out), pid: child.pid });
    });
  });
}

/** New connections the proxies opened to the provider so far: the fake upstream's accepts, or the TLS front's. */
async function providerConnections(tls) {
  if (tls) {
    const r = await fetch(`http://127.0.0.1:${env.BENCH_TLS_STATUS_PORT}/status`);
    return Number(/\n\s*(\d+)\s+\d+\s+\d+/.exec(await r.text())[1]); // "server accepts handled requests": accepts
  }
  const r = await fetch(`http://127.0.0.1:${env.BENCH_UPSTREAM_PORT}/_stats`);
  return (await r.json()).connections;
}

const cpuOf = (pids) => pids.reduce((a, p) => a + cpuMs(p), 0);
const helperPids = () => [Number(env.BENCH_FAKE_PID), ...(env.BENCH_TLS_PID ? childPids(Number(env.BENCH_TLS_PID)) : []), process.pid];

async function measure(name, sc) {
  const proxy = await startProxy(name, sc);
  try {
    const warm = await runLoad(proxy.port, 20, 2, 0, BODY_WARM);
    if (warm.ok !== 40) throw new Error(`${name}: warm-up failed: ${JSON.stringify(warm)}`);
    await sleep(300);
    const pids = proxy.pids();
    const rss0 = pids.reduce((a, p) => a + rssKiB(p), 0);
    const conns0 = await providerConnections(sc.tls);
    const cpu0 = cpuOf(pids);
    const helpers0 = cpuOf(helperPids());
    const m0 = machineCpuMs();
    let rssPeak = rss0;
    const t0 = performance.now();
    const r = await runLoad(proxy.port, sc.streams, sc.turns, sc.rampMs, BODY_PACED, () => {
      rssPeak = Math.max(rssPeak, pids.reduce((a, p) => a + rssKiB(p), 0));
    });
    const wall = performance.now() - t0;
    const cpu = cpuOf(pids) - cpu0;
    const helpers = cpuOf(helperPids()) - helpers0;
    const m1 = machineCpuMs();
    const conns = (await providerConnections(sc.tls)) - conns0;
    // switchboard's attempts the provider failed (a connect timeout, a reset) that it retried: each may open a connection
    let retries = null;
    if (name !== 'nginx') {
      const text = fs.readFileSync(path.join(proxy.dir, 'stderr.log'), 'utf8');
      retries = (text.match(/upstream attempt failed/g) || []).length;
    }
    const others = m1.busy - m0.busy - cpu - helpers - r.cpu_ms;
    const errors = Object.values(r.errors).reduce((a, b) => a + b, 0) + (r.turns - r.ok - Object.values(r.errors).reduce((a, b) => a + b, 0));
    return {
      path: name,
      streams: sc.streams,
      turns: r.turns,
      ok: r.ok,
      errors,
      error_kinds: r.errors,
      open_peak: r.open_peak,
      first_token_p50_ms: r.first_token_ms.p50,
      first_token_p99_ms: r.first_token_ms.p99,
      first_token_max_ms: r.first_token_ms.max,
      cpu_s_per_1000: Math.round((cpu / Math.max(1, r.ok)) * 1000) / 1000,
      cpu_pct: Math.round((cpu / wall) * 1000) / 10,
      kib_per_stream: Math.round(((rssPeak - rss0) / Math.max(1, r.open_peak)) * 10) / 10,
      rss_idle_kib: rss0,
      rss_peak_kib: rssPeak,
      provider_connections: conns,
      provider_retries: retries,
      load_cpu_pct: Math.round((r.cpu_ms / wall) * 1000) / 10,
      helpers_cpu_pct: Math.round((helpers / wall) * 1000) / 10,
      others_cpu_pct: Math.round((Math.max(0, others) / wall) * 1000) / 10,
      wall_s: Math.round(wall / 100) / 10,
    };
  } finally {
    await proxy.stop();
  }
}

function fmt(x, d = 1) {
  return Number.isFinite(x) ? x.toFixed(d) : '-';
}

async function main() {
  const report = {
    when: new Date().toISOString(),
    pace_ms: PACE_MS,
    rounds: ROUNDS,
    tokens: TOKENS,
    nofile: NOFILE,
    baseline: env.BENCH_BASELINE_REV || null,
    scenarios: [],
  };
  const lines = [];
  let order = 0;
  for (const sc of SCENARIOS) {
    if (sc.streams * 2 + 256 > NOFILE) {
      log(`${sc.id}: skipped: RLIMIT_NOFILE ${NOFILE} is below the ${sc.streams * 2 + 256} descriptors it needs`);
      continue;
    }
    const runs = {};
    for (let round = 0; round < ROUNDS; ++round) {
      const paths = order++ % 2 === 0 ? PATHS : [...PATHS].reverse(); // the order alternates: drift hits all alike
      for (const p of paths) {
        log(`${sc.id}${sc.tls ? ' (TLS, HTTP/2 provider)' : ''}: ${p}, ${sc.streams} streams x ${sc.turns} turns` +
          (ROUNDS > 1 ? `, round ${round + 1} of ${ROUNDS}` : ''));
        const row = await measure(p, sc);
        (runs[p] ||= []).push(row);
        log(`  ${JSON.stringify(row)}`);
        await sleep(1000);
      }
    }
    const rows = {};
    for (const [p, list] of Object.entries(runs)) {
      const byCpu = [...list].sort((a, b) => a.cpu_s_per_1000 - b.cpu_s_per_1000);
      rows[p] = { ...byCpu[(byCpu.length - 1) >> 1], cpu_rounds: list.map((r) => r.cpu_s_per_1000) };
    }
    report.scenarios.push({ id: sc.id, tls: sc.tls, streams: sc.streams, turns: sc.turns, ramp_ms: sc.rampMs, rows });
    const n = rows.nginx;
    const s = rows.switchboard;
    const ratio = (a, b) => (n && s && b > 0 ? fmt(a / b, 2) : '-');
    lines.push(`${sc.id}${sc.tls ? ' TLS/h2' : ''}: ${sc.streams} streams x ${sc.turns} turns`);
    for (const r of [n, s, rows.baseline].filter(Boolean))
      lines.push(
        `  ${r.path.padEnd(12)} first token p50 ${fmt(r.first_token_p50_ms).padStart(7)} ms  p99 ${fmt(r.first_token_p99_ms).padStart(7)} ms  ` +
          `CPU ${fmt(r.cpu_s_per_1000, 3)} s/1000  ${fmt(r.kib_per_stream)} KiB/stream  errors ${r.errors}  ` +
          `provider conns ${r.provider_connections} for ${r.turns}${r.provider_retries ? ` (${r.provider_retries} attempts retried)` : ''}  ` +
          `(open peak ${r.open_peak}; load ${fmt(r.load_cpu_pct)} %, ` +
          `fake+front ${fmt(r.helpers_cpu_pct)} %, others ${fmt(r.others_cpu_pct)} % of a core)` +
          (ROUNDS > 1 ? `  [run of median CPU; rounds ${r.cpu_rounds.map((c) => fmt(c, 3)).join(' / ')}]` : ''),
      );
    const b = rows.baseline;
    if (b && s)
      lines.push(
        `  sb/baseline  p50 ${fmt(s.first_token_p50_ms / b.first_token_p50_ms, 2)}  p99 ${fmt(s.first_token_p99_ms / b.first_token_p99_ms, 2)}  ` +
          `CPU ${fmt(s.cpu_s_per_1000 / b.cpu_s_per_1000, 2)}  memory ${fmt(s.kib_per_stream / b.kib_per_stream, 2)}  (baseline: ${env.BENCH_BASELINE_REV.slice(0, 7)})`,
      );
    if (n && s)
      lines.push(
        `  sb/nginx     p50 ${ratio(s.first_token_p50_ms, n.first_token_p50_ms)}  p99 ${ratio(s.first_token_p99_ms, n.first_token_p99_ms)}  ` +
          `CPU ${ratio(s.cpu_s_per_1000, n.cpu_s_per_1000)}  memory ${ratio(s.kib_per_stream, n.kib_per_stream)}`,
      );
  }
  console.log(lines.join('\n'));
  if (env.BENCH_OUT) fs.writeFileSync(env.BENCH_OUT, JSON.stringify(report, null, 2) + '\n');
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  for (const c of children) c.kill('SIGKILL');
  process.exit(1);
});
