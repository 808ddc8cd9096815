// GET /metrics: the Prometheus text a real Prometheus scrapes (and promtool accepts), what each
// family counts after real turns, METRICS_TOKEN, METRICS_PORT and METRICS=false.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import {
  startFakeUpstream, startSwitchboard, post, scenario, assemble, until, freshDatabase, adminDatabaseUrl, freePort, root, buildDir,
  INBOUND_KEY, PROVIDER_KEY,
} from './lib.mjs';

let up, sb;
before(async () => {
  up = await startFakeUpstream();
  sb = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '1', LLM_RETRY_BACKOFF_MS: '1',
    ...(adminDatabaseUrl ? { DATABASE_URL: freshDatabase('metrics') } : {}),
  });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

const ask = (content) => [{ role: 'user', content }];

async function scrape(base = sb.base, headers = {}) {
  const r = await fetch(`${base}/metrics`, { headers });
  assert.equal(r.status, 200, await r.clone().text());
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  return r.text();
}

/** The samples of the text format: [{name, labels, value}]. */
function samples(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels = {};
    for (const [, k, v] of (m[2] || '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function value(text, name, labels = {}) {
  const hits = samples(text).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return hits.reduce((sum, s) => sum + s.value, 0);
}

function promtool(text) {
  return spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
}

test('turns, first token, duration, tokens and provider connections are counted per route, status and model', async () => {
  const before = await scrape();
  const model = scenario({ text: 'Your order shipped yesterday.' });
  const res = await post(sb.base, { model, stream: true, stream_options: { include_usage: true }, messages: ask('where is it?') });
  assert.equal(res.status, 200);
  const json = await post(sb.base, { model, stream: false, messages: ask('where is it?') });
  assert.equal(json.status, 200);
  const bad = await post(sb.base, { model, messages: ask('x') }, { key: 'not-the-key-0123456789' });
  assert.equal(bad.status, 401);
  const after = await scrape();
  const route = '/v1/chat/completions';
  const delta = (name, labels) => value(after, name, labels) - value(before, name, labels);
  assert.equal(delta('switchboard_turns_total', { route, status: '200', end: 'done' }), 2);
  assert.equal(delta('switchboard_turns_total', { route, status: '401', end: 'rejected' }), 1);
  const series = { provider: 'openai', model };
  assert.equal(delta('switchboard_first_token_seconds_count', series), 2);
  assert.equal(delta('switchboard_turn_duration_seconds_count', series), 2);
  assert.equal(delta('switchboard_first_token_seconds_bucket', { ...series, le: '+Inf' }), 2);
  assert.ok(delta('switchboard_tokens_total', { ...series, direction: 'completion' }) > 0, 'completion tokens from the usage chunk');
  assert.ok(value(after, 'switchboard_provider_connections_opened_total') >= 1);
  assert.equal(value(after, 'switchboard_open_turns'), 0);
  const lint = promtool(after);
  assert.equal(lint.status, 0, `promtool check metrics: ${lint.stdout}${lint.stderr}`);
});

test('provider errors by kind, and retries', async () => {
  const before = await scrape();
  const auth = await post(sb.base, { model: scenario({ status: '401' }), stream: true, messages: ask('hi') });
  assert.equal(auth.status, 502);
  const retried = await post(sb.base, {
    model: scenario({ status: '503', fail_times: '1', key: `m${Date.now()}`, text: 'recovered' }), stream: true, messages: ask('hi'),
  });
  assert.equal(retried.status, 200);
  const after = await scrape();
  const delta = (name, labels) => value(after, name, labels) - value(before, name, labels);
  assert.equal(delta('switchboard_provider_errors_total', { provider: 'openai', kind: 'upstream_auth_failed' }), 1);
  assert.equal(delta('switchboard_provider_retries_total', { provider: 'openai' }), 1, 'the 503 is tried again, the 401 is not');
  assert.equal(delta('switchboard_provider_errors_total', { provider: 'openai', kind: 'upstream_error' }), 0,
    'a failed attempt that a retry recovered is not a failed turn');
});

test('switchboard tools by tool and outcome, a round-time histogram, retrieval by backend and outcome, the pool',
  { skip: adminDatabaseUrl ? false : 'no test database (run through tests/run)' }, async () => {
    const before = await scrape();
    const model = scenario({ calls: JSON.stringify([{ name: 'get_order_status', arguments: { order_number: '4417' } },
      { name: 'get_order_status', arguments: { order_number: 'no-such-order' } }]) });
    const res = await post(sb.base, { model, stream: true, messages: ask('where is my order 4417?') });
    assert.equal(res.status, 200);
    assert.ok(assemble(res.text).done);
    const after = await until(async () => {
      const text = await scrape();
      return value(text, 'switchboard_pg_pool_connections', { state: 'open' }) >= 1 && text; // copied once a second
    }, { timeoutMs: 5000, what: 'the pool gauge' });
    const delta = (name, labels) => value(after, name, labels) - value(before, name, labels);
    assert.equal(delta('switchboard_tool_calls_total', { tool: 'get_order_status' }), 2);
    assert.equal(delta('switchboard_tool_round_seconds_count'), 1, 'two calls of one round: one round');
    assert.equal(delta('switchboard_retrieval_total', { backend: 'postgres' }), 1);
    assert.equal(delta('switchboard_retrieval_seconds_count', { backend: 'postgres' }), 1);
    assert.equal(value(after, 'switchboard_pg_pool_waiting'), 0);
  });

test('open turns rise while a stream is open and fall when its caller hangs up', async () => {
  const model = scenario({ text: 'one two three four five six seven eight nine ten', pace_ms: '200' });
  const sock = net.connect(sb.port, '127.0.0.1');
  await new Promise((r) => sock.on('connect', r));
  const body = JSON.stringify({ model, stream: true, messages: ask('count') });
  let heard = '';
  sock.on('data', (d) => (heard += d));
  sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${INBOUND_KEY}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  await until(async () => value(await scrape(), 'switchboard_open_turns') === 1, { what: 'one open turn' });
  // the answer has begun (its head and first words): the hang-up ends a 200, not a 499
  await until(() => /data: \{/.test(heard), { timeoutMs: 10000, what: 'the first words' });
  sock.destroy();
  const text = await until(async () => {
    const t = await scrape();
    return value(t, 'switchboard_open_turns') === 0 && t;
  }, { timeoutMs: 15000, what: 'no open turn' }); // a sanitizer build on a busy machine takes its time to notice
  assert.ok(value(text, 'switchboard_turns_total', { status: '200', end: 'client_gone' }) >= 1);
});

test('a flood of model names stays bounded: past 32 per worker they count as model="other"', async () => {
  for (let i = 0; i < 40; ++i) {
    const r = await post(sb.base, { model: scenario({ text: 'ok', seed: String(i + 1) }), stream: true, messages: ask('hi') });
    assert.equal(r.status, 200);
  }
  const text = await scrape();
  const models = new Set(samples(text).filter((s) => s.name === 'switchboard_turn_duration_seconds_count').map((s) => s.labels.model));
  assert.ok(models.size <= 32, `${models.size} model series`);
  assert.ok(models.has('other'), 'the overflow series');
});

test('a real Prometheus scrapes switchboard and answers queries on its histograms and counters', async (t) => {
  if (spawnSync('prometheus', ['--version']).status !== 0) return t.skip('prometheus is not installed');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-prom-'));
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: switchboard\n    static_configs:\n      - targets: ['127.0.0.1:${sb.port}']\n`);
  const prom = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  const log = [];
  prom.stderr.on('data', (d) => log.push(d.toString()));
  try {
    const query = async (q) => {
      const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`);
      const j = await r.json();
      return j.status === 'success' ? j.data.result : [];
    };
    const model = scenario({ text: 'Scraped by Prometheus.' });
    const res = await post(sb.base, { model, stream: true, messages: ask('hi') });
    assert.equal(res.status, 200);
    // the counter and the histogram as Prometheus stored them, from its own scrapes
    const turns = await until(async () => {
      const r = await query('sum(switchboard_turns_total{route="/v1/chat/completions",status="200"})');
      return r.length && Number(r[0].value[1]) >= 1 && r;
    }, { timeoutMs: 30000, everyMs: 250, what: `Prometheus to scrape switchboard\n${log.join('')}` });
    assert.ok(Number(turns[0].value[1]) >= 1);
    const p50 = await until(async () => {
      const r = await query(`histogram_quantile(0.5, sum by (le) (switchboard_first_token_seconds_bucket))`);
      return r.length && r;
    }, { timeoutMs: 10000, everyMs: 250, what: 'the first-token histogram' });
    const seconds = Number(p50[0].value[1]);
    assert.ok(seconds > 0 && seconds < 5, `first-token p50 ${seconds}`);
    const open = await query('switchboard_open_turns');
    assert.equal(open.length, 1);
    assert.equal(Number(open[0].value[1]), 0);
    const up = await query('up{job="switchboard"}');
    assert.equal(Number(up[0].value[1]), 1, 'the scrape target is healthy');

    // every query of the Grafana dashboard parses in Prometheus and names metrics switchboard serves
    const dashboard = JSON.parse(fs.readFileSync(path.join(root, 'deploy', 'grafana', 'switchboard.json'), 'utf8'));
    const families = new Set([...(await scrape()).matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]));
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    assert.ok(exprs.length >= 10);
    for (const expr of exprs) {
      for (const [name] of expr.matchAll(/switchboard_\w+/g)) {
        const family = name.replace(/_(bucket|sum|count)$/, '');
        assert.ok(families.has(family), `${name} in the dashboard is served`);
      }
      const q = expr.replaceAll('$__rate_interval', '1m').replaceAll('$job', '.*');
      const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`);
      assert.equal((await r.json()).status, 'success', q);
    }
  } finally {
    prom.kill('SIGTERM');
    await new Promise((r) => (prom.exitCode !== null ? r() : prom.on('exit', r)));
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('METRICS_TOKEN: a scrape without the token gets 401, with it the metrics', async () => {
  const token = 'metrics-token-0123456789';
  const s = await startSwitchboard({ SANDBOX_WORD_MS: '0', METRICS_TOKEN: token });
  try {
    const r = await fetch(`${s.base}/metrics`);
    assert.equal(r.status, 401);
    assert.equal((await r.json()).error.code, 'invalid_api_key');
    assert.equal((await fetch(`${s.base}/metrics`, { headers: { authorization: `Bearer ${INBOUND_KEY}` } })).status, 401,
      'an inbound API key is not the metrics token');
    assert.match(await scrape(s.base, { authorization: `Bearer ${token}` }), /switchboard_turns_total/);
  } finally {
    await s.stop();
  }
});

test('METRICS_PORT serves /metrics there and not on PORT; METRICS=false serves none', async () => {
  const mport = await freePort();
  const s = await startSwitchboard({ SANDBOX_WORD_MS: '0', METRICS_PORT: String(mport) });
  try {
    assert.equal((await fetch(`${s.base}/metrics`)).status, 404);
    const text = await scrape(`http://127.0.0.1:${mport}`);
    assert.match(text, /^switchboard_workers 2$/m);
  } finally {
    await s.stop();
  }
  const off = await startSwitchboard({ SANDBOX_WORD_MS: '0', METRICS: 'false' });
  try {
    assert.equal((await fetch(`${off.base}/metrics`)).status, 404);
    const r = await post(off.base, { stream: true, messages: ask('hello') });
    assert.equal(r.status, 200, 'turns run without metrics');
  } finally {
    await off.stop();
  }
});

test('a METRICS_PORT equal to PORT, or a short METRICS_TOKEN, stops start-up naming the setting', async () => {
  const port = await freePort();
  const bin = path.join(buildDir, 'src', 'switchboard');
  const run = (env) => spawnSync(bin, [], {
    env: { PATH: process.env.PATH, SWITCHBOARD_ENV_FILE: '/dev/null', SWITCHBOARD_API_KEYS: INBOUND_KEY, PORT: String(port), ...env },
    encoding: 'utf8', timeout: 5000,
  });
  let r = run({ METRICS_PORT: String(port) });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /METRICS_PORT must differ from PORT/);
  r = run({ METRICS_TOKEN: 'short' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /METRICS_TOKEN must be at least 16 characters/);
});
