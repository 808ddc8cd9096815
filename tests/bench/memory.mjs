// The memory benchmark: the time to a turn's first words with conversation
// memory and the event log on (one history query before the provider is
// asked, the turn's record queued and written after done) against the same
// turns with both off, in one run. Turns alternate between the two
// switchboards so that whatever the machine does meanwhile falls on both
// alike. Each conversation is six turns of a client that sends only its new
// words, so from the second turn on the history query finds rows and the
// provider gets them. Run by tests/bench/memory-run.
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { pct, firstTokenTurn } from './lib.mjs';

const urls = { on: process.env.SB_ON, off: process.env.SB_OFF };
const key = process.env.SB_KEY;
const db = process.env.DATABASE_URL;
const turns = Number(process.env.BENCH_MEMORY_TURNS || 600);
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const model = 'fake?' + new URLSearchParams({ text: 'Your order 4417 shipped yesterday and arrives on Friday.' }).toString();

/** One turn: ms from the request to the first chunk with words, and whether the stream ended well. */
function turn(base, conversation, i) {
  return firstTokenTurn(base, key, {
    model, stream: true, conversation_id: conversation,
    messages: [{ role: 'system', content: 'You are a support agent.' }, { role: 'user', content: `Question ${i}: where is my order 4417?` }],
  }, agent);
}

const ms = { on: [], off: [] };
let errors = 0;
for (let i = 0; i < 20; ++i) for (const k of ['on', 'off']) await turn(urls[k], `warm-${i}`, i); // connections, prepared statements
for (let i = 0; i < turns; ++i) {
  const conversation = `bench-${Math.floor(i / 6)}`;
  const order = i % 2 ? ['on', 'off'] : ['off', 'on'];
  for (const k of order) {
    const r = await turn(urls[k], conversation, i % 6);
    if (!r.ok) errors++;
    ms[k].push(r.ms);
  }
}
const row = (k) => ({ p50: +pct(ms[k], 50).toFixed(3), p90: +pct(ms[k], 90).toFixed(3), p99: +pct(ms[k], 99).toFixed(3) });
await new Promise((r) => setTimeout(r, 500)); // the last batch lands
const stored = execFileSync('psql', ['-X', '-At', db, '-c',
  "select (select count(*) from conversations where client_id like 'bench-%') || ' conversations, ' || (select count(*) from messages) || ' messages, ' || (select count(*) from conversation_events) || ' events'"]).toString().trim();
const on = row('on');
const off = row('off');
console.log(JSON.stringify({
  turns_each: turns, errors, first_token_ms: { memory_and_event_log: on, off },
  added_p50_ms: +(on.p50 - off.p50).toFixed(3), added_p90_ms: +(on.p90 - off.p90).toFixed(3), stored,
}, null, 2));
