// The provider table: LLM_ROUTES sends models to providers, LLM_FALLBACK tries the next model
// when the first fails before a word reached the caller, and bad settings stop start-up.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { startFakeUpstream, startSwitchboard, post, scenario, assemble, buildDir, freePort, until, INBOUND_KEY, PROVIDER_KEY } from './lib.mjs';

let up, sb;
const fallback = scenario({ text: 'The fallback answered.' });
before(async () => {
  up = await startFakeUpstream();
  sb = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, LLM_RETRY_BACKOFF_MS: '1', LLM_FIRST_BYTE_TIMEOUT_MS: '300',
    LLM_IDLE_TIMEOUT_MS: '300',
    LLM_ROUTES: 'switchboard-sandbox=sandbox', LLM_FALLBACK: fallback, SANDBOX_WORD_MS: '0',
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

test('LLM_ROUTES sends a model to its provider: the sandbox answers its own name, the provider the rest', async () => {
  await up.reset();
  let r = await post(sb.base, { model: 'switchboard-sandbox', stream: true, messages: ask('hello') });
  assert.equal(r.status, 200);
  assert.match(assemble(r.text).content, /sandbox/);
  assert.equal((await up.requests()).length, 0, 'the provider heard nothing');
  r = await post(sb.base, { model: scenario({ text: 'From the provider.' }), stream: true, messages: ask('hello') });
  assert.equal(assemble(r.text).content, 'From the provider.');
});

for (const [what, failing] of [
  ['answers 503, and again when tried once more', { status: '503' }],
  ['answers 429', { status: '429' }],
  ['does not answer in time', { hang: 'head' }],
]) {
  test(`the first model ${what}: the fallback answers, and the caller sees one clean stream`, async () => {
    await up.reset();
    const id = `fallback-${Object.values(failing).join('-')}`;
    const r = await post(sb.base, { model: scenario(failing), stream: true, messages: ask('hello') }, { headers: { 'x-request-id': id } });
    assert.equal(r.status, 200);
    const out = assemble(r.text);
    assert.ok(out.done);
    assert.equal(out.content, 'The fallback answered.');
    assert.deepEqual(out.finish, ['stop']);
    assert.ok(out.chunks.every((c) => !c.error), 'no error event');
    const models = (await up.requests()).map((q) => JSON.parse(q.body).model);
    assert.equal(models.at(-1), fallback, 'the fallback model was asked last');
    // this turn's line, by its request id: it is written when the exchange is let go, which may come after [DONE]
    const line = await until(() => sb.accessLog.find((l) => l.request_id === id), { what: 'this turn\'s line' });
    assert.equal(line.model, fallback, 'the access log names the model that answered');
  });
}

test('a failure the fallback would share (the provider rejects the request) reaches the caller', async () => {
  await up.reset();
  const r = await post(sb.base, { model: scenario({ status: '400' }), stream: true, messages: ask('hello') });
  assert.equal(r.status, 400);
  assert.equal((await up.requests()).length, 1, 'no fallback asked');
});

test('after the first words, a failure is not retried elsewhere: the stream ends with an error event', async () => {
  await up.reset();
  // a stall, not a reset: a reset can take unread bytes with it, and then nothing was said yet
  const r = await post(sb.base, { model: scenario({ gen_bytes: '5000', hang_after: '1500' }), stream: true, messages: ask('hello') });
  assert.equal(r.status, 200);
  const out = assemble(r.text);
  assert.ok(out.content.length > 0, 'words went out first');
  assert.ok(out.chunks.some((c) => c.error), 'an error event');
  assert.equal((await up.requests()).length, 1, 'no fallback asked');
});

test('bad LLM_ROUTES or LLM_FALLBACK stop start-up naming the setting', async () => {
  const run = async (env) => spawnSync(path.join(buildDir, 'src', 'switchboard'), [], {
    env: { PATH: process.env.PATH, SWITCHBOARD_ENV_FILE: '/dev/null', SWITCHBOARD_API_KEYS: INBOUND_KEY, PORT: String(await freePort()), ...env },
    encoding: 'utf8', timeout: 5000,
  });
  for (const [env, message] of [
    [{ LLM_ROUTES: 'claude-*' }, /LLM_ROUTES: \W+claude-\*\W+ is not pattern=provider/],
    [{ LLM_ROUTES: 'x=nosuch' }, /LLM_ROUTES: \W+x=nosuch\W+ is not pattern=provider/],
    [{ LLM_ROUTES: 'a*b=openai', OPENAI_API_KEY: 'k' }, /is not pattern=provider/],
    [{ LLM_ROUTES: 'gpt-*=openai' }, /LLM_ROUTES: gpt-\* goes to openai, which has no key or address set/],
    [{ LLM_FALLBACK: Array.from({ length: 9 }, (_, i) => `m${i}`).join(',') }, /LLM_FALLBACK: at most 8 models/],
  ]) {
    const r = await run(env);
    assert.equal(r.status, 2, JSON.stringify(env));
    assert.match(r.stderr, message);
  }
});

test('a fallback to another provider: Anthropic overloaded, the OpenAI-compatible model answers', async () => {
  const s = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, ANTHROPIC_API_KEY: 'sk-ant-test-key-do-not-leak',
    ANTHROPIC_BASE_URL: `${up.base}/v1`, LLM_RETRY_BACKOFF_MS: '1', LLM_FALLBACK: fallback,
    LLM_ROUTES: `${scenario({ status: '529' })}=anthropic`, // a model name may hold '=': the last one splits
  });
  try {
    await up.reset();
    // routed to Anthropic's API on the fake provider, which answers 529 (overloaded) to it and its one retry
    const r = await post(s.base, { model: scenario({ status: '529' }), stream: true, messages: ask('hello') });
    assert.equal(r.status, 200);
    const out = assemble(r.text);
    assert.equal(out.content, 'The fallback answered.');
    const paths = (await up.requests()).map((q) => q.path);
    assert.deepEqual(paths.map((p) => p.replace(/^.*\//, '')), ['messages', 'messages', 'completions'], 'Anthropic twice, then Chat Completions');
  } finally {
    await s.stop();
  }
});
