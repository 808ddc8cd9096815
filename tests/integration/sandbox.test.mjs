// With no provider configured, the sandbox model answers: the quickstart needs no account.
// It speaks plain sentences from the knowledge base, calls switchboard's tools and the
// client's own when the caller plainly asks, and goes through the turn like any provider.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { startSwitchboard, post, assemble, until, root, buildDir, psql, freshDatabase, adminDatabaseUrl } from './lib.mjs';

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
  // the start-up lines are read from a pipe, and may be behind the first /ping's answer
  await until(() => sb.stderr.some((l) => /sandbox/.test(l)), { what: 'the start-up log to say the sandbox answers' });
  await until(() => sb.stderr.some((l) => /ALLOW_UNAUTHENTICATED/.test(l)), { what: 'a warning that anyone may call' });
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

test('"what\'s the status of ticket 3?" looks ticket 3 up; opening a ticket still opens one', { skip: skipDb }, async () => {
  const sb = await sandbox({ DATABASE_URL: db, SANDBOX_WORD_MS: '0' });
  const tickets = () => Number(psql(db, 'select count(*) from support_tickets'));
  const before = tickets();
  for (const q of ['what\'s the status of ticket 3?', 'Is ticket number 3 still open?', 'any update on ticket #3']) {
    const said = (await answer(sb, say(q))).message.content;
    assert.match(said, /^Ticket 3, "Gooseneck kettle stopped heating", is escalated, with urgent priority\./, q);
  }
  assert.match((await answer(sb, say('what\'s the status of my ticket?'))).message.content, /Which ticket number/);
  assert.equal(tickets(), before, 'asking about a ticket opens none');
  assert.match((await answer(sb, say('I want to open a ticket'))).message.content, /^I have opened ticket number \d+ for you\./);
  assert.match((await answer(sb, say('create a ticket about my kettle whistling'))).message.content, /^I have opened ticket number \d+/);
  assert.equal(tickets(), before + 2);
  const subject = psql(db, 'select subject from support_tickets order by id desc limit 1');
  assert.equal(subject, 'create a ticket about my kettle whistling');
  assert.match((await answer(sb, say('Where is my order 4417?'))).message.content, /^Order 4417 is shipped with UPS/);
});

// A client's own tool, as an SDK user or the engine defines it (OpenAI function format).
const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather for a place',
    parameters: {
      type: 'object',
      properties: { location: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] }, days: { type: 'integer' } },
      required: ['location'],
    },
  },
};

test('a client tool the caller names is called, streamed as a provider streams a tool call', async () => {
  const sb = await sandbox();
  const res = await post(sb.base, { stream: true, tools: [weather], ...say('What is the weather in New York in celsius?') }, { key: null });
  const out = assemble(res.text);
  assert.ok(out.done);
  assert.equal(out.content, '', 'a call, not words');
  assert.deepEqual(out.finish, ['tool_calls']);
  const fragments = out.chunks.flatMap((c) => c.choices?.[0]?.delta?.tool_calls ?? []);
  assert.ok(fragments.length >= 2, 'its name first, then its arguments');
  assert.equal(fragments[0].id, 'call_sandbox_0');
  assert.equal(fragments[0].type, 'function');
  assert.equal(fragments[0].function.name, 'get_weather');
  assert.ok(fragments.every((f) => f.index === 0));
  const args = JSON.parse(fragments.map((f) => f.function?.arguments ?? '').join(''));
  assert.deepEqual(args, { location: 'New York', unit: 'celsius' }, 'what the words say, and nothing made up');

  const { message, finish } = await answer(sb, { tools: [weather], ...say('what\'s the weather like') });
  assert.equal(finish, 'tool_calls');
  assert.equal(message.content, null);
  assert.deepEqual(message.tool_calls, [{ id: 'call_sandbox_0', type: 'function', function: { name: 'get_weather', arguments: '{}' } }]);

  // the client answers its call; the sandbox says the result
  const after = await answer(sb, {
    tools: [weather],
    messages: [{ role: 'user', content: 'what\'s the weather like' }, message,
      { role: 'tool', tool_call_id: 'call_sandbox_0', content: '{"temperature":18,"sky":"clear"}' }],
  });
  assert.equal(after.finish, 'stop');
  assert.match(after.message.content, /^Your get_weather tool says: temperature 18, sky clear\./);

  const other = await answer(sb, { tools: [weather], ...say('tell me a joke') });
  assert.equal(other.finish, 'stop', 'a tool the words do not name is not called');
  assert.equal(other.message.tool_calls, undefined);
});

test('the official openai client gets the sandbox\'s client tool call, streamed and whole', async () => {
  const sb = await sandbox();
  const client = new OpenAI({ apiKey: 'unused-with-allow-unauthenticated', baseURL: `${sb.base}/v1`, maxRetries: 0 });
  const messages = [{ role: 'user', content: 'book flights to Rome for 2 people' }];
  const tools = [weather, { type: 'function', function: { name: 'bookFlight', parameters: { type: 'object', properties: { seats: { type: 'integer' } } } } }];
  const whole = await client.chat.completions.create({ model: 'any', messages, tools });
  assert.equal(whole.choices[0].finish_reason, 'tool_calls');
  assert.equal(whole.choices[0].message.tool_calls[0].function.name, 'bookFlight');
  assert.deepEqual(JSON.parse(whole.choices[0].message.tool_calls[0].function.arguments), { seats: 2 });

  const stream = client.beta.chat.completions.stream({ model: 'any', messages, tools, stream: true });
  const done = await stream.finalChatCompletion();
  assert.equal(done.choices[0].finish_reason, 'tool_calls');
  assert.equal(done.choices[0].message.tool_calls[0].id, 'call_sandbox_0');
  assert.equal(done.choices[0].message.tool_calls[0].function.name, 'bookFlight');
  assert.deepEqual(JSON.parse(done.choices[0].message.tool_calls[0].function.arguments), { seats: 2 });
});

test('odd client tools arrays are passed over, never a crash', async () => {
  const sb = await sandbox({ SANDBOX_WORD_MS: '0' });
  const huge = 'weather_'.repeat(20000);
  const cases = [
    [{ type: 'web_search' }],
    [{ type: 'function', function: { name: '' } }],
    [{ type: 'function', function: { name: huge } }],
    [{ type: 'function', function: { name: 'get_weather', parameters: 'not an object' } }],
    [{ type: 'function', function: { name: 'get_weather', parameters: { properties: [1, 2] } } }],
    [{ type: 'function', function: { name: 'get_weather', parameters: { properties: { location: 7, unit: { type: 'string', enum: [1, null, 'x'.repeat(5000)] }, days: { type: ['integer'] } } } } }],
    [{ type: 'function', function: { name: '___' } }, { type: 'function', function: { name: '\u00e9t\u00e9_weather' } }],
  ];
  for (const tools of cases) {
    const res = await post(sb.base, { stream: false, tools, ...say('weather 12 in Paris please ___') }, { key: null });
    assert.equal(res.status, 200, `${JSON.stringify(tools).slice(0, 200)}: ${res.text.slice(0, 300)}`);
    const call = res.json.choices[0].message.tool_calls?.[0];
    if (call) assert.doesNotThrow(() => JSON.parse(call.function.arguments), 'arguments are always a JSON object');
  }
  const weird = await post(sb.base, { stream: false, tools: cases[5], ...say('what is the weather in Paris, 3 days') }, { key: null });
  assert.deepEqual(JSON.parse(weird.json.choices[0].message.tool_calls[0].function.arguments), {}, 'no argument read from a broken schema');
  assert.equal((await fetch(`${sb.base}/ping`)).status, 200);
});
