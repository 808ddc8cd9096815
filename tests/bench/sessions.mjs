// The session benchmark (run by tests/bench/sessions-run): the same turn's
// first token over the session WebSocket and over POST /v1/chat/completions,
// alternating, on one switchboard with one worker (target: the WebSocket's
// median within 0.2 ms of HTTP's); then the resident memory 2,000 open idle
// sessions add (target: at most 16 KiB each).
import fs from 'node:fs';
import http from 'node:http';
import WebSocket from 'ws';
import { pct, firstTokenTurn } from './lib.mjs';

const base = process.env.SB_URL;
const key = process.env.SB_KEY;
const pid = Number(process.env.SB_PID);
const turns = Number(process.env.BENCH_SESSION_TURNS || 1000);
const idle = Number(process.env.BENCH_IDLE_SESSIONS || 2000);
const words = 'Your order 4417 shipped yesterday and arrives on Friday.';
const model = 'fake?' + new URLSearchParams({ text: words }).toString();
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

async function createSession() {
  const res = await fetch(`${base}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${key}` } });
  if (res.status !== 201) throw new Error(`POST /v1/sessions: ${res.status}`);
  return res.json();
}

/** A connected session, once its `ready` message is in (it can come in the same packet as the 101). */
function open(s) {
  const ws = new WebSocket(`${base.replace('http', 'ws')}${s.url}`, ['switchboard.v1', s.token], { perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    ws.once('message', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** One HTTP turn: ms to the first chunk with words. */
const httpTurn = () => firstTokenTurn(base, key, { model, stream: true, messages: [{ role: 'user', content: 'where is my order?' }] }, agent);

/** One turn on an open session: ms to the first token message. */
function wsTurn(ws) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let first = NaN;
    const on = (d) => {
      const m = JSON.parse(d.toString());
      if (m.type === 'token' && Number.isNaN(first)) first = performance.now() - t0;
      if (m.type === 'done' || m.type === 'error') {
        ws.off('message', on);
        resolve({ ms: first, ok: m.type === 'done' && m.finish === 'stop' });
      }
    };
    ws.on('message', on);
    ws.send(JSON.stringify({ type: 'message', text: 'where is my order?', model }));
  });
}

// a session answers at most HISTORY_MAX messages back; a fresh session per 10 turns keeps requests alike on both paths
const ms = { http: [], ws: [] };
let errors = 0;
let session = null;
for (let i = 0; i < turns + 50; ++i) {
  if (i % 10 === 0) {
    session?.close();
    session = await open(await createSession());
  }
  const order = i % 2 ? ['http', 'ws'] : ['ws', 'http'];
  for (const k of order) {
    const r = k === 'http' ? await httpTurn() : await wsTurn(session);
    if (i < 50) continue; // warm-up
    if (!r.ok) errors++;
    ms[k].push(r.ms);
  }
}
session.close();
const row = (k) => ({ p50: +pct(ms[k], 50).toFixed(3), p90: +pct(ms[k], 90).toFixed(3), p99: +pct(ms[k], 99).toFixed(3) });
const added = pct(ms.ws, 50) - pct(ms.http, 50);

function rssKiB() {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}
// idle sessions: open them all (tokens first), let the server settle, measure
const tokens = [];
for (let i = 0; i < 20; ++i) tokens.push(await createSession()); // one session per token is not needed: a token may be reused
const rss0 = rssKiB();
const sockets = [];
for (let i = 0; i < idle; i += 100) {
  const batch = [];
  for (let j = i; j < Math.min(idle, i + 100); ++j) batch.push(open(tokens[j % tokens.length]));
  sockets.push(...await Promise.all(batch));
}
await new Promise((r) => setTimeout(r, 1000)); // the ready and history messages of every socket are written
const rss1 = rssKiB();
const perSession = ((rss1 - rss0) * 1024) / idle;
for (const s of sockets) s.terminate();

const result = {
  turns, errors,
  first_token_ms: { http: row('http'), ws: row('ws') },
  ws_added_p50_ms: +added.toFixed(3),
  idle_sessions: idle, rss_before_kib: rss0, rss_after_kib: rss1, bytes_per_idle_session: Math.round(perSession),
  targets: { ws_added_p50_ms: 0.2, bytes_per_idle_session: 16384 },
};
console.log(`first token, ${turns} turns each, interleaved (ms)   p50      p90      p99`);
for (const k of ['http', 'ws']) console.log(`  ${k.padEnd(46)} ${row(k).p50.toFixed(3).padStart(7)}  ${row(k).p90.toFixed(3).padStart(7)}  ${row(k).p99.toFixed(3).padStart(7)}`);
console.log(`  the WebSocket's median minus HTTP's: ${added.toFixed(3)} ms (target <= 0.2)  errors: ${errors}`);
console.log(`${idle} idle sessions: RSS ${rss0} -> ${rss1} KiB, ${Math.round(perSession)} bytes each (target <= 16384)`);
fs.mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
fs.writeFileSync(new URL('./results/sessions.json', import.meta.url), JSON.stringify(result, null, 2) + '\n');
