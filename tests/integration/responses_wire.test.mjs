// USE_RESPONSES_API=true: switchboard speaks OpenAI's Responses API to the provider. The two
// recorded Responses streams, replayed at 1-byte and random chunking, reach a Chat Completions
// caller as the same text and tool call; the request the provider got is a Responses request.
// A scripted call to switchboard's own write tool runs a full round against Postgres, the
// second request carrying the call and its result as function_call and function_call_output
// input items; a call to the caller's own tool is relayed to the caller, and its result goes
// back the same way.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakeUpstream, startSwitchboard, post, scenario, assemble, toolCalls, psql, freshDatabase, adminDatabaseUrl, PROVIDER_KEY,
} from './lib.mjs';

let up, sb, db;
before(async () => {
  up = await startFakeUpstream();
  db = adminDatabaseUrl ? freshDatabase('responses_wire') : null;
  sb = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, USE_RESPONSES_API: 'true',
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

test('switchboard\'s own write tool runs a full round: one row in Postgres, the result sent back as a function_call_output',
  { skip: adminDatabaseUrl ? false : 'no test database (run through tests/run)' }, async () => {
    await up.reset();
    const subject = 'kettle broken, asked over the Responses API';
    const args = { subject, email: 'maya.patel@example.com', priority: 'high' };
    const rows = () => Number(psql(db, 'select count(*) from support_tickets'));
    const before = rows();
    const model = scenario({ calls: JSON.stringify([{ name: 'create_support_ticket', arguments: args }]), chunk: 'random', seed: '4' });
    const res = await post(sb.base, { model, stream: true, messages: ask('my kettle is broken, please open a ticket') });
    assert.equal(res.status, 200);
    const out = assemble(res.text);
    assert.ok(out.done, 'the stream ends with [DONE]');
    assert.ok(out.chunks.every((c) => c.object === 'chat.completion.chunk' && !c.error), 'only clean chunks');
    assert.deepEqual(toolCalls(out.chunks), [], 'no tool call reaches the caller');
    assert.deepEqual(out.finish, ['stop']);
    const answer = out.content.match(/RESULTS (.*)$/s)?.[1];
    assert.ok(answer, `the model's answer reached the caller: ${out.content}`);
    const result = JSON.parse(answer);
    assert.equal(result.created, true);
    assert.equal(result.subject, subject);

    assert.equal(rows() - before, 1, 'one ticket written');
    assert.equal(psql(db, `select id || ' ' || priority from support_tickets where subject = '${subject}'`), `${result.ticket_id} high`);

    const sent = await up.requests();
    assert.equal(sent.length, 2, 'one request per round');
    const [first, second] = sent;
    for (const r of sent) assert.match(r.path, /^\/v1\/responses$/);
    const body1 = JSON.parse(first.body);
    const offered = body1.tools.find((t) => t.name === 'create_support_ticket');
    assert.equal(offered?.type, 'function', 'switchboard\'s tools are offered as flat Responses function tools');
    assert.equal(offered.parameters.type, 'object');
    assert.equal(body1.store, false);

    const body2 = JSON.parse(second.body);
    assert.equal(body2.messages, undefined);
    assert.deepEqual(body2.input.slice(0, -2), body1.input, 'the conversation so far, then the round');
    assert.deepEqual(body2.input.slice(-2), [
      { type: 'function_call', call_id: `call_fake_0_${first.seq}`, name: 'create_support_ticket', arguments: JSON.stringify(args) },
      { type: 'function_call_output', call_id: `call_fake_0_${first.seq}`, output: answer },
    ], 'the model\'s call as it streamed it, then the tool\'s result as a string under the same call_id');
  });

test('calls to the caller\'s own tool reach the caller; their results go back as function_call_output items', async () => {
  await up.reset();
  // calls=@user: the script is the caller's question, as the Responses request's first user input item carries it
  const script = JSON.stringify([{ name: 'get_capital', arguments: { country: 'Côte d\'Ivoire' } },
    { name: 'get_capital', arguments: { country: 'France' } }]);
  const model = scenario({ calls: '@user', content_first: 'Let me look.', chunk: 'random', seed: '6' });
  const res = await post(sb.base, { model, stream: true, tools, messages: ask(script) });
  assert.equal(res.status, 200);
  const out = assemble(res.text);
  assert.ok(out.done);
  assert.ok(out.chunks.every((c) => c.object === 'chat.completion.chunk' && !c.error));
  assert.equal(out.content, 'Let me look.');
  const [first] = await up.requests();
  const calls = toolCalls(out.chunks);
  assert.deepEqual(calls, [
    { id: `call_fake_0_${first.seq}`, name: 'get_capital', arguments: '{"country":"Côte d\'Ivoire"}' },
    { id: `call_fake_1_${first.seq}`, name: 'get_capital', arguments: '{"country":"France"}' },
  ], 'each call whole, its arguments reassembled from fragments cut between UTF-8 sequences, by output_index');
  assert.deepEqual(out.finish, ['tool_calls']);
  const body1 = JSON.parse(first.body);
  assert.deepEqual(body1.input, [{ type: 'message', role: 'user', content: script }]);
  assert.deepEqual(body1.tools.find((t) => t.name === 'get_capital'),
    { type: 'function', strict: false, name: 'get_capital', parameters: tools[0].function.parameters });

  const results = ['Yamoussoukro', [{ type: 'text', text: 'Par' }, { type: 'text', text: 'is' }]];
  const back = await post(sb.base, {
    model, stream: true, tools,
    messages: [...ask(script),
      { role: 'assistant', content: 'Let me look.', tool_calls: calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })) },
      ...calls.map((c, i) => ({ role: 'tool', tool_call_id: c.id, content: results[i] }))],
  });
  assert.equal(back.status, 200);
  const answer = assemble(back.text);
  assert.equal(answer.content, 'RESULTS Yamoussoukro | Paris');
  assert.deepEqual(answer.finish, ['stop']);
  assert.deepEqual(JSON.parse((await up.requests())[1].body).input.slice(1), [
    { type: 'message', role: 'assistant', content: 'Let me look.' },
    ...calls.map((c) => ({ type: 'function_call', call_id: c.id, name: c.name, arguments: c.arguments })),
    ...calls.map((c, i) => ({ type: 'function_call_output', call_id: c.id, output: ['Yamoussoukro', 'Paris'][i] })),
  ], 'the assistant\'s words, its calls, then each result as a string (a result in parts, joined)');
});
