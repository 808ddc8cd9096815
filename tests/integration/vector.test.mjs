// Vector-store retrieval: the question is embedded by the (fake) provider,
// then looked up in Pinecone or Qdrant (a fake store). Checks the exact
// requests both make, that the passages reach the model, that a failing or
// hanging store costs at most the budget, and the per-worker embedding cache.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFakeUpstream, startSwitchboard, post, scenario, assemble, until, buildDir, PROVIDER_KEY } from './lib.mjs';
import { startFakeStore } from './fake_store.mjs';

const BUDGET = 300;
const PASSAGES = [
  { id: 'refunds-0', score: 0.91, source: 'refunds.md', heading: 'How long refunds take', text: 'Card refunds take 5 to 10 business days after we inspect the return.' },
  { id: 'shipping-0', score: 0.52, source: 'shipping.md', text: 'Standard shipping takes 3 to 5 business days.' },
];

const BACKENDS = {
  pinecone: {
    env: (store) => ({ RAG_BACKEND: 'pinecone', PINECONE_API_KEY: 'pc-test-key-0123456789', PINECONE_HOST: `${store.base}/`, PINECONE_NAMESPACE: 'kettle' }),
    checkRequest(r, vector) {
      assert.equal(r.method, 'POST');
      assert.equal(r.path, '/query');
      assert.equal(r.headers['api-key'], 'pc-test-key-0123456789');
      assert.equal(r.headers['x-pinecone-api-version'], '2024-07');
      assert.equal(r.headers['content-type'], 'application/json');
      assert.equal(r.headers.expect, undefined, 'no waiting for 100 Continue');
      assert.deepEqual(Object.keys(r.json).sort(), ['includeMetadata', 'namespace', 'topK', 'vector']);
      assert.equal(r.json.topK, 6); // RAG_TOP_K 3, with as many spare for duplicates and the score floor
      assert.equal(r.json.namespace, 'kettle');
      assert.equal(r.json.includeMetadata, true);
      assertVector(r.json.vector, vector);
    },
    keys: ['pc-test-key-0123456789'],
  },
  qdrant: {
    env: (store) => ({ RAG_BACKEND: 'qdrant', QDRANT_URL: store.base, QDRANT_API_KEY: 'qd-test-key-0123456789', QDRANT_COLLECTION: 'kettle docs/v1' }),
    checkRequest(r, vector) {
      assert.equal(r.method, 'POST');
      assert.equal(r.path, '/collections/kettle%20docs%2Fv1/points/query', 'the collection name is percent-encoded');
      assert.equal(r.headers['api-key'], 'qd-test-key-0123456789');
      assert.equal(r.headers['content-type'], 'application/json');
      assert.deepEqual(Object.keys(r.json).sort(), ['limit', 'query', 'with_payload']);
      assert.equal(r.json.limit, 6);
      assert.equal(r.json.with_payload, true);
      assertVector(r.json.query, vector);
    },
    keys: ['qd-test-key-0123456789'],
  },
};

function assertVector(got, want) {
  assert.ok(Array.isArray(got) && got.length === want.length, `a ${want.length}-dim vector (got ${got?.length})`);
  for (let i = 0; i < want.length; ++i)
    assert.ok(Math.abs(got[i] - want[i]) <= 1e-6 * Math.max(1, Math.abs(want[i])), `component ${i}: ${got[i]} vs ${want[i]}`);
}

let up;
before(async () => { up = await startFakeUpstream(); });
after(async () => { await up?.stop(); });

/** The vector the fake provider gives `text` (asked directly, then forgotten). */
async function fakeEmbedding(text) {
  const res = await fetch(`${up.base}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'x', input: text }) });
  return (await res.json()).data[0].embedding;
}

const embeddingCalls = async () => (await up.requests()).filter((r) => r.path.endsWith('/embeddings'));
const chatCalls = async () => (await up.requests()).filter((r) => r.path.endsWith('/chat/completions'));
const logFor = (sb, res) => until(() => sb.accessLog.find((l) => l.request_id === res.headers['x-request-id'] && l.retrieval),
  { what: 'the access log line' });

for (const [name, b] of Object.entries(BACKENDS)) {
  describe(name, () => {
    let store, sb;
    before(async () => {
      store = await startFakeStore({ passages: PASSAGES });
      sb = await startSwitchboard({
        LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '1', RAG_TIMEOUT_MS: String(BUDGET), RAG_TOP_K: '3', ...b.env(store),
      });
    });
    after(async () => {
      try {
        await sb?.stop();
      } finally {
        await store?.stop();
      }
    });

    const ask = (question, text = 'ok', opts) =>
      post(sb.base, { model: scenario({ text }), stream: true, messages: [{ role: 'user', content: question }] }, opts);

    test('embeds the question, sends the documented query, and the passages reach the model', async () => {
      const question = `How long do refunds take with ${name}?`;
      const vector = await fakeEmbedding(question);
      await up.reset();
      store.reset();
      const res = await ask(question);
      assert.equal(assemble(res.text).content, 'ok');

      const emb = await embeddingCalls();
      assert.equal(emb.length, 1);
      assert.equal(emb[0].path, '/v1/embeddings');
      assert.equal(emb[0].headers.authorization, `Bearer ${PROVIDER_KEY}`);
      // base64, as the official clients ask: the vector the store gets is the one the provider meant (checked below)
      assert.deepEqual(JSON.parse(emb[0].body), { model: 'text-embedding-3-small', input: question, encoding_format: 'base64' });

      assert.equal(store.requests.length, 1);
      b.checkRequest(store.requests[0], vector);

      const sent = JSON.parse((await chatCalls())[0].body).messages;
      assert.equal(sent.length, 2);
      assert.equal(sent[0].role, 'system');
      assert.match(sent[0].content, /<<<reference\n\[1\] source: refunds\.md — How long refunds take\nCard refunds take 5 to 10 business days/);
      assert.match(sent[0].content, /\[2\] source: shipping\.md\nStandard shipping takes 3 to 5 business days\./);
      assert.equal((await logFor(sb, res)).retrieval, 'hit');
      const everything = JSON.stringify(sb.accessLog) + sb.stderr.join('\n');
      for (const k of [...b.keys, PROVIDER_KEY]) assert.ok(!everything.includes(k), 'no key is logged');
    });

    test('the same question twice costs one embeddings call', async () => {
      await up.reset();
      store.reset();
      await ask(`Where is my ${name} parcel?`);
      await ask(`  where IS my\t${name}   parcel? `); // the cache key is normalized
      assert.equal((await embeddingCalls()).length, 1);
      assert.equal(store.requests.length, 2);
      assert.deepEqual(store.requests[1].body, store.requests[0].body);
      for (const c of await chatCalls()) assert.match(JSON.parse(c.body).messages[0].content, /refunds\.md/);
    });

    test('a record written as the Node sample writes it (metadata text and timestamp only) is used, its id as the source', async () => {
      await up.reset();
      store.reset();
      store.passages = [{ id: 'f3a1c2d4-0000-4000-8000-000000000001', score: 0.8, text: 'Gift wrapping costs 4 dollars.' }];
      try {
        await ask(`how much is gift wrapping at ${name}?`);
        const ctx = JSON.parse((await chatCalls())[0].body).messages[0].content;
        assert.match(ctx, name === 'pinecone' ? /\[1\] source: f3a1c2d4-0000-4000-8000-000000000001\nGift wrapping costs 4 dollars\./
          : /\[1\] source: 1\nGift wrapping costs 4 dollars\./);
      } finally {
        store.passages = PASSAGES;
      }
    });

    for (const [what, fail] of [
      ['a 500 with a body', { status: 500, body: '{"error":"internal"}' }],
      ['a 401', { status: 401, body: '{"error":"bad key"}' }],
      ['a 200 that is not JSON', { status: 200, body: '<html>oops' }],
      ['a 200 of the wrong shape', { status: 200, body: '{"matches":"no","result":{"points":3}}' }],
    ]) {
      test(`${what} from the store: the turn answers without context, retrieval says error`, async () => {
        await up.reset();
        store.reset();
        store.fail(fail);
        try {
          const res = await ask(`what does ${what} mean for ${name}?`, 'still here');
          assert.equal(assemble(res.text).content, 'still here');
          assert.equal(store.requests.length, 1);
          assert.equal(JSON.parse((await chatCalls())[0].body).messages.length, 1, 'no context');
          assert.equal((await logFor(sb, res)).retrieval, 'error');
        } finally {
          store.fail(null);
        }
      });
    }

    test('a hanging store costs at most the budget: the first token within budget + 50 ms, without context', async () => {
      await up.reset();
      store.reset();
      store.fail({ hang: true });
      try {
        let first = null;
        const t0 = performance.now();
        const res = await ask(`is the ${name} store awake?`, 'still here', {
          onChunk: (c) => { if (first === null && c.data.includes('"content"')) first = c.at; },
        });
        assert.equal(assemble(res.text).content, 'still here');
        assert.ok(first - t0 < BUDGET + 50 + 40, `first token after ${(first - t0).toFixed(1)} ms`); // + the fake's own answer time
        assert.equal(store.requests.length, 1);
        assert.equal(JSON.parse((await chatCalls())[0].body).messages.length, 1, 'no context');
        assert.equal((await logFor(sb, res)).retrieval, 'timeout');
      } finally {
        store.fail(null);
      }
    });
  });
}

describe('the embeddings provider fails', () => {
  let store;
  before(async () => { store = await startFakeStore({ passages: PASSAGES }); });
  after(async () => { await store?.stop(); });

  const answering = (body) => `fake?status=200&body=${encodeURIComponent(JSON.stringify(body))}`;
  for (const [what, model, outcome] of [['with a 500', 'fake?status=500', 'error'], ['by hanging', 'fake?hang=head', 'timeout'],
    ['with no embedding in the answer', answering({ data: [] }), 'error'],
    ['with base64 that is not whole floats', answering({ data: [{ embedding: 'AACAPwAA' }] }), 'error'],
    ['with base64 that is not canonical', answering({ data: [{ embedding: 'AACAPx==' }] }), 'error'],
    ['with a NaN in base64', answering({ data: [{ embedding: 'AADAfw==' }] }), 'error'],
    ['with a number past a float', answering({ data: [{ embedding: [0.5, 1e39] }] }), 'error'],
    ['with a string among the numbers', answering({ data: [{ embedding: [0.5, '0.25'] }] }), 'error']]) {
    test(`${what}: no store query, the turn answers without context (${outcome})`, async () => {
      const sb = await startSwitchboard({
        LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '1', RAG_TIMEOUT_MS: String(BUDGET),
        OPENAI_EMBEDDING_MODEL: model, ...BACKENDS.pinecone.env(store),
      });
      try {
        store.reset();
        await up.reset();
        const t0 = performance.now();
        const res = await post(sb.base, { model: scenario({ text: 'fine' }), stream: true, messages: [{ role: 'user', content: 'how long do refunds take?' }] });
        assert.equal(assemble(res.text).content, 'fine');
        assert.ok(performance.now() - t0 < BUDGET + 200);
        assert.equal(store.requests.length, 0);
        assert.equal((await logFor(sb, res)).retrieval, outcome);
      } finally {
        await sb.stop();
      }
    });
  }

  // A server that ignores encoding_format answers with numbers; both spellings of a vector reach the store exactly.
  for (const [what, embedding] of [['as numbers (encoding_format ignored)', [0.5, -0.25, 1e-7, 0, 0.1]],
    ['as base64', Buffer.from(new Float32Array([0.5, -0.25, 1e-7, 0, 0.1]).buffer).toString('base64')]]) {
    test(`an embedding ${what} is what the store is asked with`, async () => {
      const sb = await startSwitchboard({
        LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '1', RAG_TIMEOUT_MS: String(BUDGET),
        OPENAI_EMBEDDING_MODEL: answering({ object: 'list', data: [{ object: 'embedding', index: 0, embedding }] }), ...BACKENDS.pinecone.env(store),
      });
      try {
        store.reset();
        const res = await post(sb.base, { model: scenario({ text: 'fine' }), stream: true, messages: [{ role: 'user', content: 'how long do refunds take?' }] });
        assert.equal(assemble(res.text).content, 'fine');
        assert.equal(store.requests.length, 1);
        // 9 significant digits: read back as a float, each component is the float the provider sent
        assert.deepEqual(store.requests[0].json.vector.map(Math.fround), [...new Float32Array([0.5, -0.25, 1e-7, 0, 0.1])]);
        assert.equal((await logFor(sb, res)).retrieval, 'hit');
      } finally {
        await sb.stop();
      }
    });
  }
});

test('start-up refuses incomplete store settings, naming the variable', () => {
  const bin = path.join(buildDir, 'src', 'switchboard');
  const base = { PATH: process.env.PATH, SWITCHBOARD_ALLOW_UNAUTHENTICATED: 'true', LLM_BASE_URL: 'http://127.0.0.1:9/v1', PORT: '1', HOST: '127.0.0.1' };
  for (const [env, variable] of [
    [{ RAG_BACKEND: 'pinecone', PINECONE_API_KEY: 'k' }, 'PINECONE_HOST'],
    [{ RAG_BACKEND: 'pinecone', PINECONE_HOST: 'idx.svc.pinecone.io' }, 'PINECONE_API_KEY'],
    [{ RAG_BACKEND: 'pinecone', PINECONE_API_KEY: 'k', PINECONE_HOST: 'ftp://idx' }, 'PINECONE_HOST'],
    [{ RAG_BACKEND: 'qdrant', QDRANT_COLLECTION: 'kb' }, 'QDRANT_URL'],
    [{ RAG_BACKEND: 'qdrant', QDRANT_URL: 'http://127.0.0.1:6333' }, 'QDRANT_COLLECTION'],
    [{ RAG_BACKEND: 'qdrant', QDRANT_URL: 'http://127.0.0.1:6333', QDRANT_COLLECTION: 'kb', EMBEDDING_BASE_URL: 'localhost:1' }, 'EMBEDDING_BASE_URL'],
    [{ RAG_BACKEND: 'weaviate' }, 'pinecone, qdrant'],
  ]) {
    const r = spawnSync(bin, [], { cwd: buildDir, env: { ...base, ...env }, encoding: 'utf8', timeout: 5000 });
    assert.equal(r.status, 2, `${JSON.stringify(env)} exits 2 (${r.stderr})`);
    assert.ok(r.stderr.includes(variable), `${JSON.stringify(env)}: ${r.stderr}`);
  }
});

// switchboard-ingest into each store: the exact requests it makes (ids, vectors, metadata, credentials), that a
// re-run embeds and writes nothing, that an edit replaces only its passage and --sync removes a deleted file, and
// that switchboard then answers from what was written.
const ingestBin = path.join(buildDir, 'rag', 'switchboard-ingest');

/** Runs switchboard-ingest with `env` (and no .env). Not spawnSync: the fake store answers from this process. */
function runIngest(args, env) {
  const proc = spawn(ingestBin, args, {
    env: {
      PATH: process.env.PATH, SWITCHBOARD_ENV_FILE: '/nonexistent/.env',
      ASAN_OPTIONS: process.env.ASAN_OPTIONS || '', LSAN_OPTIONS: process.env.LSAN_OPTIONS || '', ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = [], err = [];
  proc.stdout.on('data', (d) => out.push(d));
  proc.stderr.on('data', (d) => err.push(d));
  const timer = setTimeout(() => proc.kill('SIGKILL'), 20000);
  return new Promise((resolve) => proc.on('close', (code) => {
    clearTimeout(timer);
    resolve({ code, out: Buffer.concat(out).toString(), err: Buffer.concat(err).toString() });
  }));
}
const FILES = {
  'a.md': '# Kettles\n\n## Boiling\n\nThe Aurora kettle boils a litre of water in 90 seconds.\n\n## Cleaning\n\nDescale the kettle monthly with citric acid.\n',
  'b.md': '# Mugs\n\nOur stoneware mugs hold 350 ml and are dishwasher safe.\n',
  'notes/c.txt': 'Teapots are shipped in recycled cardboard.\n',
};
/** The chunks the files above make: what is embedded for each, and the metadata stored with it. */
const CHUNKS = [
  { source: 'a.md', title: 'Kettles', heading: 'Boiling', text: 'The Aurora kettle boils a litre of water in 90 seconds.' },
  { source: 'a.md', title: 'Kettles', heading: 'Cleaning', text: 'Descale the kettle monthly with citric acid.' },
  { source: 'b.md', title: 'Mugs', heading: '', text: 'Our stoneware mugs hold 350 ml and are dishwasher safe.' },
  { source: 'notes/c.txt', title: 'c', heading: '', text: 'Teapots are shipped in recycled cardboard.' },
];
const EDITED = { source: 'a.md', title: 'Kettles', heading: 'Cleaning', text: 'Descale the kettle every month with citric acid.' };
const embedInput = (c) => `${c.title}${c.heading ? ' — ' : ''}${c.heading}\n\n${c.text}`;
const meta = ({ source, heading, title, text }) => ({ source, heading, title, text });

const INGEST = {
  pinecone: {
    key: 'pc-ingest-key-0123456789',
    env(store) {
      return { RAG_BACKEND: 'pinecone', PINECONE_API_KEY: this.key, PINECONE_HOST: `${store.base}/`, PINECONE_NAMESPACE: 'kb ns' };
    },
    checkHeaders(r) {
      assert.equal(r.headers['api-key'], this.key, `${r.method} ${r.path}`);
      assert.equal(r.headers['x-pinecone-api-version'], '2024-07');
    },
    isWrite: (r) => r.method !== 'GET',
    /** The records in the store, as [{ id, vector, meta }]. */
    records(store) {
      return [...(store.pinecone.get('kb ns')?.values() ?? [])].filter((r) => r.id.includes('#'))
        .map((r) => ({ id: r.id, vector: r.values, meta: r.metadata }));
    },
    /** The upserts' records, as [{ id, vector, meta }], checking each request. */
    upserted(reqs) {
      const out = [];
      for (const r of reqs.filter((q) => q.path === '/vectors/upsert')) {
        assert.equal(r.method, 'POST');
        assert.deepEqual(Object.keys(r.json).sort(), ['namespace', 'vectors']);
        assert.equal(r.json.namespace, 'kb ns');
        assert.ok(r.json.vectors.length >= 1 && r.json.vectors.length <= 100);
        for (const v of r.json.vectors) {
          assert.deepEqual(Object.keys(v).sort(), ['id', 'metadata', 'values']);
          assert.match(v.id, /^[0-9a-f]{32}#[0-9a-f]{64}$/);
          out.push({ id: v.id, vector: v.values, meta: v.metadata });
        }
      }
      return out;
    },
    deleted(reqs) {
      return reqs.filter((q) => q.path === '/vectors/delete').flatMap((r) => {
        assert.equal(r.method, 'POST');
        assert.deepEqual(Object.keys(r.json).sort(), ['ids', 'namespace']);
        assert.equal(r.json.namespace, 'kb ns');
        return r.json.ids;
      });
    },
    /** Checks the lookups of a run that read `sources`, one listing by prefix each (following the pagination). */
    checkLookups(reqs, sources) {
      const lists = reqs.filter((q) => q.path.startsWith('/vectors/list?'));
      for (const q of lists) assert.equal(q.method, 'GET');
      const params = lists.map((q) => new URL(q.path, 'http://x').searchParams);
      for (const p of params) assert.equal(p.get('namespace'), 'kb ns');
      const prefixes = [...new Set(params.map((p) => p.get('prefix')))];
      assert.equal(prefixes.length, sources.length, 'one prefix per source');
      for (const p of prefixes) assert.match(p, /^[0-9a-f]{32}#$/);
      return lists;
    },
    /** Plants a record this tool did not write (as the Node sample writes them); --sync must leave it alone. */
    plantForeign(store) {
      store.pinecone.get('kb ns').set('f3a1c2d4-0000-4000-8000-000000000001', { id: 'f3a1c2d4-0000-4000-8000-000000000001', values: Array(64).fill(0.125), metadata: { text: 'Gift wrapping costs 4 dollars.' } });
    },
    foreignKept: (store) => store.pinecone.get('kb ns').has('f3a1c2d4-0000-4000-8000-000000000001'),
    storeIdOf: (rec) => rec.id,
  },
  qdrant: {
    key: 'qd-ingest-key-0123456789',
    env(store) {
      return { RAG_BACKEND: 'qdrant', QDRANT_URL: `${store.base}/`, QDRANT_API_KEY: this.key, QDRANT_COLLECTION: 'kb docs/v1' };
    },
    checkHeaders(r) {
      assert.equal(r.headers['api-key'], this.key, `${r.method} ${r.path}`);
      assert.ok(r.path.startsWith('/collections/kb%20docs%2Fv1'), r.path);
    },
    isWrite: (r) => r.method === 'PUT' || r.path.includes('/points/delete'),
    records(store) {
      return [...(store.qdrant.get('kb docs/v1')?.points.values() ?? [])]
        .filter((p) => p.payload.chunk_id).map((p) => {
          const { chunk_id: _, ...rest } = p.payload;
          return { id: p.id, vector: p.vector, meta: rest };
        });
    },
    upserted(reqs) {
      const out = [];
      for (const r of reqs.filter((q) => q.path === '/collections/kb%20docs%2Fv1/points?wait=true')) {
        assert.equal(r.method, 'PUT');
        assert.deepEqual(Object.keys(r.json), ['points']);
        for (const p of r.json.points) {
          assert.deepEqual(Object.keys(p).sort(), ['id', 'payload', 'vector']);
          assert.match(p.payload.chunk_id, /^[0-9a-f]{64}$/);
          const h = p.payload.chunk_id;
          assert.equal(p.id, `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`, 'the id is the hash as a UUID');
          const { chunk_id: _, ...rest } = p.payload;
          out.push({ id: p.id, vector: p.vector, meta: rest });
        }
      }
      return out;
    },
    deleted(reqs) {
      return reqs.filter((q) => q.path.includes('/points/delete')).flatMap((r) => {
        assert.equal(r.method, 'POST');
        assert.equal(r.path, '/collections/kb%20docs%2Fv1/points/delete?wait=true');
        assert.deepEqual(Object.keys(r.json), ['points']);
        return r.json.points;
      });
    },
    checkLookups(reqs, sources) {
      const scrolls = reqs.filter((q) => q.path.endsWith('/points/scroll'));
      const seen = new Set();
      for (const q of scrolls) {
        assert.equal(q.method, 'POST');
        const { offset, ...body } = q.json;
        const source = body.filter?.must?.[0]?.match?.value;
        assert.deepEqual(body, { filter: { must: [{ key: 'source', match: { value: source } }] }, limit: 256, with_payload: ['chunk_id'], with_vector: false });
        seen.add(source);
      }
      assert.deepEqual([...seen].sort(), [...sources].sort());
      return scrolls;
    },
    plantForeign(store) {
      store.qdrant.get('kb docs/v1').points.set('7', { id: 7, vector: Array(64).fill(0.125), payload: { text: 'Gift wrapping costs 4 dollars.', source: 'b.md' } });
    },
    foreignKept: (store) => store.qdrant.get('kb docs/v1').points.has('7'),
    storeIdOf: (rec) => rec.id,
  },
};

for (const [name, b] of Object.entries(INGEST)) {
  describe(`switchboard-ingest into ${name}`, () => {
    let store, dir, kb;
    const vectors = new Map(); // embedding input → the fake provider's vector
    before(async () => {
      store = await startFakeStore();
      dir = fs.mkdtempSync(path.join(os.tmpdir(), `sb-ingest-${name}-`));
      kb = path.join(dir, 'kb');
      for (const [f, text] of Object.entries(FILES)) {
        fs.mkdirSync(path.dirname(path.join(kb, f)), { recursive: true });
        fs.writeFileSync(path.join(kb, f), text);
      }
      for (const c of [...CHUNKS, EDITED]) vectors.set(embedInput(c), await fakeEmbedding(embedInput(c)));
    });
    after(async () => {
      await store?.stop();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    const run = async (args, env, fail = null) => {
      await up.reset();
      store.reset();
      store.fail(fail);
      const r = await runIngest(args, { LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, ...b.env(store), ...env });
      for (const k of [b.key, PROVIDER_KEY]) assert.ok(!(r.out + r.err).includes(k), 'no key is printed');
      for (const q of store.requests) {
        b.checkHeaders(q);
        assert.equal(q.headers['content-type'], 'application/json');
      }
      return { ...r, reqs: [...store.requests], emb: await embeddingCalls() };
    };
    const checkRecord = (rec, chunk) => {
      assert.deepEqual(rec.meta, meta(chunk));
      assertVector(rec.vector, vectors.get(embedInput(chunk)));
    };
    const bySourceHeading = (recs) => [...recs].sort((x, y) => `${x.meta.source}/${x.meta.heading}`.localeCompare(`${y.meta.source}/${y.meta.heading}`));

    test('a first run embeds every passage once and writes it with its metadata', async () => {
      const r = await run([kb]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /ingested a\.md: 2 chunks \(2 new, 0 removed\)/);
      assert.match(r.out, /ingested notes\/c\.txt: 1 chunks \(1 new, 0 removed\)/);
      assert.match(r.out, /3 files, 4 chunks: 4 new, 0 removed/);

      assert.equal(r.emb.length, 3, 'one embeddings batch per file');
      for (const e of r.emb) {
        assert.equal(e.path, '/v1/embeddings');
        assert.equal(e.headers.authorization, `Bearer ${PROVIDER_KEY}`);
        assert.equal(JSON.parse(e.body).model, 'text-embedding-3-small');
      }
      assert.deepEqual(r.emb.flatMap((e) => JSON.parse(e.body).input).sort(), CHUNKS.map(embedInput).sort());

      const up1 = bySourceHeading(b.upserted(r.reqs));
      assert.equal(up1.length, 4);
      CHUNKS.forEach((c, i) => checkRecord(up1[i], c));
      assert.equal(new Set(up1.map((x) => x.id)).size, 4);
      assert.deepEqual(b.deleted(r.reqs), []);
      if (name === 'pinecone') {
        assert.deepEqual(r.reqs.map((q) => `${q.method} ${q.path.split('?')[0]}`),
          ['GET /vectors/list', 'POST /vectors/upsert', 'GET /vectors/list', 'POST /vectors/upsert', 'GET /vectors/list', 'POST /vectors/upsert']);
        const lists = b.checkLookups(r.reqs, ['a.md', 'b.md', 'notes/c.txt']);
        // a source's ids share the prefix its listing asks for
        for (const i of [0, 2, 4]) {
          const prefix = new URL(r.reqs[i].path, 'http://x').searchParams.get('prefix');
          for (const v of r.reqs[i + 1].json.vectors) assert.ok(v.id.startsWith(prefix), `${v.id} starts with ${prefix}`);
        }
        assert.equal(up1[0].id.slice(0, 32), up1[1].id.slice(0, 32), 'a.md\'s two ids share a prefix');
        assert.notEqual(up1[0].id.slice(0, 32), up1[2].id.slice(0, 32));
      } else {
        // the collection is missing: it is created at the first upsert, when the dimension is known
        assert.deepEqual(r.reqs.map((q) => `${q.method} ${q.path}`), [
          'GET /collections/kb%20docs%2Fv1',
          'PUT /collections/kb%20docs%2Fv1',
          'PUT /collections/kb%20docs%2Fv1/points?wait=true',
          'POST /collections/kb%20docs%2Fv1/points/scroll',
          'PUT /collections/kb%20docs%2Fv1/points?wait=true',
          'POST /collections/kb%20docs%2Fv1/points/scroll',
          'PUT /collections/kb%20docs%2Fv1/points?wait=true',
        ]);
        assert.deepEqual(r.reqs[1].json, { vectors: { size: 64, distance: 'Cosine' } });
        b.checkLookups(r.reqs, ['b.md', 'notes/c.txt']);
      }
      const stored = bySourceHeading(b.records(store));
      assert.equal(stored.length, 4);
      CHUNKS.forEach((c, i) => checkRecord(stored[i], c));
    });

    test('re-ingesting unchanged files embeds nothing and writes nothing (lookups follow the pagination)', async () => {
      store.pageSize = 1;
      try {
        const r = await run([kb]);
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /3 files, 4 chunks: 0 new, 0 removed/);
        assert.equal(r.emb.length, 0);
        assert.deepEqual(r.reqs.filter(b.isWrite).map((q) => `${q.method} ${q.path}`), []);
        const lookups = b.checkLookups(r.reqs, ['a.md', 'b.md', 'notes/c.txt']);
        assert.equal(lookups.length, 3 + 1, 'a.md\'s two ids take two pages');
        if (name === 'pinecone') assert.ok(lookups.some((q) => q.path.includes('paginationToken=')));
        else assert.ok(lookups.some((q) => q.json.offset !== undefined));
        assert.equal(b.records(store).length, 4);
      } finally {
        store.pageSize = 100;
      }
    });

    test('an edit replaces only its passage; --sync removes a deleted file and leaves foreign records alone', async () => {
      const before = bySourceHeading(b.records(store));
      const oldCleaning = before.find((x) => x.meta.heading === 'Cleaning').id;
      fs.writeFileSync(path.join(kb, 'a.md'), FILES['a.md'].replace('monthly', 'every month'));
      let r = await run([kb]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /ingested a\.md: 2 chunks \(1 new, 1 removed\)/);
      assert.match(r.out, /ingested b\.md: 1 chunks \(0 new, 0 removed\)/);
      assert.equal(r.emb.length, 1);
      assert.deepEqual(JSON.parse(r.emb[0].body).input, [embedInput(EDITED)]);
      const written = b.upserted(r.reqs);
      assert.equal(written.length, 1);
      checkRecord(written[0], EDITED);
      assert.deepEqual(b.deleted(r.reqs), [oldCleaning]);
      let stored = b.records(store);
      assert.equal(stored.length, 4);
      assert.ok(stored.some((x) => x.meta.text === EDITED.text) && !stored.some((x) => x.meta.text === CHUNKS[1].text));

      b.plantForeign(store);
      const bId = stored.find((x) => x.meta.source === 'b.md').id;
      fs.rmSync(path.join(kb, 'b.md'));
      r = await run(['--sync', '--dry-run', kb]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /would remove b\.md: 1 chunks \(source no longer exists\)/);
      assert.equal(r.emb.length, 0);
      assert.deepEqual(r.reqs.filter(b.isWrite).map((q) => `${q.method} ${q.path}`), []);
      if (name === 'pinecone') {
        // everything is listed without a prefix, then one id of each vanished source's prefix is fetched for its name
        const all = r.reqs.filter((q) => q.path.startsWith('/vectors/list') && !q.path.includes('prefix='));
        assert.equal(all.length, 1);
        assert.equal(new URL(all[0].path, 'http://x').searchParams.get('namespace'), 'kb ns');
        const fetches = r.reqs.filter((q) => q.path.startsWith('/vectors/fetch?'));
        assert.equal(fetches.length, 1);
        assert.equal(fetches[0].method, 'GET');
        const p = new URL(fetches[0].path, 'http://x').searchParams;
        assert.deepEqual(p.getAll('ids'), [bId]);
        assert.equal(p.get('namespace'), 'kb ns');
      }

      r = await run(['--sync', kb]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /removed b\.md: 1 chunks \(source no longer exists\)/);
      assert.match(r.out, /2 files, 3 chunks: 0 new, 1 removed \(1 of them from 1 files that no longer exist\)/);
      assert.deepEqual(b.deleted(r.reqs), [bId]);
      assert.equal(r.emb.length, 0);
      stored = b.records(store);
      assert.deepEqual(stored.map((x) => x.meta.source).sort(), ['a.md', 'a.md', 'notes/c.txt']);
      assert.ok(b.foreignKept(store), 'a record this tool did not write is left alone');

      r = await run(['--sync', kb]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /2 files, 3 chunks: 0 new, 0 removed/);
      assert.deepEqual(r.reqs.filter(b.isWrite).map((q) => `${q.method} ${q.path}`), []);
    });

    test('switchboard answers from what was ingested', async () => {
      const sb = await startSwitchboard({
        LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '1', RAG_TIMEOUT_MS: '2000', RAG_TOP_K: '2', ...b.env(store),
      });
      try {
        await up.reset();
        const question = 'How fast does the Aurora kettle boil a litre of water?';
        const res = await post(sb.base, { model: scenario({ text: 'ok' }), stream: true, messages: [{ role: 'user', content: question }] });
        assert.equal(assemble(res.text).content, 'ok');
        const sent = JSON.parse((await chatCalls())[0].body).messages;
        assert.equal(sent[0].role, 'system');
        assert.match(sent[0].content, /\[1\] source: a\.md — Boiling\nThe Aurora kettle boils a litre of water in 90 seconds\./);
        assert.equal(sent.at(-1).content, question);
        assert.equal((await logFor(sb, res)).retrieval, 'hit');
      } finally {
        await sb.stop();
      }
    });

    test('a failing store or provider stops the run with a message, a non-zero exit, and no key printed', async () => {
      fs.writeFileSync(path.join(kb, 'd.md'), '# Saucers\n\nSaucers match every mug.\n');
      try {
        const write = name === 'pinecone' ? (q) => q.path === '/vectors/upsert' : (q) => q.method === 'PUT';
        let r = await run([kb], {}, { status: 500, body: name === 'pinecone' ? '{"code":13,"message":"upsert broke"}' : '{"status":{"error":"upsert broke"}}', match: write });
        assert.equal(r.code, 1);
        assert.match(r.err, /d\.md failed: HTTP 500 from http:\/\/127\.0\.0\.1:\d+\/\S+: upsert broke/);
        assert.match(r.err, /d\.md: stopping; run again to complete this file/);

        r = await run([kb], {}, { status: 401, body: '{"message":"Invalid API Key"}' });
        assert.equal(r.code, 1);
        assert.match(r.err, new RegExp(`HTTP 401 .*Invalid API Key \\(check ${name.toUpperCase()}_API_KEY\\)`));

        r = await run([kb], { OPENAI_EMBEDDING_MODEL: 'fake?status=500' });
        assert.equal(r.code, 1);
        assert.match(r.err, /embedding failed: HTTP 500/);
        assert.equal(r.reqs.filter(b.isWrite).length, 0, 'nothing is written without its vectors');

        r = await run([kb]); // and a clean run completes the file
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /ingested d\.md: 1 chunks \(1 new, 0 removed\)/);
      } finally {
        store.fail(null);
        fs.rmSync(path.join(kb, 'd.md'), { force: true });
      }
    });
  });
}

test('switchboard-ingest refuses incomplete store settings, naming the variable', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-ingest-settings-'));
  try {
    fs.writeFileSync(path.join(dir, 'a.md'), '# A\n\nText.\n');
    for (const [env, variable] of [
      [{ RAG_BACKEND: 'pinecone', PINECONE_API_KEY: 'pc-secret-0123456789' }, 'PINECONE_HOST'],
      [{ RAG_BACKEND: 'pinecone', PINECONE_HOST: 'idx.svc.pinecone.io' }, 'PINECONE_API_KEY'],
      [{ RAG_BACKEND: 'pinecone', PINECONE_API_KEY: 'pc-secret-0123456789', PINECONE_HOST: 'ftp://idx' }, 'PINECONE_HOST'],
      [{ RAG_BACKEND: 'qdrant', QDRANT_COLLECTION: 'kb' }, 'QDRANT_URL'],
      [{ RAG_BACKEND: 'qdrant', QDRANT_URL: 'http://127.0.0.1:9', QDRANT_API_KEY: 'qd-secret-0123456789' }, 'QDRANT_COLLECTION'],
      [{ RAG_BACKEND: 'qdrant', QDRANT_URL: 'http://127.0.0.1:9', QDRANT_COLLECTION: 'kb', QDRANT_API_KEY: 'qd-secret-0123456789' }, 'QDRANT_URL'], // nothing listens
      [{ RAG_BACKEND: 'weaviate' }, 'postgres, chroma, pinecone and qdrant'],
    ]) {
      const r = spawnSync(ingestBin, [dir], {
        env: { PATH: process.env.PATH, SWITCHBOARD_ENV_FILE: '/nonexistent/.env', LLM_BASE_URL: 'http://127.0.0.1:9/v1', ...env },
        encoding: 'utf8', timeout: 15000,
      });
      assert.notEqual(r.status, 0, `${JSON.stringify(env)} fails (${r.stderr})`);
      assert.ok(r.stderr.includes(variable), `${JSON.stringify(env)}: ${r.stderr}`);
      assert.ok(!r.stderr.includes('secret-0123456789'), 'no key is printed');
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('switchboard-ingest will not load a Qdrant collection of another dimension', async () => {
  const store = await startFakeStore();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-ingest-dim-'));
  try {
    store.qdrant.set('kb', { size: 3, distance: 'Cosine', points: new Map() });
    fs.writeFileSync(path.join(dir, 'a.md'), '# A\n\nText.\n');
    const r = await runIngest([dir], {
      LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, RAG_BACKEND: 'qdrant', QDRANT_URL: store.base, QDRANT_COLLECTION: 'kb',
    });
    assert.equal(r.code, 1);
    assert.match(r.err, /64-dimensional vectors, but Qdrant collection kb \(QDRANT_COLLECTION\) holds 3-dimensional ones/);
    assert.match(r.err, /OPENAI_EMBEDDING_MODEL/);
    assert.equal(store.requests.filter((q) => q.method === 'PUT').length, 0);
  } finally {
    await store.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
