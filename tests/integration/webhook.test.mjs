// Agora's Conversational AI webhooks (POST /v1/agora/events) and the read of
// one conversation (GET /v1/conversations/{id}) against a real Postgres and
// the fake provider: a signed notice closes the call's conversation with a
// summary, an unsigned one writes nothing, a repeat changes nothing, and a
// conversation is readable only by the key that created it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startFakeUpstream, startSwitchboard, post, scenario, assemble, until, psql, freshDatabase, adminDatabaseUrl,
  INBOUND_KEY, PROVIDER_KEY,
} from './lib.mjs';

const skip = adminDatabaseUrl ? false : 'no test database (run through tests/run)';
const OTHER_KEY = 'test-other-inbound-key-fedcba9876543210';
const SECRET = 'agora-webhook-test-secret';
let up, sb, db;
before(async () => {
  if (skip) return;
  db = freshDatabase('webhook');
  up = await startFakeUpstream();
  sb = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, WORKERS: '2', PG_POOL_SIZE: '4',
    SWITCHBOARD_API_KEYS: `${INBOUND_KEY},${OTHER_KEY}`, RAG_BACKEND: 'none', SUMMARIES: 'false', TOOL_FILLER_TEXT: 'none',
    AGORA_WEBHOOK_SECRET: SECRET,
  });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

const count = (sql) => Number(psql(db, sql));
const sign = (raw, secret = SECRET) => crypto.createHmac('sha256', secret).update(raw).digest('hex');
let notices = 0;
/** Agora's notice body: {noticeId, productId 17, eventType, notifyMs, payload}. */
function notice(eventType, payload, noticeId = `notice-${process.pid}-${++notices}`) {
  return JSON.stringify({ noticeId, productId: 17, eventType, notifyMs: Date.now(), payload });
}
function deliver(raw, signature = sign(raw)) {
  return post(sb.base, raw, { path: '/v1/agora/events', key: null, headers: signature === null ? {} : { 'agora-signature-v2': signature } });
}
function get(id, key = INBOUND_KEY) {
  return new Promise((resolve, reject) => {
    fetch(new URL(`/v1/conversations/${id}`, sb.base), { headers: { authorization: `Bearer ${key}` } })
      .then(async (res) => resolve({ status: res.status, json: await res.json() })).catch(reject);
  });
}
/** One voice turn of the call in `channel` (the engine's ids in the body, as Agora's custom LLM sends them). */
async function voiceTurn(channel, agent, words, answer) {
  const res = await post(sb.base, {
    stream: true, model: scenario({ text: answer }), channel, agent_id: agent, app_id: 'app-1', user_uid: '1001',
    messages: [{ role: 'user', content: words }],
  });
  assert.equal(res.status, 200, res.text);
  assert.ok(assemble(res.text).done);
}
const conversationOf = (channel) => psql(db, `select id from conversations where identity like '%channel=${channel};%'`);
const stored = (channel) => count(`select count(*) from messages m join conversations c on c.id = m.conversation where c.identity like '%channel=${channel};%'`);

test('101, 102: the call is marked started, then closed with a summary; a repeat changes nothing', { skip }, async () => {
  await voiceTurn('ch-left', 'agent-1', 'I want to change the address of order 4417.', 'Done, the address is updated.');
  await until(() => stored('ch-left') === 2, { what: 'the turn to be stored' });
  const id = conversationOf('ch-left');
  const joined = await deliver(notice(101, { agent_id: 'agent-1', channel: 'ch-left', ts: Math.floor(Date.now() / 1000) }));
  assert.equal(joined.status, 200, joined.text);
  assert.equal(count(`select count(*) from conversation_events where conversation = ${id} and kind = 'session_start'`), 1,
    'session_start is there once (the turn wrote it; the notice did not add another)');
  const raw = notice(102, { agent_id: 'agent-1', channel: 'ch-left', status: 'STOPPED', message: 'agent stopped', start_ts: 1, stop_ts: 2 });
  const left = await deliver(raw);
  assert.equal(left.status, 200, left.text);
  assert.equal(left.json.status, 'ok');
  const row = psql(db, `select closed_at is not null, summary from conversations where id = ${id}`);
  assert.match(row, /^t\|Caller: I want to change the address of order 4417\.\nAssistant: Done, the address is updated\.$/);
  const again = await deliver(raw);
  assert.equal(again.status, 200);
  assert.equal(again.json.status, 'duplicate');
  assert.equal(count(`select count(*) from conversation_events where conversation = ${id} and kind = 'session_end'`), 1, 'one close');
  assert.equal(count(`select count(*) from agora_notices where conversation = ${id}`), 2);
});

test('103: the engine\'s history is stored and the call closed with its summary', { skip }, async () => {
  await voiceTurn('ch-history', 'agent-2', 'Is my refund through?', 'Yes, it was sent yesterday.');
  await until(() => stored('ch-history') === 2, { what: 'the turn to be stored' });
  const id = conversationOf('ch-history');
  const contents = [
    { role: 'assistant', content: 'Hello, how can I help?' },
    { role: 'user', content: 'Is my refund through?' },
    { role: 'assistant', content: 'Yes, it was sent yesterday.' },
  ];
  const res = await deliver(notice(103, { agent_id: 'agent-2', channel: 'ch-history', start_ts: 1, stop_ts: 2, contents }));
  assert.equal(res.status, 200, res.text);
  assert.equal(psql(db, `select data->'contents' from conversation_events where conversation = ${id} and kind = 'engine_history'`),
    JSON.stringify(contents).replaceAll('","', '", "').replaceAll('":"', '": "').replaceAll('},{', '}, {'));
  assert.equal(psql(db, `select closed_at is not null and summary like 'Caller: Is my refund through?%' from conversations where id = ${id}`), 't');
  // the 102 that follows the 103 finds the call closed: no second close, the summary stays
  const left = await deliver(notice(102, { agent_id: 'agent-2', channel: 'ch-history', status: 'STOPPED', start_ts: 1, stop_ts: 2 }));
  assert.equal(left.status, 200);
  assert.equal(count(`select count(*) from conversation_events where conversation = ${id} and kind = 'session_end'`), 1);
});

test('a wrong or missing signature is refused with 401 and writes nothing', { skip }, async () => {
  await voiceTurn('ch-forged', 'agent-3', 'Cancel my order.', 'It is cancelled.');
  await until(() => stored('ch-forged') === 2, { what: 'the turn to be stored' });
  const before = count('select count(*) from agora_notices');
  const raw = notice(102, { agent_id: 'agent-3', channel: 'ch-forged', status: 'STOPPED', start_ts: 1, stop_ts: 2 });
  for (const signature of [null, sign(raw, 'not-the-secret'), sign(raw).slice(2), 'zz' + sign(raw).slice(2), sign(raw + ' ')]) {
    const res = await deliver(raw, signature);
    assert.equal(res.status, 401, `signature ${signature}`);
  }
  assert.equal(count('select count(*) from agora_notices'), before);
  assert.equal(psql(db, `select closed_at is null and summary is null from conversations where identity like '%channel=ch-forged;%'`), 't');
});

test('a malformed notice is refused; other event types are accepted and ignored', { skip }, async () => {
  for (const raw of ['{"noticeId":"x","eventType":102', '{"noticeId":"x","eventType":102,"eventType":103,"payload":{}}',
    '{"noticeId":"x","eventType":"102","payload":{}}', '{"noticeId":"x","eventType":102,"payload":{"channel":7}}']) {
    const res = await deliver(raw);
    assert.equal(res.status, 400, raw);
  }
  const res = await deliver(notice(111, { agent_id: 'a', channel: 'c' }));
  assert.equal(res.status, 200);
  assert.equal(res.json.status, 'ignored');
});

test('GET /v1/conversations/{id}: transcript, events and summary for its key; 404 for another key or an unknown id', { skip }, async () => {
  const cid = 'webhook-read-1';
  const res = await post(sb.base, { stream: true, model: scenario({ text: 'Ticket 88 is open.' }), conversation_id: cid, messages: [{ role: 'user', content: 'What about ticket 88?' }] });
  assert.equal(res.status, 200);
  await until(() => count(`select count(*) from messages m join conversations c on c.id = m.conversation where c.client_id = '${cid}'`) === 2,
    { what: 'the turn to be stored' });
  psql(db, `update conversations set closed_at = now(), summary = 'Asked about ticket 88.' where client_id = '${cid}'`);
  const mine = await get(cid);
  assert.equal(mine.status, 200);
  assert.equal(mine.json.conversation_id, cid);
  assert.equal(mine.json.summary, 'Asked about ticket 88.');
  assert.deepEqual(mine.json.messages.map((m) => [m.role, m.content]), [['user', 'What about ticket 88?'], ['assistant', 'Ticket 88 is open.']]);
  const kinds = mine.json.events.map((e) => e.kind);
  assert.equal(kinds[0], 'session_start');
  assert.ok(kinds.includes('user_message') && kinds.includes('assistant_message'), kinds.join(','));
  const byNumber = await get(String(mine.json.id));
  assert.equal(byNumber.status, 200);
  assert.equal(byNumber.json.conversation_id, cid);
  assert.equal((await get(cid, OTHER_KEY)).status, 404, 'another key does not see it');
  assert.equal((await get(String(mine.json.id), OTHER_KEY)).status, 404, 'nor by its number');
  assert.equal((await get('no-such-conversation')).status, 404);
  assert.equal((await get(cid, 'not-a-key')).status, 401);
});

test('without AGORA_WEBHOOK_SECRET the route answers 404 and says why', { skip }, async () => {
  const off = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, WORKERS: '1',
    SWITCHBOARD_API_KEYS: INBOUND_KEY, RAG_BACKEND: 'none',
  });
  try {
    const raw = notice(102, { agent_id: 'a', channel: 'c' });
    const res = await post(off.base, raw, { path: '/v1/agora/events', key: null, headers: { 'agora-signature-v2': sign(raw) } });
    assert.equal(res.status, 404);
    assert.match(res.json.error.message, /AGORA_WEBHOOK_SECRET/);
  } finally {
    await off.stop();
  }
});
