// The session WebSocket API with a real WebSocket client (the `ws` package):
// tokens, origins, the protocol's messages, tool events, cancel and barge-in,
// limits, and a session's memory across sockets, against a real Postgres and
// the fake provider.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import {
  startFakeUpstream, startSwitchboard, scenario, until, psql, freshDatabase, adminDatabaseUrl, INBOUND_KEY, PROVIDER_KEY,
} from './lib.mjs';

const skip = adminDatabaseUrl ? false : 'no test database (run through tests/run)';
const OTHER_KEY = 'test-other-inbound-key-fedcba9876543210';
let up, sb, db;
before(async () => {
  if (skip) return;
  db = freshDatabase('sessions');
  up = await startFakeUpstream();
  sb = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, WORKERS: '2', PG_POOL_SIZE: '4',
    SWITCHBOARD_API_KEYS: `${INBOUND_KEY},${OTHER_KEY}`, RAG_BACKEND: 'none', SUMMARIES: 'false', TOOL_FILLER_TEXT: 'none',
    CORS_ORIGINS: 'https://app.example.com', WS_MAX_MESSAGE_BYTES: '4096', WS_MESSAGES_PER_S: '10', MEMORY_TIMEOUT_MS: '2000',
  });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

async function createSession(body, key = INBOUND_KEY) {
  const res = await fetch(`${sb.base}/v1/sessions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

/**
 * A connected client: every server message in `seen`, `next(pred)` waits for
 * the next one that matches, `closed` resolves with {code, reason}.
 */
function connect(session, { protocols, query, origin } = {}) {
  const url = `ws://127.0.0.1:${sb.port}${session.url}${query ?? ''}`;
  const ws = new WebSocket(url, protocols ?? ['switchboard.v1', session.token], origin ? { origin } : {});
  const seen = [];
  const waiters = [];
  let read = 0;
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString());
    m.at = performance.now();
    seen.push(m);
    for (const w of [...waiters]) w();
  });
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  const opened = new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('unexpected-response', (req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
    ws.on('error', reject);
  });
  /** The next message after the last one taken that satisfies `pred`. */
  function next(pred = () => true, what = 'a message') {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; seen ${JSON.stringify(seen)}`)), 5000);
      const look = () => {
        while (read < seen.length) {
          const m = seen[read++];
          if (pred(m)) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(look), 1);
            resolve(m);
            return;
          }
        }
      };
      waiters.push(look);
      look();
    });
  }
  const send = (m) => ws.send(typeof m === 'string' ? m : JSON.stringify(m));
  return { ws, seen, next, send, closed, opened };
}

/** Sends a message and gathers its turn: the text, every message about it, and its done. */
async function ask(c, text, model, extra = {}) {
  c.send({ type: 'message', text, model, ...extra });
  const done = await c.next((m) => m.type === 'done', 'done');
  const about = c.seen.filter((m) => m.turn === done.turn);
  return { done, about, text: about.filter((m) => m.type === 'token').map((m) => m.text).join('') };
}

test('POST /v1/sessions needs a key and a clean body, and returns a token for the session', { skip }, async () => {
  const none = await fetch(`${sb.base}/v1/sessions`, { method: 'POST' });
  assert.equal(none.status, 401);
  const bad = await createSession({ id: 'has spaces' });
  assert.equal(bad.status, 400);
  const extra = await createSession({ nope: 1 });
  assert.equal(extra.status, 400);
  const long = await createSession({ ttl_s: 999999 });
  assert.equal(long.status, 400, 'a token may not outlive SESSION_TOKEN_TTL_S');
  const { status, json } = await createSession();
  assert.equal(status, 201);
  assert.match(json.id, /^sess_[A-Za-z0-9_-]+$/);
  assert.match(json.token, /^sbs1\./);
  assert.equal(json.url, `/v1/sessions/${json.id}/ws`);
  assert.ok(json.expires_at > Date.now() / 1000 + 800 && json.expires_at <= Date.now() / 1000 + 901);
  assert.ok(!sb.accessLog.some((l) => JSON.stringify(l).includes(json.token.slice(5, 30))), 'the token is not logged');
});

test('a message streams its answer as tokens, then done with usage', { skip }, async () => {
  const { json: s } = await createSession();
  const c = connect(s);
  await c.opened;
  assert.equal(c.ws.protocol, 'switchboard.v1', 'the subprotocol the client offered is named');
  const ready = await c.next((m) => m.type === 'ready', 'ready');
  assert.equal(ready.session, s.id);
  const history = await c.next((m) => m.type === 'history', 'history');
  assert.deepEqual(history.messages, [], 'a new session has no history');
  const { done, text } = await ask(c, 'hello there', scenario({ text: 'Hi! How can I help you today?' }), { id: 'm-1' });
  assert.equal(text, 'Hi! How can I help you today?');
  assert.equal(done.finish, 'stop');
  assert.equal(done.reply_to, 'm-1');
  assert.ok(done.usage && done.usage.completion_tokens > 0, 'usage comes with done');
  c.send({ type: 'ping', t: 42 });
  assert.deepEqual((({ type, t }) => ({ type, t }))(await c.next((m) => m.type === 'pong', 'pong')), { type: 'pong', t: 42 });
  c.ws.close(1000);
  await c.closed;
});

test('switchboard\'s own tools show as tool_call and tool_result, and write Postgres once', { skip }, async () => {
  const before = Number(psql(db, "select count(*) from support_tickets"));
  const { json: s } = await createSession();
  const c = connect(s);
  await c.opened;
  const model = scenario({
    calls: JSON.stringify([{ name: 'create_support_ticket', arguments: { customer_id: 1, subject: 'Broken kettle', description: 'It leaks', priority: 'high' } }]),
  });
  const { about, done } = await ask(c, 'my kettle leaks, open a ticket', model);
  assert.equal(done.finish, 'stop');
  const call = about.find((m) => m.type === 'tool_call');
  const result = about.find((m) => m.type === 'tool_result');
  assert.ok(call && result, `tool events: ${JSON.stringify(about)}`);
  assert.equal(call.name, 'create_support_ticket');
  assert.equal(JSON.parse(call.arguments).subject, 'Broken kettle');
  assert.equal(result.id, call.id);
  assert.equal(result.failed, false);
  assert.ok(JSON.parse(result.result).ticket_id > 0, result.result);
  assert.ok(about.indexOf(call) < about.indexOf(result) && about.indexOf(result) < about.findIndex((m) => m.type === 'token'),
    'the call, its result, then the answer');
  assert.equal(Number(psql(db, "select count(*) from support_tickets")), before + 1, 'one ticket written');
  c.ws.close(1000);
  await c.closed;
});

test('cancel ends the provider call within 50 ms; a new message interrupts the answer in progress', { skip }, async () => {
  const { json: s } = await createSession();
  const c = connect(s);
  await c.opened;
  await up.reset();
  const slow = scenario({ gen_bytes: '40000', pace_ms: '20' });
  c.send({ type: 'message', text: 'tell me a long story', model: slow });
  const first = await c.next((m) => m.type === 'token', 'the first token');
  const sentAt = Date.now();
  c.send({ type: 'cancel' });
  const cancelled = await c.next((m) => m.type === 'done', 'done after cancel');
  assert.equal(cancelled.finish, 'cancelled');
  assert.equal(cancelled.turn, first.turn);
  const rec = await until(async () => {
    const r = (await up.requests()).at(-1);
    return r && r.t_client_closed ? r : null;
  }, { timeoutMs: 3000, what: 'the provider connection to close' });
  assert.ok(rec.t_client_closed - sentAt < 50, `the provider saw the cancel after ${rec.t_client_closed - sentAt} ms`);

  c.send({ type: 'message', text: 'another long story', model: slow });
  const t2 = await c.next((m) => m.type === 'token', 'the second answer');
  c.send({ type: 'message', text: 'stop, what time is it?', model: scenario({ text: 'It is noon.' }) });
  const interrupted = await c.next((m) => m.type === 'done', 'the interrupted answer\'s done');
  assert.equal(interrupted.turn, t2.turn);
  assert.equal(interrupted.finish, 'interrupted');
  const done = await c.next((m) => m.type === 'done', 'the new answer\'s done');
  assert.equal(done.finish, 'stop');
  const words = c.seen.filter((m) => m.type === 'token' && m.turn === done.turn).map((m) => m.text).join('');
  assert.equal(words, 'It is noon.');
  const late = c.seen.filter((m) => m.turn === t2.turn && m.at > interrupted.at);
  assert.deepEqual(late, [], 'nothing more of the interrupted answer');
  c.ws.close(1000);
  await c.closed;
});

test('a bad message gets an error and the socket stays; a provider failure gets a friendly one', { skip }, async () => {
  const { json: s } = await createSession();
  const c = connect(s);
  await c.opened;
  c.send('not json');
  const e1 = await c.next((m) => m.type === 'error', 'an error');
  assert.equal(e1.category, 'bad_message');
  c.send({ type: 'dance' });
  assert.equal((await c.next((m) => m.type === 'error', 'an error')).category, 'bad_message');
  c.send({ type: 'message', text: 'hi', model: scenario({ status: '429' }) });
  const e2 = await c.next((m) => m.type === 'error', 'the provider error');
  assert.equal(e2.category, 'busy');
  assert.equal(e2.message, 'the assistant is busy, try again in a moment');
  assert.doesNotMatch(JSON.stringify(c.seen), new RegExp(PROVIDER_KEY));
  assert.equal((await c.next((m) => m.type === 'done', 'done')).finish, 'error');
  const stray = await ask(c, 'launch', scenario({ calls: JSON.stringify([{ name: 'launch_rockets', arguments: {} }]) }));
  assert.equal(stray.done.finish, 'error', 'a call of a tool nobody offered is no answer');
  assert.equal(stray.about.find((m) => m.type === 'error')?.category, 'unavailable');
  const { text } = await ask(c, 'again', scenario({ text: 'Still here.' }));
  assert.equal(text, 'Still here.', 'the session goes on');
  c.ws.close(1000);
  await c.closed;
});

test('an oversize message closes with 1009, a flood with 1008', { skip }, async () => {
  const { json: s } = await createSession();
  const big = connect(s);
  await big.opened;
  big.send({ type: 'message', text: 'x'.repeat(5000) });
  assert.equal((await big.closed).code, 1009);
  const flood = connect(s);
  await flood.opened;
  for (let i = 0; i < 40; ++i) flood.send({ type: 'ping', t: i });
  const closed = await flood.closed;
  assert.equal(closed.code, 1008);
  const pongs = flood.seen.filter((m) => m.type === 'pong').length;
  assert.ok(pongs <= 10, `at most the allowed rate was answered (${pongs})`);
  await until(async () => (await fetch(`${sb.base}/ping`)).ok, { what: 'switchboard to answer after the flood' });
});

test('forged, foreign and expired tokens, and foreign origins, are refused', { skip }, async () => {
  const { json: s } = await createSession();
  const forged = s.token.slice(0, -4) + (s.token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  await assert.rejects(connect(s, { protocols: ['switchboard.v1', forged] }).opened, (e) => e.status === 401);
  await assert.rejects(connect(s, { protocols: ['switchboard.v1'] }).opened, (e) => e.status === 401, 'no token');
  const { json: other } = await createSession();
  await assert.rejects(connect(s, { protocols: ['switchboard.v1', other.token] }).opened, (e) => e.status === 401,
    'a token for another session');
  await assert.rejects(connect(s, { origin: 'https://evil.example.net' }).opened, (e) => e.status === 403);
  const allowed = connect(s, { origin: 'https://app.example.com' });
  await allowed.opened;
  allowed.ws.close(1000);
  const same = connect(s, { origin: `http://127.0.0.1:${sb.port}` });
  await same.opened;
  same.ws.close(1000);
  const viaQuery = connect(s, { protocols: [], query: `?token=${s.token}` });
  await viaQuery.opened;
  await viaQuery.next((m) => m.type === 'ready', 'ready');
  viaQuery.ws.close(1000);
  assert.ok(!sb.accessLog.some((l) => JSON.stringify(l).includes(s.token.slice(5, 30))), 'a token in the query is not logged');

  const { json: short } = await createSession({ ttl_s: 1 });
  const tampered = short.token.slice(0, 8) + (short.token[8] === 'A' ? 'B' : 'A') + short.token.slice(9);
  await assert.rejects(connect(short, { protocols: ['switchboard.v1', tampered] }).opened, (e) => e.status === 401,
    'a changed expiry breaks the signature');
  // connects work until the second is over; then the socket opens only to say the session expired
  const expired = await until(async () => {
    const c = connect(short);
    await c.opened;
    const first = await c.next(() => true, 'the first message');
    if (first.type === 'ready') {
      c.ws.close(1000);
      await c.closed;
      return null;
    }
    return { first, closed: await c.closed };
  }, { timeoutMs: 4000, everyMs: 100, what: 'the token to expire' });
  assert.equal(expired.first.type, 'error');
  assert.equal(expired.first.category, 'session_expired');
  assert.equal(expired.closed.code, 4001);
});

test('a session reconnects to its history; ending it closes its conversation', { skip }, async () => {
  const { json: s } = await createSession();
  const a = connect(s);
  await a.opened;
  await ask(a, 'my name is Ana', scenario({ text: 'Nice to meet you, Ana.' }));
  a.ws.close(1001); // a reload: the session is not over
  await a.closed;
  const key = `(select key from conversations where client_id = '${s.id}')`;
  await until(() => Number(psql(db, `select count(*) from messages where conversation = (select id from conversations where client_id = '${s.id}')`)) === 2,
    { what: 'the turn to be stored' });
  assert.equal(psql(db, `select closed_at is null from conversations where key = ${key}`), 't', 'a reload keeps it open');

  const { json: again } = await createSession({ id: s.id });
  assert.equal(again.id, s.id);
  const b = connect(again);
  await b.opened;
  const history = await b.next((m) => m.type === 'history', 'history');
  assert.deepEqual(history.messages.map((m) => [m.role, m.content]), [['user', 'my name is Ana'], ['assistant', 'Nice to meet you, Ana.']]);
  await up.reset();
  await ask(b, 'what is my name?', scenario({ text: 'Ana.' }));
  const sent = JSON.parse((await up.requests()).at(-1).body).messages;
  assert.deepEqual(sent.filter((m) => m.role !== 'system').map((m) => m.content), ['my name is Ana', 'Nice to meet you, Ana.', 'what is my name?'],
    'the stored history reached the provider');

  const { json: foreign } = await createSession({ id: s.id }, OTHER_KEY);
  const f = connect(foreign);
  await f.opened;
  assert.deepEqual((await f.next((m) => m.type === 'history', 'history')).messages, [], 'another key\'s session of the same id is another conversation');
  f.ws.close(1000);

  b.send({ type: 'end' });
  assert.equal((await b.closed).code, 1000);
  await until(() => psql(db, `select closed_at is not null and summary is not null from conversations where key = ${key}`) === 't',
    { what: 'the conversation to close with its summary' });
  assert.match(psql(db, `select string_agg(kind, ',') from conversation_events where conversation = (select id from conversations where key = ${key})`),
    /session_end/);
});

test('a plain close (1000) closes the conversation at once, as end does', { skip }, async () => {
  const { json: s } = await createSession();
  const c = connect(s);
  await c.opened;
  await ask(c, 'book me a table', scenario({ text: 'Done.' }));
  const conv = `(select id from conversations where client_id = '${s.id}')`;
  await until(() => Number(psql(db, `select count(*) from messages where conversation = ${conv}`)) === 2, { what: 'the turn to be stored' });
  c.ws.close(1000);
  assert.equal((await c.closed).code, 1000);
  await until(() => psql(db, `select closed_at is not null from conversations where id = ${conv}`) === 't',
    { what: 'the conversation to close' });
  assert.equal(psql(db, `select data->>'reason' from conversation_events where conversation = ${conv} and kind = 'session_end'`), 'client_closed');
});

test('a client that stops reading holds the provider once 64 KiB wait for it', { skip, timeout: 60000 }, async () => {
  const { json: s } = await createSession();
  const c = connect(s);
  await c.opened;
  await up.reset();
  c.send({ type: 'message', text: 'tell me everything', model: scenario({ gen_bytes: String(32 * 1024 * 1024) }) });
  await c.next((m) => m.type === 'token', 'the first token');
  c.ws.pause(); // the socket is no longer read: the kernel's buffers fill, then switchboard's queue
  const sent = async () => (await up.requests()).at(-1)?.bytes_sent ?? 0;
  // Once the socket buffers on both sides are full the provider must be held: over 1.5 s it may send no more than a
  // little. Without back-pressure switchboard reads the whole 32 MiB at the fake provider's speed.
  const samples = [];
  await until(async () => {
    samples.push([performance.now(), await sent()]);
    const now = samples.at(-1);
    const before = samples.findLast(([t]) => t < now[0] - 1500);
    return before !== undefined && now[1] - before[1] < 256 * 1024;
  }, { what: 'the provider to be held', timeoutMs: 30000, everyMs: 100 });
  const held = samples.at(-1)[1];
  assert.ok(held < 20 * 1024 * 1024, `the provider was held back: ${held} bytes sent`);
  c.ws.resume();
  c.send({ type: 'cancel' });
  const done = await c.next((m) => m.type === 'done', 'done after the cancel');
  assert.equal(done.finish, 'cancelled');
  c.ws.close(1000);
  await c.closed;
});
