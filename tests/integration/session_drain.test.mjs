// A session socket when switchboard drains (SIGTERM): an idle one is told at once that
// switchboard is restarting and closed with 1001, so a restart does not wait
// DRAIN_TIMEOUT_MS for pages that are only open; an answer in progress finishes first.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startFakeUpstream, startSwitchboard, scenario, until, INBOUND_KEY, PROVIDER_KEY } from './lib.mjs';

const DRAIN_MS = 8000;
let up;
before(async () => {
  up = await startFakeUpstream();
});
after(async () => {
  await up?.stop();
});

/** A switchboard, one session on it, its socket open and ready; `got` collects the server's messages. */
async function openSession() {
  const sb = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DRAIN_TIMEOUT_MS: String(DRAIN_MS) });
  const res = await fetch(`${sb.base}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${INBOUND_KEY}` } });
  assert.equal(res.status, 201);
  const s = await res.json();
  const ws = new WebSocket(`ws://127.0.0.1:${sb.port}${s.url}`, ['switchboard.v1', s.token]);
  const got = [];
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve({ code, at: performance.now() })));
  ws.on('message', (m) => got.push(JSON.parse(String(m))));
  await until(() => got.some((m) => m.type === 'ready'), { what: 'ready' });
  return { sb, ws, got, closed };
}

test('an idle session socket is closed as soon as the drain starts', { timeout: 30000 }, async () => {
  const { sb, got, closed } = await openSession();
  const t0 = performance.now();
  const stopped = sb.stop();
  const close = await closed;
  await stopped;
  const exitMs = performance.now() - t0;
  assert.equal(close.code, 1001);
  assert.deepEqual(got.filter((m) => m.type === 'error').map((m) => m.category), ['restarting']);
  assert.ok(close.at - t0 < 2000, `closed after ${Math.round(close.at - t0)} ms`);
  assert.ok(exitMs < DRAIN_MS / 2, `switchboard exited after ${Math.round(exitMs)} ms, not at the drain deadline (${DRAIN_MS} ms)`);
});

test('an answer in progress when the drain starts is finished, then the socket closes', { timeout: 30000 }, async () => {
  const { sb, ws, got, closed } = await openSession();
  ws.send(JSON.stringify({ type: 'message', text: 'Tell me slowly.', model: scenario({ text: 'one two three four five six', pace_ms: '150' }) }));
  await until(() => got.some((m) => m.type === 'token'), { what: 'the answer to start' });
  const t0 = performance.now();
  const stopped = sb.stop();
  const close = await closed;
  await stopped;
  assert.equal(close.code, 1001);
  const answer = got.filter((m) => m.type === 'token').map((m) => m.text).join('');
  assert.equal(answer, 'one two three four five six', 'the whole answer');
  const types = got.map((m) => m.type);
  assert.equal(got.find((m) => m.type === 'done').finish, 'stop');
  assert.ok(types.lastIndexOf('error') > types.indexOf('done'), `restarting comes after the answer: ${types}`);
  assert.equal(got.at(-1).category, 'restarting');
  assert.ok(performance.now() - t0 < DRAIN_MS / 2, 'the drain did not wait for its deadline');
});
