// What holding many open paced streams costs a proxy: CPU and system calls per
// second while BENCH_STREAMS streams (default 2000) each receive a token every
// BENCH_PACE_MS (default 100). Run by `tests/bench/run streams`, which starts
// the fake upstream, nginx and switchboard; the same streams go through nginx
// as a reference. CPU is read from /proc over a window with nothing attached;
// system calls are counted by `strace -c -f` over a second window (strace
// slows the process it watches, so its window gives no CPU figure).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { env } from 'node:process';

import { childPids, cpuMs } from './lib.mjs';

const num = (name, def) => (env[name] ? Number(env[name]) : def);
const CFG = {
  streams: num('BENCH_STREAMS', 2000),
  paceMs: num('BENCH_PACE_MS', 100),
  windowS: num('BENCH_WINDOW_S', 4),
};
const KEY = env.BENCH_KEY;
const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A run never outlives its deadline, whatever hangs.
setTimeout(() => {
  log('deadline of 240 s passed; giving up');
  process.exit(2);
}, 240000).unref();

// 100 bytes of words a token, enough tokens to outlast opening every stream and both windows.
const tokens = Math.ceil(((CFG.windowS * 2 + 30) * 1000) / CFG.paceMs);
const BODY = Buffer.from(
  JSON.stringify({
    model: 'fake?' + new URLSearchParams({ gen_bytes: String(tokens * 100), pace_ms: String(CFG.paceMs) }).toString(),
    stream: true,
    messages: [
      { role: 'system', content: 'You are a helpful phone agent.' },
      { role: 'user', content: 'Tell me everything.' },
    ],
  }),
);
const HEADERS = { 'content-type': 'application/json', 'content-length': String(BODY.length), authorization: `Bearer ${KEY}` };

// SSE events received on every stream so far: the tokens delivered.
let events = 0;
function countEvents(tail, chunk) {
  const s = tail + chunk;
  for (let i = s.indexOf('data:', 0); i >= 0; i = s.indexOf('data:', i + 5)) if (i + 5 > tail.length) ++events;
  return s.slice(-4);
}

/** Opens `n` streams on `port`; resolves with their requests once each has its first event (or after 30 s). */
async function open(port, n) {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const reqs = [];
  let opened = 0;
  let failed = 0;
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 30000);
    const done = () => {
      if (opened + failed === n) {
        clearTimeout(timer);
        resolve();
      }
    };
    for (let i = 0; i < n; ++i) {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent, headers: HEADERS });
      req.on('response', (res) => {
        let first = true;
        let tail = '';
        res.on('data', (d) => {
          tail = countEvents(tail, d.toString('latin1'));
          if (first) {
            first = false;
            if (res.statusCode === 200) ++opened;
            else ++failed;
            done();
          }
        });
        res.on('error', () => {});
      });
      req.on('error', () => {
        ++failed;
        done();
      });
      req.end(BODY);
      reqs.push(req);
    }
  });
  return { reqs, opened, failed };
}

/** System calls of `pids` (and their threads) over `seconds`, by name: {total, by: {name: count}}. */
async function countSyscalls(pids, seconds) {
  const out = `${env.BENCH_TMP}/strace.${process.pid}.${Date.now()}`;
  const args = ['-c', '-f', '-o', out, ...pids.flatMap((p) => ['-p', String(p)])];
  const st = spawn('strace', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  st.stderr.on('data', (d) => (err += d));
  const exited = new Promise((r) => st.on('exit', r));
  // attached once it says so for every thread it found
  const t0 = Date.now();
  while (!/attached/.test(err) && Date.now() - t0 < 5000) await sleep(20);
  await sleep(seconds * 1000);
  st.kill('SIGINT');
  await exited;
  const by = {};
  let total = 0;
  for (const line of fs.readFileSync(out, 'utf8').split('\n')) {
    // % time, seconds, usecs/call, calls, [errors], syscall
    const m = line.trim().match(/^[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)$/);
    if (m && m[2] !== 'total') {
      by[m[2]] = Number(m[1]);
      total += Number(m[1]);
    }
  }
  fs.rmSync(out, { force: true });
  return { total, by };
}

async function measure(name, port, pids) {
  log(`${name}: opening ${CFG.streams} streams, a token every ${CFG.paceMs} ms`);
  const t0 = performance.now();
  const { reqs, opened, failed } = await open(port, CFG.streams);
  const openMs = Math.round(performance.now() - t0);
  if (opened < CFG.streams) log(`${name}: only ${opened} of ${CFG.streams} opened (${failed} failed)`);
  await sleep(500);
  const cpu0 = pids.reduce((a, p) => a + cpuMs(p), 0);
  const c0 = performance.now();
  await sleep(CFG.windowS * 1000);
  const cpuPct = ((pids.reduce((a, p) => a + cpuMs(p), 0) - cpu0) / (performance.now() - c0)) * 100;
  const e0 = events;
  const sys = await countSyscalls(pids, CFG.windowS);
  const delivered = events - e0;
  for (const r of reqs) r.destroy();
  await sleep(1000);
  const perSecond = Object.fromEntries(
    Object.entries(sys.by)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([k, v]) => [k, Math.round(v / CFG.windowS)]),
  );
  return {
    streams: CFG.streams,
    opened,
    open_ms: openMs,
    cpu_pct: Math.round(cpuPct * 10) / 10,
    syscalls_per_s: Math.round(sys.total / CFG.windowS),
    tokens_per_s: Math.round(delivered / CFG.windowS), // while strace watched: it slows the proxy
    syscalls_per_token: Math.round((sys.total / Math.max(1, delivered)) * 100) / 100,
    top_per_s: perSecond,
  };
}

async function main() {
  const sbPid = Number(env.BENCH_SB_PID);
  const nginxWorkers = childPids(Number(env.BENCH_NGINX_PID));
  const report = {
    when: new Date().toISOString(),
    config: CFG,
    switchboard: await measure('switchboard', Number(env.BENCH_SB_PORT), [sbPid]),
    nginx: await measure('nginx', Number(env.BENCH_NGINX_PORT), nginxWorkers),
  };
  const row = (name, r) =>
    `${name.padEnd(12)} ${String(r.opened).padStart(6)} ${String(r.cpu_pct).padStart(7)} ${String(r.syscalls_per_s).padStart(11)} ` +
    `${String(r.tokens_per_s).padStart(9)} ` +
    `${String(r.syscalls_per_token).padStart(9)}   ${Object.entries(r.top_per_s)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`;
  console.log(`open paced streams: ${CFG.streams}, a token every ${CFG.paceMs} ms, windows of ${CFG.windowS} s`);
  console.log('CPU: a window with nothing attached; system calls: a window under strace -c -f, per token delivered in it');
  console.log('path         opened    CPU%  syscalls/s  tokens/s per token   most frequent (per s)');
  console.log(row('switchboard', report.switchboard));
  console.log(row('nginx', report.nginx));
  if (env.BENCH_OUT) fs.writeFileSync(env.BENCH_OUT, JSON.stringify(report, null, 2) + '\n');
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
