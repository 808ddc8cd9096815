// Retell AI's LLM WebSocket: a client plays Retell's side of the protocol from the samples of Retell's reference
// (config and begin message, update_only, response_required, a superseding one, ping_pong, reminder_required, end_call
// and transfer from a tool) against a real switchboard, the fake provider and, when there is one, the test Postgres.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import {
  startFakeUpstream, startSwitchboard, post, scenario, assemble, until, psql, freshDatabase, adminDatabaseUrl, PROVIDER_KEY,
} from './lib.mjs';

const SECRET = 'retell-secret-0123456789abcdef';
const TRANSFER = '+14155550123';
const SLOW = 'one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen';
const noDb = adminDatabaseUrl ? false : 'no test database (run through tests/run)';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-retell-'));
const agentsFile = path.join(tmp, 'agents.json');

/** An agent profile whose model is a fake-provider scenario. */
const agent = (model, tools = ['end_call', 'transfer_call']) => ({
  instructions: 'You answer phone calls.', tools, model, routing: { description: 'calls', phrases: {} },
});
fs.writeFileSync(agentsFile, JSON.stringify({
  default: 'desk',
  agents: {
    desk: agent(scenario({ text: 'Sure, I can help with that.' })),
    slow: agent(scenario({ text: SLOW, pace_ms: '40' })),
    closer: agent(scenario({ calls: JSON.stringify([{ name: 'end_call', arguments: { reason: 'the caller said goodbye' } }]), text: 'Goodbye!' })),
    handoff: agent(scenario({ calls: JSON.stringify([{ name: 'transfer_call', arguments: {} }]), text: 'Putting you through now.' })),
    noend: agent(scenario({ calls: JSON.stringify([{ name: 'end_call', arguments: {} }]), text: 'Bye.' }), []),
  },
}));

let up, sb, db;
before(async () => {
  up = await startFakeUpstream();
  db = noDb ? undefined : freshDatabase('retell');
  sb = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, AGENTS: 'true', AGENTS_FILE: agentsFile,
    RETELL_SECRET: SECRET, RETELL_MAX_MESSAGE_BYTES: '65536', RETELL_BEGIN_MESSAGE: 'Thanks for calling, how can I help?',
    TRANSFER_NUMBER: TRANSFER, RAG_BACKEND: 'none', SUMMARIES: 'false',
    ...(db ? { DATABASE_URL: db, PG_CONNECT_TIMEOUT_MS: '500' } : {}),
  });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

let calls = 0;
const newCallId = () => `call${process.pid}x${++calls}`;
const url = (server, callId, query = { secret: SECRET }) =>
  `ws://127.0.0.1:${server.port}/v1/retell/llm-websocket/${callId}?${new URLSearchParams(query)}`;

/**
 * Plays Retell: connects for `callId`, keeps what switchboard sends in order, and reads the two events every call
 * opens with (config, then the begin message: `opening`).
 */
async function retell(server, callId, query) {
  const ws = new WebSocket(url(server, callId, query));
  const inbox = [];
  let read = 0;
  ws.on('message', (data, binary) => inbox.push({ at: Date.now(), binary, ev: JSON.parse(data.toString()) }));
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  const call = {
    ws, inbox, closed,
    send: (ev) => ws.send(JSON.stringify(ev)),
    /** Retell's hang-up at the end of a call. */
    async hangUp() {
      ws.close(1000);
      return closed;
    },
    /** The next event not read yet (waiting for it). */
    async next(what = 'the next event') {
      await until(() => inbox.length > read, { what, timeoutMs: 10000 });
      return inbox[read++].ev;
    },
    /** Every event up to and including the one `pred` holds for. */
    async until(pred, what) {
      const seen = [];
      for (;;) {
        const ev = await this.next(what);
        seen.push(ev);
        if (pred(ev)) return seen;
      }
    },
  };
  call.opening = [await call.next('config'), await call.next('the begin message')];
  return call;
}

/** Opens a socket that must be refused before the upgrade; resolves with the HTTP status. */
function refused(target) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target);
    ws.on('unexpected-response', (req, res) => { res.resume(); resolve(res.statusCode); });
    ws.on('open', () => { ws.close(); reject(new Error('the socket opened')); });
    ws.on('error', reject);
  });
}

// Retell's samples: an agent utterance and the caller's, with word timings
const words = (text, from) => text.split(' ').map((word, i) => ({ word, start: from + i * 0.24, end: from + (i + 1) * 0.24 }));
const said = (role, content, from = 0) => ({ role, content, words: words(content, from) });
const greeting = said('agent', 'Thanks for calling, how can I help?');
const transcript = (...user) => [greeting, ...user.map((u, i) => said('user', u, 4 + i))];
const answerOf = (events, id) => events.filter((e) => e.response_type === 'response' && e.response_id === id);
const contentOf = (events) => events.map((e) => e.content).join('');
/** The provider's request whose last caller's words are `words`. */
const sentFor = async (lastWords) => (await up.requests()).map((r) => ({ r, body: JSON.parse(r.body) }))
  .find(({ body }) => body.messages.filter((m) => m.role === 'user').at(-1)?.content === lastWords);

test('config and the begin message come first; update_only is answered by nothing; ping_pong is echoed', async () => {
  const call = await retell(sb, newCallId());
  assert.deepEqual(call.opening, [{ response_type: 'config', config: { auto_reconnect: true, call_details: true } },
    { response_type: 'response', response_id: 0, content: 'Thanks for calling, how can I help?', content_complete: true }]);
  call.send({
    interaction_type: 'call_details',
    call: { call_type: 'phone_call', from_number: '+12137771234', to_number: '+12137771235', direction: 'inbound', call_id: 'x', agent_id: 'y', call_status: 'registered', metadata: {}, retell_llm_dynamic_variables: { customer_name: 'John Doe' } },
  });
  call.send({ interaction_type: 'update_only', transcript: transcript('Hey. How are you?'), turntaking: 'agent_turn' });
  call.ws.send('{"interaction_type":"response_required","response_id":1,"transcript":[{"role":"user"'); // cut short
  call.send({ interaction_type: 'a_new_kind_of_event', transcript: [] });
  call.send({ interaction_type: 'ping_pong', timestamp: 1703302407333 });
  // the socket keeps order: had any of these been answered, that answer would come before the echo
  assert.deepEqual(await call.next(), { response_type: 'ping_pong', timestamp: 1703302407333 });
  await until(() => sb.stderr.some((l) => l.includes('an event was ignored')), { what: 'the malformed event to be logged' });
  assert.ok(call.inbox.every((m) => !m.binary), 'every event is a text message');
  await call.hangUp();
});

test('response_required is answered by streamed response events ending content_complete', async () => {
  await up.reset();
  const call = await retell(sb, newCallId());
  call.send({ interaction_type: 'response_required', response_id: 1, transcript: transcript('Hey. How are you?') });
  const events = await call.until((e) => e.content_complete, 'the answer to end');
  const answer = answerOf(events, 1);
  assert.equal(answer.length, events.length, 'only response events, all for response 1');
  assert.ok(answer.length > 2, 'streamed in parts');
  assert.ok(answer.slice(0, -1).every((e) => e.content_complete === false), 'content_complete only on the last');
  assert.equal(contentOf(answer), 'Sure, I can help with that.');
  assert.deepEqual(Object.keys(answer.at(-1)).sort(), ['content', 'content_complete', 'response_id', 'response_type']);

  const { body } = await sentFor('Hey. How are you?');
  assert.deepEqual(body.messages.filter((m) => m.role !== 'system').map((m) => [m.role, m.content]),
    [['assistant', 'Thanks for calling, how can I help?'], ['user', 'Hey. How are you?']], 'agent -> assistant, user -> user');
  assert.match(body.messages[0].content, /You answer phone calls/, 'the agent the turn was routed to');
  assert.deepEqual(body.tools.map((t) => t.function.name).sort(), ['end_call', 'transfer_call'], 'this channel offers the call tools');

  // the same agent over Chat Completions is not offered them: it cannot act on a call
  const ws = await post(sb.base, { model: 'agent:desk', stream: true, messages: [{ role: 'user', content: 'bye' }] });
  assert.equal(assemble(ws.text).content, 'Sure, I can help with that.');
  const http = JSON.parse((await up.requests()).at(-1).body);
  assert.equal(http.tools, undefined, 'no call tool for an HTTP turn');

  const line = await until(() => sb.accessLog.find((l) => l.route === '/v1/retell/llm-websocket' && l.status === 101 && l.end === 'done'),
    { what: 'the turn\'s access-log line' });
  assert.equal(line.agent, 'desk');
  assert.ok(line.ttfb_ms > 0);
  await call.hangUp();
});

test('a newer response_required stops the older answer at once: its provider call ends within 50 ms', async () => {
  await up.reset();
  const call = await retell(sb, newCallId(), { secret: SECRET, agent: 'slow' });
  call.send({ interaction_type: 'response_required', response_id: 2, transcript: transcript('My name is Mike') });
  const first = await call.next('the first words of response 2');
  assert.equal(first.response_id, 2);
  const sentAt = Date.now();
  call.send({ interaction_type: 'response_required', response_id: 3, transcript: transcript('My name is Mike Trump') });
  call.send({ interaction_type: 'ping_pong', timestamp: 42 });
  const events = await call.until((e) => e.response_id === 3 && e.content_complete, 'response 3 to end');
  const old = (await sentFor('My name is Mike')).r;
  const closedAt = await until(async () => (await up.requests()).find((r) => r.seq === old.seq)?.t_client_closed,
    { what: 'the first provider call to be closed', timeoutMs: 3000 });
  assert.ok(closedAt - sentAt < 50, `the provider saw the close ${closedAt - sentAt} ms after the newer ask`);
  const firstOf3 = events.findIndex((e) => e.response_id === 3);
  assert.ok(events.slice(firstOf3).every((e) => e.response_id !== 2), 'nothing more for response 2 once 3 began');
  assert.ok(![first, ...events].some((e) => e.response_id === 2 && e.content_complete), 'response 2 is never completed');
  assert.equal(contentOf(answerOf(events, 3)), SLOW, 'response 3 is answered whole');
  assert.ok(events.some((e) => e.response_type === 'ping_pong' && e.timestamp === 42), 'ping_pong echoed while an answer streams');
  // an ask older than the newest is stale: nothing answers it
  call.send({ interaction_type: 'response_required', response_id: 2, transcript: transcript('My name is Mike') });
  call.send({ interaction_type: 'ping_pong', timestamp: 43 });
  assert.deepEqual(await call.next(), { response_type: 'ping_pong', timestamp: 43 });
  await until(() => sb.accessLog.some((l) => l.route === '/v1/retell/llm-websocket' && l.end === 'interrupted'),
    { what: 'the stopped turn\'s access-log line' });
  await call.hangUp();
});

test('reminder_required gets a short check-in', async () => {
  await up.reset();
  const call = await retell(sb, newCallId());
  const quiet = [...transcript('Hey. How are you?'), said('agent', "I'm doing fine. How can I help you?")];
  call.send({ interaction_type: 'reminder_required', response_id: 4, transcript: quiet });
  const events = await call.until((e) => e.content_complete, 'the check-in to end');
  assert.equal(contentOf(answerOf(events, 4)), 'Sure, I can help with that.');
  const sent = JSON.parse((await up.requests()).at(-1).body).messages;
  assert.deepEqual(sent.slice(-2).map((m) => [m.role, m.content]),
    [['assistant', "I'm doing fine. How can I help you?"], ['user', '(the caller has been silent; check in briefly)']]);
  await call.hangUp();
});

test('end_call from a tool: the last response ends the call, and the conversation closes', async () => {
  await up.reset();
  const callId = newCallId();
  const call = await retell(sb, callId, { secret: SECRET, agent: 'closer' });
  call.send({ interaction_type: 'response_required', response_id: 5, transcript: transcript('That is all, thanks. Bye!') });
  const events = await call.until((e) => e.content_complete, 'the goodbye');
  const invocation = events.find((e) => e.response_type === 'tool_call_invocation');
  assert.equal(invocation.name, 'end_call');
  assert.deepEqual(JSON.parse(invocation.arguments), { reason: 'the caller said goodbye' });
  const result = events.find((e) => e.response_type === 'tool_call_result');
  assert.equal(result.tool_call_id, invocation.tool_call_id);
  assert.equal(result.successful, true);
  const answer = answerOf(events, 5);
  assert.equal(contentOf(answer), 'Goodbye!', 'no filler before a goodbye');
  assert.deepEqual(answer.at(-1), { response_type: 'response', response_id: 5, content: '', content_complete: true, end_call: true });
  assert.ok(!answer.slice(0, -1).some((e) => 'end_call' in e));
  if (!db) {
    await call.hangUp();
    return;
  }
  // Retell hangs up once the goodbye is spoken, seconds after the turn was stored
  const conversation = `select closed_at is not null from conversations where identity = 'retell_call=${callId};'`;
  await until(() => psql(db, conversation) === 'f', { what: 'the call\'s conversation to be stored' });
  await call.hangUp();
  await until(() => psql(db, conversation) === 't', { what: 'the call\'s conversation to be closed' });
  const kinds = psql(db, `select string_agg(kind || coalesce(':' || (data->>'reason'), ''), ',' order by at, e.seq) from conversation_events e join conversations c on c.id = e.conversation where c.identity = 'retell_call=${callId};'`);
  assert.match(kinds, /tool_call/);
  assert.match(kinds, /session_end:agent_ended$/);
  const stored = psql(db, `select string_agg(role || ':' || coalesce(content, ''), '|' order by seq) from messages m join conversations c on c.id = m.conversation where c.identity = 'retell_call=${callId};' and role in ('user', 'assistant') and content <> ''`);
  assert.equal(stored, 'user:That is all, thanks. Bye!|assistant:Goodbye!');
});

test('a call hung up as soon as its goodbye is out still ends closed, its last turn stored', { skip: noDb }, async () => {
  await up.reset();
  const callId = newCallId();
  const call = await retell(sb, callId, { secret: SECRET, agent: 'closer' });
  // Retell hangs up the moment the goodbye is complete, before the turn's record is written: the close waits for it,
  // or the record would open the conversation again (or, on a call's first turn, create it open)
  call.ws.on('message', (data) => { if (JSON.parse(data.toString()).content_complete) call.ws.close(1000); });
  call.send({ interaction_type: 'response_required', response_id: 1, transcript: transcript('Nothing else. Bye!') });
  assert.equal((await call.closed).code, 1000);
  const conversation = `select closed_at is not null from conversations where identity = 'retell_call=${callId};'`;
  await until(() => psql(db, conversation) === 't', { what: 'the call\'s conversation to be closed' });
  await new Promise((r) => setTimeout(r, 300)); // nothing written after the close opens it again
  assert.equal(psql(db, conversation), 't');
  const stored = psql(db, `select string_agg(role || ':' || coalesce(content, ''), '|' order by seq) from messages m join conversations c on c.id = m.conversation where c.identity = 'retell_call=${callId};' and role in ('user', 'assistant') and content <> ''`);
  assert.equal(stored, 'user:Nothing else. Bye!|assistant:Goodbye!');
});

test('transfer_call from a tool: the last response carries TRANSFER_NUMBER', async () => {
  const call = await retell(sb, newCallId(), { secret: SECRET, agent: 'handoff' });
  call.send({ interaction_type: 'response_required', response_id: 1, transcript: transcript('Can I talk to a person?') });
  const events = await call.until((e) => e.content_complete, 'the hand-over');
  assert.equal(contentOf(answerOf(events, 1)), 'Putting you through now.');
  assert.deepEqual(events.at(-1), { response_type: 'response', response_id: 1, content: '', content_complete: true, transfer_number: TRANSFER });
  await call.hangUp();
});

test('an agent without end_call cannot end the call, whatever the model asks; an answer that is only that call apologises', async () => {
  const call = await retell(sb, newCallId(), { secret: SECRET, agent: 'noend' });
  call.send({ interaction_type: 'response_required', response_id: 1, transcript: transcript('Bye!') });
  const events = await call.until((e) => e.content_complete, 'the answer');
  assert.ok(!events.some((e) => e.response_type === 'tool_call_invocation'), 'the call is not run');
  assert.equal(events.at(-1).end_call, undefined);
  // an answer that was only a call of a tool nobody offered says nothing: the caller hears the apology, not silence
  assert.equal(contentOf(answerOf(events, 1)), "Sorry, I can't answer that just now. Could you say it again?");
  await call.hangUp();
});

test('a wrong or missing secret, an unknown agent and a bad call id are refused before the upgrade; the secret is never logged', async () => {
  const callId = newCallId();
  assert.equal(await refused(url(sb, callId, {})), 401);
  assert.equal(await refused(url(sb, callId, { secret: `${SECRET}x` })), 401);
  assert.equal(await refused(url(sb, callId, { secret: SECRET.slice(0, -1) })), 401);
  assert.equal(await refused(url(sb, callId, { secret: SECRET, agent: 'nobody' })), 400);
  assert.equal(await refused(`ws://127.0.0.1:${sb.port}/v1/retell/llm-websocket/a%20b?secret=${SECRET}`), 404);
  assert.equal(await refused(`ws://127.0.0.1:${sb.port}/v1/retell/llm-websocket/a/b?secret=${SECRET}`), 404);
  const plain = await fetch(url(sb, callId).replace('ws:', 'http:'));
  assert.equal(plain.status, 426);
  await until(() => sb.accessLog.filter((l) => l.status === 401).length >= 3, { what: 'the refusals to be logged' });
  const everything = JSON.stringify(sb.accessLog) + sb.stderr.join('\n');
  assert.ok(!everything.includes(SECRET.slice(0, 16)), 'no line holds the secret');

  const off = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY });
  try {
    assert.equal(await refused(url(off, callId)), 404, 'without RETELL_SECRET the route is off');
  } finally {
    await off.stop();
  }
});

test('a transcript past WS_MAX_MESSAGE_BYTES is answered; a message past RETELL_MAX_MESSAGE_BYTES closes the socket (1009)', async () => {
  const call = await retell(sb, newCallId());
  const long = transcript(...Array.from({ length: 60 }, (_, i) => `I have a lot to say, this is sentence number ${i} of many`));
  const text = JSON.stringify({ interaction_type: 'response_required', response_id: 1, transcript: long });
  assert.ok(text.length > 16384 && text.length < 65536, `${text.length} bytes`);
  call.ws.send(text);
  const events = await call.until((e) => e.content_complete, 'the answer to a long transcript');
  assert.equal(contentOf(answerOf(events, 1)), 'Sure, I can help with that.');
  call.send({ interaction_type: 'update_only', transcript: long, padding: 'x'.repeat(65536) });
  const { code } = await call.closed;
  assert.equal(code, 1009);
});

test('with agents off the model is OPENAI_MODEL and the call tools are offered as they are', async () => {
  const plain = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, OPENAI_MODEL: scenario({ text: 'Plain answer.' }), RETELL_SECRET: SECRET,
  });
  try {
    await up.reset();
    const call = await retell(plain, newCallId());
    assert.deepEqual(call.opening[1], { response_type: 'response', response_id: 0, content: '', content_complete: true },
      'no begin message: the caller speaks first');
    call.send({ interaction_type: 'response_required', response_id: 1, transcript: [said('user', 'Hello?')] });
    const events = await call.until((e) => e.content_complete, 'the answer');
    assert.equal(contentOf(answerOf(events, 1)), 'Plain answer.');
    const body = JSON.parse((await up.requests()).at(-1).body);
    assert.deepEqual(body.messages, [{ role: 'user', content: 'Hello?' }]);
    assert.deepEqual(body.tools.map((t) => t.function.name), ['end_call'], 'end_call; transfer_call needs TRANSFER_NUMBER');
    await call.hangUp();
  } finally {
    await plain.stop();
  }
});

test('on SIGTERM an open call completes its answer and closes 1001 (not the end of the call) at the drain deadline', async () => {
  const draining = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, OPENAI_MODEL: scenario({ text: SLOW, pace_ms: '100' }),
    RETELL_SECRET: SECRET, DRAIN_TIMEOUT_MS: '400',
  });
  const call = await retell(draining, newCallId());
  call.send({ interaction_type: 'response_required', response_id: 1, transcript: [said('user', 'Tell me everything.')] });
  const first = await call.next('the first words');
  draining.proc.kill('SIGTERM');
  const events = await call.until((e) => e.content_complete, 'the answer to be completed at the deadline');
  assert.deepEqual(events.at(-1), { response_type: 'response', response_id: 1, content: '', content_complete: true },
    'no apology for a restart');
  assert.notEqual(contentOf([first, ...answerOf(events, 1)]), SLOW, 'cut short');
  assert.equal((await call.closed).code, 1001);
  await draining.stop();
});

/** A switchboard of its own answering OPENAI_MODEL, with a drain deadline long enough that waiting for it would show. */
const DRAIN_MS = 8000;
const drainingSwitchboard = (model, env = {}) => startSwitchboard({
  LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, OPENAI_MODEL: model, RETELL_SECRET: SECRET, DRAIN_TIMEOUT_MS: String(DRAIN_MS),
  ...env,
});

test('on SIGTERM an idle call closes 1001 at once, not at the drain deadline', async () => {
  const draining = await drainingSwitchboard(scenario({ text: 'Sure.' }));
  const call = await retell(draining, newCallId());
  const t0 = performance.now();
  const stopped = draining.stop();
  const { code } = await call.closed;
  const closedMs = performance.now() - t0;
  await stopped;
  assert.equal(code, 1001, 'going away: Retell reconnects, the call goes on');
  assert.ok(closedMs < 2000, `closed after ${Math.round(closedMs)} ms`);
  assert.ok(performance.now() - t0 < DRAIN_MS / 2, 'switchboard exited before the drain deadline');
  assert.equal(call.inbox.length, 2, 'nothing but the opening was sent');
});

test('on SIGTERM the answer in progress is finished, then the socket closes 1001', async () => {
  const draining = await drainingSwitchboard(scenario({ text: SLOW, pace_ms: '60' }));
  const call = await retell(draining, newCallId());
  call.send({ interaction_type: 'response_required', response_id: 1, transcript: [said('user', 'Tell me everything.')] });
  const first = await call.next('the first words');
  const t0 = performance.now();
  const stopped = draining.stop();
  const events = await call.until((e) => e.content_complete, 'the answer to end');
  assert.equal(contentOf(answerOf([first, ...events], 1)), SLOW, 'the whole answer');
  assert.equal((await call.closed).code, 1001);
  await stopped;
  assert.ok(performance.now() - t0 < DRAIN_MS / 2, 'the drain did not wait for its deadline');
});

test('an ask that comes during the drain is left to the next process: the older answer stops, the socket closes 1001', async () => {
  const draining = await drainingSwitchboard(scenario({ text: SLOW, pace_ms: '60' }), { WORKERS: '1' });
  const call = await retell(draining, newCallId());
  call.send({ interaction_type: 'response_required', response_id: 1, transcript: [said('user', 'Tell me everything.')] });
  await call.next('the first words');
  const stopped = draining.stop();
  // the one worker is draining once its listener is closed
  await until(async () => fetch(`${draining.base}/ping`).then(() => false, () => true), { what: 'the listener to close' });
  call.send({ interaction_type: 'response_required', response_id: 2, transcript: [said('user', 'Tell me everything. And more.')] });
  assert.equal((await call.closed).code, 1001);
  await stopped;
  const sent = call.inbox.map((m) => m.ev);
  assert.ok(!sent.some((e) => e.response_id === 2), 'response 2 is not answered here');
  assert.ok(!sent.some((e) => e.response_id === 1 && e.content_complete), 'response 1 was superseded: never completed');
  await until(() => draining.accessLog.some((l) => l.route === '/v1/retell/llm-websocket' && l.end === 'interrupted'),
    { what: 'the stopped turn\'s access-log line' });
});
