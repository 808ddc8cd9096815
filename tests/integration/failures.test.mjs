// Provider failures: each becomes the right HTTP error before the first byte,
// or an error event after it, and the server goes on serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeUpstream, startSwitchboard, post, scenario, assemble, freePort, until, PROVIDER_KEY } from './lib.mjs';

let up, sb;
before(async () => {
  up = await startFakeUpstream();
  sb = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY,
    LLM_FIRST_BYTE_TIMEOUT_MS: '300', LLM_IDLE_TIMEOUT_MS: '300', LLM_RETRY_BACKOFF_MS: '20',
  });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

const user = [{ role: 'user', content: 'hello' }];
const stream = (params) => post(sb.base, { model: scenario(params), stream: true, messages: user });

async function stillServes() {
  const res = await stream({ text: 'next turn fine' });
  assert.equal(assemble(res.text).content, 'next turn fine');
}

test('429 passes Retry-After on, after one retry', async () => {
  await up.reset();
  const res = await stream({ status: '429', retry_after: '1' });
  assert.equal(res.status, 429);
  assert.equal(res.headers['retry-after'], '1');
  assert.equal(res.json.error.code, 'rate_limit_exceeded');
  assert.equal((await up.requests()).length, 2, 'one retry');
  await stillServes();
});

test('a long Retry-After is passed on without retrying', async () => {
  await up.reset();
  const res = await stream({ status: '429', retry_after: '30' });
  assert.equal(res.status, 429);
  assert.equal(res.headers['retry-after'], '30');
  assert.equal((await up.requests()).length, 1);
});

test('500 twice is a 502 with the provider message', async () => {
  await up.reset();
  const res = await stream({ status: '500', body: '{"error":{"message":"the engine overheated"}}' });
  assert.equal(res.status, 502);
  assert.equal(res.json.error.message, 'the engine overheated');
  assert.equal((await up.requests()).length, 2);
  await stillServes();
});

test('a 500 then a good answer: the retry is invisible to the caller', async () => {
  await up.reset();
  const res = await stream({ status: '503', fail_times: '1', key: `flaky-${Date.now()}`, text: 'recovered' });
  assert.equal(res.status, 200);
  assert.equal(assemble(res.text).content, 'recovered');
  assert.equal((await up.requests()).length, 2);
});

test('a provider 401 is a 502 that never shows a key', async () => {
  const res = await stream({ status: '401', body: `{"error":{"message":"Incorrect API key provided: ${PROVIDER_KEY}"}}` });
  assert.equal(res.status, 502);
  assert.equal(res.json.error.code, 'upstream_auth_failed');
  assert.ok(!res.text.includes(PROVIDER_KEY));
});

test('a provider 400 passes its message on as a 400', async () => {
  const res = await stream({ status: '400', body: '{"error":{"message":"model gpt-9 does not exist"}}' });
  assert.equal(res.status, 400);
  assert.equal(res.json.error.message, 'model gpt-9 does not exist');
});

test('a refused connection is a 502 after one retry', async () => {
  const port = await freePort();
  const dead = await startSwitchboard({ LLM_BASE_URL: `http://127.0.0.1:${port}/v1`, OPENAI_API_KEY: PROVIDER_KEY, LLM_RETRY_BACKOFF_MS: '10' });
  try {
    const res = await post(dead.base, { stream: true, messages: user });
    assert.equal(res.status, 502);
    assert.equal(res.json.error.code, 'upstream_unavailable');
    const line = await until(() => dead.accessLog.find((l) => l.route === '/v1/chat/completions'), { what: 'the access log line' });
    assert.equal(line.end, 'upstream_error');
  } finally {
    await dead.stop();
  }
});

test('no first byte in time is a 504', async () => {
  const t0 = performance.now();
  const res = await stream({ hang: 'head' });
  assert.equal(res.status, 504);
  assert.equal(res.json.error.code, 'upstream_timeout');
  assert.ok(performance.now() - t0 < 2000);
  await stillServes();
});

test('a provider that stalls mid-stream ends in an error event and [DONE]', async () => {
  const res = await stream({ file: 'openai_chat_content_usage_stream.sse', hang_after: '2000' });
  assert.equal(res.status, 200);
  const out = assemble(res.text);
  assert.ok(out.done);
  assert.equal(out.errors.length, 1);
  assert.equal(out.errors[0].error.code, 'upstream_timeout');
  await until(() => sb.accessLog.some((l) => l.end === 'timeout' && l.status === 200), { what: 'an access log line ending in timeout' });
  await stillServes();
});

test('a connection dropped mid-stream ends in an error event and [DONE]', async () => {
  // Paced, so the bytes before the reset have been read when it comes (a reset discards unread data).
  const res = await stream({ file: 'openai_chat_content_usage_stream.sse', chunk: '500', pace_ms: '20', drop_after: '2000' });
  assert.equal(res.status, 200);
  const out = assemble(res.text);
  assert.ok(out.done);
  assert.equal(out.errors.length, 1);
  assert.ok(out.content.length > 0, 'what came before the drop was relayed');
  await stillServes();
});

test('non-streaming turns get the HTTP error', async () => {
  const res = await post(sb.base, { model: scenario({ status: '500' }), messages: user });
  assert.equal(res.status, 502);
  const mid = await post(sb.base, { model: scenario({ file: 'openai_chat_content_usage_stream.sse', chunk: '500', pace_ms: '20', drop_after: '2000' }), messages: user });
  assert.equal(mid.status, 502);
  assert.ok(mid.json.error);
});
