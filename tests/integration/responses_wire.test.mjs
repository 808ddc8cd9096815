// USE_RESPONSES_API=true: switchboard speaks OpenAI's Responses API to the provider. The two
// recorded Responses streams, replayed at 1-byte and random chunking, reach a Chat Completions
// caller as the same text and tool call; the request the provider got is a Responses request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeUpstream, startSwitchboard, post, scenario, assemble, PROVIDER_KEY } from './lib.mjs';

let up, sb;
before(async () => {
  up = await startFakeUpstream();
  sb = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, USE_RESPONSES_API: 'true' });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

const tools = [{ type: 'function', function: { name: 'get_capital', parameters: { type: 'object', properties: { country: { type: 'string' } } } } }];

for (const chunk of ['1', 'random']) {
  test(`the recorded Responses text stream at ${chunk === '1' ? '1-byte' : 'random'} chunking`, async () => {
    await up.reset();
    const res = await post(sb.base, {
      model: scenario({ file: 'openai_responses_text_stream.sse', chunk, seed: '5' }), stream: true,
      stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'What is the capital of France?' }],
    });
    assert.equal(res.status, 200);
    const out = assemble(res.text);
    assert.ok(out.done);
    assert.equal(out.content, 'The capital of France is Paris.');
    assert.deepEqual(out.finish, ['stop']);
    const usage = out.chunks.find((c) => c.usage)?.usage;
    assert.ok(usage?.total_tokens > 0, 'usage from response.completed');
    const [req] = await up.requests();
    assert.match(req.path, /\/v1\/responses$/);
    const body = JSON.parse(req.body);
    assert.equal(body.stream, true);
    assert.ok(Array.isArray(body.input), 'messages became input items');
    assert.equal(body.messages, undefined);
  });

  test(`the recorded Responses function call at ${chunk === '1' ? '1-byte' : 'random'} chunking reaches the caller as a tool call`, async () => {
    const res = await post(sb.base, {
      model: scenario({ file: 'openai_responses_function_call_stream.sse', chunk, seed: '9' }), stream: true, tools,
      messages: [{ role: 'user', content: 'What is the capital of France?' }],
    });
    assert.equal(res.status, 200);
    const out = assemble(res.text);
    assert.ok(out.done);
    assert.deepEqual(out.finish, ['tool_calls']);
    const calls = out.chunks.flatMap((c) => c.choices?.[0]?.delta?.tool_calls ?? []);
    const name = calls.map((c) => c.function?.name ?? '').join('');
    const args = calls.map((c) => c.function?.arguments ?? '').join('');
    assert.equal(name, 'get_capital');
    assert.deepEqual(JSON.parse(args), { country: 'France' });
    assert.ok(calls[0].id, 'the call id');
  });
}
