// The Gemini wire end to end: recorded Gemini streams replayed by the fake
// provider on Gemini's own path reach the caller as the OpenAI-shaped stream
// an OpenAI provider would give; switchboard's own tool runs a full round
// against Postgres with the call (and its thought signature) and the result
// sent back in Gemini's shape; refusals and provider errors are clean errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  startFakeUpstream, startSwitchboard, post, scenario, assemble, freshDatabase, adminDatabaseUrl, fixtures, PROVIDER_KEY,
} from './lib.mjs';

const GEMINI_KEY = 'AIza-test-gemini-secret-key-do-not-leak';
let up, sb, db;
before(async () => {
  up = await startFakeUpstream();
  db = adminDatabaseUrl ? freshDatabase('gemini') : null;
  sb = await startSwitchboard({
    GEMINI_API_KEY: GEMINI_KEY, GEMINI_BASE_URL: `${up.base}/v1beta`, WORKERS: '1', LLM_RETRY_BACKOFF_MS: '20',
    ...(db ? { DATABASE_URL: db, PG_POOL_SIZE: '2' } : {}),
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
const weatherTool = {
  type: 'function',
  function: {
    name: 'getWeather', description: 'The weather now.',
    parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'], additionalProperties: false },
  },
};

/** What a recorded Gemini stream says: its text, its calls, its last usage. */
function recorded(name) {
  const text = fs.readFileSync(path.join(fixtures, name), 'utf8');
  let content = '';
  const calls = [];
  let usage = null;
  for (const line of text.split(/\r?\n/)) {
    if (!line.startsWith('data: ')) continue;
    const ev = JSON.parse(line.slice(6));
    for (const part of ev.candidates?.[0]?.content?.parts ?? []) {
      if (typeof part.text === 'string') content += part.text;
      if (part.functionCall) calls.push({ ...part.functionCall, signature: part.thoughtSignature });
    }
    if (ev.usageMetadata) usage = ev.usageMetadata;
  }
  return { content, calls, usage };
}

const replays = ['gemini_stream_text_long_stream.sse', 'gemini_stream_after_function_result_stream.sse',
  'gemini_stream_single_chunk_stream.sse', 'gemini_stream_functioncall_stream.sse'];

for (const file of replays) {
  for (const chunk of ['1', 'random']) {
    test(`${file} at chunk=${chunk} reaches the caller as an OpenAI stream`, async () => {
      await up.reset();
      const want = recorded(file);
      const res = await post(sb.base, {
        model: scenario({ file, chunk, seed: '5' }), stream: true, stream_options: { include_usage: true },
        messages: ask('今日の東京の天気を教えて'), tools: [weatherTool],
      });
      assert.equal(res.status, 200);
      const out = assemble(res.text);
      assert.ok(out.done, 'the stream ends with [DONE]');
      assert.equal(out.content, want.content, 'the same text, multi-byte characters intact');
      const calls = out.chunks.flatMap((c) => c.choices?.[0]?.delta?.tool_calls ?? []);
      assert.deepEqual(calls.map((c) => [c.index, c.function.name, JSON.parse(c.function.arguments)]),
        want.calls.map((c, i) => [i, c.name, c.args]));
      for (const c of calls) assert.match(c.id, /^call_\d+_[a-z0-9]{12}_ts_[A-Za-z0-9_-]+$/, 'a minted id carrying the signature');
      assert.deepEqual(out.finish, [want.calls.length ? 'tool_calls' : 'stop']);
      const usage = out.chunks.find((c) => c.usage)?.usage;
      assert.equal(usage.prompt_tokens, want.usage.promptTokenCount);
      assert.equal(usage.total_tokens, want.usage.totalTokenCount);
      assert.equal(usage.completion_tokens, want.usage.candidatesTokenCount + (want.usage.thoughtsTokenCount ?? 0),
        'thinking counts as completion, as OpenAI counts reasoning');

      const [r] = await up.requests();
      assert.equal(r.path, `/v1beta/models/${encodeURIComponent(scenario({ file, chunk, seed: '5' }))}:streamGenerateContent?alt=sse`);
      assert.equal(r.headers['x-goog-api-key'], GEMINI_KEY);
      assert.equal(r.headers.authorization, undefined);
      const body = JSON.parse(r.body);
      assert.deepEqual(body.contents, [{ role: 'user', parts: [{ text: '今日の東京の天気を教えて' }] }]);
      assert.deepEqual(body.tools[0].functionDeclarations.find((d) => d.name === 'getWeather'), {
        name: 'getWeather', description: 'The weather now.',
        parameters: { type: 'OBJECT', properties: { location: { type: 'STRING' } }, required: ['location'] },
      }, 'the client\'s tool in Gemini\'s schema, beside switchboard\'s own');
      assert.equal(body.messages, undefined);
    });
  }
}

test('the client\'s tool round: the call goes back with its thought signature, the result by name', async () => {
  await up.reset();
  const first = assemble((await post(sb.base, {
    model: scenario({ file: 'gemini_stream_functioncall_stream.sse' }), stream: true, messages: ask('weather?'), tools: [weatherTool],
  })).text);
  const call = first.chunks.flatMap((c) => c.choices?.[0]?.delta?.tool_calls ?? [])[0];
  const res = await post(sb.base, {
    model: scenario({ text: 'Cloudy, 22 degrees.' }), stream: true, tools: [weatherTool],
    messages: [...ask('weather?'), { role: 'assistant', content: null, tool_calls: [call] },
      { role: 'tool', tool_call_id: call.id, content: '{"temperature":22,"condition":"Cloudy"}' }],
  });
  assert.equal(assemble(res.text).content, 'Cloudy, 22 degrees.');
  const body = JSON.parse((await up.requests())[1].body);
  const signature = recorded('gemini_stream_functioncall_stream.sse').calls[0].signature;
  assert.deepEqual(body.contents.slice(1), [
    { role: 'model', parts: [{ functionCall: { name: 'getWeather', args: { location: 'Tokyo' } }, thoughtSignature: signature }] },
    { role: 'user', parts: [{ functionResponse: { name: 'getWeather', response: { result: { temperature: 22, condition: 'Cloudy' } } } }] },
  ]);
});

test('switchboard\'s own tool runs a full round against Postgres', { skip: adminDatabaseUrl ? false : 'no test database' }, async () => {
  await up.reset();
  const model = scenario({
    calls: JSON.stringify([{ name: 'get_order_status', arguments: { order_number: '4417' } }]), chunk: 'random', seed: '2',
  });
  const res = await post(sb.base, { model, stream: true, messages: ask('where is my order 4417?') });
  assert.equal(res.status, 200);
  const out = assemble(res.text);
  assert.ok(out.chunks.every((c) => !c.choices?.[0]?.delta?.tool_calls), 'no tool call reaches the client');
  assert.match(out.content, /"status" ?: ?"shipped"/, 'the order status came from Postgres, through Gemini\'s answer');
  assert.deepEqual(out.finish, ['stop']);

  const [first, second] = await up.requests();
  const offered = JSON.parse(first.body).tools[0].functionDeclarations;
  const decl = offered.find((d) => d.name === 'get_order_status');
  assert.equal(decl.parameters.type, 'OBJECT', 'switchboard\'s tool table is offered in Gemini\'s schema');
  assert.ok(!JSON.stringify(offered).includes('additionalProperties'));
  const body = JSON.parse(second.body);
  const [modelTurn, results] = body.contents.slice(-2);
  assert.deepEqual(modelTurn, {
    role: 'model',
    parts: [{
      functionCall: { name: 'get_order_status', args: { order_number: '4417' } },
      thoughtSignature: Buffer.from(`fake-signature-${first.seq}`).toString('base64'),
    }],
  });
  assert.equal(results.role, 'user');
  assert.equal(results.parts.length, 1);
  const fr = results.parts[0].functionResponse;
  assert.equal(fr.name, 'get_order_status');
  assert.equal(fr.response.result.status, 'shipped', 'the result is sent as JSON, under "result"');
});

test('a safety block is a clean refusal', async () => {
  // kept short: the scenario travels in the model name, which switchboard takes up to 256 bytes
  const block = 'data: {"candidates":[{"finishReason":"SAFETY","index":0}]}\n\n';
  const res = await post(sb.base, { model: scenario({ status: '200', body: block }), stream: true, messages: ask('x') });
  assert.equal(res.status, 400);
  assert.equal(res.json.error.code, 'upstream_rejected');
  assert.equal(res.json.error.message, 'the model provider blocked the answer (SAFETY)');

  const prompt = 'data: {"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"}}\n\n';
  const res2 = await post(sb.base, { model: scenario({ status: '200', body: prompt }), stream: true, messages: ask('x') });
  assert.equal(res2.status, 400);
  assert.equal(res2.json.error.message, 'the model provider blocked the request (PROHIBITED_CONTENT)');
});

test('Gemini\'s errors map to the usual OpenAI-shaped errors and never show the key', async () => {
  const cases = [
    ['400', 400, 'upstream_rejected', 1],
    ['401', 502, 'upstream_auth_failed', 1],
    ['403', 502, 'upstream_auth_failed', 1],
    ['429', 429, 'rate_limit_exceeded', 2],
    ['500', 502, 'upstream_error', 2],
  ];
  for (const [status, want, code, tries] of cases) {
    await up.reset();
    const res = await post(sb.base, { model: scenario({ status }), stream: true, messages: ask('x') });
    assert.equal(res.status, want, `Gemini ${status}`);
    assert.equal(res.json.error.code, code, `Gemini ${status}`);
    if (code !== 'upstream_auth_failed') assert.equal(res.json.error.message, `fake upstream error ${status}`);
    assert.equal((await up.requests()).length, tries, `Gemini ${status}: retried only when worth it`);
  }
  const quoting = JSON.stringify({ error: { code: 400, message: `API key not valid: ${GEMINI_KEY}`, status: 'INVALID_ARGUMENT' } });
  const res = await post(sb.base, { model: scenario({ status: '400', body: quoting }), stream: true, messages: ask('x') });
  assert.equal(res.status, 400);
  assert.ok(!res.text.includes(GEMINI_KEY), 'the key is never shown');
  assert.match(res.json.error.message, /\[redacted\]/);
});

test('gemini-* models go to Gemini and the rest to the OpenAI-compatible provider', async () => {
  const both = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, GEMINI_API_KEY: GEMINI_KEY, GEMINI_BASE_URL: `${up.base}/v1beta`,
  });
  try {
    await up.reset();
    const g = assemble((await post(both.base, { model: 'gemini-2.5-flash', stream: true, messages: ask('hi') })).text);
    assert.equal(g.content, 'Hello from the fake upstream.');
    const o = assemble((await post(both.base, { model: scenario({ text: 'openai here' }), stream: true, messages: ask('hi') })).text);
    assert.equal(o.content, 'openai here');
    const paths = (await up.requests()).map((r) => r.path);
    assert.deepEqual(paths, ['/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse', '/v1/chat/completions']);
  } finally {
    await both.stop();
  }
});
