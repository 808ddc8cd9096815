// The relay end to end: recorded provider streams through switchboard to real clients.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import {
  startFakeUpstream, startSwitchboard, post, until, scenario, assemble, upstreamContent, fixtures, INBOUND_KEY, PROVIDER_KEY,
} from './lib.mjs';

let up, sb;
before(async () => {
  up = await startFakeUpstream();
  sb = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

const user = [{ role: 'user', content: 'hello' }];
const chatFixtures = fs.readdirSync(fixtures).filter((f) => /^(openai_chat_|groq_|openrouter_).*\.sse$/.test(f)).sort();

test('every OpenAI-format recording is present', () => {
  assert.ok(chatFixtures.length >= 8, `found ${chatFixtures.join(', ')}`);
});

for (const file of chatFixtures) {
  const raw = fs.readFileSync(path.join(fixtures, file), 'utf8');
  const isError = /event: error/.test(raw);
  for (const chunk of ['1', 'random']) {
    test(`${file} relayed at ${chunk === '1' ? '1-byte' : 'random'} chunking`, async () => {
      const model = scenario({ file, chunk, seed: '7' });
      const res = await post(sb.base, { model, stream: true, messages: user });
      assert.equal(res.status, 200);
      assert.match(res.headers['content-type'], /^text\/event-stream/);
      assert.equal(res.headers['cache-control'], 'no-cache');
      assert.equal(res.headers['x-accel-buffering'], 'no');
      const out = assemble(res.text);
      assert.ok(out.done, 'ends with [DONE]');
      assert.equal(out.content, upstreamContent(raw), 'text equals the provider content');
      const ids = new Set(out.chunks.filter((c) => !c.error).map((c) => c.id));
      assert.equal(ids.size, 1, 'one id per response');
      for (const c of out.chunks.filter((x) => !x.error)) {
        assert.equal(c.object, 'chat.completion.chunk');
        assert.equal(typeof c.created, 'number');
        assert.equal(typeof c.model, 'string');
      }
      if (isError) {
        assert.equal(out.errors.length, 1, 'the mid-stream error becomes one error event');
        assert.match(out.errors[0].error.message, /tool/i);
        assert.equal(out.events.at(-2).includes('"error"'), true, 'the error event comes right before [DONE]');
      } else {
        assert.equal(out.errors.length, 0);
        assert.equal(out.finish.length, 1, 'exactly one finish_reason, even when the provider repeats it');
      }
      if (/tool_calls/.test(raw) && !isError) {
        assert.equal(out.finish[0], 'tool_calls');
        const calls = out.chunks.flatMap((c) => c.choices?.[0]?.delta?.tool_calls ?? []);
        const byIndex = new Map();
        for (const c of calls) {
          const acc = byIndex.get(c.index) ?? { id: '', name: '', args: '' };
          if (c.id) acc.id = c.id;
          if (c.function?.name) acc.name += c.function.name;
          if (c.function?.arguments) acc.args += c.function.arguments;
          byIndex.set(c.index, acc);
        }
        for (const acc of byIndex.values()) {
          assert.ok(acc.id && acc.name, 'each relayed tool call has an id and a name');
          JSON.parse(acc.args); // the fragments reassemble into the arguments
        }
      }
    });
  }
}

test('usage is relayed only when the client asks for it', async () => {
  const model = scenario({ file: 'openai_chat_content_usage_stream.sse' });
  const without = assemble((await post(sb.base, { model, stream: true, messages: user })).text);
  assert.equal(without.chunks.filter((c) => c.usage).length, 0);
  const withUsage = assemble((await post(sb.base, {
    model, stream: true, stream_options: { include_usage: true }, messages: user,
  })).text);
  const usage = withUsage.chunks.filter((c) => c.usage);
  assert.equal(usage.length, 1);
  assert.deepEqual(usage[0].choices, []);
  assert.ok(usage[0].usage.total_tokens > 0);
});

test('no buffering: the first chunk arrives before the provider sends the second', async () => {
  await up.reset();
  const model = scenario({ text: 'one two three four', pace_ms: '300' });
  let firstAt = null;
  const started = performance.now();
  const res = await post(sb.base, { model, stream: true, messages: user }, {
    onChunk: (c) => { if (firstAt === null && c.data.includes('"content"')) firstAt = c.at; },
  });
  assert.equal(res.status, 200);
  assert.ok(firstAt !== null);
  assert.ok(firstAt - started < 250, `first content after ${(firstAt - started).toFixed(1)} ms, the second is sent at 300 ms`);
  assert.equal(assemble(res.text).content, 'one two three four');
});

test('the Agora vendor:custom request is accepted and its extras never reach the provider', async () => {
  await up.reset();
  const body = JSON.parse(fs.readFileSync(new URL('./cases/agora_custom_request.json', import.meta.url), 'utf8'));
  body.model = scenario({ text: 'Your order shipped yesterday.' });
  const res = await post(sb.base, body);
  assert.equal(res.status, 200);
  assert.equal(assemble(res.text).content, 'Your order shipped yesterday.');
  const [rec] = await up.requests();
  const sent = JSON.parse(rec.body);
  for (const k of ['turn_id', 'timestamp', 'interruptable', 'context', 'app_id', 'channel', 'user_uid', 'enable_rtm']) {
    assert.equal(k in sent, false, `${k} stripped`);
  }
  for (const m of sent.messages) {
    assert.deepEqual(Object.keys(m).filter((k) => !['role', 'content', 'name', 'tool_calls', 'tool_call_id'].includes(k)), []);
  }
  assert.equal(sent.temperature, body.temperature);
  assert.equal(sent.max_tokens, body.max_tokens);
  assert.equal(sent.stream, true);
  assert.equal(rec.headers.authorization, `Bearer ${PROVIDER_KEY}`, 'the provider gets its own key');
  assert.ok(!JSON.stringify(rec).includes(INBOUND_KEY), 'the inbound key never reaches the provider');
});

test('the official openai client, streaming', async () => {
  const client = new OpenAI({ apiKey: INBOUND_KEY, baseURL: `${sb.base}/v1`, maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: scenario({ text: 'Streaming through switchboard works.' }), stream: true, messages: user,
  });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  assert.equal(text, 'Streaming through switchboard works.');
});

test('the official openai client, not streaming', async () => {
  const client = new OpenAI({ apiKey: INBOUND_KEY, baseURL: `${sb.base}/v1`, maxRetries: 0 });
  const res = await client.chat.completions.create({ model: scenario({ text: 'One JSON answer.' }), messages: user });
  assert.equal(res.object, 'chat.completion');
  assert.equal(res.choices[0].message.content, 'One JSON answer.');
  assert.equal(res.choices[0].finish_reason, 'stop');
  assert.ok(res.usage.total_tokens > 0);
});

test('the official openai client sees an OpenAI-shaped error', async () => {
  const client = new OpenAI({ apiKey: 'wrong-key-wrong-key-wrong', baseURL: `${sb.base}/v1`, maxRetries: 0 });
  await assert.rejects(client.chat.completions.create({ model: 'x', messages: user }), (e) => {
    assert.equal(e.status, 401);
    assert.equal(e.code, 'invalid_api_key');
    return true;
  });
});

test('stream:false asks the provider for one whole answer, and relays its words and usage', async () => {
  const model = scenario({ text: 'One whole answer from the provider.' });
  const before = (await up.requests()).length;
  const res = await post(sb.base, { model, stream: false, messages: user });
  assert.equal(res.status, 200);
  assert.equal(res.json.object, 'chat.completion');
  assert.equal(res.json.choices[0].message.content, 'One whole answer from the provider.');
  assert.equal(res.json.choices[0].finish_reason, 'stop');
  const rec = (await up.requests()).slice(before).find((r) => JSON.parse(r.body).model === model);
  const sent = JSON.parse(rec.body);
  assert.equal(sent.stream, false, 'not streamed from the provider either');
  assert.equal(sent.stream_options, undefined);
  assert.match(rec.headers.accept, /application\/json/);
  assert.ok(res.json.usage.prompt_tokens > 0 && res.json.usage.completion_tokens > 0, 'usage is the provider\'s own');
});

test('stream:false with the client\'s tools: the whole answer\'s calls go back whole', async () => {
  const res = await post(sb.base, {
    model: scenario({ tools: '1' }), stream: false, messages: user,
    tools: [{ type: 'function', function: { name: 'lookup_weather', parameters: { type: 'object' } } }],
  });
  assert.equal(res.status, 200);
  const msg = res.json.choices[0].message;
  assert.equal(res.json.choices[0].finish_reason, 'tool_calls');
  assert.equal(msg.tool_calls.length, 1);
  assert.equal(msg.tool_calls[0].id, 'call_fake_1');
  assert.equal(msg.tool_calls[0].function.name, 'lookup_weather');
  assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { city: 'Paris' });
});

test('a whole answer that is not JSON fails the turn with a 502 that says so', async () => {
  const res = await post(sb.base, { model: scenario({ status: '200', body: 'not json at all' }), stream: false, messages: user });
  assert.equal(res.status, 502);
  assert.match(res.json.error.message, /the model provider sent an answer that is not valid json/);
});

test('non-streaming is built from a recorded stream when the provider streams anyway, tool calls included', async () => {
  const res = await post(sb.base, { model: scenario({ file: 'openai_chat_parallel_toolcalls_stream.sse', chunk: 'random' }), messages: user });
  assert.equal(res.status, 200);
  const msg = res.json.choices[0].message;
  assert.equal(res.json.choices[0].finish_reason, 'tool_calls');
  assert.equal(msg.tool_calls.length, 2);
  for (const c of msg.tool_calls) {
    assert.match(c.id, /^call_/);
    JSON.parse(c.function.arguments);
  }
});

test('client tool calls are relayed as OpenAI tool-call chunks', async () => {
  const res = await post(sb.base, {
    model: scenario({ tools: '1' }), stream: true, messages: user,
    tools: [{ type: 'function', function: { name: 'lookup_weather', parameters: { type: 'object' } } }],
  });
  const out = assemble(res.text);
  assert.deepEqual(out.finish, ['tool_calls']);
  const calls = out.chunks.flatMap((c) => c.choices?.[0]?.delta?.tool_calls ?? []);
  assert.equal(calls[0].id, 'call_fake_1');
  assert.equal(calls[0].function.name, 'lookup_weather');
  assert.equal(calls.map((c) => c.function?.arguments ?? '').join(''), '{"city":"Paris"}');
});

test('every chat route serves the same relay', async () => {
  for (const p of ['/v1/chat/completions', '/chat/completions', '/v1/chat/completion']) {
    const res = await post(sb.base, { model: scenario({ text: 'ok' }), stream: true, messages: user }, { path: p });
    assert.equal(res.status, 200, p);
    assert.equal(assemble(res.text).content, 'ok', p);
  }
});

test('the access log has one line per request and no secrets', async () => {
  const before = sb.accessLog.length;
  const res = await post(sb.base, { model: scenario({ text: 'logged' }), stream: true, messages: user });
  // The line is written when the request is disposed, just after the last byte went out.
  const line = await until(() => sb.accessLog.slice(before).find((l) => l.route === '/v1/chat/completions'),
    { what: 'the access log line' });
  assert.equal(line.status, 200);
  assert.equal(line.end, 'done');
  assert.equal(line.request_id, res.headers['x-request-id'], 'the response names its log line');
  assert.equal(assemble(res.text).chunks[0].id, `chatcmpl-${line.request_id}`);
  assert.ok(line.ttfb_ms >= 0 && line.total_ms >= line.ttfb_ms);
  assert.ok(line.bytes > 0);
  assert.ok(line.completion_tokens > 0, 'tokens from the provider usage');
  const all = JSON.stringify(sb.accessLog) + sb.stderr.join('\n');
  assert.ok(!all.includes(INBOUND_KEY) && !all.includes(PROVIDER_KEY), 'no key in any log');
});

test('more turns than one curl multi handle holds (512) keep their provider connections for the next turn', async () => {
  // A switchboard of its own, one worker: its provider connections are all in one cache.
  const s = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '1', ACCESS_LOG: 'false' });
  const accepted = async () => (await (await fetch(`${up.base}/_stats`)).json()).connections;
  const n = 600; // two of curl_uv.c's multi handles, each with its own connection cache
  // each stream stays open a while, so the whole wave holds n provider connections at once
  const body = { model: scenario({ text: 'one two three', pace_ms: '150' }), stream: true, messages: user };
  const wave = async () => {
    const replies = await Promise.all(Array.from({ length: n }, () => post(s.base, body)));
    for (const r of replies) assert.equal(assemble(r.text).content, 'one two three');
  };
  try {
    const before0 = await accepted();
    await wave();
    const first = (await accepted()) - before0;
    assert.ok(first >= n - 5 && first <= n, `the first wave opened about one connection per turn (${first})`);
    const before1 = await accepted();
    await wave();
    assert.equal((await accepted()) - before1, 0, 'the second wave found every connection it needed kept');
  } finally {
    await s.stop();
  }
});
