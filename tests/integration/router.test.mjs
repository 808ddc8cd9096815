// The LLM router (ROUTER_MODEL) end to end: a real switchboard with agents on, a real Postgres for the event log and
// memory, and the fake provider playing both the router (its answer scripted by ROUTER_MODEL) and the turn's model.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  startFakeUpstream, startSwitchboard, post, scenario, assemble, until, psql, freshDatabase, adminDatabaseUrl, root,
  INBOUND_KEY, PROVIDER_KEY,
} from './lib.mjs';

const skip = adminDatabaseUrl ? false : 'no test database (run through tests/run)';
const profiles = JSON.parse(fs.readFileSync(path.join(root, 'tools', 'agents.json'), 'utf8'));
const ROUTER = scenario({ text: 'billing' });
const SLOW_ROUTER = scenario({ text: 'billing', delay_ms: '20000' });
const answer = scenario({ text: 'Sure.' });
// words no agent's phrases reach: the classifier is unsure, and without the router the default agent (support) answers
const UNSURE = 'Hi, I have a question about something from last week.';
const SURE = 'Where is my package? The tracking says nothing.';

let up, db, sb, slow;
const started = [];
async function start(env) {
  const s = await startSwitchboard({
    AGENTS: 'true', LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, RAG_BACKEND: 'none',
    SUMMARIES: 'false', TOOL_FILLER_TEXT: 'none', LLM_RETRY_BACKOFF_MS: '1', ...env,
  });
  started.push(s);
  return s;
}
before(async () => {
  if (skip) return;
  db = freshDatabase('router');
  up = await startFakeUpstream();
  // a cold pool (a sanitizer build) may take longer than the default 100 ms to load a history the memory test needs
  sb = await start({ ROUTER_MODEL: ROUTER, ROUTER_TIMEOUT_MS: '5000', MEMORY_TIMEOUT_MS: '5000' });
  slow = await start({ ROUTER_MODEL: SLOW_ROUTER, ROUTER_TIMEOUT_MS: '1500' });
});
after(async () => {
  try {
    for (const s of started) await s.stop();
  } finally {
    await up?.stop();
  }
});

/** One turn: its access-log line (by its request id), the stream, and the provider's requests (router's first, by model). */
let turns = 0;
async function turn(s, body) {
  await up.reset();
  const id = `router-turn-${++turns}`;
  const r = await post(s.base, { model: answer, stream: true, ...body }, { headers: { 'x-request-id': id } });
  assert.equal(r.status, 200, r.text);
  const line = await until(() => s.accessLog.find((l) => l.request_id === id), { what: 'the access log line' });
  const recs = await up.requests();
  return { out: assemble(r.text), line, recs, sent: recs.map((q) => JSON.parse(q.body)) };
}
const user = (content) => ({ role: 'user', content });
const isRouter = (body) => body.messages[0].content.startsWith('You choose which agent');
/** The routing events of a stored conversation, oldest first. */
const routingOf = (cid) => JSON.parse(psql(db, `select coalesce(json_agg(e.data order by e.at, e.seq), '[]') from conversation_events e `
  + `join conversations c on c.id = e.conversation where c.client_id = '${cid}' and e.kind = 'routing'`));

test('an utterance the classifier is unsure of goes to the agent the router names, with that agent\'s instructions', { skip }, async () => {
  const cid = 'router-chosen';
  const { out, line, sent } = await turn(sb, { conversation_id: cid, messages: [user(UNSURE)] });
  assert.equal(out.content, 'Sure.', 'the caller hears the turn\'s answer, not the router\'s');
  assert.deepEqual([line.agent, line.routed_by, line.router], ['billing', 'router', 'chosen']);
  assert.ok(line.router_ms > 0);
  assert.equal(sent.length, 2, 'the router, then the turn');
  const [asked, turned] = sent;
  assert.ok(isRouter(asked));
  assert.equal(asked.model, ROUTER);
  assert.equal(asked.temperature, 0);
  assert.equal(asked.max_tokens, 16);
  assert.equal(asked.tools, undefined, 'the router is offered no tools');
  for (const [name, agent] of Object.entries(profiles.agents)) {
    assert.ok(asked.messages[0].content.includes(`\n- ${name}: ${agent.routing.description}`), name);
  }
  assert.match(asked.messages[1].content, new RegExp(`The caller now says: "${UNSURE}"`));
  assert.equal(turned.model, answer);
  assert.ok(turned.messages[0].content.startsWith(profiles.agents.billing.instructions), turned.messages[0].content);
  const callTools = ['end_call', 'transfer_call']; // offered only on channels that can act on a call (Retell), not over HTTP
  assert.deepEqual(turned.tools.map((t) => t.function.name).sort(),
    profiles.agents.billing.tools.filter((t) => !callTools.includes(t)).sort());
  const events = await until(() => { const e = routingOf(cid); return e.length ? e : null; }, { what: 'the routing event' });
  assert.equal(events.length, 1);
  assert.deepEqual([events[0].agent, events[0].how, events[0].router], ['billing', 'router', 'chosen']);
  assert.ok(events[0].router_ms > 0);
});

test('a turn the classifier is sure of never calls the router', { skip }, async () => {
  const { line, sent } = await turn(sb, { messages: [user(SURE)] });
  assert.deepEqual([line.agent, line.routed_by, line.router], ['orders', 'classifier', undefined]);
  assert.equal(sent.length, 1, 'only the turn reached the provider');
  assert.ok(!isRouter(sent[0]));
  const sticky = await turn(sb, { messages: [user(SURE), { role: 'assistant', content: 'Let me check.' }, user('Thank you, and how long will it take?')] });
  assert.deepEqual([sticky.line.agent, sticky.line.routed_by, sticky.line.router], ['orders', 'sticky', undefined]);
  assert.equal(sticky.sent.length, 1, 'nor does a conversation its agent keeps');
});

test('an explicit choice never consults the router, whatever the words', { skip }, async () => {
  const { line, sent } = await turn(sb, { agent: 'orders', messages: [user(UNSURE)] });
  assert.deepEqual([line.agent, line.routed_by, line.router], ['orders', 'explicit', undefined]);
  assert.equal(sent.length, 1);
  assert.ok(sent[0].messages[0].content.startsWith(profiles.agents.orders.instructions));
});

test('a router slower than ROUTER_TIMEOUT_MS: the classifier\'s choice stands and the router\'s call is cancelled', { skip }, async () => {
  const cid = 'router-timeout';
  const { out, line, sent } = await turn(slow, { conversation_id: cid, messages: [user(UNSURE)] });
  assert.equal(out.content, 'Sure.');
  assert.deepEqual([line.agent, line.routed_by, line.router], ['support', 'default', 'timeout']);
  // the router was given 1.5 s of its 20: the turn waited for the budget (libuv timers count whole milliseconds), not the router
  assert.ok(line.router_ms >= 1499 && line.router_ms < 10000, `router_ms ${line.router_ms}`);
  assert.equal(sent.length, 2);
  assert.ok(isRouter(sent[0]));
  assert.ok(sent[1].messages[0].content.startsWith(profiles.agents.support.instructions));
  await until(async () => (await up.requests())[0].t_client_closed !== null, { what: 'the router\'s call to be hung up' });
  const events = await until(() => { const e = routingOf(cid); return e.length ? e : null; }, { what: 'the routing event' });
  assert.deepEqual([events[0].agent, events[0].how, events[0].router], ['support', 'default', 'timeout']);
});

for (const [what, model, outcome] of [
  ['answers more than a name', scenario({ text: 'I think billing.' }), 'unusable'],
  ['answers a name that is no agent', scenario({ text: 'sales' }), 'unusable'],
  ['fails (a 500, and its one retry)', scenario({ status: '500' }), 'error'],
]) {
  test(`a router that ${what}: the classifier's choice stands`, { skip }, async () => {
    const s = await start({ ROUTER_MODEL: model, ROUTER_TIMEOUT_MS: '5000' });
    const { out, line, sent } = await turn(s, { messages: [user(UNSURE)] });
    assert.equal(out.content, 'Sure.');
    assert.deepEqual([line.agent, line.routed_by, line.router], ['support', 'default', outcome]);
    assert.ok(sent.at(-1).messages[0].content.startsWith(profiles.agents.support.instructions));
    assert.ok(sent.slice(0, -1).every(isRouter));
  });
}

test('a caller who hangs up while the router is asked ends the router\'s call at once', { skip, timeout: 20000 }, async () => {
  await up.reset();
  const body = JSON.stringify({ model: answer, stream: true, messages: [user(UNSURE)] });
  const sock = net.connect(slow.port, '127.0.0.1');
  sock.on('error', () => {});
  sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${INBOUND_KEY}\r\nX-Request-Id: router-gone\r\n`
    + `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  await until(async () => (await up.requests()).length > 0, { what: 'the router to be asked' });
  sock.destroy();
  const rec = await until(async () => { const r = (await up.requests())[0]; return r.t_client_closed ? r : null; },
    { what: 'the router\'s call to be hung up' });
  assert.ok(rec.t_client_closed - rec.t_received < 1500, 'before its budget ran out');
  const line = await until(() => slow.accessLog.find((l) => l.request_id === 'router-gone'), { what: 'the access log line' });
  assert.equal(line.end, 'client_gone');
  assert.equal((await up.requests()).length, 1, 'the turn never asked the provider');
});

test('with memory, the router\'s choice is the conversation\'s agent next turn; without, the router is asked again', { skip }, async () => {
  const cid = 'router-memory';
  let { line } = await turn(sb, { conversation_id: cid, messages: [user(UNSURE)] });
  assert.deepEqual([line.agent, line.routed_by], ['billing', 'router']);
  await until(() => psql(db, `select agent from conversations where client_id = '${cid}'`) === 'billing', { what: 'the turn to be stored' });
  let sent;
  ({ line, sent } = await turn(sb, { conversation_id: cid, messages: [user('Yes, it was on the fifth.')] }));
  assert.deepEqual([line.agent, line.routed_by, line.router, line.agent_from], ['billing', 'sticky', undefined, undefined]);
  assert.equal(sent.length, 1, 'the router was not asked again');
  assert.ok(sent[0].messages[0].content.startsWith(profiles.agents.billing.instructions));

  // no conversation to recall: the earlier words alone found nobody, so the unsure new words go to the router again
  ({ line, sent } = await turn(sb, { messages: [user(UNSURE), { role: 'assistant', content: 'Sure.' }, user('Yes, it was on the fifth.')] }));
  assert.deepEqual([line.agent, line.routed_by, line.router], ['billing', 'router', 'chosen']);
  assert.equal(sent.length, 2);
  assert.match(sent[0].messages[1].content, /The call is with the support agent so far\.\nEarlier the caller said: "Hi, I have a question/);
});
