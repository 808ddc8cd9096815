// What metrics cost a turn: the same batch of streamed turns through switchboard with
// METRICS=true (the default) and with METRICS=false, each run under callgrind, which counts the
// instructions a process runs: the same for the same work, whatever else the machine does (CPU
// time read from /proc differed by ±3 % between two identical servers here, as much as the
// target). A run starts a fresh switchboard (1 worker), warms it with 50 turns, runs a batch of
// BENCH_METRICS_TURNS streams at once (default 300), each BENCH_METRICS_TOKENS tokens (default 32)
// BENCH_PACE_MS apart (default 30), waits until every one has ended, and stops it; callgrind's
// total at exit, less that of a run with no batch, divided by the turns, is the cost of a turn:
// per-turn work (the observer's events, histograms, labels) and per-token work alike. Runs
// alternate between the two settings. Run by `tests/bench/run metrics`; results/metrics.json.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { env } from 'node:process';

import { pct } from './lib.mjs';

const num = (name, def) => (env[name] ? Number(env[name]) : def);
const CFG = {
  turns: num('BENCH_METRICS_TURNS', 300),
  tokens: num('BENCH_METRICS_TOKENS', 32),
  paceMs: num('BENCH_PACE_MS', 30),
  rounds: num('BENCH_METRICS_ROUNDS', 5),
};
const KEY = env.BENCH_KEY;
const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

setTimeout(() => {
  log('deadline of 600 s passed; giving up');
  process.exit(2);
}, 600000).unref();

const words = Array.from({ length: CFG.tokens }, (_, i) => `word${i}`).join(' ');
const BODY = Buffer.from(
  JSON.stringify({
    model: 'fake?' + new URLSearchParams({ text: words, pace_ms: String(CFG.paceMs) }).toString(),
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'Say the words.' }],
  }),
);
const HEADERS = { 'content-type': 'application/json', 'content-length': String(BODY.length), authorization: `Bearer ${KEY}` };

/** Runs `n` streamed turns at once on `port`; resolves with how many ended with [DONE]. */
function batch(port, n) {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  let done = 0;
  let ended = 0;
  return new Promise((resolve) => {
    const finish = () => {
      if (++ended === n) {
        agent.destroy();
        resolve(done);
      }
    };
    for (let i = 0; i < n; ++i) {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent, headers: HEADERS });
      req.on('response', (res) => {
        let tail = '';
        res.on('data', (d) => (tail = (tail + d.toString('latin1')).slice(-32)));
        res.on('end', () => {
          if (res.statusCode === 200 && tail.includes('[DONE]')) ++done;
          finish();
        });
        res.on('error', finish);
      });
      req.on('error', finish);
      req.end(BODY);
    }
  });
}

/** A free loopback port. */
function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts switchboard under callgrind with METRICS=`metrics`, runs `turns` streamed turns after
 * the warm-up, stops it, and returns the instructions it ran in all.
 */
async function run(metrics, turns) {
  const port = await freePort();
  const out = `${env.BENCH_TMP}/callgrind.${metrics}.${turns}.${Date.now()}`;
  const proc = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, env.BENCH_SB_BIN], {
    cwd: `${env.BENCH_TMP}/sb`,
    env: {
      PATH: env.PATH, HOST: '127.0.0.1', PORT: String(port), WORKERS: '1', METRICS: metrics, ACCESS_LOG: 'false',
      SWITCHBOARD_API_KEYS: KEY, LLM_BASE_URL: `http://127.0.0.1:${env.BENCH_UPSTREAM_PORT}/v1`, OPENAI_API_KEY: 'sk-bench-provider-key',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr.on('data', (d) => (err += d));
  const exited = new Promise((r) => proc.on('exit', r));
  await waitReady([port]);
  const served = (await fetch(`http://127.0.0.1:${port}/metrics`)).status === 200;
  if (served !== (metrics === 'true')) throw new Error(`METRICS=${metrics} but /metrics ${served ? 'is' : 'is not'} served`);
  await batch(port, 50); // warm: connections to the provider, allocator arenas
  const done = turns ? await batch(port, turns) : 0;
  if (done < turns) log(`METRICS=${metrics}: only ${done} of ${turns} turns ended with [DONE]`);
  proc.kill('SIGTERM');
  await exited;
  const m = /^(?:summary|totals): (\d+)/m.exec(fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '');
  if (!m) throw new Error(`callgrind left no total in ${out}:\n${err.slice(-2000)}`);
  fs.rmSync(out, { force: true });
  return Number(m[1]);
}

/** Polls /ping on every port until each answers, for at most 10 s. */
async function waitReady(ports) {
  const t = Date.now();
  for (;;) {
    try {
      const rs = await Promise.all(ports.map((port) => fetch(`http://127.0.0.1:${port}/ping`)));
      if (rs.every((r) => r.ok)) return;
    } catch { /* not yet */ }
    if (Date.now() - t > 60000) throw new Error('switchboard did not come up within 60 s');
    await sleep(50);
  }
}

async function main() {
  const paths = [
    { name: 'metrics on', metrics: 'true', runs: [] },
    { name: 'metrics off', metrics: env.BENCH_OFF_METRICS || 'false', runs: [] },
  ];
  for (const p of paths) {
    p.base = await run(p.metrics, 0);
    log(`${p.name}: start, warm-up and stop: ${p.base} instructions`);
  }
  for (let r = 0; r < CFG.rounds; ++r) {
    const order = r % 2 ? [...paths].reverse() : paths; // neither always goes first
    for (const p of order) {
      const ir = await run(p.metrics, CFG.turns);
      p.runs.push({ instructions: ir, per_turn: (ir - p.base) / CFG.turns });
    }
    log(`round ${r + 1}/${CFG.rounds}: ${paths.map((p) => `${p.name} ${Math.round(p.runs.at(-1).per_turn)} instructions/turn`).join(', ')}`);
  }
  const median = (p) => pct(p.runs.map((x) => x.per_turn), 50);
  const on = median(paths[0]);
  const off = median(paths[1]);
  const ratio = on / off;
  const report = {
    when: new Date().toISOString(),
    config: CFG,
    metrics_on: { instructions_per_turn_median: Math.round(on), baseline: paths[0].base, runs: paths[0].runs },
    metrics_off: { instructions_per_turn_median: Math.round(off), baseline: paths[1].base, runs: paths[1].runs },
    ratio,
    target: 1.03,
    met: ratio <= 1.03,
  };
  console.log(`${CFG.rounds} rounds of ${CFG.turns} streamed turns (${CFG.tokens} tokens, ${CFG.paceMs} ms apart), interleaved; 1 worker each`);
  console.log('path          instructions per turn (median)   rounds');
  for (const p of paths)
    console.log(`${p.name.padEnd(13)} ${String(Math.round(median(p))).padStart(12)}                     ${p.runs.map((x) => Math.round(x.per_turn)).join(', ')}`);
  console.log(`metrics on / off: ${ratio.toFixed(3)} (target ≤ 1.03: ${report.met ? 'met' : 'NOT met'})`);
  if (env.BENCH_OUT) fs.writeFileSync(env.BENCH_OUT, JSON.stringify(report, null, 2) + '\n');
  process.exit(0);
}

main().catch((e) => {
  log(e.stack || String(e));
  process.exit(1);
});
