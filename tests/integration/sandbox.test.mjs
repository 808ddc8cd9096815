// With no provider configured, the sandbox model answers: the quickstart needs no account.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSwitchboard, post, assemble, until } from './lib.mjs';

const started = [];
after(async () => {
  for (const sb of started) await sb.stop();
});

async function sandbox(env = {}) {
  const sb = await startSwitchboard({ SWITCHBOARD_API_KEYS: '', SWITCHBOARD_ALLOW_UNAUTHENTICATED: 'true', SANDBOX_WORD_MS: '5', ...env });
  started.push(sb);
  return sb;
}

test('the sandbox streams a labelled answer word by word, with no key anywhere', async () => {
  const sb = await sandbox();
  assert.ok(sb.stderr.some((l) => /sandbox/.test(l)), 'the start-up log says the sandbox answers');
  assert.ok(sb.stderr.some((l) => /ALLOW_UNAUTHENTICATED/.test(l)), 'and warns that anyone may call');
  const res = await post(sb.base, { stream: true, messages: [{ role: 'user', content: 'how long do refunds take?' }] }, { key: null });
  assert.equal(res.status, 200);
  const out = assemble(res.text);
  assert.ok(out.done);
  assert.ok(out.chunks.every((c) => c.model === 'switchboard-sandbox'));
  assert.match(out.content, /sandbox/);
  assert.match(out.content, /how long do refunds take\?/);
  assert.ok(out.chunks.filter((c) => c.choices?.[0]?.delta?.content).length > 5, 'word by word');
  const health = await (await fetch(`${sb.base}/healthz`)).json();
  assert.equal(health.provider, 'sandbox');
});

test('a keep-alive comment goes out after a configured silence', async () => {
  const sb = await sandbox({ SANDBOX_WORD_MS: '100', SSE_KEEPALIVE_MS: '40' });
  const res = await post(sb.base, { stream: true, messages: [{ role: 'user', content: 'hi' }] }, { key: null });
  assert.match(res.text, /\n: keep-alive\n\n/);
  assert.ok(assemble(res.text).done, 'comments do not disturb the stream');
});

test('switchboard refuses to start with no inbound key unless told to', async () => {
  await assert.rejects(startSwitchboard({ SWITCHBOARD_API_KEYS: '' }), /SWITCHBOARD_API_KEYS/);
});
