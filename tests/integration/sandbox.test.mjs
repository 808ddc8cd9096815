// With no provider configured, the sandbox model answers: the quickstart needs no account.
// It speaks plain sentences from the knowledge base, calls switchboard's tools and the
// client's own when the caller plainly asks, and goes through the turn like any provider.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startSwitchboard, post, assemble, until, root, buildDir, freshDatabase, adminDatabaseUrl } from './lib.mjs';

const started = [];
after(async () => {
  for (const sb of started) await sb.stop();
});

// The demo store and its knowledge base, loaded as deploy/local.sh loads them.
const skipDb = adminDatabaseUrl ? false : 'no test database (run through tests/run)';
let db;
before(() => {
  if (skipDb) return;
  db = freshDatabase('sandbox');
  execFileSync(path.join(buildDir, 'rag', 'switchboard-ingest'), ['--sync', path.join(root, 'rag', 'knowledge')], {
    env: { PATH: process.env.PATH, DATABASE_URL: db, ASAN_OPTIONS: process.env.ASAN_OPTIONS || '', LSAN_OPTIONS: process.env.LSAN_OPTIONS || '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
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

/** The answer of a stream:false turn: its message and finish reason. */
async function answer(sb, body) {
  const res = await post(sb.base, { stream: false, ...body }, { key: null });
  assert.equal(res.status, 200, res.text);
  return { message: res.json.choices[0].message, finish: res.json.choices[0].finish_reason };
}
const say = (content) => ({ messages: [{ role: 'user', content }] });

// What a text-to-speech engine would read out as symbols: Markdown emphasis, headings, list
// markers, table bars, code marks, link targets.
const MARKDOWN = /[*#|`_]|\]\(|^\s*(?:[-+]|\d+[.)])\s|\s[-+]\s/;

test('the sandbox says plain sentences, never the knowledge base\'s Markdown', { skip: skipDb }, async () => {
  const sb = await sandbox({ DATABASE_URL: db, SANDBOX_WORD_MS: '0' });
  const { message } = await answer(sb, say('my refund hasn\'t arrived'));
  assert.match(message.content, /^Here is what our help centre says: /);
  assert.doesNotMatch(message.content, /\*\*|\b1\. /, 'not "1. **Check the order status.**"');
  const questions = JSON.parse(fs.readFileSync(path.join(root, 'tests', 'rag', 'eval.json'), 'utf8')).questions.map((q) => q.q);
  for (const q of questions) {
    const said = (await answer(sb, say(q))).message.content.replace(/^Here is what our help centre says: /, '');
    assert.doesNotMatch(said, MARKDOWN, `plain words for "${q}"`);
  }
});

test('the sandbox answers with the passage\'s sentence that answers the question', { skip: skipDb }, async () => {
  const sb = await sandbox({ DATABASE_URL: db, SANDBOX_WORD_MS: '1' });
  const out = assemble((await post(sb.base, { stream: true, ...say('how long do refunds take?') }, { key: null })).text);
  assert.ok(out.done);
  assert.match(out.content, /Credit or debit card \(Visa, Mastercard, American Express, Discover\): 5 to 10 business days\./);
  const cancel = (await answer(sb, say('can I cancel my order?'))).message.content;
  assert.match(cancel, /You can cancel an order at any time before it ships\./);
});

