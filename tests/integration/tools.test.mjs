// switchboard's own tools inside the streaming turn, against a real Postgres
// (the cluster tests/run starts) and the fake provider's scripted tool rounds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startFakeUpstream, startSwitchboard, post, scenario, assemble, until, psql, freshDatabase, cluster, adminDatabaseUrl,
  INBOUND_KEY, PROVIDER_KEY,
} from './lib.mjs';

const skip = adminDatabaseUrl ? false : 'no test database (run through tests/run)';
let up, sb, db;
before(async () => {
  if (skip) return;
  db = freshDatabase('tools');
  up = await startFakeUpstream();
  sb = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, WORKERS: '1', PG_POOL_SIZE: '4',
    PG_CONNECT_TIMEOUT_MS: '500',
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
const calls = (list) => JSON.stringify(list);

test('a round of parallel tool calls runs against Postgres; the client hears only words', { skip }, async () => {
  await up.reset();
  const model = scenario({
    calls: calls([{ name: 'get_order_status', arguments: { order_number: '4417' } },
      { name: 'fetch_customer_profile', arguments: { customer_id: 1 } }]),
    chunk: 'random', seed: '3',
  });
  const res = await post(sb.base, { model, stream: true, messages: ask('where is my order 4417?') });
  assert.equal(res.status, 200);
  const out = assemble(res.text);
  assert.ok(out.done);
  assert.ok(out.chunks.every((c) => !c.choices?.[0]?.delta?.tool_calls), 'no tool call reaches the client');
  assert.deepEqual(out.finish, ['stop']);
  assert.match(out.content, /^One moment while I check that\. \S/, 'a filler covers the silence, a space before the answer');
  assert.match(out.content, /"status" ?: ?"shipped"/, 'the order status came from Postgres');
  assert.match(out.content, /Maya Patel/);
  const [first, second] = await up.requests();
  const body2 = JSON.parse(second.body);
  const sentTools = JSON.parse(first.body).tools.map((t) => t.function.name);
  assert.ok(sentTools.includes('get_order_status') && sentTools.includes('create_support_ticket'), 'the tool table is offered');
  const assistant = body2.messages.at(-3);
  assert.equal(assistant.role, 'assistant');
  assert.equal(assistant.tool_calls.length, 2);
  const results = body2.messages.slice(-2);
  assert.deepEqual(results.map((m) => m.role), ['tool', 'tool']);
  assert.deepEqual(results.map((m) => m.tool_call_id), assistant.tool_calls.map((c) => c.id), 'results match their calls');
  assert.deepEqual(assistant.tool_calls.map((c) => JSON.parse(c.function.arguments)),
    [{ order_number: '4417' }, { customer_id: 1 }], 'arguments reassembled from fragments');
});

test('non-streaming turns run the same loop, streamed from the provider', { skip }, async () => {
  await up.reset();
  const model = scenario({ calls: calls([{ name: 'get_order_status', arguments: { order_number: '1002' } }]) });
  const res = await post(sb.base, { model, messages: ask('order 1002?') });
  assert.equal(res.status, 200);
  assert.match(res.json.choices[0].message.content, /RESULTS .*"order_number" ?: ?"1002"/);
  assert.equal(res.json.choices[0].message.tool_calls, undefined);
  assert.equal(res.json.choices[0].finish_reason, 'stop');
  // switchboard's tools are offered: the tool loop keeps asking for streams, as for a streamed turn
  const rounds = await up.requests();
  assert.equal(rounds.length, 2);
  assert.ok(rounds.every((r) => JSON.parse(r.body).stream === true));
});

test('a bad argument becomes a tool error the model reads, not a failed turn', { skip }, async () => {
  const model = scenario({ calls: calls([{ name: 'get_order_status', arguments: { order_number: 4417 } }]) });
  const res = await post(sb.base, { model, stream: true, messages: ask('order?') });
  assert.equal(res.status, 200);
  assert.match(assemble(res.text).content, /RESULTS \{"error":"invalid arguments: .*order_number/);
});

test('a caller bound by llm.params cannot read another customer\'s order', { skip }, async () => {
  const owner = psql(db, "select customer_id from orders where order_number = '4417'");
  const other = String(Number(owner) + 1);
  const model = scenario({ calls: calls([{ name: 'get_order_status', arguments: { order_number: '4417' } }]) });
  const mine = assemble((await post(sb.base, { model, stream: true, customer_id: Number(owner), messages: ask('x') })).text);
  assert.match(mine.content, /"status" ?: ?"shipped"/);
  const theirs = assemble((await post(sb.base, { model, stream: true, customer_id: other, messages: ask('x') })).text);
  assert.match(theirs.content, /no order with that number for this caller/);
});

test('the client\'s own tools are returned to it; the round limit ends in an apology', { skip }, async () => {
  const res = await post(sb.base, {
    model: scenario({ tools: '1' }), stream: true, messages: ask('weather?'),
    tools: [{ type: 'function', function: { name: 'lookup_weather', parameters: { type: 'object' } } }],
  });
  const out = assemble(res.text);
  assert.deepEqual(out.finish, ['tool_calls']);
  assert.equal(out.chunks.flatMap((c) => c.choices?.[0]?.delta?.tool_calls ?? [])[0].function.name, 'lookup_weather');

  const loop = scenario({ calls: calls([{ name: 'get_order_status', arguments: { order_number: '1001' } }]), rounds: '99' });
  const looped = assemble((await post(sb.base, { model: loop, stream: true, messages: ask('x') })).text);
  assert.match(looped.content, /Sorry, I could not finish looking that up/);
  assert.deepEqual(looped.finish, ['stop']);
});

test('100 concurrent turns each create one ticket; the same turn twice creates one', { skip, timeout: 60000 }, async () => {
  const before = Number(psql(db, 'select count(*) from support_tickets'));
  const model = (n) => scenario({ calls: calls([{ name: 'create_support_ticket', arguments: { subject: `kettle ${n} broken`, email: 'maya.patel@example.com' } }]) });
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => post(sb.base, {
    model: model(i), stream: true, turn_id: 1000 + i, channel: 'load', messages: ask('my kettle is broken'),
  })));
  assert.ok(results.every((r) => r.status === 200 && /"created" ?: ?true/.test(assemble(r.text).content)));
  assert.equal(Number(psql(db, 'select count(*) from support_tickets')) - before, 100);

  const again = await post(sb.base, { model: model(7), stream: true, turn_id: 1007, channel: 'load', messages: ask('my kettle is broken') });
  assert.match(assemble(again.text).content, /"created" ?: ?false/, 'the repeated turn finds its ticket');
  assert.equal(Number(psql(db, 'select count(*) from support_tickets')) - before, 100);
  assert.equal(psql(db, "select count(*) from support_tickets where subject = 'kettle 7 broken'"), '1');
});

test('a client that hangs up during a tool round leaves no partial write and no busy connection', { skip }, async () => {
  const model = scenario({ calls: calls([{ name: 'create_support_ticket', arguments: { subject: 'hangup test' } }]), reply_pace_ms: '200' });
  const body = JSON.stringify({ model, stream: true, messages: ask('x'), customer_id: 2 });
  const sock = net.connect(sb.port, '127.0.0.1');
  sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${INBOUND_KEY}\r\n`
    + `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  await new Promise((resolve) => sock.on('data', (d) => { if (d.includes('One moment')) resolve(); }));
  sock.destroy();
  await until(async () => {
    const h = await (await fetch(`${sb.base}/healthz`)).json();
    return h.database.busy === 0 && h.database.queued === 0 && h.active_turns === 0;
  }, { what: 'the pool to be idle again' });
  const n = Number(psql(db, "select count(*) from support_tickets where subject = 'hangup test'"));
  assert.ok(n === 0 || n === 1, 'the write landed whole or not at all');
});

test('with Postgres down turns still finish and the model hears why; tools work again after it returns', { skip, timeout: 60000 }, async () => {
  const model = scenario({ calls: calls([{ name: 'get_order_status', arguments: { order_number: '4417' } }]) });
  cluster('stop');
  try {
    const res = await post(sb.base, { model, stream: true, messages: ask('x') });
    assert.equal(res.status, 200);
    assert.match(assemble(res.text).content, /database unavailable/);
    const h = await (await fetch(`${sb.base}/healthz`)).json();
    assert.equal(h.status, 'degraded');
    const ready = await fetch(`${sb.base}/readyz`);
    assert.equal(ready.status, 503, 'not ready without its database (liveness stays 200)');
    assert.match((await ready.json()).error.message, /DATABASE_URL/);
  } finally {
    cluster('restart');
  }
  await until(async () => {
    const res = await post(sb.base, { model, stream: true, messages: ask('x') });
    return /"status" ?: ?"shipped"/.test(assemble(res.text).content);
  }, { timeoutMs: 15000, everyMs: 100, what: 'tools to work again' });
  assert.equal((await fetch(`${sb.base}/readyz`)).status, 200, 'ready again once the database is back');
});

test('the sandbox calls the order tool from the caller\'s words', { skip }, async () => {
  const local = await startSwitchboard({ SWITCHBOARD_API_KEYS: '', SWITCHBOARD_ALLOW_UNAUTHENTICATED: 'true', SANDBOX_WORD_MS: '1', DATABASE_URL: db });
  try {
    const res = await post(local.base, { stream: true, messages: ask('Where is my order 4417?') }, { key: null });
    const out = assemble(res.text);
    assert.match(out.content, /Order 4417 is shipped with UPS, tracking number 1Z/);
  } finally {
    await local.stop();
  }
});
