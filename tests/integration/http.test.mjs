// The HTTP surface: routes, auth, request validation and limits, all with OpenAI-shaped errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { startFakeUpstream, startSwitchboard, post, scenario, assemble, buildDir, freePort, until, INBOUND_KEY, PROVIDER_KEY } from './lib.mjs';

let up, sb;
before(async () => {
  up = await startFakeUpstream();
  sb = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, MAX_BODY_BYTES: '65536' });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

const user = [{ role: 'user', content: 'hello' }];

function assertOpenAIError(res, status, param) {
  assert.equal(res.status, status);
  assert.match(res.headers['content-type'], /application\/json/);
  const e = res.json?.error;
  assert.ok(e, `an error body: ${res.text}`);
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof e.message, 'string');
  if (param !== undefined) assert.equal(e.param, param);
  return e;
}

test('GET /ping answers pong', async () => {
  const r = await fetch(`${sb.base}/ping`);
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { message: 'pong' });
});

test('GET /readyz is 200 when nothing it needs is missing', async () => {
  const r = await fetch(`${sb.base}/readyz`);
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { status: 'ready' });
});

test('GET /healthz reports the provider', async () => {
  const r = await fetch(`${sb.base}/healthz`);
  assert.equal(r.status, 200);
  const j = await r.json();
  assert.equal(j.status, 'ok');
  assert.equal(j.provider, 'openai');
});

test('unknown paths are 404, wrong methods 405 with Allow', async () => {
  const r404 = await fetch(`${sb.base}/v2/nothing`);
  assert.equal(r404.status, 404);
  assert.equal((await r404.json()).error.code, 'not_found');
  const r405 = await fetch(`${sb.base}/v1/chat/completions`);
  assert.equal(r405.status, 405);
  assert.equal(r405.headers.get('allow'), 'POST');
  assert.equal((await r405.json()).error.type, 'invalid_request_error');
  const p405 = await fetch(`${sb.base}/ping`, { method: 'POST' });
  assert.equal(p405.status, 405);
  assert.equal(p405.headers.get('allow'), 'GET, HEAD');
});

test('a WebSocket route asked without the upgrade is 426 with Upgrade: websocket; a malformed handshake 400', async () => {
  const plain = await fetch(`${sb.base}/v1/sessions/sess_x/ws`);
  assert.equal(plain.status, 426);
  assert.equal(plain.headers.get('upgrade'), 'websocket');
  assert.equal((await plain.json()).error.code, 'upgrade_required');
  // fetch may not set Connection or Upgrade: a plain request does
  const badKey = await new Promise((resolve, reject) => {
    http.get(`${sb.base}/v1/sessions/sess_x/ws`, {
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'short' },
    }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    }).on('error', reject);
  });
  assert.equal(badKey.status, 400);
  assert.match(JSON.parse(badKey.body).error.message, /malformed WebSocket handshake/);
});

test('a missing or wrong key is 401 and never reaches the provider', async () => {
  await up.reset();
  for (const key of [null, 'not-the-key-not-the-key', `${INBOUND_KEY}x`, INBOUND_KEY.slice(0, -1), PROVIDER_KEY]) {
    const res = await post(sb.base, { model: scenario({ text: 'x' }), messages: user }, { key });
    const e = assertOpenAIError(res, 401, null);
    assert.equal(e.code, 'invalid_api_key');
    assert.ok(!res.text.includes(INBOUND_KEY) && !res.text.includes(PROVIDER_KEY));
  }
  const raw = await post(sb.base, { messages: user }, { key: null, headers: { authorization: `Basic ${INBOUND_KEY}` } });
  assert.equal(raw.status, 401, 'only the Bearer scheme counts');
  assert.equal((await up.requests()).length, 0);
});

test('an error answer keeps the connection open', async () => {
  const out = execFileSync('curl', ['-s', '-o', '/dev/null', '-X', 'POST', '-d', '{}', `${sb.base}/v1/chat/completions`,
    '--next', '-s', '-o', '/dev/null', '-w', '%{http_code} %{num_connects}', `${sb.base}/ping`]).toString();
  assert.equal(out, '200 0', 'the second request reused the connection of the 401');
});

test('the right key works, in any case of the scheme name', async () => {
  const res = await post(sb.base, { model: scenario({ text: 'yes' }), stream: true, messages: user }, {
    key: null, headers: { authorization: `bearer ${INBOUND_KEY}` },
  });
  assert.equal(res.status, 200);
});

const invalid = [
  ['not json', '{"messages": [', 400, null],
  ['a JSON array', '[]', 400, null],
  ['no messages', { model: 'm' }, 400, 'messages'],
  ['empty messages', { messages: [] }, 400, 'messages'],
  ['messages not an array', { messages: 'hi' }, 400, 'messages'],
  ['an unknown role', { messages: [{ role: 'robot', content: 'x' }] }, 400, 'messages[0].role'],
  ['content of the wrong type', { messages: [{ role: 'user', content: 42 }] }, 400, 'messages[0].content'],
  ['a number as model', { model: 7, messages: user }, 400, 'model'],
  ['a string as stream', { stream: 'true', messages: user }, 400, 'stream'],
  ['temperature out of range', { temperature: 9, messages: user }, 400, 'temperature'],
  ['several choices', { n: 3, messages: user }, 400, 'n'],
];
for (const [what, body, status, param] of invalid) {
  test(`400 for ${what}`, async () => {
    const e = assertOpenAIError(await post(sb.base, body), status, param);
    assert.equal(e.type, 'invalid_request_error');
  });
}

test('413 for a body over the limit, declared or chunked', async () => {
  const big = { messages: [{ role: 'user', content: 'x'.repeat(70000) }] };
  const e = assertOpenAIError(await post(sb.base, big), 413);
  assert.equal(e.code, 'request_too_large');
  // curl sends this one chunked, without a length: h2o stops reading at the limit.
  const out = execFileSync('curl', ['-s', '-H', `Authorization: Bearer ${INBOUND_KEY}`, '-H', 'Transfer-Encoding: chunked',
    '--data-binary', '@-', '-w', '\n%{http_code}', `${sb.base}/v1/chat/completions`], { input: JSON.stringify(big) }).toString();
  const [body, code] = [out.slice(0, out.lastIndexOf('\n')), out.slice(out.lastIndexOf('\n') + 1)];
  assert.equal(code, '413');
  assert.equal(JSON.parse(body).error.code, 'request_too_large');
});

test('the server keeps serving after bad input', async () => {
  const res = await post(sb.base, { model: scenario({ text: 'still here' }), stream: true, messages: user });
  assert.equal(assemble(res.text).content, 'still here');
});

test('cleartext HTTP/2 with prior knowledge streams too', async () => {
  const out = execFileSync('curl', ['-s', '--http2-prior-knowledge', '-N', '-w', '\n%{http_version}',
    '-H', `Authorization: Bearer ${INBOUND_KEY}`, '-H', 'Content-Type: application/json',
    '-d', JSON.stringify({ model: scenario({ text: 'over h2' }), stream: true, messages: user }),
    `${sb.base}/v1/chat/completions`]).toString();
  const version = out.slice(out.lastIndexOf('\n') + 1);
  assert.equal(version, '2');
  assert.equal(assemble(out.slice(0, out.lastIndexOf('\n'))).content, 'over h2');
});

test('HTTP/1.1 keep-alive: several turns on one connection', async () => {
  const body = JSON.stringify({ model: scenario({ text: 'again' }), stream: true, messages: user });
  const out = execFileSync('curl', ['-s', '-N', '-H', `Authorization: Bearer ${INBOUND_KEY}`, '-H', 'Content-Type: application/json',
    '-d', body, `${sb.base}/v1/chat/completions`, '--next', '-H', `Authorization: Bearer ${INBOUND_KEY}`,
    '-H', 'Content-Type: application/json', '-d', body, `${sb.base}/v1/chat/completions`, '-w', '%{num_connects}']).toString();
  assert.equal((out.match(/\[DONE\]/g) || []).length, 2);
  assert.ok(out.endsWith('0'), 'the second request reused the connection');
});

test('a second switchboard on a port already served refuses to start, naming PORT', async () => {
  const bin = path.join(buildDir, 'src', 'switchboard');
  const out = spawnSync(bin, [], {
    cwd: buildDir,
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: String(sb.port), SWITCHBOARD_API_KEYS: 'another-inbound-key-0123456789' },
    encoding: 'utf8', timeout: 10000,
  });
  assert.equal(out.status, 1);
  assert.match(out.stderr, /another process already serves PORT \d+/);
  assert.equal((await fetch(`${sb.base}/ping`)).status, 200, 'the first one still answers');
});

test("a client's X-Request-Id is kept and sent on with its traceparent; a malformed one is replaced", async () => {
  await up.reset();
  const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const kept = await post(sb.base, { model: scenario({ text: 'hi' }), messages: user },
    { headers: { 'x-request-id': 'call-42:turn.7', traceparent: tp } });
  assert.equal(kept.status, 200);
  assert.equal(kept.headers['x-request-id'], 'call-42:turn.7', 'the answer carries the client id');
  const bad = await post(sb.base, { model: scenario({ text: 'hi' }), messages: user },
    { headers: { 'x-request-id': 'two words\u00e9', traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' } });
  assert.equal(bad.status, 200);
  assert.match(bad.headers['x-request-id'], /^[A-Za-z0-9]{24}$/, 'a malformed id is replaced by switchboard\'s own');
  const [first, second] = await up.requests();
  assert.equal(first.headers['x-request-id'], 'call-42:turn.7', 'the provider hears the same id');
  assert.equal(first.headers.traceparent, tp, 'and the trace context');
  assert.equal(second.headers['x-request-id'], bad.headers['x-request-id']);
  assert.equal(second.headers.traceparent, undefined, 'an all-zero trace id is not passed on');
});

test('by default one worker per CPU the process may use: one under a one-CPU affinity', async () => {
  const bin = path.join(buildDir, 'src', 'switchboard');
  const port = await freePort();
  const proc = spawn('taskset', ['-c', '0', bin], {
    cwd: buildDir,
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: String(port), SWITCHBOARD_API_KEYS: INBOUND_KEY,
      ASAN_OPTIONS: process.env.ASAN_OPTIONS || '', UBSAN_OPTIONS: process.env.UBSAN_OPTIONS || '', LSAN_OPTIONS: process.env.LSAN_OPTIONS || '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  try {
    await until(() => /listening on/.test(err), { timeoutMs: 10000, what: 'the start-up line' });
    assert.match(err, /with 1 workers/);
  } finally {
    proc.kill('SIGTERM');
    await exited;
  }
});

test('the descriptor limit is raised to its hard limit, and running out of it is logged once, by name', async () => {
  const s = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '1' },
    { nofile: { soft: 64, hard: 160 } });
  const sockets = [];
  try {
    assert.ok(s.stderr.some((l) => /RLIMIT_NOFILE raised from 64 to its hard limit, 160/.test(l)), s.stderr.join('\n'));
    // more idle connections than descriptors: the ones past the limit are refused
    for (let i = 0; i < 220; ++i) {
      const c = net.connect(s.port, '127.0.0.1');
      c.on('error', () => {});
      sockets.push(c);
    }
    const refused = () => s.stderr.filter((l) => /cannot accept a connection: .*RLIMIT_NOFILE \(160\)/.test(l));
    await until(() => refused().length > 0, { what: 'the refusal to be logged' });
    for (let i = 0; i < 50; ++i) sockets.push(net.connect(s.port, '127.0.0.1').on('error', () => {}));
    await until(() => sockets.slice(-50).every((c) => c.destroyed || c.readyState === 'open'), { what: 'the later connections to settle' });
    assert.equal(refused().length, 1, 'once, however many are refused');
    for (const c of sockets) c.destroy();
    await until(async () => (await fetch(`${s.base}/ping`).catch(() => ({ ok: false }))).ok, { what: 'the server to serve again' });
  } finally {
    for (const c of sockets) c.destroy();
    await s.stop();
  }
});
