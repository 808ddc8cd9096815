// A repeated turn is recognised by its conversation, never by its turn number
// alone: the idempotency key of a tool write covers who is calling (from
// llm.params, Agora's context object or its headers), every message so far,
// the turn, the call, the bound caller and the arguments. A retry finds its
// record; nobody else ever does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeUpstream, startSwitchboard, post, scenario, assemble, until, psql, freshDatabase, adminDatabaseUrl, PROVIDER_KEY } from './lib.mjs';

const skip = adminDatabaseUrl ? false : 'no test database (run through tests/run)';
let up, sb, db;
before(async () => {
  if (skip) return;
  db = freshDatabase('identity');
  up = await startFakeUpstream();
  sb = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, WORKERS: '2' });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

const system = { role: 'system', content: 'You are the Kettle & Co. support desk.' };
const ticket = (args) => scenario({ calls: JSON.stringify([{ name: 'create_support_ticket', arguments: args }]) });

/** One turn; returns the tool result the model read (parsed) and the response. */
async function turn(body, headers = {}) {
  const res = await post(sb.base, { stream: true, ...body }, { headers });
  const out = assemble(res.text);
  assert.ok(out.done, res.text);
  const m = /RESULTS (\{.*\})/.exec(out.content);
  return { result: m ? JSON.parse(m[1]) : null, out, res };
}

const count = (subject) => Number(psql(db, `select count(*) from support_tickets where subject = '${subject.replace(/'/g, "''")}'`));

test('two callers with no identity, the same turn_id and the same words, but different calls: two tickets', { skip }, async () => {
  const subject = `Kettle arrived cracked ${Date.now()}`;
  const model = ticket({ subject });
  const maya = await turn({ model, turn_id: 3, messages: [system, { role: 'user', content: 'Hi, this is Maya.' },
    { role: 'assistant', content: 'Hello Maya, how can I help?' }, { role: 'user', content: 'My kettle arrived cracked.' }] });
  const james = await turn({ model, turn_id: 3, messages: [system, { role: 'user', content: 'Hello, James here.' },
    { role: 'assistant', content: 'Hi James, what can I do for you?' }, { role: 'user', content: 'My kettle arrived cracked.' }] });
  assert.equal(maya.result.created, true);
  assert.equal(james.result.created, true, `James got a ticket of his own, not ${JSON.stringify(james.result)}`);
  assert.notEqual(maya.result.ticket_id, james.result.ticket_id);
  assert.equal(count(subject), 2);
});

test('the same conversation sent twice (the engine retrying the turn) writes one ticket', { skip }, async () => {
  const subject = `Retry ${Date.now()}`;
  const body = { model: ticket({ subject }), turn_id: 9, messages: [system,
    { role: 'user', content: 'The lid is broken.', turn_id: 9, timestamp: 1733212345678 }] };
  const first = await turn(body);
  const again = await turn({ ...body, timestamp: 1733212349999 }); // the engine's own send time differs on a retry
  assert.equal(first.result.created, true);
  assert.equal(again.result.created, false, 'the retry found its ticket');
  assert.equal(again.result.ticket_id, first.result.ticket_id);
  assert.equal(count(subject), 1);

  const changed = await turn({ ...body, model: ticket({ subject, priority: 'high' }) });
  assert.equal(changed.result.created, true, 'a repeated turn whose arguments changed is a new write');
  assert.equal(count(subject), 2);
});

test('the same words and turn_id in another channel, named by context or by header: two tickets each time', { skip }, async () => {
  for (const [label, where] of [
    ['context', (ch) => ({ body: { context: { appId: 'app1', channel: ch, userId: '42' } } })],
    ['X-Agora-Customllm-Channel', (ch) => ({ headers: { 'X-Agora-Customllm-Appid': 'app1', 'X-Agora-Customllm-Channel': ch } })],
  ]) {
    const subject = `Channel by ${label} ${Date.now()}`;
    const body = { model: ticket({ subject }), turn_id: 5, messages: [system, { role: 'user', content: 'Broken handle.' }] };
    const a = where('support-1');
    const b = where('support-2');
    const one = await turn({ ...body, ...a.body }, a.headers);
    const two = await turn({ ...body, ...b.body }, b.headers);
    const oneAgain = await turn({ ...body, ...a.body }, a.headers);
    assert.equal(one.result.created, true, label);
    assert.equal(two.result.created, true, `${label}: the other channel writes its own`);
    assert.equal(oneAgain.result.created, false, `${label}: the first channel's retry finds its own`);
    assert.equal(oneAgain.result.ticket_id, one.result.ticket_id);
    assert.equal(count(subject), 2);
  }
});

test('a bound caller whose key would match another customer\'s record gets no record of theirs', { skip }, async () => {
  const ids = { app_id: 'a1', channel: 'c1', user_uid: 'u1', turn_id: 41 };
  const messages = [system, { role: 'user', content: 'Please open a ticket, and log this call.' }];
  const subject = `Bound ${Date.now()}`;
  const one = await turn({ ...ids, customer_id: 1, model: ticket({ subject }), messages });
  const three = await turn({ ...ids, customer_id: 3, model: ticket({ subject }), messages });
  assert.equal(one.result.customer_id, 1);
  assert.equal(three.result.created, true, JSON.stringify(three.result));
  assert.equal(three.result.customer_id, 3, 'customer 3 got a ticket of their own');
  assert.notEqual(three.result.ticket_id, one.result.ticket_id);

  const log = (customer) => turn({ ...ids, turn_id: 42, customer_id: customer, messages,
    model: scenario({ calls: JSON.stringify([{ name: 'log_customer_interaction', arguments: { kind: 'call', summary: 'called about the lid' } }]) }) });
  const logged1 = await log(1);
  const logged3 = await log(3);
  assert.equal(logged1.result.customer_id, 1);
  assert.equal(logged3.result.customer_id, 3, `customer 3 was not handed customer 1's interaction: ${JSON.stringify(logged3.result)}`);
  assert.equal(logged3.result.created, true);

  const escalate = await turn({ ...ids, turn_id: 43, customer_id: 3, messages,
    model: scenario({ calls: JSON.stringify([{ name: 'escalate_ticket', arguments: { ticket_id: three.result.ticket_id, reason: 'cracked twice' } }]) }) });
  assert.equal(escalate.result.created, true, `customer 3 escalates their own ticket: ${JSON.stringify(escalate.result)}`);
  assert.equal(escalate.result.ticket_id, three.result.ticket_id);
});

test('a client tool named like one of switchboard\'s is the client\'s: relayed, never run, one of that name sent', { skip }, async () => {
  await up.reset();
  const subject = `Client tool ${Date.now()}`;
  const tools = [{ type: 'function', function: { name: 'create_support_ticket', description: 'the client\'s own',
    parameters: { type: 'object', properties: { subject: { type: 'string' } } } } }];
  const { out } = await turn({ model: ticket({ subject }), turn_id: 11, tools, messages: [system, { role: 'user', content: 'x' }] });
  assert.deepEqual(out.finish, ['tool_calls']);
  const calls = out.chunks.flatMap((c) => c.choices?.[0]?.delta?.tool_calls ?? []);
  assert.equal(calls[0].function.name, 'create_support_ticket', 'the call was relayed to the client');
  assert.equal(count(subject), 0, 'and switchboard wrote nothing');
  const [sent] = await up.requests();
  const named = JSON.parse(sent.body).tools.filter((t) => t.function.name === 'create_support_ticket');
  assert.equal(named.length, 1, 'one tool of that name went to the provider');
  assert.equal(named[0].function.description, 'the client\'s own');
  await until(() => sb.accessLog.some((l) => l.shadowed_tools === 'create_support_ticket'), { what: 'the access log to say so' });
});

test('two tools of one name from the client are refused', { skip }, async () => {
  const fn = { type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } };
  const res = await post(sb.base, { messages: [{ role: 'user', content: 'x' }], tools: [fn, fn] });
  assert.equal(res.status, 400);
  assert.equal(res.json.error.param, 'tools[1]');
});
