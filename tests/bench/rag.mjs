// The retrieval benchmark: what knowledge retrieval costs a turn, measured from
// outside switchboard (nothing in it is changed or instrumented). Run by
// tests/bench/rag-run, which builds, starts a throwaway Postgres (migrated, the
// demo knowledge ingested) and the fake provider, and passes them in the
// environment. This script adds the generated chunks, starts the fake vector
// store (tests/integration/fake_store.mjs, in this process) and four
// switchboards that differ only in RAG_BACKEND (postgres, none, pinecone) and,
// for a second pinecone one, the embeddings' size, then runs interleaved turns:
//
//   pre(turn) = the fake provider's t_received of the turn's chat request
//               − the moment this client sent the turn
//
// is everything that happens before the provider is asked. Retrieval's cost is
// pre(postgres) − pre(none) of turns in the same round; for pinecone the fake
// servers' own time (the embedding request's t_received → t_done at the fake
// provider, the query's arrival → answer at the fake store) is taken out too.
// A fourth path, straight to the fake provider, gives pre() without switchboard,
// so pre(none) − pre(direct) is switchboard's request path without retrieval.
// A fifth, pinecone at 1536 dims, is the pinecone switchboard's twin asking for
// embeddings the size of text-embedding-3-small's (the fake provider's dim=1536:
// dense, 8 KB of base64) and sending them on in every query (about 20 KB of JSON).
// The clocks: the fake provider stamps CLOCK_REALTIME; this process uses
// performance.timeOrigin + performance.now(). Their offset cancels in every
// figure, because each is a difference of two pre() values of the same round.
//
// Second figure for Postgres: the search statement alone (rag/pg_search.h),
// timed inside Postgres for every question of tests/rag/eval.json, on the demo
// knowledge only and again with the generated chunks. It is prepared once per
// session and then executed (PREPARE, then EXECUTE in a PL/pgSQL loop), as
// switchboard's pool sends it: a named prepared statement per connection,
// whose plan Postgres caches as usual (custom plans first, then the generic
// one when it is no worse). With the generated chunks it is also timed as
// dynamic SQL, parsed and planned on every call, as the pool sends it with
// PG_PREPARED_STATEMENTS=false. The executions give recall@4 of the eval questions,
// and with the generated chunks the exact ranking the statement approximates
// (SB_RAG_PG_EXACT_SQL) is run once too, for its recall@4 and for how many of
// the statement's passages are the exact ranking's.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeStore } from '../integration/fake_store.mjs';
import { pct, cpuMs, treeCpuMs, machineCpuMs, freePort } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const env = process.env;
const num = (name, dflt) => (env[name] !== undefined && env[name] !== '' ? Number(env[name]) : dflt);

const CFG = {
  rounds: num('BENCH_RAG_TURNS', 600), // measured rounds; each has one turn per path
  warmupRounds: 30,
  chunks: num('BENCH_RAG_CHUNKS', 10000), // generated chunks added to the demo knowledge
  sqlReps: num('BENCH_RAG_SQL_REPS', 4), // statement-alone passes over the eval questions (after one warm-up pass)
  workers: num('BENCH_WORKERS', 2),
  timeoutMs: 400, // RAG_TIMEOUT_MS, switchboard's default
  deadlineS: num('BENCH_DEADLINE_S', 150),
};
const TARGET = { pgP50: 2, pgP99: 10, ttftP50: 3, vectorP50: 0.5 };

const DB = env.DATABASE_URL;
const FAKE = env.FAKE_URL; // http://127.0.0.1:PORT
const SB_BIN = env.SB_BIN;
const PID_DIR = env.BENCH_TMP; // rag-run stops whatever pid files are left here
const KEY = 'bench-key-0123456789abcdef';

// --- lifetime: children die with this process, and the run has a deadline ------------------------------

const children = new Set();
function killChildren() {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
}
process.on('exit', killChildren);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(sig === 'SIGINT' ? 130 : 143));
setTimeout(() => {
  console.error(`[rag] deadline of ${CFG.deadlineS} s passed; giving up`);
  process.exit(2);
}, CFG.deadlineS * 1000).unref();

const log = (msg) => process.stderr.write(`[rag] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- inputs ------------------------------------------------------------------------------------------

const EVAL = JSON.parse(fs.readFileSync(path.join(root, 'tests/rag/eval.json'), 'utf8')).questions; // {q, doc}
const QUESTIONS = EVAL.map((q) => q.q);

/** A statement of rag/pg_search.h (SB_RAG_PG_SEARCH_SQL: the one switchboard runs), joined from its C string literals. */
function searchSql(name) {
  const h = fs.readFileSync(path.join(root, 'rag/pg_search.h'), 'utf8');
  const start = h.indexOf(`#define ${name} `);
  const end = h.indexOf('\n\n', start);
  if (start < 0 || end < 0) throw new Error(`${name} not found in rag/pg_search.h`);
  const parts = [...h.slice(start, end).matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
  if (parts.some((p) => /\\[^\\"]/.test(p))) throw new Error('pg_search.h: unexpected C escape in the statement');
  return parts.join('').replace(/\\(["\\])/g, '$1');
}
const SEARCH_SQL = searchSql('SB_RAG_PG_SEARCH_SQL');
const EXACT_SQL = searchSql('SB_RAG_PG_EXACT_SQL');

const psql = (script) => execFileSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', DB, '-f', '-'],
  { input: script, maxBuffer: 64 << 20 }).toString();

// --- percentiles ---------------------------------------------------------------------------------------

const stats = (xs) => ({ n: xs.length, p50_ms: pct(xs, 50), p90_ms: pct(xs, 90), p99_ms: pct(xs, 99), max_ms: pct(xs, 100) });

// --- the knowledge base ------------------------------------------------------------------------------

// 10,000 chunks in 1,000 generated documents of 10 sections, 60–120 words each (the demo's chunks average ~90).
// Each word is, with probability 0.6, a word of the demo knowledge (drawn by rank, quadratically skewed towards
// its most frequent words), else one of 8,000 made-up words (skewed too: a long tail of product names, places,
// codes). Domain words then appear in about as large a share of chunks as in the demo knowledge itself
// ("order" in ~46 % of the generated chunks, 62 % of the demo's), so the eval questions' words hit thousands of
// rows, as they would in a large knowledge base of the same business. Deterministic (setseed).
function generateSql(n) {
  return `
SELECT setseed(0.17);
CREATE TEMP TABLE kbw AS
  SELECT w, (row_number() OVER (ORDER BY n DESC, w) - 1)::int AS r FROM (
    SELECT w, count(*) AS n FROM rag_chunks, regexp_split_to_table(lower(content), '[^a-z]+') AS w
    WHERE length(w) >= 3 GROUP BY w) x;
CREATE TEMP TABLE synw AS
  SELECT a || b || c AS w, (row_number() OVER (ORDER BY md5(a || b || c)) - 1)::int AS r
  FROM unnest('{ka,lo,mi,ne,ru,sa,te,vo,bri,dun,fel,gor,hal,jin,kur,lem,mor,pel,quin,zor}'::text[]) a,
       unnest('{ra,di,no,ve,lu,ta,si,mo,ke,ba,len,dor,fin,gal,tur,ser,pra,vin,col,mar}'::text[]) b,
       unnest('{n,s,t,x,on,el,ia,um,ar,et,ine,ost,and,ell,ik,or,ant,ure,ix,o}'::text[]) c;
CREATE INDEX ON kbw (r);
CREATE INDEX ON synw (r);
SELECT count(*) AS nkb FROM kbw \\gset
INSERT INTO rag_chunks (id, source, title, heading, content, position)
WITH picks AS (
  SELECT g, k, random() < 0.6 AS from_kb, random() AS u
  FROM generate_series(0, ${n - 1}) g, generate_series(1, 60 + g % 61) k
), words AS (
  SELECT p.g, p.k, coalesce(kbw.w, synw.w) AS w FROM picks p
  LEFT JOIN kbw ON p.from_kb AND kbw.r = floor(power(p.u, 2) * :nkb)::int
  LEFT JOIN synw ON NOT p.from_kb AND synw.r = floor(power(p.u, 1.5) * 8000)::int
), bodies AS (
  SELECT g, string_agg(w, ' ' ORDER BY k) AS t FROM words GROUP BY g
)
SELECT 'gen-' || b.g, 'generated/topic-' || (b.g / 10) || '.md',
       initcap(t1.w || ' ' || t2.w), initcap(h1.w || ' ' || h2.w), b.t, b.g % 10
FROM bodies b
JOIN synw t1 ON t1.r = (b.g / 10 * 7919) % 8000
JOIN kbw t2 ON t2.r = (b.g / 10 * 104729::bigint) % :nkb
JOIN kbw h1 ON h1.r = (b.g::bigint * 2654435) % :nkb
JOIN synw h2 ON h2.r = (b.g::bigint * 40503) % 8000;
-- Index-only scans of rag_postings need its visibility map, which autovacuum sets a while after a bulk load;
-- the benchmark does not wait for it.
VACUUM ANALYZE rag_chunks, rag_postings, rag_lexemes, rag_corpus;
SELECT count(*) FROM rag_chunks;
`;
}

/**
 * A search statement alone, inside Postgres: ms per execution over `passes` passes of the eval questions (after a
 * warm-up pass unless `warmup` is false), with K = 4 (switchboard's default RAG_TOP_K). Prepared once, or with
 * `prepared` false run as dynamic SQL (EXECUTE … USING), parsed and planned on every call as switchboard's pool does
 * with PG_PREPARED_STATEMENTS=false. Also recall@4 of the first measured pass and its passages (source and heading)
 * per question, to compare statements with.
 */
function timeStatement(sql, passes, { warmup = true, prepared = true } = {}) {
  const qs = JSON.stringify(QUESTIONS);
  if (qs.includes('$json$') || sql.includes('$sql$')) throw new Error('dollar-quote tag clash');
  const run = prepared ? "EXECUTE format('EXECUTE sb_search(%L, 4)', qs[i]) INTO r;" : `EXECUTE $sql$${sql}$sql$ INTO r USING qs[i], 4;`;
  const out = psql(`
${prepared ? `PREPARE sb_search (text, int) AS ${sql};` : ''}
CREATE TEMP TABLE bench_t (pass int, i int, ms float8, r json);
DO $bench$
DECLARE
  qs text[] := ARRAY(SELECT json_array_elements_text($json$${qs}$json$::json));
  t0 timestamptz;
  r json;
BEGIN
  FOR pass IN ${warmup ? 0 : 1}..${passes} LOOP
    FOR i IN 1..array_length(qs, 1) LOOP
      t0 := clock_timestamp();
      ${run}
      INSERT INTO bench_t VALUES (pass, i, extract(epoch FROM clock_timestamp() - t0) * 1000, r);
    END LOOP;
  END LOOP;
END $bench$;
SELECT pass, i, ms, (SELECT coalesce(json_agg(json_build_array(e->>'source', e->>'heading')), '[]') FROM json_array_elements(r) e)
FROM bench_t WHERE pass > 0 ORDER BY pass, i;
`);
  const rows = out.trim().split('\n').map((l) => {
    const [pass, i, ms, ...rest] = l.split('|');
    return { pass: Number(pass), i: Number(i) - 1, ms: Number(ms), passages: JSON.parse(rest.join('|')) };
  });
  const first = rows.filter((r) => r.pass === 1);
  const hits = first.filter((r) => r.passages.some(([source]) => source === EVAL[r.i].doc)).length;
  return {
    ...stats(rows.map((r) => r.ms)), questions: QUESTIONS.length, passes, with_rows: rows.filter((r) => r.passages.length > 0).length,
    recall_at_4: hits / first.length, passages: first.map((r) => r.passages),
  };
}

/** How many of `exact`'s passages `got` returns too, and for how many questions the whole list is the same. */
function agreement(got, exact) {
  const key = ([source, heading]) => `${source}\u0000${heading}`;
  let shared = 0, total = 0, same = 0;
  exact.forEach((want, i) => {
    const have = new Set(got[i].map(key));
    shared += want.filter((p) => have.has(key(p))).length;
    total += want.length;
    same += JSON.stringify(got[i]) === JSON.stringify(want);
  });
  return { passages_shared: shared, passages: total, same_lists: same, questions: exact.length };
}

// --- CPU of the machine and of the benchmark's own processes (to tell whether something else was running) ------

/** Busy and total ms of all CPUs (from /proc/stat), and the CPU ms of our processes (Postgres backends included). */
function cpuSample(ownPids) {
  const { busy, total } = machineCpuMs();
  const pm = Number(env.BENCH_PG_PID);
  return { busy, total, own: ownPids.reduce((a, p) => a + cpuMs(p), 0) + (pm ? treeCpuMs(pm) : 0) };
}

// --- processes -----------------------------------------------------------------------------------------

/** A switchboard with the common settings plus `extra`; the environment is built from scratch (no .env, no inherited RAG_*). */
async function startSwitchboard(name, extra) {
  const port = await freePort();
  const childEnv = {
    PATH: env.PATH, HOME: env.HOME ?? '/tmp', SWITCHBOARD_ENV_FILE: '/dev/null',
    HOST: '127.0.0.1', PORT: String(port), WORKERS: String(CFG.workers), ACCESS_LOG: 'false',
    SWITCHBOARD_API_KEYS: KEY, LLM_BASE_URL: `${FAKE}/v1`, OPENAI_API_KEY: 'bench-provider-key',
    DATABASE_URL: DB, TOOL_FILLER_TEXT: 'none', RAG_TIMEOUT_MS: String(CFG.timeoutMs),
    ...extra,
  };
  const child = spawn(SB_BIN, [], { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  if (PID_DIR) fs.writeFileSync(path.join(PID_DIR, `sb-${name}.pid`), String(child.pid));
  const deadline = Date.now() + 10000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`switchboard (${name}) exited: ${stderr}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/ping`)).ok) break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`switchboard (${name}) did not answer /ping: ${stderr}`);
    await sleep(20);
  }
  return { name, port, pid: child.pid, child };
}

// --- one streamed turn -----------------------------------------------------------------------------------

const ANSWER = 'Sure, let me check that for you.';
const CONTENT_RE = /"content":"[^"]/; // the first event with non-empty content (the role chunk's "" does not count)
const SYSTEM = 'You are the phone agent of Kettle & Co., a kitchen appliance shop. Answer in short, friendly sentences that ' +
  'sound natural when read aloud. Use the reference material when it covers the question; never invent policies.';

let tagSeq = 0;
/** One turn; resolves {path, tag, question, sentRt (realtime ms), ttft (ms), ok, why}. */
function turn(p, question) {
  const tag = ++tagSeq;
  const model = 'fake?' + new URLSearchParams({ text: ANSWER, seed: String(tag) }).toString();
  const body = Buffer.from(JSON.stringify({
    model, stream: true, temperature: 0.7, max_tokens: 200,
    messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: question }],
  }));
  const headers = { 'content-type': 'application/json', 'content-length': String(body.length), authorization: `Bearer ${KEY}` };
  return new Promise((resolve) => {
    let tFirst = 0;
    let tail = '';
    const chunks = [];
    const done = (r) => resolve({ path: p.name, tag, question, ...r });
    const t0 = performance.now();
    const req = http.request({ host: '127.0.0.1', port: p.port, method: 'POST', path: '/v1/chat/completions', agent: p.agent, headers }, (res) => {
      res.on('data', (d) => {
        if (tFirst === 0) {
          const s = tail + d.toString('latin1');
          if (CONTENT_RE.test(s)) tFirst = performance.now();
          else tail = s.slice(-32);
        }
        chunks.push(d);
      });
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let why = null;
        if (res.statusCode !== 200) why = `status ${res.statusCode}: ${text.slice(0, 200)}`;
        else if (!text.endsWith('data: [DONE]\n\n')) why = 'stream does not end with [DONE]';
        else if (contentOf(text) !== ANSWER) why = `content differs: ${contentOf(text)?.slice(0, 100)}`;
        done({ sentRt: performance.timeOrigin + t0, ttft: tFirst ? tFirst - t0 : NaN, ok: why === null, why });
      });
      res.on('error', (e) => done({ ok: false, why: e.message }));
    });
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => done({ ok: false, why: e.message }));
    req.end(body);
  });
}

function contentOf(sse) {
  let content = '';
  for (const block of sse.split(/\r?\n\r?\n/)) {
    const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.replace(/^data: ?/, '')).join('\n');
    if (!data || data === '[DONE]') continue;
    try {
      content += JSON.parse(data).choices?.[0]?.delta?.content ?? '';
    } catch {
      return null;
    }
  }
  return content;
}

// --- main --------------------------------------------------------------------------------------------------

const report = { config: { ...CFG, cpus: os.cpus().length, node: process.version } };

log(`statement alone on the demo knowledge (${QUESTIONS.length} eval questions × ${CFG.sqlReps * 2} passes)`);
report.demo_chunks = Number(psql('SELECT count(*) FROM rag_chunks;').trim());
report.statement_demo = timeStatement(SEARCH_SQL, CFG.sqlReps * 2);

log(`generating ${CFG.chunks} chunks`);
let t = performance.now();
report.total_chunks = Number(psql(generateSql(CFG.chunks)).trim().split('\n').at(-1));
report.generate_s = (performance.now() - t) / 1000;
report.top_lexemes = psql(`SELECT word || ' ' || round(ndoc * 100.0 / (SELECT count(*) FROM rag_chunks)) || '%' FROM
  ts_stat('SELECT tsv FROM rag_chunks') ORDER BY ndoc DESC LIMIT 8;`).trim().split('\n');

log(`statement alone with ${report.total_chunks} chunks (${QUESTIONS.length} eval questions × ${CFG.sqlReps} passes)`);
report.statement_10k = timeStatement(SEARCH_SQL, CFG.sqlReps);
report.statement_10k_unprepared = timeStatement(SEARCH_SQL, CFG.sqlReps, { prepared: false });
log(`the exact ranking with ${report.total_chunks} chunks (${QUESTIONS.length} eval questions, once)`);
report.exact_10k = timeStatement(EXACT_SQL, 1, { warmup: false });
report.agreement_10k = agreement(report.statement_10k.passages, report.exact_10k.passages);
for (const k of ['statement_demo', 'statement_10k', 'statement_10k_unprepared', 'exact_10k']) delete report[k].passages; // the table has what matters

// The fake vector store answers at once with 8 passages of the demo knowledge. Its own time per query is taken
// from the request's arrival (fake_store.mjs's `at`, once the body is read) to the moment res.end() returns.
const passages = [];
for (const f of fs.readdirSync(path.join(root, 'rag/knowledge')).sort()) {
  const text = fs.readFileSync(path.join(root, 'rag/knowledge', f), 'utf8');
  const sec = text.split(/\n## /)[1];
  if (sec && passages.length < 8) {
    const [heading, ...rest] = sec.split('\n');
    passages.push({ id: `${f}-1`, score: 0.9 - passages.length * 0.05, source: f, heading, text: rest.join('\n').trim().slice(0, 900) });
  }
}
let storeEnd = 0;
const origEnd = http.ServerResponse.prototype.end;
http.ServerResponse.prototype.end = function end(...args) { // the store is the only server in this process
  const r = origEnd.apply(this, args);
  storeEnd = performance.now();
  return r;
};
const store = await startFakeStore({ passages });

const sbPg = await startSwitchboard('postgres', { RAG_BACKEND: 'postgres' });
const sbOff = await startSwitchboard('none', { RAG_BACKEND: 'none' });
const sbPc = await startSwitchboard('pinecone', {
  RAG_BACKEND: 'pinecone', PINECONE_HOST: store.base, PINECONE_API_KEY: 'bench-pinecone-key-0123',
  EMBEDDING_CACHE_ENTRIES: '0', // every turn embeds its question: the measured turn is the uncached one
});
const sbPc1536 = await startSwitchboard('pinecone1536', {
  RAG_BACKEND: 'pinecone', PINECONE_HOST: store.base, PINECONE_API_KEY: 'bench-pinecone-key-0123',
  EMBEDDING_CACHE_ENTRIES: '0', OPENAI_EMBEDDING_MODEL: 'fake?dim=1536',
});
const fakePort = Number(new URL(FAKE).port);
// `vector`: the path embeds its question and queries the store, so the fakes' time is known per turn
const PATHS = [
  { name: 'postgres', port: sbPg.port },
  { name: 'none', port: sbOff.port },
  { name: 'pinecone', port: sbPc.port, vector: true },
  { name: 'pinecone1536', port: sbPc1536.port, vector: true },
  { name: 'direct', port: fakePort },
];
const isVector = (name) => PATHS.some((p) => p.name === name && p.vector);
for (const p of PATHS) p.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

async function fakeRecords() {
  const all = await (await fetch(`${FAKE}/_requests`)).json();
  await fetch(`${FAKE}/_reset`, { method: 'POST' });
  return all;
}

/** One round: a turn on every path, in an order that rotates from round to round. */
async function round(i) {
  const q = QUESTIONS[i % QUESTIONS.length];
  const out = {};
  for (let k = 0; k < PATHS.length; ++k) {
    const p = PATHS[(i + k) % PATHS.length];
    const before = store.requests.length;
    const r = await turn(p, q);
    if (p.vector) {
      const got = store.requests.length - before;
      if (got !== 1) r.ok = false, r.why = `${got} store queries`;
      else r.store = storeEnd - store.requests.at(-1).at;
    }
    out[p.name] = r;
  }
  if (global.gc) global.gc(); // the client's garbage is collected between rounds, not inside a turn
  return out;
}

/** Joins the rounds' turns with the fake provider's records: pre(), the embedding request, whether context came. */
function join(rounds, recs) {
  const byTag = new Map();
  for (const r of rounds) for (const t of Object.values(r)) byTag.set(t.tag, t);
  let lastEmb = null;
  for (const rec of recs) {
    if (rec.path.endsWith('/embeddings')) {
      lastEmb = rec;
      continue;
    }
    const body = JSON.parse(rec.body);
    const tag = Number(new URLSearchParams(body.model.slice(5)).get('seed'));
    const t = byTag.get(tag);
    if (!t) continue;
    t.pre = rec.t_received - t.sentRt;
    t.context = body.messages.some((m) => m.role === 'system' && String(m.content).includes('<<<reference'));
    if (isVector(t.path)) {
      const input = lastEmb && JSON.parse(lastEmb.body).input;
      if (input === t.question && lastEmb.t_done != null) t.emb = lastEmb.t_done - lastEmb.t_received;
      else t.ok = false, t.why = 'no embedding request before the chat request';
      lastEmb = null;
    }
  }
  for (const r of rounds) for (const t of Object.values(r)) if (t.ok && t.pre === undefined) t.ok = false, t.why = 'no provider record';
}

log(`warm-up: ${CFG.warmupRounds} rounds`);
for (let i = 0; i < CFG.warmupRounds; ++i) await round(i);
await fakeRecords();
store.reset();

log(`measuring: ${CFG.rounds} rounds × ${PATHS.length} paths (${PATHS.map((p) => p.name).join(', ')}), interleaved`);
const rounds = [];
const ownPids = () => [process.pid, sbPg.pid, sbOff.pid, sbPc.pid, sbPc1536.pid, Number(env.FAKE_PID)].filter(Boolean);
const cpu0 = cpuSample(ownPids());
t = performance.now();
for (let i = 0; i < CFG.rounds;) { // the provider's records are collected (and cleared) every 50 rounds
  const batch = [];
  for (let j = 0; j < 50 && i < CFG.rounds; ++j, ++i) batch.push(await round(i));
  join(batch, await fakeRecords());
  rounds.push(...batch);
}
report.turns_s = (performance.now() - t) / 1000;
const cpu1 = cpuSample(ownPids()); // Postgres backends that ended in between are missed; the pool's connections stay
report.machine_during_turns = {
  busy_pct: (100 * (cpu1.busy - cpu0.busy)) / (cpu1.total - cpu0.total),
  other_processes_pct: (100 * Math.max(0, cpu1.busy - cpu0.busy - (cpu1.own - cpu0.own))) / (cpu1.total - cpu0.total),
};

const failures = {};
for (const p of PATHS) {
  const bad = rounds.map((r) => r[p.name]).filter((x) => !x.ok);
  failures[p.name] = { failed: bad.length, first: bad[0]?.why ?? null };
}
const good = rounds.filter((r) => PATHS.every((p) => r[p.name].ok));
const col = (f) => good.map(f);

report.failures = failures;
report.rounds = { measured: rounds.length, usable: good.length };
report.context = {
  postgres_turns_with_context: good.filter((r) => r.postgres.context).length,
  pinecone_turns_with_context: good.filter((r) => r.pinecone.context).length,
  pinecone1536_turns_with_context: good.filter((r) => r.pinecone1536.context).length,
  none_turns_with_context: good.filter((r) => r.none.context).length,
};
report.pre_provider = Object.fromEntries(PATHS.map((p) => [p.name, stats(col((r) => r[p.name].pre - r.direct.pre))]));
report.postgres_retrieval = stats(col((r) => r.postgres.pre - r.none.pre));
report.ttft = {
  postgres: stats(col((r) => r.postgres.ttft)),
  none: stats(col((r) => r.none.ttft)),
  pinecone: stats(col((r) => r.pinecone.ttft)),
  direct: stats(col((r) => r.direct.ttft)),
  paired_postgres_minus_none: stats(col((r) => r.postgres.ttft - r.none.ttft)),
  paired_pinecone_minus_none: stats(col((r) => r.pinecone.ttft - r.none.ttft)),
};
report.ttft.p50_difference_ms = report.ttft.postgres.p50_ms - report.ttft.none.p50_ms;
report.pinecone = {
  embedding_at_fake_provider: stats(col((r) => r.pinecone.emb)),
  query_at_fake_store: stats(col((r) => r.pinecone.store)),
  retrieval_total: stats(col((r) => r.pinecone.pre - r.none.pre)),
  own_vs_none: stats(col((r) => r.pinecone.pre - r.none.pre - r.pinecone.emb - r.pinecone.store)),
  own_vs_direct: stats(col((r) => r.pinecone.pre - r.direct.pre - r.pinecone.emb - r.pinecone.store)),
};
report.pinecone_1536 = {
  embedding_at_fake_provider: stats(col((r) => r.pinecone1536.emb)),
  query_at_fake_store: stats(col((r) => r.pinecone1536.store)),
  retrieval_total: stats(col((r) => r.pinecone1536.pre - r.none.pre)),
  own_vs_none: stats(col((r) => r.pinecone1536.pre - r.none.pre - r.pinecone1536.emb - r.pinecone1536.store)),
};

const pg = report.postgres_retrieval;
const checks = {
  postgres_retrieval: pg.p50_ms <= TARGET.pgP50 && pg.p99_ms <= TARGET.pgP99,
  statement_alone: report.statement_10k.p50_ms <= TARGET.pgP50 && report.statement_10k.p99_ms <= TARGET.pgP99,
  ttft_difference: report.ttft.p50_difference_ms <= TARGET.ttftP50,
  vector_own_time: report.pinecone.own_vs_none.p50_ms <= TARGET.vectorP50,
};
const clean = Object.values(failures).every((f) => f.failed === 0)
  && report.context.postgres_turns_with_context === good.length && report.context.pinecone_turns_with_context === good.length
  && report.context.pinecone1536_turns_with_context === good.length;
report.targets = { ...TARGET, met: checks, all_turns_clean: clean };

// --- the table ---------------------------------------------------------------------------------------------

const ms = (x) => (Number.isFinite(x) ? (Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2)) : '-');
const verdict = (b) => (b ? 'met' : 'missed');
const rows = [
  ['postgres retrieval in switchboard (pre: on − off)', pg.p50_ms, pg.p99_ms, 'p50 ≤ 2, p99 ≤ 10', verdict(checks.postgres_retrieval)],
  [`  the statement alone, ${report.total_chunks} chunks`, report.statement_10k.p50_ms, report.statement_10k.p99_ms, 'p50 ≤ 2, p99 ≤ 10', verdict(checks.statement_alone)],
  ['  the same, planned on every call (prepared statements off)', report.statement_10k_unprepared.p50_ms, report.statement_10k_unprepared.p99_ms, '', ''],
  [`  the statement alone, demo only (${report.demo_chunks} chunks)`, report.statement_demo.p50_ms, report.statement_demo.p99_ms, '', ''],
  [`  the exact ranking alone, ${report.total_chunks} chunks`, report.exact_10k.p50_ms, report.exact_10k.p99_ms, '', ''],
  ['first token, retrieval on − off (p50 − p50)', report.ttft.p50_difference_ms, null, 'p50 ≤ 3', verdict(checks.ttft_difference)],
  ['  first token, postgres on', report.ttft.postgres.p50_ms, report.ttft.postgres.p99_ms, '', ''],
  ['  first token, retrieval off', report.ttft.none.p50_ms, report.ttft.none.p99_ms, '', ''],
  ['pinecone: own time around embed + query (vs off)', report.pinecone.own_vs_none.p50_ms, report.pinecone.own_vs_none.p99_ms, 'p50 ≤ 0.5', verdict(checks.vector_own_time)],
  ['  pinecone retrieval total (pre: on − off)', report.pinecone.retrieval_total.p50_ms, report.pinecone.retrieval_total.p99_ms, '', ''],
  ['  embedding request at the fake provider', report.pinecone.embedding_at_fake_provider.p50_ms, report.pinecone.embedding_at_fake_provider.p99_ms, '', ''],
  ['  query at the fake store', report.pinecone.query_at_fake_store.p50_ms, report.pinecone.query_at_fake_store.p99_ms, '', ''],
  ['  pinecone: all pre-provider time − fakes (vs direct)', report.pinecone.own_vs_direct.p50_ms, report.pinecone.own_vs_direct.p99_ms, '', ''],
  ['pinecone at 1536 dims: own time (vs off)', report.pinecone_1536.own_vs_none.p50_ms, report.pinecone_1536.own_vs_none.p99_ms, '', ''],
  ['  embedding (1536) at the fake provider', report.pinecone_1536.embedding_at_fake_provider.p50_ms, report.pinecone_1536.embedding_at_fake_provider.p99_ms, '', ''],
  ['  query (1536) at the fake store', report.pinecone_1536.query_at_fake_store.p50_ms, report.pinecone_1536.query_at_fake_store.p99_ms, '', ''],
  ['switchboard request path, retrieval off (vs direct)', report.pre_provider.none.p50_ms, report.pre_provider.none.p99_ms, '', ''],
];
console.log(`\nRetrieval: ${report.total_chunks} chunks (${report.demo_chunks} demo + ${CFG.chunks} generated), ` +
  `${good.length}/${rounds.length} interleaved rounds × ${PATHS.length} paths, ${os.cpus().length} CPUs`);
console.log(`${'figure'.padEnd(54)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)}   ${'target ms'.padEnd(18)} result`);
for (const [name, a, b, target, v] of rows)
  console.log(`${name.padEnd(54)} ${ms(a).padStart(8)} ${(b === null ? '' : ms(b)).padStart(8)}   ${target.padEnd(18)} ${v}`);
console.log(`\nturns with context: postgres ${report.context.postgres_turns_with_context}/${good.length}, ` +
  `pinecone ${report.context.pinecone_turns_with_context}/${good.length}, ` +
  `pinecone1536 ${report.context.pinecone1536_turns_with_context}/${good.length}, off ${report.context.none_turns_with_context}/${good.length}; ` +
  `failed turns: ${PATHS.map((p) => `${p.name} ${failures[p.name].failed}`).join(', ')}` +
  (Object.values(failures).some((f) => f.first) ? ` (first: ${Object.values(failures).find((f) => f.first).first})` : ''));
console.log(`during the turns the machine was ${report.machine_during_turns.busy_pct.toFixed(0)} % busy, ` +
  `${report.machine_during_turns.other_processes_pct.toFixed(0)} % from processes other than the benchmark's`);
const ag = report.agreement_10k;
console.log(`recall@4 of the eval questions: demo only ${report.statement_demo.recall_at_4.toFixed(3)} (target ≥ 0.9); ` +
  `${report.total_chunks} chunks ${report.statement_10k.recall_at_4.toFixed(3)}, exact ranking ${report.exact_10k.recall_at_4.toFixed(3)}; ` +
  `${ag.passages_shared}/${ag.passages} passages and ${ag.same_lists}/${ag.questions} whole answers as the exact ranking's`);
console.log(`statement alone returned passages for ${report.statement_10k.with_rows}/${report.statement_10k.n} executions; ` +
  `commonest lexemes (share of chunks): ${report.top_lexemes.join(', ')}`);

const outDir = path.join(here, 'results');
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, 'rag.json'), JSON.stringify(report, null, 2));
const allMet = Object.values(checks).every(Boolean);
console.log(allMet && clean ? '\nall retrieval targets met' : `\nretrieval targets missed: ${Object.keys(checks).filter((k) => !checks[k]).join(', ') || 'none'}` +
  (clean ? '' : '; some turns failed or came without context'));
await store.stop();
process.exit(0);
