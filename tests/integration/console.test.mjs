// The browser console (CONSOLE=true) in a real browser: headless Chromium driven by
// puppeteer-core, against switchboard, the fake provider and a test database. A question
// streams its answer with a tool card; switchboard stopped and started again on the same
// port turns the indicator red and back to green and the conversation goes on; a reload
// shows the history; a provider failure, a stopped answer, an expired, a refused and a
// missing token each show what a person needs to read. Each state is saved as a
// screenshot (the folder is printed), and the page must log no errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import {
  startFakeUpstream, startSwitchboard, scenario, until, psql, freshDatabase, freePort, adminDatabaseUrl, buildDir, sleep,
  INBOUND_KEY, PROVIDER_KEY,
} from './lib.mjs';

const CHROMIUM = '/usr/bin/chromium';
const skip = adminDatabaseUrl ? false : 'no test database (run through tests/run)';
const shots = path.join(buildDir, 'console-screenshots');

const ORDER_Q = 'Where is my order 4417?';
const ORDER_A = 'Order 4417 has shipped and should reach you on Friday.';
const BILLING_Q = 'I was charged twice for it, why?';
const BILLING_A = 'I see two charges; the second one will be refunded within five days.';
// the first process answers every turn with a tool call and ORDER_A, the second with BILLING_A
const FIRST_MODEL = scenario({ calls: JSON.stringify([{ name: 'get_order_status', arguments: { order_number: '4417' } }]), text: ORDER_A, reply_pace_ms: '70' });
const SECOND_MODEL = scenario({ text: BILLING_A, pace_ms: '20' });

let up, sb, db, port, browser, userDataDir, page, late;
let outage = false; // switchboard is down on purpose: the browser's failed connects are expected then
const problems = []; // what pages logged as errors: { page, text, outage }

function env(model) {
  return {
    PORT: String(port), CONSOLE: 'true', LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, OPENAI_MODEL: model,
    DATABASE_URL: db, AGENTS: 'true', SUMMARIES: 'false', WORKERS: '2', LLM_RETRY_BACKOFF_MS: '50',
  };
}

/** A new session for the test's key: { id, token, expires_at }. */
async function mint(body) {
  const res = await fetch(`${sb.base}/v1/sessions`, {
    method: 'POST', headers: { authorization: `Bearer ${INBOUND_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body || {}),
  });
  assert.equal(res.status, 201);
  return res.json();
}

const link = (s, model) => `${sb.base}/console#token=${s.token}&session=${s.id}${model ? `&model=${encodeURIComponent(model)}` : ''}`;

async function open(name, url) {
  const p = await browser.newPage();
  p.on('console', (m) => m.type() === 'error' && problems.push({ page: name, text: m.text(), outage }));
  p.on('pageerror', (e) => problems.push({ page: name, text: `uncaught: ${e.message}`, outage: false }));
  await p.setViewport({ width: 1024, height: 760 });
  if (url) await p.goto(url);
  return p;
}

async function shot(p, name) {
  await p.screenshot({ path: path.join(shots, `${name}.png`) });
}

const texts = (p, selector) => p.$$eval(selector, (els) => els.map((e) => e.textContent));
const state = (p) => p.$eval('#status', (e) => e.dataset.state);
const connected = (p) => p.waitForSelector('#status[data-state="connected"]', { timeout: 15000 });

/** Types `text` into the message box as a person does and sends it with Enter; returns the turns shown before. */
async function ask(p, text) {
  const before = (await p.$$('.turn')).length;
  await p.focus('#message');
  await p.keyboard.type(text);
  await p.keyboard.press('Enter');
  return before;
}

/** The text of the last assistant bubble once the turn after the `before` shown is done. */
async function answered(p, before) {
  await p.waitForFunction((n) => {
    const turns = document.querySelectorAll('.turn');
    return turns.length > n && turns[turns.length - 1].getAttribute('aria-busy') === 'false';
  }, { timeout: 15000 }, before);
  return (await texts(p, '.msg.assistant .text')).at(-1);
}

before(async () => {
  if (skip) return;
  if (!fs.existsSync(CHROMIUM))
    throw new Error(`Chromium is not installed (${CHROMIUM}): the console test needs it. Install it with deploy/install-deps.sh, or apt-get install chromium`);
  fs.mkdirSync(shots, { recursive: true });
  for (const f of fs.readdirSync(shots)) if (f.endsWith('.png')) fs.rmSync(path.join(shots, f));
  console.log(`# console screenshots: ${shots}`);
  db = freshDatabase('console');
  psql(db, `insert into rag_chunks (id, source, title, heading, content, position) values
    ('ship', 'shipping.md', 'Shipping', 'Tracking an order', 'Every order leaves our depot within one business day. Once an order has shipped, the tracking link is in the confirmation email, and standard delivery takes 3 to 5 business days.', 0)`);
  up = await startFakeUpstream();
  port = await freePort();
  sb = await startSwitchboard(env(FIRST_MODEL));
  late = await mint({ ttl_s: 10 }); // used at the end, once it has expired
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-chromium-'));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', `--user-data-dir=${userDataDir}`],
  });
});

after(async () => {
  await browser?.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

test('the console is served with its policy, types and ETags; off, it is not there', { skip }, async () => {
  const res = await fetch(`${sb.base}/console`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
  const csp = res.headers.get('content-security-policy');
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /connect-src 'self' ws: wss:/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  const html = await res.text();
  assert.match(html, /<script type="module" src="\/console\/console\.js"><\/script>/);
  assert.doesNotMatch(html, /https?:\/\//, 'nothing from elsewhere');
  const etag = res.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]{20}"$/);
  const again = await fetch(`${sb.base}/console`, { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
  assert.equal(await again.text(), '');
  for (const [file, type] of [['console.js', 'text/javascript; charset=utf-8'], ['console.css', 'text/css; charset=utf-8'], ['favicon.svg', 'image/svg+xml']]) {
    const r = await fetch(`${sb.base}/console/${file}`);
    assert.equal(r.status, 200, file);
    assert.equal(r.headers.get('content-type'), type);
    assert.notEqual(r.headers.get('etag'), etag);
    assert.equal(r.headers.get('cache-control'), 'no-cache');
  }
  assert.equal((await fetch(`${sb.base}/console/missing.js`)).status, 404);
  assert.equal((await fetch(`${sb.base}/console`, { method: 'POST' })).status, 405);

  const off = await startSwitchboard({});
  try {
    const r = await fetch(`${off.base}/console`);
    assert.equal(r.status, 404, 'CONSOLE is off by default');
    assert.match((await r.json()).error.message, /CONSOLE=true/);
  } finally {
    await off.stop();
  }
});

test('a question streams its answer, with the agent, a retrieval card and a tool card', { skip, timeout: 30000 }, async () => {
  const s = await mint();
  page = await open('main', link(s));
  await connected(page);
  assert.equal(await page.evaluate(() => location.hash), '', 'the token left the address bar');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'message', 'the message box has the focus');
  await shot(page, '01-connected');

  const before = await ask(page, ORDER_Q);
  // words arrive one by one: the bubble is seen part-way
  await page.waitForFunction((full) => {
    const t = [...document.querySelectorAll('.msg.assistant .text')].map((e) => e.textContent).find((x) => full.startsWith(x) && x.length > 0);
    return t !== undefined && t.length < full.length;
  }, { timeout: 15000, polling: 'mutation' }, ORDER_A);
  assert.equal(await page.$eval('.turn', (e) => e.getAttribute('aria-busy')), 'true', 'announced once whole');
  assert.equal(await page.$eval('#stop', (e) => e.disabled), false, 'an answer in progress can be stopped');
  await shot(page, '02-streaming');

  assert.equal(await answered(page, before), ORDER_A);
  assert.deepEqual(await texts(page, '.msg.user .text'), [ORDER_Q]);
  assert.equal(await page.$eval('#agent-name', (e) => e.textContent), 'orders');
  const tool = await page.$eval('.card.tool', (e) => ({ state: e.dataset.state, name: e.querySelector('.name').textContent, args: e.querySelector('.args').textContent, result: e.querySelector('.result pre').textContent }));
  assert.equal(tool.state, 'done');
  assert.equal(tool.name, 'get_order_status');
  assert.match(tool.args, /"order_number": "4417"/);
  assert.match(tool.result, /4417/);
  const passage = await page.$eval('.card.retrieval', (e) => e.textContent);
  assert.match(passage, /shipping\.md/);
  assert.match(passage, /Tracking an order/);
  assert.equal(await page.$eval('#stop', (e) => e.disabled), true);
  await shot(page, '03-answered');
});

test('the page is usable from the keyboard', { skip }, async () => {
  assert.equal(await page.$eval('label[for="message"]', (e) => e.textContent), 'Message');
  assert.deepEqual(await page.$$eval('#composer button', (els) => els.map((e) => [e.id, e.type])), [['send', 'submit'], ['stop', 'button']]);
  await page.focus('#message');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'send', 'Tab goes from the message box to Send');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none', 'the focus is visible');
  assert.equal(await page.$eval('#log', (e) => e.getAttribute('aria-live')), 'polite');
});

test('switchboard restarted on the same port: red, then green, and the conversation goes on', { skip, timeout: 40000 }, async () => {
  outage = true;
  await sb.stop();
  const red = await page.waitForFunction(() => document.getElementById('status').dataset.state === 'disconnected' &&
    [document.getElementById('status-text').textContent, document.getElementById('send').disabled], { timeout: 10000 });
  const [said, sendOff] = await red.jsonValue();
  assert.match(said, /^Disconnected: retrying in \d+ s$/);
  assert.equal(sendOff, true, 'nothing is sent into a dead socket');
  await shot(page, '04-disconnected');

  sb = await startSwitchboard(env(SECOND_MODEL)); // a new process: the token still holds (keys unchanged)
  await connected(page);
  outage = false;
  // the history it sends again is what the page shows: kept as it is, cards and all, not added twice
  assert.deepEqual(await texts(page, '.msg.user .text'), [ORDER_Q]);
  assert.equal((await page.$$('.card.tool')).length, 1);
  await shot(page, '05-reconnected');

  await up.reset();
  assert.equal(await answered(page, await ask(page, BILLING_Q)), BILLING_A);
  assert.deepEqual(await texts(page, '.msg.user .text'), [ORDER_Q, BILLING_Q]);
  assert.equal(await page.$eval('#agent-name', (e) => e.textContent), 'billing');
  assert.match((await texts(page, '.note.handover')).join(), /orders to billing/);
  const sent = JSON.parse((await up.requests()).at(-1).body).messages.map((m) => m.content);
  assert.ok(sent.includes(ORDER_Q), 'the new process recalled the conversation from memory');
  assert.equal(sent.at(-1), BILLING_Q);
  await shot(page, '06-continued');

  // a phone: the cards, the code in them and the bar fit in 375 px
  await page.setViewport({ width: 375, height: 800 });
  await page.$eval('#main', (e) => { e.scrollTop = 0; });
  const widths = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,
    document.getElementById('main').scrollWidth, document.getElementById('main').clientWidth]);
  assert.ok(widths[0] <= widths[1] && widths[2] <= widths[3], `no sideways scrolling at 375 px (${widths})`);
  await shot(page, '07-phone');
  await page.setViewport({ width: 1024, height: 760 });
});

test('a reload shows the stored conversation once', { skip, timeout: 30000 }, async () => {
  const stored = (a) => Number(psql(db, `select count(*) from messages where role = 'assistant' and content like '%${a}'`));
  await until(() => stored(ORDER_A) === 1 && stored(BILLING_A) === 1, { timeoutMs: 10000, everyMs: 50, what: 'both turns to be stored' });
  await page.reload();
  await connected(page);
  await page.waitForFunction((a) => [...document.querySelectorAll('.msg.assistant .text')].some((e) => e.textContent === a), { timeout: 10000 }, BILLING_A);
  assert.deepEqual(await texts(page, '.msg.user .text'), [ORDER_Q, BILLING_Q]);
  // the filler said while the tool ran and the answer after it are stored as one message
  const said = await texts(page, '.msg.assistant .text');
  assert.equal(said.filter((t) => t.endsWith(ORDER_A)).length, 1);
  assert.equal(said.filter((t) => t === BILLING_A).length, 1);
  assert.equal(await page.$eval('#agent-name', (e) => e.textContent), 'billing', 'the agent, from the history');
  await shot(page, '08-reloaded');
});

test('a provider failure shows the friendly message; Stop ends an answer', { skip, timeout: 30000 }, async () => {
  const s = await mint();
  const p = await open('busy', link(s, scenario({ status: '429' })));
  await connected(p);
  await ask(p, 'Hello, anyone there?');
  const note = await p.waitForSelector('.note.error', { timeout: 15000 });
  assert.match(await note.evaluate((e) => e.textContent), /^the assistant is busy, try again in a moment/);
  assert.equal(await note.evaluate((e) => e.getAttribute('role')), 'alert');
  assert.ok(await p.$('.note.error button'), 'it offers to try again');
  await shot(p, '09-busy');

  // the same session, another model: a pasted link starts the page again from it
  const slow = scenario({ text: 'one two three four five six seven eight nine ten eleven twelve', pace_ms: '150' });
  await p.goto(link(s, slow));
  await connected(p);
  assert.equal(await p.$eval('#model-name', (e) => e.textContent), slow);
  await ask(p, 'Count slowly.');
  await p.waitForFunction(() => document.querySelector('.turn[aria-busy="true"] .msg.assistant .text')?.textContent.length > 0, { timeout: 15000 });
  await p.click('#stop');
  await p.waitForFunction(() => [...document.querySelectorAll('.note.meta')].some((e) => e.textContent.startsWith('stopped')), { timeout: 5000 });
  const said = (await texts(p, '.msg.assistant .text')).at(-1);
  assert.ok(said.length > 0 && said.length < 'one two three four five six seven eight nine ten eleven twelve'.length, `stopped part-way: "${said}"`);
  await shot(p, '10-stopped');
  await p.close();
});

test('a missing, a refused and an expired token each say how to get a new one', { skip, timeout: 30000 }, async () => {
  const none = await open('no-token', `${sb.base}/console`);
  await none.waitForSelector('#notice:not([hidden])');
  assert.equal(await state(none), 'disconnected');
  assert.match(await none.$eval('#notice', (e) => e.textContent), /needs a session[\s\S]*deploy\/local\.sh console/);
  assert.equal(await none.$eval('#message', (e) => e.disabled), true);
  await shot(none, '11-no-token');
  await none.close();

  const forged = await open('forged', `${sb.base}/console#token=sbs1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&session=sess_forged`);
  await forged.waitForSelector('#notice:not([hidden])', { timeout: 15000 });
  assert.match(await forged.$eval('#notice', (e) => e.textContent), /not accepted[\s\S]*deploy\/local\.sh console sess_forged/);
  await forged.close();

  await sleep(Math.max(0, late.expires_at * 1000 + 1000 - Date.now())); // its ten seconds are over
  const expired = await open('expired', link(late));
  await expired.waitForSelector('#notice:not([hidden])', { timeout: 15000 });
  assert.equal(await state(expired), 'disconnected');
  assert.match(await expired.$eval('#notice', (e) => e.textContent), new RegExp(`expired[\\s\\S]*deploy/local\\.sh console ${late.id}`));
  await shot(expired, '12-expired');
  await expired.close();
});

test('no page logged an error', { skip }, () => {
  // while switchboard is down, and for a token it refuses, the browser reports the failed connects itself
  const expected = (p) => (p.outage || p.page === 'forged') &&
    /^(WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/v1\/sessions\/[\w-]+\/ws' failed|Failed to load resource: net::ERR_CONNECTION_REFUSED)/.test(p.text);
  assert.deepEqual(problems.filter((p) => !expected(p)), []);
});
