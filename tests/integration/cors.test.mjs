// CORS for browser clients (CORS_ORIGINS): preflights answered for allowed origins and refused for
// others, Access-Control-* headers on real answers, and plain OPTIONS without an Origin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { startSwitchboard, buildDir, freePort, INBOUND_KEY } from './lib.mjs';

const app = 'https://app.example.com';
let sb;
before(async () => {
  sb = await startSwitchboard({ CORS_ORIGINS: `${app}, http://localhost:5173`, SANDBOX_WORD_MS: '0' });
});
after(async () => sb?.stop());

const preflight = (origin, headers = {}) => fetch(`${sb.base}/v1/chat/completions`, {
  method: 'OPTIONS',
  headers: { origin, 'access-control-request-method': 'POST', ...headers },
});

test('a preflight from an allowed origin gets 204 with the methods and headers it may use', async () => {
  const r = await preflight(app, { 'access-control-request-headers': 'authorization, content-type, x-stainless-os' });
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('access-control-allow-origin'), app);
  assert.equal(r.headers.get('access-control-allow-methods'), 'POST');
  assert.equal(r.headers.get('access-control-allow-headers'), 'authorization, content-type, x-stainless-os');
  assert.equal(r.headers.get('access-control-max-age'), '600');
  assert.match(r.headers.get('vary'), /Origin/);
  assert.equal(await r.text(), '');
});

test('a preflight asking for odd header names gets the default list, not an echo', async () => {
  const r = await preflight(app, { 'access-control-request-headers': 'x-a;b' });
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('access-control-allow-headers'), 'authorization, content-type, x-request-id, traceparent');
});

test('a preflight from another origin gets 403 and no CORS headers', async () => {
  for (const origin of ['https://evil.example.com', 'https://app.example.com.evil.com', 'null']) {
    const r = await preflight(origin);
    assert.equal(r.status, 403, origin);
    assert.equal(r.headers.get('access-control-allow-origin'), null);
    assert.equal((await r.json()).error.code, 'origin_not_allowed');
  }
});

test('an allowed origin reads the answer (and its request id); another origin gets no CORS headers', async () => {
  const body = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] });
  const headers = { authorization: `Bearer ${INBOUND_KEY}`, 'content-type': 'application/json' };
  let r = await fetch(`${sb.base}/v1/chat/completions`, { method: 'POST', body, headers: { ...headers, origin: 'http://localhost:5173' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('access-control-allow-origin'), 'http://localhost:5173');
  assert.match(r.headers.get('access-control-expose-headers'), /x-request-id/);
  r = await fetch(`${sb.base}/v1/chat/completions`, { method: 'POST', body, headers: { ...headers, origin: 'https://evil.example.com' } });
  assert.equal(r.status, 200, 'the bearer key still decides who is served');
  assert.equal(r.headers.get('access-control-allow-origin'), null);
  r = await fetch(`${sb.base}/v1/chat/completions`, { method: 'POST', body, headers: { origin: app, 'content-type': 'application/json' } });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('access-control-allow-origin'), app, 'an error is readable by the page too');
});

test('OPTIONS without an Origin answers 204 with Allow', async () => {
  const r = await fetch(`${sb.base}/healthz`, { method: 'OPTIONS' });
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('allow'), 'GET, HEAD, OPTIONS');
});

test('without CORS_ORIGINS no origin is allowed', async () => {
  const s = await startSwitchboard({ SANDBOX_WORD_MS: '0' });
  try {
    const r = await fetch(`${s.base}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: app, 'access-control-request-method': 'POST' } });
    assert.equal(r.status, 403);
  } finally {
    await s.stop();
  }
});

test('CORS_ORIGINS with a path or without a scheme stops start-up naming the setting', async () => {
  for (const bad of ['https://app.example.com/', 'app.example.com', 'https://a.example.com/chat']) {
    const r = spawnSync(path.join(buildDir, 'src', 'switchboard'), [], {
      env: { PATH: process.env.PATH, SWITCHBOARD_ENV_FILE: '/dev/null', SWITCHBOARD_API_KEYS: INBOUND_KEY, PORT: String(await freePort()), CORS_ORIGINS: bad },
      encoding: 'utf8', timeout: 5000,
    });
    assert.equal(r.status, 2, bad);
    assert.match(r.stderr, /CORS_ORIGINS: .* is not an origin/);
  }
});
