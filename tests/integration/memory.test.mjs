// Conversation memory and the event log against a real Postgres (the cluster
// tests/run starts) and the fake provider: what a turn recalls, what is
// stored once, what `forget` erases, and that none of it holds up a turn.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import path from 'node:path';
import {
  startFakeUpstream, startSwitchboard, post, scenario, assemble, until, psql, freshDatabase, cluster, adminDatabaseUrl,
  buildDir, INBOUND_KEY, PROVIDER_KEY, sleep,
} from './lib.mjs';

const skip = adminDatabaseUrl ? false : 'no test database (run through tests/run)';
const OTHER_KEY = 'test-other-inbound-key-fedcba9876543210';
let up, sb, db;
before(async () => {
  if (skip) return;
  db = freshDatabase('memory');
  up = await startFakeUpstream();
  sb = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, WORKERS: '2', PG_POOL_SIZE: '4',
    PG_CONNECT_TIMEOUT_MS: '500', SWITCHBOARD_API_KEYS: `${INBOUND_KEY},${OTHER_KEY}`, RAG_BACKEND: 'none', SUMMARIES: 'false',
    SESSION_IDLE_S: '2', MEMORY_ACROSS_CALLS: 'true', TOOL_FILLER_TEXT: 'none',
  });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

const say = (text) => scenario({ text });
const count = (sql) => Number(psql(db, sql));
const messagesOf = (cid) => count(`select count(*) from messages m join conversations c on c.id = m.conversation where c.client_id = '${cid}'`);
const eventsOf = (cid) => psql(db, `select string_agg(kind, ',' order by at, e.seq) from conversation_events e join conversations c on c.id = e.conversation where c.client_id = '${cid}'`);
/** The messages the provider received in its newest request. */
async function lastSent() {
  const reqs = await up.requests();
  return JSON.parse(reqs.at(-1).body).messages;
}
async function turn(body, opts) {
  const res = await post(sb.base, { stream: true, ...body }, opts);
  assert.equal(res.status, 200, res.text);
  const out = assemble(res.text);
  assert.ok(out.done, 'the stream ended with [DONE]');
  return out;
}

test('a client that sends only its new words gets the first two turns back on the third', { skip }, async () => {
  const cid = 'chat-three-turns';
  await turn({ model: say('Hello Ana, how can I help?'), conversation_id: cid, messages: [{ role: 'user', content: 'Hi, I am Ana.' }] });
  await until(() => messagesOf(cid) === 2, { what: 'the first turn to be stored' });
  await turn({ model: say('Order 4417 shipped.'), messages: [{ role: 'user', content: 'Where is order 4417?' }] },
    { headers: { 'x-conversation-id': cid } });
  await until(() => messagesOf(cid) === 4, { what: 'the second turn to be stored' });
  await turn({ model: say('You are welcome.'), conversation_id: cid, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Thanks!' }] });
  const sent = await lastSent();
  assert.deepEqual(sent.map((m) => [m.role, m.content]), [
    ['system', 'Be brief.'],
    ['user', 'Hi, I am Ana.'], ['assistant', 'Hello Ana, how can I help?'],
    ['user', 'Where is order 4417?'], ['assistant', 'Order 4417 shipped.'],
    ['user', 'Thanks!'],
  ]);
});

test('the same request twice is stored once', { skip }, async () => {
  const cid = 'chat-repeat';
  const body = { model: say('Sure.'), conversation_id: cid, messages: [{ role: 'user', content: 'Can you repeat that?' }] };
  await turn(body);
  await until(() => messagesOf(cid) === 2, { what: 'the turn to be stored' });
  await turn(body);
  // the repeat's own events land in the same statement as its messages would have
  await until(() => (eventsOf(cid) || '').split(',').filter((k) => k === 'assistant_message').length === 2, { what: 'the repeat to be written' });
  assert.equal(messagesOf(cid), 2);
});

test('a malformed conversation id is refused', { skip }, async () => {
  const res = await post(sb.base, { model: say('x'), conversation_id: 'no spaces allowed', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(res.status, 400);
  assert.equal(res.json.error.param, 'conversation_id');
  const long = await post(sb.base, { model: say('x'), messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-conversation-id': 'a'.repeat(129) } });
  assert.equal(long.status, 400);
});

test('an engine that keeps only its last turns gets a summary of what it dropped', { skip }, async () => {
  const ids = { app_id: 'app1', channel: 'memory-channel', user_uid: '42' };
  const history = [{ role: 'system', content: 'You are a support agent.' }];
  const words = [['My name is Priya and my order is 7781.', 'Thanks Priya.'], ['It arrived broken.', 'Sorry to hear that.'],
    ['Can I get a refund?', 'Yes, I can start one.']];
  let stored = 0;
  for (const [i, [u, a]] of words.entries()) {
    history.push({ role: 'user', content: u, turn_id: i + 1, timestamp: 1000 + i });
    await turn({ model: say(a), ...ids, messages: history });
    history.push({ role: 'assistant', content: a });
    stored += 2;
    await until(() => count(`select count(*) from messages m join conversations c on c.id = m.conversation where c.identity like '%channel=memory-channel%'`) === stored, { what: `turn ${i + 1} stored` });
  }
  // the engine now sends only its last two messages and the new words
  const kept = [history[0], ...history.slice(-2), { role: 'user', content: 'How long will it take?', turn_id: 4, timestamp: 1003 }];
  await turn({ model: say('About a week.'), ...ids, messages: kept });
  const sent = await lastSent();
  assert.equal(sent[0].content, 'You are a support agent.');
  assert.equal(sent[1].role, 'system');
  assert.match(sent[1].content, /earlier/i);
  assert.match(sent[1].content, /Priya and my order is 7781/, 'what the engine dropped is summarised');
  assert.match(sent[1].content, /It arrived broken/);
  assert.doesNotMatch(sent[1].content, /Can I get a refund/, 'what the engine still holds is not repeated');
  assert.deepEqual(sent.slice(2).map((m) => m.content), kept.slice(1).map((m) => m.content));
});

test('another inbound key cannot load a conversation by its id', { skip }, async () => {
  const cid = 'chat-private';
  await turn({ model: say('Your PIN hint is blue.'), conversation_id: cid, messages: [{ role: 'user', content: 'What is my PIN hint?' }] });
  await until(() => messagesOf(cid) === 2, { what: 'the turn to be stored' });
  await turn({ model: say('x'), conversation_id: cid, messages: [{ role: 'user', content: 'And again?' }] }, { key: OTHER_KEY });
  const sent = await lastSent();
  assert.deepEqual(sent.map((m) => m.content), ['And again?'], 'nothing of the first key\'s conversation');
  await until(() => count(`select count(*) from conversations where client_id = '${cid}'`) === 2, { what: 'the other key\'s own conversation' });
  assert.equal(count(`select count(distinct owner) from conversations where client_id = '${cid}'`), 2);
});

test('returning-caller memory: the summaries of the caller\'s earlier calls', { skip, timeout: 30000 }, async () => {
  await turn({ model: say('I will send a new router.'), conversation_id: 'call-a', customer_id: 7, messages: [{ role: 'user', content: 'My router keeps dropping the line.' }] });
  await until(() => count("select count(*) from conversations where client_id = 'call-a' and closed_at is not null and summary is not null") === 1,
    { timeoutMs: 15000, everyMs: 200, what: 'the first call to close with a summary' });
  assert.match(eventsOf('call-a'), /session_end$/);
  await turn({ model: say('Welcome back.'), conversation_id: 'call-b', customer_id: 7, messages: [{ role: 'user', content: 'Hello again.' }] });
  const sent = await lastSent();
  assert.equal(sent[0].role, 'system');
  assert.match(sent[0].content, /called before/);
  assert.match(sent[0].content, /router keeps dropping/);
  // another caller hears nothing of it
  await turn({ model: say('Hi.'), conversation_id: 'call-c', customer_id: 8, messages: [{ role: 'user', content: 'Hello.' }] });
  assert.deepEqual((await lastSent()).map((m) => m.role), ['user']);
});

test('forget removes everything of one caller and nothing of another', { skip }, async () => {
  await until(() => count("select count(*) from conversations where customer_id = 8") === 1 && count("select count(*) from conversations where customer_id = 7") === 2,
    { what: 'both callers stored' });
  const before8 = psql(db, "select count(*) || '/' || (select count(*) from messages m join conversations c on c.id = m.conversation where customer_id = 8) from conversations where customer_id = 8");
  const total = count('select count(*) from conversations');
  const out = execFileSync(path.join(buildDir, 'src', 'switchboard'), ['forget', '--customer-id', '7'], {
    env: { PATH: process.env.PATH, DATABASE_URL: db, ASAN_OPTIONS: process.env.ASAN_OPTIONS || '', LSAN_OPTIONS: process.env.LSAN_OPTIONS || '' },
  }).toString();
  assert.match(out, /removed 2 conversations, 4 messages, \d+ events/);
  assert.equal(count('select count(*) from conversations where customer_id = 7'), 0);
  assert.equal(count('select count(*) from messages m left join conversations c on c.id = m.conversation where c.id is null'), 0);
  assert.equal(count('select count(*) from conversation_events e left join conversations c on c.id = e.conversation where c.id is null'), 0);
  assert.equal(count('select count(*) from conversations'), total - 2);
  assert.equal(psql(db, "select count(*) || '/' || (select count(*) from messages m join conversations c on c.id = m.conversation where customer_id = 8) from conversations where customer_id = 8"), before8);
  const bad = spawn(path.join(buildDir, 'src', 'switchboard'), ['forget', '--customer-id', 'x7'], { env: { PATH: process.env.PATH, DATABASE_URL: db } });
  assert.equal(await new Promise((r) => bad.on('exit', r)), 2, 'a malformed id is refused');
});

test('a tool turn logs its events in order', { skip }, async () => {
  const cid = 'chat-tool-events';
  const model = scenario({ calls: JSON.stringify([{ name: 'get_order_status', arguments: { order_number: '4417' } }]), text: 'It shipped.' });
  await turn({ model, conversation_id: cid, messages: [{ role: 'user', content: 'Where is order 4417?' }] });
  await until(() => /assistant_message/.test(eventsOf(cid) || ''), { what: 'the events to be written' });
  assert.equal(eventsOf(cid), 'session_start,user_message,tool_call,tool_result,assistant_message');
  const data = JSON.parse(psql(db, `select json_agg(data order by at, e.seq) from conversation_events e join conversations c on c.id = e.conversation where c.client_id = '${cid}'`));
  assert.equal(data[1].content, 'Where is order 4417?');
  assert.equal(data[2].name, 'get_order_status');
  assert.match(data[3].result, /shipped/);
  assert.equal(data[4].content, 'It shipped.');
  // the stored turn: the words, the call, its result, the answer
  assert.equal(psql(db, `select string_agg(role, ',' order by seq) from messages m join conversations c on c.id = m.conversation where c.client_id = '${cid}'`),
    'user,assistant,tool,assistant');
});

test('a history load past MEMORY_TIMEOUT_MS does not hold up the turn', { skip, timeout: 30000 }, async () => {
  const cid = 'chat-slow-history';
  await turn({ model: say('Noted.'), conversation_id: cid, messages: [{ role: 'user', content: 'Remember the blue folder.' }] });
  await until(() => messagesOf(cid) === 2, { what: 'the turn to be stored' });
  const locker = spawn('psql', ['-X', '-q', db, '-c', 'begin; lock table messages in access exclusive mode; select pg_sleep(3); commit;'], { stdio: 'ignore' });
  try {
    await until(() => count("select count(*) from pg_locks l join pg_class c on c.oid = l.relation where c.relname = 'messages' and l.mode = 'AccessExclusiveLock' and l.granted") === 1,
      { what: 'the lock' });
    const t0 = performance.now();
    const out = await turn({ model: say('Here I am.'), conversation_id: cid, messages: [{ role: 'user', content: 'What did I ask you to remember?' }] });
    const ms = performance.now() - t0;
    assert.equal(out.content, 'Here I am.');
    assert.ok(ms < 1500, `answered in ${ms} ms, without waiting for the lock`);
    assert.deepEqual((await lastSent()).map((m) => m.content), ['What did I ask you to remember?'], 'it went on without the history');
  } finally {
    await new Promise((r) => (locker.exitCode !== null ? r() : locker.on('exit', r)));
  }
});

test('with Postgres stopped turns still stream and dropped events are counted', { skip, timeout: 60000 }, async () => {
  const dropped = async () => {
    const text = await (await fetch(`${sb.base}/metrics`, { headers: { authorization: `Bearer ${INBOUND_KEY}` } })).text();
    return Number(/^switchboard_events_dropped_total (\d+)/m.exec(text)[1]);
  };
  const before0 = await dropped();
  cluster('stop');
  try {
    for (let i = 0; i < 3; ++i) {
      const out = await turn({ model: say('Still here.'), conversation_id: 'chat-outage', messages: [{ role: 'user', content: `Are you there ${i}?` }] });
      assert.equal(out.content, 'Still here.');
    }
    await until(async () => (await dropped()) > before0, { timeoutMs: 10000, everyMs: 100, what: 'the dropped-events count to rise' });
    await until(() => sb.stderr.some((l) => /event log: dropped \d+ turns/.test(l)), { what: 'the log line' });
  } finally {
    cluster('restart');
  }
  await sleep(200);
  await until(async () => {
    await turn({ model: say('Back.'), conversation_id: 'chat-after-outage', messages: [{ role: 'user', content: 'Back?' }] });
    return messagesOf('chat-after-outage') >= 2;
  }, { timeoutMs: 15000, everyMs: 300, what: 'turns to be stored again' });
});

test('with agents on, the routing decision is logged after the caller\'s words, and a hand-over is an agent_switch', { skip, timeout: 30000 }, async () => {
  const s = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, RAG_BACKEND: 'none', AGENTS: 'true', TOOL_FILLER_TEXT: 'none',
  });
  try {
    const cid = 'chat-agent-events';
    const post1 = await post(s.base, { stream: true, model: say('Let me check.'), conversation_id: cid, messages: [{ role: 'user', content: 'Where is my order 4417? It has not arrived.' }] });
    assert.equal(post1.status, 200);
    await until(() => /assistant_message/.test(eventsOf(cid) || ''), { what: 'the first turn\'s events' });
    const post2 = await post(s.base, {
      stream: true, model: say('About your invoice.'), conversation_id: cid,
      messages: [{ role: 'user', content: 'Why was I charged twice on my credit card invoice? I want a refund of the double charge.' }],
    });
    assert.equal(post2.status, 200);
    await until(() => (eventsOf(cid) || '').split(',').filter((k) => k === 'assistant_message').length === 2, { what: 'the second turn\'s events' });
    const kinds = eventsOf(cid).split(',');
    assert.equal(kinds[kinds.indexOf('user_message') + 1], 'routing', 'the routing decision follows the caller\'s words');
    const routes = JSON.parse(psql(db, `select json_agg(data order by at, e.seq) from conversation_events e join conversations c on c.id = e.conversation where c.client_id = '${cid}' and kind in ('routing', 'agent_switch')`));
    assert.equal(routes[0].agent, 'orders');
    assert.ok(routes.some((r) => r.agent === 'billing'), JSON.stringify(routes));
    assert.ok(kinds.includes('agent_switch'), kinds.join(','));
  } finally {
    await s.stop();
  }
});

test('with memory off and the event log on, a turn\'s routing decision is logged once', { skip, timeout: 30000 }, async () => {
  // no history to load: the turn is routed while it starts, and only the agent event may log it
  const s = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, RAG_BACKEND: 'none', AGENTS: 'true', MEMORY: 'false',
    SUMMARIES: 'false',
  });
  try {
    const cid = 'chat-routing-once';
    const res = await post(s.base, { stream: true, model: say('On its way.'), conversation_id: cid, messages: [{ role: 'user', content: 'Where is my parcel?' }] });
    assert.equal(res.status, 200);
    await until(() => /assistant_message/.test(eventsOf(cid) || ''), { what: 'the turn\'s events' });
    assert.equal(eventsOf(cid), 'session_start,user_message,routing,assistant_message');
  } finally {
    await s.stop();
  }
});

test('with agents on, an explicit choice is the conversation\'s agent next turn: the stored conversation remembers it', { skip, timeout: 30000 }, async () => {
  const s = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, RAG_BACKEND: 'none', AGENTS: 'true', SUMMARIES: 'false',
    MEMORY_TIMEOUT_MS: '5000', // a cold pool (a sanitizer build) may take longer than the default 100 ms
  });
  const lineOf = (id) => until(() => s.accessLog.find((l) => l.request_id === id), { what: `the access-log line of ${id}` });
  try {
    const cid = 'chat-stored-agent';
    const first = 'Hi, I have a question about something from last week.'; // words no agent's phrases reach
    let res = await post(s.base, { stream: true, model: say('Sure.'), agent: 'billing', conversation_id: cid, messages: [{ role: 'user', content: first }] },
      { headers: { 'x-request-id': 'stored-agent-1' } });
    assert.equal(res.status, 200);
    assert.equal((await lineOf('stored-agent-1')).routed_by, 'explicit');
    await until(() => psql(db, `select agent from conversations where client_id = '${cid}'`) === 'billing', { what: 'the turn to be stored' });
    res = await post(s.base, { stream: true, model: say('Sure.'), conversation_id: cid, messages: [{ role: 'user', content: 'Yes, it was on the fifth.' }] },
      { headers: { 'x-request-id': 'stored-agent-2' } });
    assert.equal(res.status, 200);
    let line = await lineOf('stored-agent-2');
    assert.deepEqual([line.agent, line.routed_by], ['billing', 'sticky']);
    // the same words with no stored conversation: replaying them finds only the default agent
    res = await post(s.base, {
      stream: true, model: say('Sure.'),
      messages: [{ role: 'user', content: first }, { role: 'assistant', content: 'Sure.' }, { role: 'user', content: 'Yes, it was on the fifth.' }],
    }, { headers: { 'x-request-id': 'stored-agent-3' } });
    line = await lineOf('stored-agent-3');
    assert.deepEqual([line.agent, line.routed_by], ['support', 'sticky']);
  } finally {
    await s.stop();
  }
});
