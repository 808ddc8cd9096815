// Agent profiles, routing per turn and the layered instructions, end to end: a real switchboard in front of the
// fake provider, whose record of each request shows exactly what the model was given.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFakeUpstream, startSwitchboard, post, scenario, assemble, buildDir, root, freePort, until, INBOUND_KEY, PROVIDER_KEY } from './lib.mjs';

const TEAM_KEY = 'acme-team-key-0123456789abcdef';
const profiles = JSON.parse(fs.readFileSync(path.join(root, 'tools', 'agents.json'), 'utf8'));
const utterances = JSON.parse(fs.readFileSync(path.join(root, 'tests', 'fixtures', 'agents', 'utterances.json'), 'utf8')).utterances;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-agents-'));
const teams = path.join(tmp, 'teams.json');
fs.writeFileSync(teams, JSON.stringify({ acme: 'Team acme: callers are Acme staff; call them by their first name.' }));

let up, sb;
const answer = scenario({ text: 'Sure.' });
before(async () => {
  up = await startFakeUpstream();
  sb = await startSwitchboard({
    AGENTS: 'true', // the built-in copy: switchboard runs in the build folder, which has no tools/agents.json
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, OPENAI_MODEL: scenario({ text: 'The default model.' }),
    SWITCHBOARD_API_KEYS: `${INBOUND_KEY},acme:${TEAM_KEY}`, TEAM_INSTRUCTIONS_FILE: teams,
    PLATFORM_INSTRUCTIONS: 'Platform: you work for Example Corp; never discuss other companies.',
    // switchboard's tools are offered only with a database; none is reached in these turns
    DATABASE_URL: 'postgresql://switchboard@127.0.0.1:9/none', RAG_BACKEND: 'none',
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

/** Sends one turn and returns its access-log line (found by the turn's own request id) and what the provider received. */
let turns = 0;
async function turn(body, opts = {}) {
  await up.reset();
  const id = `agents-turn-${++turns}`;
  const r = await post(sb.base, { model: answer, stream: true, ...body }, { ...opts, headers: { ...(opts.headers || {}), 'x-request-id': id } });
  const line = await until(() => sb.accessLog.find((l) => l.request_id === id), { what: 'the access log line' });
  const sent = (await up.requests()).map((q) => JSON.parse(q.body));
  return { r, line, sent: sent[0] };
}

const user = (content) => ({ role: 'user', content });
const said = (content) => ({ role: 'assistant', content });

test('the classifier routes the labelled utterances through the server: accuracy of at least 0.9', async () => {
  let right = 0;
  for (const u of utterances) {
    const { line } = await turn({ messages: [user(u.text)] });
    if (line.agent === u.agent) right += 1;
    else console.log(`# misrouted to ${line.agent} (${line.routed_by}), wanted ${u.agent}: ${u.text}`);
  }
  const accuracy = right / utterances.length;
  console.log(`# routing accuracy through switchboard: ${right} of ${utterances.length}, ${accuracy.toFixed(3)}`);
  assert.ok(utterances.length >= 60);
  assert.ok(accuracy >= 0.9, `accuracy ${accuracy}`);
});

test('an explicit choice always wins: llm.params.agent, or model "agent:<name>"; an unknown agent is refused', async () => {
  let { r, line, sent } = await turn({ agent: 'billing', messages: [user('where is my package, the tracking says nothing')] });
  assert.equal(r.status, 200);
  assert.deepEqual([line.agent, line.routed_by], ['billing', 'explicit']);
  assert.ok(sent.messages[0].content.startsWith(profiles.agents.billing.instructions));
  assert.equal(sent.agent, undefined, 'the choice is not passed on to the provider');

  ({ line, sent } = await turn({ model: 'agent:orders', messages: [user('I want a refund for the double charge')] }));
  assert.deepEqual([line.agent, line.routed_by], ['orders', 'explicit']);
  assert.equal(sent.model, scenario({ text: 'The default model.' }), '"agent:orders" names no model: OPENAI_MODEL answers');

  r = await post(sb.base, { model: answer, agent: 'sales', messages: [user('hi')] });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.param, 'agent');
  assert.match(r.json.error.message, /agent must name one of the agents: support, orders or billing/);
  r = await post(sb.base, { model: 'agent:sales', messages: [user('hi')] });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.param, 'model');
});

test('the agent sticks to the conversation; a clear change of topic hands over, and the new agent is told', async () => {
  const start = [user('Hi, my package was supposed to arrive yesterday and it is not here.'), said('Let me check where it is.')];
  let { line, sent } = await turn({ messages: [...start, user('Okay, and what about the price of it?')] });
  assert.deepEqual([line.agent, line.routed_by], ['orders', 'sticky'], 'a question leaning a little to billing stays with orders');
  assert.equal(line.agent_from, undefined);
  assert.ok(!sent.messages[0].content.includes('taking over'));

  const moved = [...start, user('Also, I was charged twice on my card for it.')];
  ({ line, sent } = await turn({ messages: moved }));
  assert.deepEqual([line.agent, line.routed_by, line.agent_from], ['billing', 'classifier', 'orders']);
  assert.ok(sent.messages[0].content.startsWith('You are taking over this call from the orders agent; the caller has just asked about: '
    + '"Also, I was charged twice on my card for it.". Do not greet the caller again; answer that.\n\n'
    + profiles.agents.billing.instructions), sent.messages[0].content);

  ({ line, sent } = await turn({ messages: [...moved, said('I see two charges.'), user('So when does it come back?')] }));
  assert.deepEqual([line.agent, line.routed_by], ['billing', 'sticky'], 'the next turn stays with billing, any replica agrees');
  assert.ok(!sent.messages[0].content.includes('taking over'), 'and hears no hand-over again');
});

test('the strategy follows the conversation and sets the token limit and a line; the request\'s own limit wins', async () => {
  const history = [user('Where is my package?'), said('It is on its way.')];
  let { line, sent } = await turn({ messages: [...history, user('Great, thanks, that\'s all.')] });
  assert.equal(line.strategy, 'wrapping-up');
  assert.equal(sent.max_tokens, profiles.agents.orders.max_tokens / 2);
  assert.match(sent.messages[0].content, /For this turn: the caller is finishing/);

  ({ line, sent } = await turn({ messages: [user('What is happening with order 4417?')] }));
  assert.equal(line.strategy, 'tool-heavy');
  assert.equal(sent.max_tokens, profiles.agents.orders.max_tokens);
  ({ line, sent } = await turn({ messages: [user('Why is my bill so much higher than last month?')] }));
  assert.deepEqual([line.agent, line.strategy], ['billing', 'analytical']);
  assert.equal(sent.max_tokens, profiles.agents.billing.max_tokens * 2);
  assert.equal(sent.temperature, profiles.agents.billing.temperature, 'the agent\'s temperature when the request sets none');
  ({ line, sent } = await turn({ messages: [user('Do you ship to Canada?')], max_tokens: 40, temperature: 0.9 }));
  assert.equal(line.strategy, 'concise');
  assert.equal(sent.max_tokens, 40, 'the request set its own limit');
  assert.equal(sent.temperature, 0.9, 'and its own temperature');
});

test('the layered instructions reach the provider in the documented order: agent, platform, team, the caller\'s own', async () => {
  const { sent } = await turn({ messages: [{ role: 'system', content: 'Engine: the caller is on a mobile phone.' }, user('I forgot my password')] },
    { key: TEAM_KEY });
  const texts = sent.messages.map((m) => `${m.role}: ${m.content}`);
  assert.equal(texts.length, 5);
  assert.ok(texts[0].startsWith(`system: ${profiles.agents.support.instructions}\n\nFor this turn: answer in one or two short spoken sentences.`), texts[0]);
  assert.deepEqual(texts.slice(1), [
    'system: Platform: you work for Example Corp; never discuss other companies.',
    'system: Team acme: callers are Acme staff; call them by their first name.',
    'system: Engine: the caller is on a mobile phone.',
    'user: I forgot my password',
  ]);
  const other = await turn({ messages: [user('I forgot my password')] });
  assert.ok(!other.sent.messages.some((m) => m.content.startsWith('Team acme')), 'a key without a team gets no team layer');
});

test('the agent\'s tool subset is what the provider is offered', async () => {
  for (const [agent, words] of [['orders', 'where is my parcel'], ['billing', 'I need a copy of my invoice'], ['support', 'the app keeps crashing']]) {
    const { line, sent } = await turn({ messages: [user(words)] });
    assert.equal(line.agent, agent);
    const offered = sent.tools.map((t) => t.function.name).sort();
    // send_rtm_message needs the Agora settings: it is in support's subset but not offered here; end_call and
    // transfer_call are every agent's, but only a channel that can act on a call (Retell's socket) offers them
    const unseen = ['send_rtm_message', 'end_call', 'transfer_call'];
    assert.ok(profiles.agents[agent].tools.includes('end_call'), `${agent} may end a call`);
    const want = profiles.agents[agent].tools.filter((n) => !unseen.includes(n)).sort();
    assert.deepEqual(offered, want, agent);
  }
});

test('AGENTS=false: the provider gets the request as it came', async () => {
  const off = await startSwitchboard({ AGENTS: 'false', LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY });
  try {
    await up.reset();
    const r = await post(off.base, { model: answer, stream: true, messages: [user('I was charged twice')] });
    assert.equal(assemble(r.text).content, 'Sure.');
    const sent = JSON.parse((await up.requests())[0].body);
    assert.deepEqual(sent.messages, [user('I was charged twice')]);
    assert.equal(sent.max_tokens, undefined);
    // the line is written when the exchange is let go, which may come a moment after the client read [DONE]
    const line = await until(() => off.accessLog.find((l) => l.route === '/v1/chat/completions'), { what: 'the access-log line' });
    assert.equal(line.agent, undefined);
  } finally {
    await off.stop();
  }
});

test('bad profile files stop start-up naming the file, the agent and the field', async () => {
  const run = async (env) => spawnSync(path.join(buildDir, 'src', 'switchboard'), [], {
    env: { PATH: process.env.PATH, SWITCHBOARD_ENV_FILE: '/dev/null', SWITCHBOARD_API_KEYS: INBOUND_KEY, PORT: String(await freePort()), ...env },
    encoding: 'utf8', timeout: 5000,
  });
  const write = (name, doc) => {
    const p = path.join(tmp, name);
    fs.writeFileSync(p, typeof doc === 'string' ? doc : JSON.stringify(doc));
    return p;
  };
  const bad = structuredClone(profiles);
  bad.agents.orders.tools[2] = 'refund_all';
  let f = write('bad-tool.json', bad);
  let r = await run({ AGENTS_FILE: f });
  assert.equal(r.status, 2);
  assert.ok(r.stderr.includes(`AGENTS_FILE ${f}: agent \\"orders\\": tools[2] \\"refund_all\\" is not one of switchboard's tools`), r.stderr);
  const extra = structuredClone(profiles);
  extra.agents.billing.colour = 'blue';
  f = write('extra.json', extra);
  r = await run({ AGENTS_FILE: f });
  assert.equal(r.status, 2);
  assert.ok(r.stderr.includes('agent \\"billing\\": colour is not a field'), r.stderr);
  r = await run({ AGENTS_FILE: write('broken.json', '{"agents": {') });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /broken\.json: not valid JSON/);
  r = await run({ AGENTS_FILE: path.join(tmp, 'missing.json') });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /missing\.json: cannot be read/);
  r = await run({ TEAM_INSTRUCTIONS_FILE: teams, SWITCHBOARD_API_KEYS: `other:${TEAM_KEY}` });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /SWITCHBOARD_API_KEYS names team \\"other\\", which TEAM_INSTRUCTIONS_FILE/);
});
