// Anthropic's Messages API behind switchboard: the caller speaks Chat Completions and hears
// the same text, tool calls and usage as from an OpenAI-compatible provider, switchboard's
// own tools run between the rounds (the results sent back as tool_result blocks), and
// Anthropic's errors become the usual OpenAI-shaped ones without ever showing the key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakeUpstream, startSwitchboard, post, scenario, assemble, toolCalls, freshDatabase, adminDatabaseUrl, PROVIDER_KEY,
} from './lib.mjs';

const RECORDED = 'anthropic_messages_text_tooluse_stream.sse';
const RECORDED_TEXT = "I'll help you generate two names for a pet pelican using the pelican name generator tool.";
const hasDb = Boolean(adminDatabaseUrl);
let up, sb;
before(async () => {
  up = await startFakeUpstream();
  // Anthropic is the only provider configured, so every model goes to it: the fake's scenario
  // names (fake?...) included.
  sb = await startSwitchboard({
    ANTHROPIC_API_KEY: PROVIDER_KEY, ANTHROPIC_BASE_URL: `${up.base}/v1`, LLM_RETRY_BACKOFF_MS: '20',
    ...(hasDb ? { DATABASE_URL: freshDatabase('anthropic'), PG_POOL_SIZE: '4' } : {}),
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
const pelicanTool = {
  type: 'function',
  function: { name: 'pelican_name_generator', description: 'Names a pelican', parameters: { type: 'object', properties: {} } },
};

for (const chunk of ['1', 'random']) {
  test(`the recorded Anthropic stream at chunk=${chunk} reaches the caller as a Chat Completions stream`, async () => {
    await up.reset();
    const res = await post(sb.base, {
      model: scenario({ file: RECORDED, chunk, seed: '5' }), stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'system', content: 'You name pelicans.' }, ...ask('Two names for a pet pelican')], tools: [pelicanTool],
      temperature: 0.5,
    });
    assert.equal(res.status, 200);
    const out = assemble(res.text);
    assert.ok(out.done);
    assert.equal(out.content, RECORDED_TEXT);
    assert.deepEqual(toolCalls(out.chunks), [
      { id: 'toolu_017ngBid8gmdReTeroVSZf7r', name: 'pelican_name_generator', arguments: '' },
      { id: 'toolu_01FJrHJrmnfEqR6NxkQ3yhpu', name: 'pelican_name_generator', arguments: '' },
    ]);
    assert.deepEqual(out.finish, ['tool_calls']);
    const usage = out.chunks.find((c) => c.usage)?.usage;
    assert.deepEqual([usage?.prompt_tokens, usage?.completion_tokens, usage?.total_tokens], [310, 82, 392]);
    assert.ok(out.chunks.every((c) => c.object === 'chat.completion.chunk' && !c.error));

    const [sent] = await up.requests();
    assert.match(sent.path, /^\/v1\/messages$/);
    assert.equal(sent.headers['x-api-key'], PROVIDER_KEY);
    assert.equal(sent.headers['anthropic-version'], '2023-06-01');
    assert.equal(sent.headers.authorization, undefined, 'no Bearer header goes to Anthropic');
    const body = JSON.parse(sent.body);
    assert.equal(body.stream, true);
    assert.equal(body.max_tokens, 1024, 'ANTHROPIC_MAX_TOKENS when the caller sets none');
    assert.equal(body.temperature, 0.5);
    assert.deepEqual(body.system, [{ type: 'text', text: 'You name pelicans.', cache_control: { type: 'ephemeral' } }]);
    assert.deepEqual(body.messages, [{ role: 'user', content: [{ type: 'text', text: 'Two names for a pet pelican' }] }]);
    const { cache_control: _, ...pelican } = body.tools[0]; // the last tool too when switchboard offers none of its own
    assert.deepEqual(pelican, { name: 'pelican_name_generator', description: 'Names a pelican',
      input_schema: { type: 'object', properties: {} } });
    assert.deepEqual(body.tools.at(-1).cache_control, { type: 'ephemeral' }, 'the tools are a cache breakpoint');
    assert.equal(body.tools.filter((t) => t.cache_control).length, 1);
  });
}

test('generated text and the model Anthropic names come back as chunks', async () => {
  const model = scenario({ text: 'Hello from Claude, more or less.' });
  const res = await post(sb.base, { model, stream: true, messages: ask('hi'), max_tokens: 33 });
  const out = assemble(res.text);
  assert.equal(out.content, 'Hello from Claude, more or less.');
  assert.deepEqual(out.finish, ['stop']);
  assert.equal(out.chunks[0].model, model);
  assert.equal(JSON.parse((await up.requests()).at(-1).body).max_tokens, 33);
  const json = await post(sb.base, { model, messages: ask('hi') });
  assert.equal(json.json.choices[0].message.content, 'Hello from Claude, more or less.', 'non-streamed callers too');
});

test('a round of switchboard\'s own tool runs against Postgres; the results go back as tool_result blocks',
  { skip: hasDb ? false : 'no test database (run through tests/run)' }, async () => {
    await up.reset();
    const model = scenario({
      calls: JSON.stringify([{ name: 'get_order_status', arguments: { order_number: '4417' } },
        { name: 'fetch_customer_profile', arguments: { customer_id: 1 } }]),
      chunk: 'random', seed: '9',
    });
    const res = await post(sb.base, { model, stream: true, messages: ask('where is my order 4417?') });
    assert.equal(res.status, 200);
    const out = assemble(res.text);
    assert.ok(out.done);
    assert.deepEqual(toolCalls(out.chunks), [], 'no tool call reaches the caller');
    assert.deepEqual(out.finish, ['stop']);
    assert.match(out.content, /"status" ?: ?"shipped"/, 'the order status came from Postgres');
    assert.match(out.content, /Maya Patel/);

    const [first, second] = await up.requests();
    assert.ok(JSON.parse(first.body).tools.some((t) => t.name === 'get_order_status' && t.input_schema?.type === 'object'),
      'switchboard\'s tools are offered as Anthropic tools');
    const messages = JSON.parse(second.body).messages;
    const [assistant, results] = messages.slice(-2);
    assert.equal(assistant.role, 'assistant');
    const uses = assistant.content.filter((b) => b.type === 'tool_use');
    assert.deepEqual(uses.map((b) => [b.id, b.name, b.input]), [
      [`toolu_fake_0_${first.seq}`, 'get_order_status', { order_number: '4417' }],
      [`toolu_fake_1_${first.seq}`, 'fetch_customer_profile', { customer_id: 1 }],
    ], 'the calls as tool_use blocks, input an object reassembled from the fragments');
    assert.equal(results.role, 'user');
    assert.deepEqual(results.content.map((b) => [b.type, b.tool_use_id]),
      uses.map((u) => ['tool_result', u.id]), 'one user message of tool_result blocks, one per call');
    assert.match(JSON.stringify(results.content[0].content), /shipped/);
    for (let i = 1; i < messages.length; ++i) assert.notEqual(messages[i].role, messages[i - 1].role, 'roles alternate');
  });

const failing = (params) => post(sb.base, { model: scenario(params), stream: true, messages: ask('hello') });

test('Anthropic\'s 401 is a 502 that never shows the key', async () => {
  const res = await failing({
    status: '401', body: JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: `invalid x-api-key ${PROVIDER_KEY}` } }),
  });
  assert.equal(res.status, 502);
  assert.equal(res.json.error.code, 'upstream_auth_failed');
  assert.ok(!res.text.includes(PROVIDER_KEY));
});

test('Anthropic\'s 429 is a 429 with its Retry-After', async () => {
  await up.reset();
  const res = await failing({ status: '429', retry_after: '30' });
  assert.equal(res.status, 429);
  assert.equal(res.json.error.code, 'rate_limit_exceeded');
  assert.equal(res.headers['retry-after'], '30');
  assert.equal(JSON.parse((await up.requests())[0].body).model.startsWith('fake?'), true);
});

test('Anthropic\'s 529 (overloaded) is retried once, then a 502 with its message', async () => {
  await up.reset();
  const res = await failing({ status: '529' });
  assert.equal(res.status, 502);
  assert.equal(res.json.error.code, 'upstream_error');
  assert.equal(res.json.error.message, 'fake upstream error 529');
  assert.equal((await up.requests()).length, 2);
});

test('Anthropic\'s 400 passes its message on as a 400, never the key', async () => {
  const res = await failing({
    status: '400',
    body: JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: `max_tokens: too large (key ${PROVIDER_KEY})` } }),
  });
  assert.equal(res.status, 400);
  assert.equal(res.json.error.message, 'max_tokens: too large (key [redacted])');
});

test('a request Anthropic cannot be sent is refused before it is', async () => {
  await up.reset();
  const res = await post(sb.base, { model: scenario({ text: 'x' }), stream: true, messages: [{ role: 'system', content: 'only' }] });
  assert.equal(res.status, 400);
  assert.match(res.json.error.message, /Anthropic needs at least one user or assistant message/);
  assert.equal((await up.requests()).length, 0);
});

test('with OpenAI configured too, claude-* models go to Anthropic and the rest to OpenAI', async () => {
  const both = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/openai/v1`, OPENAI_API_KEY: 'sk-openai-side', ANTHROPIC_API_KEY: PROVIDER_KEY,
    ANTHROPIC_BASE_URL: `${up.base}/anthropic/v1`,
  });
  try {
    await up.reset();
    for (const model of ['claude-3-5-haiku-latest', 'gpt-4o-mini']) {
      const res = await post(both.base, { model, stream: true, messages: ask('hi') });
      assert.equal(assemble(res.text).content, 'Hello from the fake upstream.');
    }
    const [claude, gpt] = await up.requests();
    assert.equal(claude.path, '/anthropic/v1/messages');
    assert.equal(claude.headers['x-api-key'], PROVIDER_KEY);
    assert.equal(gpt.path, '/openai/v1/chat/completions');
    assert.equal(gpt.headers.authorization, 'Bearer sk-openai-side');
  } finally {
    await both.stop();
  }
});
