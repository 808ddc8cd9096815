// Shared harness for switchboard's integration tests: starts the fake upstream
// and switchboard as real processes on free ports, and offers raw HTTP helpers
// that see every byte and its arrival time.
import { spawn, execFileSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '..', '..');
export const buildDir = process.env.SB_BUILD_DIR || path.join(root, 'build-test');
export const fixtures = path.join(root, 'tests', 'fixtures', 'upstream-streams');
export const INBOUND_KEY = 'test-inbound-key-0123456789abcdef';
export const PROVIDER_KEY = 'sk-test-provider-secret-key-do-not-leak';

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `fn` until it returns a truthy value or the deadline passes. */
export async function until(fn, { timeoutMs = 5000, everyMs = 5, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (e.fatal) throw e; // it will never hold
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function startFakeUpstream() {
  const bin = path.join(buildDir, 'tests', 'fake-upstream', 'fake-upstream');
  const proc = spawn(bin, ['--port', '0', '--fixtures', fixtures], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: proc.stdout });
    rl.on('line', (line) => {
      const m = /^port (\d+)/.exec(line);
      if (m) resolve(Number(m[1]));
    });
    proc.on('exit', (code) => reject(new Error(`fake-upstream exited with ${code}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    proc,
    port,
    base,
    async requests() {
      const res = await fetch(`${base}/_requests`);
      return res.json();
    },
    async reset() {
      await fetch(`${base}/_reset`, { method: 'POST' });
    },
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.on('exit', r)));
    },
  };
}

/**
 * Starts switchboard with `env` on a free port (or env.PORT: a restart on the
 * same port) and waits until /ping answers.
 * Its stdout (the access log) is kept in `accessLog` as parsed lines. With
 * `tls` ({ ca }), it serves HTTPS and /ping is asked over TLS trusting `ca`.
 * With `nofile` ({ soft, hard }), it runs under those file-descriptor limits.
 */
export async function startSwitchboard(env = {}, { tls, nofile } = {}) {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const bin = path.join(buildDir, 'src', 'switchboard');
  // nofile ({ soft, hard }): started under these RLIMIT_NOFILE limits (the shell execs it: same pid)
  const [cmd, args] = nofile
    ? ['/bin/sh', ['-c', `ulimit -Sn ${nofile.soft} && ulimit -Hn ${nofile.hard} && exec "$0"`, bin]]
    : [bin, []];
  const proc = spawn(cmd, args, {
    cwd: buildDir, // no .env there
    env: {
      PATH: process.env.PATH,
      ASAN_OPTIONS: process.env.ASAN_OPTIONS || '',
      UBSAN_OPTIONS: process.env.UBSAN_OPTIONS || '',
      LSAN_OPTIONS: process.env.LSAN_OPTIONS || '',
      HOST: '127.0.0.1',
      PORT: String(port),
      WORKERS: '2',
      SWITCHBOARD_API_KEYS: INBOUND_KEY,
      // most tests check the provider's exact body: agent profiles (on by default) are agents.test.mjs's to turn on
      AGENTS: 'false',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const accessLog = [];
  const stderr = [];
  readline.createInterface({ input: proc.stdout }).on('line', (l) => {
    try { accessLog.push(JSON.parse(l)); } catch { accessLog.push({ raw: l }); }
  });
  readline.createInterface({ input: proc.stderr }).on('line', (l) => stderr.push(l));
  let exited = null;
  proc.on('exit', (code, signal) => { exited = { code, signal }; });
  const base = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const ping = tls
    ? () => new Promise((resolve, reject) => {
      https.get(`${base}/ping`, { ca: tls.ca }, (r) => { r.resume(); resolve(r.statusCode === 200); }).on('error', reject);
    })
    : async () => (await fetch(`${base}/ping`)).ok;
  await until(async () => {
    if (exited) throw Object.assign(new Error(`switchboard exited: ${stderr.join('\n')}`), { fatal: true });
    return ping();
  }, { what: 'switchboard to answer /ping' }).catch((e) => {
    proc.kill('SIGKILL');
    throw new Error(`${e.message}\n${stderr.join('\n')}`);
  });
  return {
    proc, port, base, accessLog, stderr,
    get exited() { return exited; },
    /** Stops it with SIGTERM; a non-zero exit (a sanitizer report, a crash) fails the caller. */
    async stop(signal = 'SIGTERM') {
      if (!exited) {
        proc.kill(signal);
        await new Promise((r) => (exited ? r() : proc.on('exit', r)));
      }
      if (exited.code !== 0) throw new Error(`switchboard exited with ${exited.code ?? exited.signal}:\n${stderr.join('\n')}`);
      return exited;
    },
  };
}

/** A model string selecting a fake-upstream scenario. */
export function scenario(params) {
  return 'fake?' + new URLSearchParams(params).toString();
}

/**
 * POSTs `body` to switchboard over a raw HTTP/1.1 connection and collects the
 * response: status, headers, body text, and each data chunk with its arrival time.
 */
export function post(base, body, { path: p = '/v1/chat/completions', key = INBOUND_KEY, headers = {}, onChunk } = {}) {
  const url = new URL(p, base);
  const payload = typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      agent: false,
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload),
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...headers,
      },
    }, (res) => {
      const chunks = [];
      res.on('data', (d) => {
        const c = { at: performance.now(), data: d };
        chunks.push(c);
        if (onChunk) onChunk(c, req, res);
      });
      res.on('end', () => {
        const text = Buffer.concat(chunks.map((c) => c.data)).toString('utf8');
        resolve({ status: res.statusCode, headers: res.headers, text, chunks, json: tryJson(text) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function tryJson(text) {
  try { return JSON.parse(text); } catch { return undefined; }
}

/** Splits an SSE body into its `data:` payloads, checking the framing strictly. */
export function sseEvents(text) {
  if (!text.endsWith('\n\n')) throw new Error('stream does not end with a blank line');
  const events = [];
  for (const block of text.split('\n\n').slice(0, -1)) {
    const lines = block.split('\n');
    if (lines.every((l) => l.startsWith(':'))) continue; // comments (keep-alive)
    const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
    if (data.length !== lines.filter((l) => !l.startsWith(':')).length) throw new Error(`unexpected SSE line in ${block}`);
    events.push(data.join('\n'));
  }
  return events;
}

/** The content a client assembles from switchboard's chunks, and the chunks themselves. */
export function assemble(text) {
  const events = sseEvents(text);
  const done = events.at(-1) === '[DONE]';
  const chunks = events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e));
  const content = chunks.map((c) => c.choices?.[0]?.delta?.content ?? '').join('');
  const finish = chunks.map((c) => c.choices?.[0]?.finish_reason).filter(Boolean);
  const errors = chunks.filter((c) => c.error);
  return { events, chunks, content, finish, errors, done };
}

/** The tool calls a Chat Completions client assembles from switchboard's chunks, by index. */
export function toolCalls(chunks) {
  const calls = [];
  for (const c of chunks) {
    for (const t of c.choices?.[0]?.delta?.tool_calls ?? []) {
      const call = (calls[t.index] ??= { id: '', name: '', arguments: '' });
      call.id += t.id ?? '';
      call.name += t.function?.name ?? '';
      call.arguments += t.function?.arguments ?? '';
    }
  }
  return calls;
}

/** The content a provider stream carries (what the client should hear). */
export function upstreamContent(sseText) {
  let content = '';
  for (const block of sseText.split(/\r?\n\r?\n/)) {
    const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.replace(/^data: ?/, '')).join('\n');
    if (!data || data === '[DONE]') continue;
    try {
      const j = JSON.parse(data);
      content += j.choices?.[0]?.delta?.content ?? '';
    } catch { /* not a chunk */ }
  }
  return content;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The test Postgres cluster that tests/run starts, or null when there is none. */
export const adminDatabaseUrl = process.env.SB_TEST_DATABASE_URL || null;

/** Runs SQL through psql and returns the unaligned output rows. */
export function psql(url, sql) {
  return execFileSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', url, '-c', sql]).toString().trim();
}

/** A fresh database on the test cluster, migrated and seeded by `switchboard migrate --seed`. */
export function freshDatabase(name) {
  const db = `${name}_${process.pid}_${Date.now() % 100000}`;
  psql(adminDatabaseUrl, `create database ${db}`);
  const url = adminDatabaseUrl.replace(/\/[^/]*$/, `/${db}`);
  execFileSync(path.join(buildDir, 'src', 'switchboard'), ['migrate', '--seed'], {
    env: { PATH: process.env.PATH, DATABASE_URL: url, ASAN_OPTIONS: process.env.ASAN_OPTIONS || '', LSAN_OPTIONS: process.env.LSAN_OPTIONS || '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return url;
}

/** Stops or restarts the test cluster (for outage tests). */
export function cluster(action) {
  execFileSync(path.join(root, 'tests', 'pg', 'cluster.sh'), [action, process.env.SB_TEST_PG_DIR], { stdio: 'ignore' });
}
