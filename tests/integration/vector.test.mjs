// Vector-store retrieval: the question is embedded by the (fake) provider,
// then looked up in Pinecone or Qdrant (a fake store). Checks the exact
// requests both make, that the passages reach the model, that a failing or
// hanging store costs at most the budget, and the per-worker embedding cache.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
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
      assert.deepEqual(JSON.parse(emb[0].body), { model: 'text-embedding-3-small', input: question });

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

  for (const [what, model, outcome] of [['with a 500', 'fake?status=500', 'error'], ['by hanging', 'fake?hang=head', 'timeout'],
    ['with no embedding in the answer', 'fake?status=200&body=%7B%22data%22%3A%5B%5D%7D', 'error']]) {
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
