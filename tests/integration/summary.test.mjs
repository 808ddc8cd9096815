// Post-call summaries against a real Postgres and the fake provider: a
// conversation closed for silence ends with the model's few sentences in
// conversations.summary, asked for with its words and no tools; when the
// provider fails, the extract the close wrote stays.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startFakeUpstream, startSwitchboard, post, scenario, assemble, until, psql, freshDatabase, adminDatabaseUrl,
  INBOUND_KEY, PROVIDER_KEY,
} from './lib.mjs';

const skip = adminDatabaseUrl ? false : 'no test database (run through tests/run)';
const SUMMARY = 'The caller wanted to return order 4417, which arrived broken. Ticket 88 was opened for the return. '
  + 'A courier pickup is still to be arranged.';
const GOOD_MODEL = scenario({ text: SUMMARY });
const FAILING_MODEL = scenario({ status: '500' });
const SECRET = 'summary-webhook-secret';
let up, good, failing, hooked;
before(async () => {
  if (skip) return;
  up = await startFakeUpstream();
  const env = (db, model) => ({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, WORKERS: '2', PG_POOL_SIZE: '4',
    SWITCHBOARD_API_KEYS: INBOUND_KEY, RAG_BACKEND: 'none', TOOL_FILLER_TEXT: 'none', SESSION_IDLE_S: '1',
    SUMMARY_MODEL: model,
  });
  const goodDb = freshDatabase('summary_good');
  const failingDb = freshDatabase('summary_failing');
  good = { db: goodDb, sb: await startSwitchboard(env(goodDb, GOOD_MODEL)) };
  failing = { db: failingDb, sb: await startSwitchboard(env(failingDb, FAILING_MODEL)) };
  const hookedDb = freshDatabase('summary_webhook');
  hooked = { db: hookedDb, sb: await startSwitchboard({ ...env(hookedDb, GOOD_MODEL), SESSION_IDLE_S: '0', AGORA_WEBHOOK_SECRET: SECRET }) };
});
after(async () => {
  try {
    await good?.sb.stop();
    await failing?.sb.stop();
    await hooked?.sb.stop();
  } finally {
    await up?.stop();
  }
});

const WORDS = 'I need to return order 4417, it arrived broken.';
const ANSWER = 'I opened ticket 88 for the return of order 4417.';
const EXTRACT = `Caller: ${WORDS}\nAssistant: ${ANSWER}`;

async function converse(sb, cid) {
  const res = await post(sb.base, { stream: true, model: scenario({ text: ANSWER }), conversation_id: cid, messages: [{ role: 'user', content: WORDS }] });
  assert.equal(res.status, 200, res.text);
  assert.ok(assemble(res.text).done);
}
const summaryOf = (db, cid) => psql(db, `select coalesce(summary, '<null>') from conversations where client_id = '${cid}' and closed_at is not null`);
async function summaryRequests(model) {
  return (await up.requests()).filter((r) => r.body && JSON.parse(r.body).model === model);
}

test('a conversation closed for silence gets the model\'s summary, asked for with its words and no tools', { skip, timeout: 30000 }, async () => {
  const cid = 'summary-idle';
  await converse(good.sb, cid);
  const turnBody = JSON.parse((await summaryRequests(scenario({ text: ANSWER })))[0].body);
  assert.ok(Array.isArray(turnBody.tools) && turnBody.tools.length > 0, 'an ordinary turn is offered switchboard\'s tools');
  await until(() => summaryOf(good.db, cid) === SUMMARY, { timeoutMs: 20000, everyMs: 200, what: 'the model\'s summary to replace the extract' });
  const asked = await summaryRequests(GOOD_MODEL);
  assert.equal(asked.length, 1, 'one summary request');
  const body = JSON.parse(asked[0].body);
  assert.equal(body.tools, undefined, 'no tools offered to a summary turn');
  assert.equal(body.messages[0].role, 'system');
  assert.match(body.messages[0].content, /what the caller wanted/);
  const transcript = body.messages.at(-1);
  assert.equal(transcript.role, 'user');
  assert.ok(transcript.content.includes(`Caller: ${WORDS}`), transcript.content);
  assert.ok(transcript.content.includes(`Assistant: ${ANSWER}`), transcript.content);
});

test('with a failing provider the extract stays', { skip, timeout: 30000 }, async () => {
  const cid = 'summary-failing';
  await converse(failing.sb, cid);
  await until(async () => (await summaryRequests(FAILING_MODEL)).length > 0, { timeoutMs: 20000, everyMs: 200, what: 'the summary to be asked for' });
  await until(() => summaryOf(failing.db, cid) === EXTRACT, { timeoutMs: 5000, everyMs: 100, what: 'the close to have written its extract' });
  await new Promise((r) => setTimeout(r, 1500)); // retries, if any, come and go
  assert.equal(summaryOf(failing.db, cid), EXTRACT);
});

test('a call closed by Agora\'s agent-left webhook gets the model\'s summary', { skip, timeout: 30000 }, async () => {
  const res = await post(hooked.sb.base, {
    stream: true, model: scenario({ text: ANSWER }), channel: 'ch-summary', agent_id: 'agent-9', app_id: 'app-1', user_uid: '1001',
    messages: [{ role: 'user', content: WORDS }],
  });
  assert.equal(res.status, 200, res.text);
  const stored = () => Number(psql(hooked.db, "select count(*) from messages m join conversations c on c.id = m.conversation where c.identity like '%channel=ch-summary;%'"));
  await until(() => stored() === 2, { what: 'the turn to be stored' });
  const raw = JSON.stringify({ noticeId: `summary-${process.pid}`, productId: 17, eventType: 102, notifyMs: Date.now(),
    payload: { agent_id: 'agent-9', channel: 'ch-summary', status: 'STOPPED', start_ts: 1, stop_ts: 2 } });
  const left = await post(hooked.sb.base, raw, { path: '/v1/agora/events', key: null,
    headers: { 'agora-signature-v2': crypto.createHmac('sha256', SECRET).update(raw).digest('hex') } });
  assert.equal(left.status, 200, left.text);
  const summary = () => psql(hooked.db, "select summary from conversations where identity like '%channel=ch-summary;%' and closed_at is not null");
  await until(() => summary() === SUMMARY, { timeoutMs: 10000, everyMs: 100, what: 'the model\'s summary to replace the extract' });
});
