// The Responses API channel (POST /v1/responses) and the model list (GET /v1/models), tried with the clients
// that speak them: the official openai package and the Vercel AI SDK's default openai(model) provider.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { createOpenAI } from '@ai-sdk/openai';
import { streamText, generateText, tool, stepCountIs } from 'ai';
import { z } from 'zod';
import { startFakeUpstream, startSwitchboard, post, scenario, INBOUND_KEY, PROVIDER_KEY } from './lib.mjs';

let up, sb, client, provider;
before(async () => {
  up = await startFakeUpstream();
  sb = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, OPENAI_MODEL: 'gpt-4o-mini' });
  client = new OpenAI({ baseURL: `${sb.base}/v1`, apiKey: INBOUND_KEY, maxRetries: 0 });
  provider = createOpenAI({ baseURL: `${sb.base}/v1`, apiKey: INBOUND_KEY });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

const weatherTool = {
  type: 'function', name: 'lookup_weather', description: 'the weather in a city', strict: false,
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};
const calls = JSON.stringify([{ name: 'lookup_weather', arguments: { city: 'Paris' } }]); // scenario() encodes it

test('responses.create streamed: the events in order, numbered, the text assembled', async () => {
  const stream = await client.responses.create({ model: scenario({ text: 'Bonjour from the fake upstream.' }), input: 'hi', stream: true });
  const types = [];
  const seqs = [];
  let text = '';
  let completed;
  for await (const ev of stream) {
    types.push(ev.type);
    seqs.push(ev.sequence_number);
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed') completed = ev.response;
  }
  assert.equal(text, 'Bonjour from the fake upstream.');
  assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
  assert.deepEqual(types.slice(-4), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed']);
  assert.ok(types.slice(4, -4).every((t) => t === 'response.output_text.delta'));
  assert.deepEqual(seqs, seqs.map((_, i) => i), 'sequence numbers count up from 0');
  assert.match(completed.id, /^resp_/);
  assert.equal(completed.status, 'completed');
  assert.equal(completed.output[0].content[0].text, text);
  assert.ok(completed.usage.total_tokens > 0);
  assert.equal(completed.usage.total_tokens, completed.usage.input_tokens + completed.usage.output_tokens);
});

test('responses.create not streamed: one response object with output_text and usage', async () => {
  const res = await client.responses.create({
    model: scenario({ text: 'Plain answer.' }), instructions: 'Be brief.', max_output_tokens: 50, temperature: 0.2,
    input: [{ role: 'user', content: [{ type: 'input_text', text: 'hello' }] }],
  });
  assert.equal(res.object, 'response');
  assert.equal(res.status, 'completed');
  assert.equal(res.output_text, 'Plain answer.');
  assert.equal(res.instructions, 'Be brief.');
  assert.ok(res.usage.input_tokens > 0 && res.usage.output_tokens > 0);
  // what the provider was sent: instructions as the system message, max_output_tokens as max_tokens
  const sent = JSON.parse((await up.requests()).at(-1).body);
  assert.deepEqual(sent.messages, [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello' }]);
  assert.equal(sent.max_tokens, 50);
  assert.equal(sent.temperature, 0.2);
});

test('a client tool: the function_call item is relayed, the function_call_output brings the answer', async () => {
  const model = scenario({ calls, text: 'It is sunny in Paris.' });
  const stream = await client.responses.create({ model, input: 'weather in Paris?', tools: [weatherTool], stream: true });
  const events = [];
  for await (const ev of stream) events.push(ev);
  const added = events.find((e) => e.type === 'response.output_item.added');
  assert.equal(added.item.type, 'function_call');
  assert.equal(added.item.name, 'lookup_weather');
  const args = events.filter((e) => e.type === 'response.function_call_arguments.delta').map((e) => e.delta).join('');
  assert.deepEqual(JSON.parse(args), { city: 'Paris' });
  assert.equal(events.find((e) => e.type === 'response.function_call_arguments.done').arguments, args);
  const done = events.at(-1);
  assert.equal(done.type, 'response.completed');
  const call = done.response.output.find((o) => o.type === 'function_call');
  assert.equal(call.call_id, added.item.call_id);
  assert.equal(call.arguments, args);
  const sent = JSON.parse((await up.requests()).at(-1).body);
  assert.equal(sent.tools[0].function.name, 'lookup_weather', 'flat tools become chat tools');

  const res = await client.responses.create({
    model, tools: [weatherTool],
    input: [{ role: 'user', content: 'weather in Paris?' }, call, { type: 'function_call_output', call_id: call.call_id, output: '{"sky":"sunny"}' }],
  });
  assert.equal(res.output_text, 'It is sunny in Paris.');
  const second = JSON.parse((await up.requests()).at(-1).body);
  assert.equal(second.messages[1].role, 'assistant');
  assert.equal(second.messages[1].tool_calls[0].id, call.call_id);
  assert.deepEqual(second.messages[2], { role: 'tool', tool_call_id: call.call_id, content: '{"sky":"sunny"}' });
});

test('AI SDK streamText and generateText with the default openai(model)', async () => {
  const s = streamText({ model: provider(scenario({ text: 'Streamed through the AI SDK.' })), prompt: 'hi' });
  let text = '';
  for await (const part of s.textStream) text += part;
  assert.equal(text, 'Streamed through the AI SDK.');
  assert.ok((await s.usage).totalTokens > 0);
  assert.equal((await up.requests()).at(-1).path, '/v1/chat/completions');
  const g = await generateText({ model: provider(scenario({ text: 'Generated.' })), system: 'Be kind.', prompt: 'hi' });
  assert.equal(g.text, 'Generated.');
  assert.equal(g.finishReason, 'stop');
  assert.ok(g.usage.inputTokens > 0);
});

test('AI SDK client tool: the SDK runs it and sends the result back', async () => {
  let ran = 0;
  const g = await generateText({
    model: provider(scenario({ calls, text: 'Sunny, says the tool.' })),
    prompt: 'weather in Paris?',
    tools: {
      lookup_weather: tool({
        description: 'the weather in a city',
        inputSchema: z.object({ city: z.string() }),
        execute: async ({ city }) => { ran += 1; return { city, sky: 'sunny' }; },
      }),
    },
    stopWhen: stepCountIs(3),
    providerOptions: { openai: { store: false } }, // switchboard keeps no items to reference
  });
  assert.equal(ran, 1);
  assert.equal(g.text, 'Sunny, says the tool.');
  assert.equal(g.steps.length, 2);
});

test('models.list lists the default model; without a key 401', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['gpt-4o-mini']);
  const res = await fetch(`${sb.base}/v1/models`);
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error.code, 'invalid_api_key');
});

test('the sandbox is listed when it answers', async () => {
  const s = await startSwitchboard({});
  try {
    const res = await fetch(`${s.base}/v1/models`, { headers: { authorization: `Bearer ${INBOUND_KEY}` } });
    const body = await res.json();
    assert.equal(body.object, 'list');
    assert.ok(body.data.some((m) => m.id === 'switchboard-sandbox' && m.object === 'model' && m.owned_by));
  } finally {
    await s.stop();
  }
});

test('bad input: OpenAI-shaped 400s naming the field, 401 and 413, never a crash', async () => {
  const bad = [
    [{ input: [1] }, 'input[0]'],
    [{ input: ['text'] }, 'input[0]'],
    [{ input: [{ type: 'web_search_call' }] }, 'input[0]'],
    [{ input: [{ type: 'item_reference', id: 'msg_1' }] }, 'input[0]'],
    [{ input: [{ role: 'user', content: [{ type: 'input_audio' }] }] }, 'input[0].content[0]'],
    [{ input: [{ role: 'robot', content: 'x' }] }, 'input[0].role'],
    [{ input: [{ type: 'function_call', name: 'f' }] }, 'input[0]'],
    [{ input: 'x', previous_response_id: 'resp_123' }, 'previous_response_id'],
    [{ input: 'x', tools: [{ type: 'web_search_preview' }] }, 'tools[0]'],
    [{ input: 'x', tools: [{ type: 'function' }] }, 'tools[0]'],
    [{ input: 'x', tool_choice: { type: 'file_search' } }, 'tool_choice'],
    [{ input: 'x', max_output_tokens: 0 }, 'max_output_tokens'],
    [{ input: 'x', instructions: 7 }, 'instructions'],
    [{ input: [] }, 'input'],
    [{}, 'input'],
    [[], null],
  ];
  for (const [body, param] of bad) {
    const res = await post(sb.base, body, { path: '/v1/responses' });
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal(res.json.error.type, 'invalid_request_error');
    assert.equal(res.json.error.param, param, JSON.stringify(body));
  }
  assert.match((await post(sb.base, { input: 'x', previous_response_id: 'r' }, { path: '/v1/responses' })).json.error.message, /no server-side state/);
  assert.equal((await post(sb.base, '{"input":', { path: '/v1/responses' })).status, 400);
  assert.equal((await post(sb.base, { input: 'x' }, { path: '/v1/responses', key: null })).status, 401);
  const huge = { input: [{ role: 'user', content: 'x'.repeat(2 * 1024 * 1024) }] };
  const res = await post(sb.base, huge, { path: '/v1/responses' });
  assert.equal(res.status, 413);
  assert.equal(res.json.error.type, 'invalid_request_error');
  const deep = await post(sb.base, `{"input":${'['.repeat(5000)}${']'.repeat(5000)}}`, { path: '/v1/responses' });
  assert.equal(deep.status, 400);
  assert.equal((await post(sb.base, { input: 'still alive' , model: scenario({ text: 'yes' }) }, { path: '/v1/responses' })).json.output_text ?? 'yes', 'yes');
});

test('a provider failure before the first word is an HTTP error; after it, error and response.failed events', async () => {
  const early = await post(sb.base, { model: scenario({ status: '429' }), input: 'x', stream: true }, { path: '/v1/responses' });
  assert.equal(early.status, 429);
  assert.equal(early.json.error.type, 'rate_limit_error');
  const late = await post(sb.base, { model: scenario({ file: 'openai_chat_content_usage_stream.sse', chunk: '500', pace_ms: '20', drop_after: '2000' }), input: 'x', stream: true }, { path: '/v1/responses' });
  assert.equal(late.status, 200);
  const types = [...late.text.matchAll(/^event: (.*)$/gm)].map((m) => m[1]);
  assert.deepEqual(types.slice(-2), ['error', 'response.failed']);
  const failed = JSON.parse(late.text.trim().split('\n').at(-1).slice(6));
  assert.equal(failed.response.status, 'failed');
  assert.ok(failed.response.error.message);
});
