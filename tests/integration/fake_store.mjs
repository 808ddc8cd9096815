// A fake vector store for the integration tests: one node http server on a
// free 127.0.0.1 port that speaks just enough of Pinecone's and Qdrant's APIs.
// It records every request (method, path, headers, body) and answers with the
// documented response shapes, or with a scripted failure: a status with a
// body, or a hang (the request is read, never answered).
//
// Queries are answered from `passages` until something is written: records
// upserted into a Pinecone namespace, or points into a Qdrant collection (what
// switchboard-ingest writes: list/upsert/delete/fetch, and collections/points),
// are kept, and a query of that namespace or collection is answered from them
// by cosine similarity.
import http from 'node:http';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; ++i) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

const isVector = (v) => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && Number.isFinite(x));

/**
 * passages: [{ id, score, source, heading, text }], best first. `fail` is null
 * (answer normally) or { status, body } or { hang: true }, optionally with
 * `match: (request) => boolean` to fail only the requests it selects.
 */
export async function startFakeStore({ passages = [] } = {}) {
  const state = {
    passages,
    fail: null,
    pageSize: 100, // the most ids per Pinecone listing page and points per Qdrant scroll page
    pinecone: new Map(), // namespace → Map id → { id, values, metadata }
    qdrant: new Map(), // collection → { size, distance, points: Map String(id) → { id, vector, payload } }
  };
  const requests = [];
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const rec = { method: req.method, path: req.url, headers: req.headers, body, at: performance.now() };
      try { rec.json = JSON.parse(body); } catch { rec.json = undefined; }
      requests.push(rec);
      const f = state.fail && (!state.fail.match || state.fail.match(rec)) ? state.fail : null;
      if (f?.hang) return; // the socket stays open until the client gives up or stop()
      if (f) {
        res.writeHead(f.status, { 'content-type': 'application/json' });
        res.end(f.body ?? '');
        return;
      }
      answer(req, rec, res);
    });
  });

  function answer(req, rec, res) {
    const send = (status, obj) => {
      const text = typeof obj === 'string' ? obj : JSON.stringify(obj);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    const url = new URL(req.url, 'http://fake');
    const pineconeAnswer = pinecone(req.method, url, rec.json);
    if (pineconeAnswer) return send(...pineconeAnswer);
    const qdrantAnswer = qdrant(req.method, url, rec.json);
    if (qdrantAnswer) return send(...qdrantAnswer);
    if (req.method !== 'POST') return send(405, { error: 'method not allowed' });
    if (req.url === '/query') { // Pinecone: POST {host}/query
      const k = rec.json?.topK ?? 10;
      const ns = state.pinecone.get(rec.json?.namespace ?? '');
      if (ns?.size && isVector(rec.json?.vector)) {
        return send(200, {
          results: [],
          matches: [...ns.values()].map((r) => ({ id: r.id, score: cosine(rec.json.vector, r.values), values: [], metadata: r.metadata }))
            .sort((a, b) => b.score - a.score).slice(0, k),
          namespace: rec.json?.namespace ?? '',
          usage: { readUnits: 5 },
        });
      }
      return send(200, {
        results: [],
        matches: state.passages.slice(0, k).map((p) => ({
          id: p.id, score: p.score, values: [],
          metadata: { text: p.text, source: p.source, ...(p.heading !== undefined ? { heading: p.heading } : {}) },
        })),
        namespace: rec.json?.namespace ?? '',
        usage: { readUnits: 5 },
      });
    }
    const m = /^\/collections\/([^/]+)\/points\/query$/.exec(req.url);
    if (m) { // Qdrant: POST {url}/collections/{name}/points/query
      const k = rec.json?.limit ?? 10;
      const coll = state.qdrant.get(decodeURIComponent(m[1]));
      if (coll?.points.size && isVector(rec.json?.query)) {
        return send(200, {
          result: {
            points: [...coll.points.values()].map((p) => ({ id: p.id, version: 0, score: cosine(rec.json.query, p.vector), payload: p.payload }))
              .sort((a, b) => b.score - a.score).slice(0, k),
          },
          status: 'ok',
          time: 0.0001,
        });
      }
      return send(200, {
        result: {
          points: state.passages.slice(0, k).map((p, i) => ({
            id: typeof p.id === 'number' ? p.id : i + 1, version: 0, score: p.score,
            payload: { text: p.text, source: p.source, ...(p.heading !== undefined ? { heading: p.heading } : {}) },
          })),
        },
        status: 'ok',
        time: 0.0001,
      });
    }
    return send(404, { status: { error: `Not found: ${req.url}` } });
  }

  /** Pinecone's data plane as switchboard-ingest uses it: [status, body], or null when `url` is not one of these. */
  function pinecone(method, url, json) {
    const bad = (message) => [400, { code: 3, message, details: [] }];
    const space = (ns) => {
      if (!state.pinecone.has(ns)) state.pinecone.set(ns, new Map());
      return state.pinecone.get(ns);
    };
    if (method === 'GET' && url.pathname === '/vectors/list') {
      const ns = url.searchParams.get('namespace') ?? '';
      const prefix = url.searchParams.get('prefix') ?? '';
      const ids = [...(state.pinecone.get(ns)?.keys() ?? [])].filter((id) => id.startsWith(prefix)).sort();
      const token = url.searchParams.get('paginationToken');
      const from = token ? Number(Buffer.from(token, 'base64url').toString()) : 0;
      if (!Number.isInteger(from) || from < 0) return bad('invalid pagination token');
      const limit = Math.min(Number(url.searchParams.get('limit') ?? 100), state.pageSize);
      const page = ids.slice(from, from + limit);
      const more = from + limit < ids.length;
      return [200, {
        vectors: page.map((id) => ({ id })),
        ...(more ? { pagination: { next: Buffer.from(String(from + limit)).toString('base64url') } } : {}),
        namespace: ns,
        usage: { readUnits: 1 },
      }];
    }
    if (method === 'GET' && url.pathname === '/vectors/fetch') {
      const ns = url.searchParams.get('namespace') ?? '';
      const vectors = {};
      for (const id of url.searchParams.getAll('ids')) {
        const r = state.pinecone.get(ns)?.get(id);
        if (r) vectors[id] = r;
      }
      return [200, { vectors, namespace: ns, usage: { readUnits: 1 } }];
    }
    if (method === 'POST' && url.pathname === '/vectors/upsert') {
      const vectors = json?.vectors;
      if (!Array.isArray(vectors) || vectors.length === 0) return bad('vectors: a non-empty list is required');
      if (vectors.length > 1000) return bad('at most 1000 vectors per upsert');
      for (const v of vectors) {
        if (typeof v?.id !== 'string' || v.id === '' || v.id.length > 512) return bad('every vector needs an id of 1 to 512 characters');
        if (!isVector(v.values)) return bad(`vector ${v.id}: values must be a list of numbers`);
        if (v.metadata !== undefined && (typeof v.metadata !== 'object' || Array.isArray(v.metadata))) return bad('metadata must be an object');
      }
      const ns = space(json.namespace ?? '');
      for (const v of vectors) ns.set(v.id, { id: v.id, values: v.values, metadata: v.metadata ?? {} });
      return [200, { upsertedCount: vectors.length }];
    }
    if (method === 'POST' && url.pathname === '/vectors/delete') {
      if (!Array.isArray(json?.ids) || json.ids.some((id) => typeof id !== 'string')) return bad('ids: a list of strings is required');
      if (json.ids.length > 1000) return bad('at most 1000 ids per delete');
      const ns = state.pinecone.get(json.namespace ?? '');
      for (const id of json.ids) ns?.delete(id);
      return [200, {}];
    }
    return null;
  }

  /** Qdrant's collection and point APIs as switchboard-ingest uses them: [status, body], or null when `url` is not one of these. */
  function qdrant(method, url, json) {
    const m = /^\/collections\/([^/]+)(\/points(?:\/(scroll|delete))?)?$/.exec(url.pathname);
    if (!m) return null;
    const name = decodeURIComponent(m[1]);
    const coll = state.qdrant.get(name);
    const ok = (result) => [200, { result, status: 'ok', time: 0.0001 }];
    const bad = (status, error) => [status, { status: { error }, time: 0.0001 }];
    const missing = () => bad(404, `Not found: Collection \`${name}\` doesn't exist!`);
    const validId = (id) => (Number.isInteger(id) && id >= 0) || (typeof id === 'string' && UUID.test(id));
    if (!m[2]) {
      if (method === 'GET') return coll ? ok({ status: 'green', points_count: coll.points.size, config: { params: { vectors: { size: coll.size, distance: coll.distance } } } }) : missing();
      if (method === 'PUT') {
        if (coll) return bad(409, `Wrong input: Collection \`${name}\` already exists!`);
        const v = json?.vectors;
        if (!Number.isInteger(v?.size) || v.size < 1 || !['Cosine', 'Dot', 'Euclid', 'Manhattan'].includes(v.distance)) return bad(400, 'Wrong input: vectors {size, distance} required');
        state.qdrant.set(name, { size: v.size, distance: v.distance, points: new Map() });
        return ok(true);
      }
      return null;
    }
    if (method === 'PUT' && !m[3]) { // upsert
      if (!coll) return missing();
      if (!Array.isArray(json?.points) || json.points.length === 0) return bad(400, 'Wrong input: points: a non-empty list is required');
      for (const p of json.points) {
        if (!validId(p?.id)) return bad(400, `Format error in JSON body: value ${JSON.stringify(p?.id)} is not a valid point ID, valid values are either an unsigned integer or a UUID`);
        if (!isVector(p.vector) || p.vector.length !== coll.size) return bad(400, `Wrong input: Vector dimension error: expected dim: ${coll.size}, got ${p.vector?.length}`);
      }
      for (const p of json.points) {
        const id = typeof p.id === 'string' ? p.id.toLowerCase() : p.id;
        coll.points.set(String(id), { id, vector: p.vector, payload: p.payload ?? {} });
      }
      return ok({ operation_id: 1, status: url.searchParams.get('wait') === 'true' ? 'completed' : 'acknowledged' });
    }
    if (method === 'POST' && m[3] === 'scroll') {
      if (!coll) return missing();
      const must = json?.filter?.must ?? [];
      const limit = Math.min(json?.limit ?? 10, state.pageSize);
      const key = (id) => (typeof id === 'number' ? `0:${String(id).padStart(20, '0')}` : `1:${id}`); // integers first, as Qdrant orders them
      let points = [...coll.points.values()]
        .filter((p) => must.every((c) => p.payload?.[c.key] === c.match?.value))
        .sort((a, b) => (key(a.id) < key(b.id) ? -1 : 1));
      if (json?.offset !== undefined && json.offset !== null) points = points.filter((p) => key(p.id) >= key(json.offset));
      const page = points.slice(0, limit);
      const wp = json?.with_payload ?? true;
      const payload = (p) => (wp === true ? p.payload : Array.isArray(wp) ? Object.fromEntries(wp.filter((k) => k in p.payload).map((k) => [k, p.payload[k]])) : undefined);
      return ok({
        points: page.map((p) => ({ id: p.id, ...(wp ? { payload: payload(p) } : {}), ...(json?.with_vector ? { vector: p.vector } : {}) })),
        next_page_offset: points.length > limit ? points[limit].id : null,
      });
    }
    if (method === 'POST' && m[3] === 'delete') {
      if (!coll) return missing();
      if (!Array.isArray(json?.points) || !json.points.every(validId)) return bad(400, 'Wrong input: points: a list of point ids is required');
      for (const id of json.points) coll.points.delete(String(typeof id === 'string' ? id.toLowerCase() : id));
      return ok({ operation_id: 2, status: 'completed' });
    }
    return null;
  }

  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    requests,
    /** Scripts the answer to the following requests (null: answer normally). */
    fail(f) { state.fail = f; },
    set passages(p) { state.passages = p; },
    /** The most ids per Pinecone listing page and points per Qdrant scroll page (as small as 1, to exercise the pagination). */
    set pageSize(n) { state.pageSize = n; },
    /** What has been written: Pinecone namespaces (name → Map id → record) and Qdrant collections (name → { size, distance, points }). */
    pinecone: state.pinecone,
    qdrant: state.qdrant,
    reset() {
      requests.length = 0;
      state.fail = null;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
