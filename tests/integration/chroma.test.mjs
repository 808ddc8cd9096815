// The Chroma backend against a real Chroma server (the `chroma` CLI of the
// chromadb npm package): switchboard-ingest loads the demo knowledge base with
// the fake provider's deterministic embeddings, switchboard retrieves from it,
// a re-run writes nothing, and a stopped server costs the turn only its context.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  root, buildDir, startFakeUpstream, startSwitchboard, post, scenario, assemble, until, freePort, PROVIDER_KEY,
} from './lib.mjs';

const chromaBin = path.join(root, 'tests', 'node_modules', '.bin', 'chroma');
const skip = fs.existsSync(chromaBin) ? false : `${chromaBin} is missing: run \`npm ci\` in tests/ (CI does)`;
const ingestBin = path.join(buildDir, 'rag', 'switchboard-ingest');
const knowledge = path.join(root, 'rag', 'knowledge');

let up, sb, chroma, dir, chromaEnv;

/** Starts `chroma run` on a free port and waits for its heartbeat. */
async function startChroma() {
  const port = await freePort();
  const proc = spawn(chromaBin, ['run', '--path', path.join(dir, 'db'), '--port', String(port)], {
    cwd: path.join(root, 'tests'),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const stderr = [];
  proc.stderr.on('data', (d) => stderr.push(d));
  let exited = false;
  proc.on('exit', () => { exited = true; });
  const base = `http://127.0.0.1:${port}`;
  await until(async () => {
    if (exited) throw Object.assign(new Error(`chroma exited: ${Buffer.concat(stderr)}`), { fatal: true });
    return (await fetch(`${base}/api/v2/heartbeat`)).ok;
  }, { timeoutMs: 15000, everyMs: 50, what: 'the Chroma heartbeat' });
  return {
    base,
    async stop() {
      if (exited) return;
      proc.kill('SIGKILL');
      await new Promise((r) => (exited ? r() : proc.on('exit', r)));
    },
  };
}

function ingest(args) {
  const r = spawnSync(ingestBin, args, {
    env: {
      PATH: process.env.PATH,
      SWITCHBOARD_ENV_FILE: '/nonexistent/.env',
      ASAN_OPTIONS: process.env.ASAN_OPTIONS || '',
      LSAN_OPTIONS: process.env.LSAN_OPTIONS || '',
      ...chromaEnv,
    },
    encoding: 'utf8',
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

before(async () => {
  if (skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-chroma-'));
  up = await startFakeUpstream();
  chroma = await startChroma();
  chromaEnv = {
    RAG_BACKEND: 'chroma',
    CHROMA_URL: chroma.base,
    CHROMA_COLLECTION: 'kettle_kb',
    LLM_BASE_URL: `${up.base}/v1`,
    EMBEDDING_BASE_URL: `${up.base}/v1`,
    OPENAI_API_KEY: PROVIDER_KEY,
  };
});

after(async () => {
  try {
    await sb?.stop();
  } finally {
    await chroma?.stop();
    await up?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
});

const embeddingCalls = async () => (await up.requests()).filter((r) => r.path.endsWith('/embeddings'));

test('switchboard-ingest loads the knowledge base into a new Chroma collection', { skip }, async () => {
  await up.reset();
  const r = ingest([knowledge]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /ingested refunds\.md: \d+ chunks \(\d+ new, 0 removed\)/);
  const m = /(\d+) files, (\d+) chunks: (\d+) new, 0 removed/.exec(r.out);
  assert.ok(m, r.out);
  assert.equal(m[3], m[2], 'every chunk is new');
  const calls = await embeddingCalls();
  assert.ok(calls.length >= 1 && calls.length < Number(m[2]), 'chunks are embedded in batches');
  assert.equal(JSON.parse(calls[0].body).model, 'text-embedding-3-small');
});

test('re-ingesting unchanged files embeds and writes nothing', { skip }, async () => {
  await up.reset();
  const r = ingest([knowledge]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /files, \d+ chunks: 0 new, 0 removed/);
  assert.doesNotMatch(r.out, /[1-9]\d* new/);
  assert.equal((await embeddingCalls()).length, 0);
});

test('an edit replaces only its passages; --sync removes a deleted file', { skip }, async () => {
  const kb = path.join(dir, 'kb');
  fs.mkdirSync(kb);
  fs.writeFileSync(path.join(kb, 'a.md'), '# A\n\n## One\n\nKettles boil water.\n\n## Two\n\nTeapots steep tea.\n');
  fs.writeFileSync(path.join(kb, 'b.md'), '# B\n\nMugs hold tea.\n');
  const run = (args) => {
    const saved = chromaEnv;
    chromaEnv = { ...chromaEnv, CHROMA_COLLECTION: 'edits' };
    try { return ingest(args); } finally { chromaEnv = saved; }
  };
  let r = run([kb]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /2 files, 3 chunks: 3 new, 0 removed/);
  fs.writeFileSync(path.join(kb, 'a.md'), '# A\n\n## One\n\nKettles boil water quickly.\n\n## Two\n\nTeapots steep tea.\n');
  r = run([kb]);
  assert.match(r.out, /ingested a\.md: 2 chunks \(1 new, 1 removed\)/);
  assert.match(r.out, /ingested b\.md: 1 chunks \(0 new, 0 removed\)/);
  fs.rmSync(path.join(kb, 'b.md'));
  r = run(['--sync', '--dry-run', kb]);
  assert.match(r.out, /would remove b\.md: 1 chunks/);
  r = run(['--sync', kb]);
  assert.match(r.out, /removed b\.md: 1 chunks \(source no longer exists\)/);
  r = run(['--sync', kb]);
  assert.match(r.out, /1 files, 2 chunks: 0 new, 0 removed/);
});

test('a question\'s passages reach the provider in the context message', { skip }, async () => {
  sb = await startSwitchboard({ ...chromaEnv, WORKERS: '1', RAG_TIMEOUT_MS: '2000' });
  await up.reset();
  const res = await post(sb.base, {
    model: scenario({ text: 'ok' }), stream: true, messages: [{ role: 'user', content: 'how long do refunds take?' }],
  });
  assert.equal(assemble(res.text).content, 'ok');
  const chat = (await up.requests()).filter((r) => r.path.endsWith('/chat/completions'));
  const sent = JSON.parse(chat[0].body).messages;
  assert.equal(sent[0].role, 'system');
  // The fake provider's embeddings are word hashes, not meaning: what is checked is that the best passages
  // are real knowledge-base text, cited with the file they came from.
  const m = /<<<reference\n\[1\] source: ([\w.-]+\.md)(?: — [^\n]*)?\n([^\n]{1,80})/.exec(sent[0].content);
  assert.ok(m, sent[0].content);
  assert.ok(fs.readFileSync(path.join(knowledge, m[1]), 'utf8').includes(m[2]), `${m[2]} is in ${m[1]}`);
  assert.equal(sent.at(-1).content, 'how long do refunds take?');
  await until(() => sb.accessLog.some((l) => l.retrieval === 'hit'), { what: 'the access log to record the hit' });
});

test('a stopped Chroma server: the turn still answers, without context', { skip }, async () => {
  await chroma.stop();
  await up.reset();
  const res = await post(sb.base, {
    model: scenario({ text: 'still here' }), stream: true, messages: [{ role: 'user', content: 'how long do refunds take?' }],
  });
  assert.equal(res.status, 200);
  assert.equal(assemble(res.text).content, 'still here');
  const chat = (await up.requests()).filter((r) => r.path.endsWith('/chat/completions'));
  const sent = JSON.parse(chat[0].body).messages;
  assert.equal(sent.length, 1, 'no context message');
  await until(() => sb.accessLog.some((l) => l.retrieval === 'error'), { what: 'the access log to record the error' });
});
