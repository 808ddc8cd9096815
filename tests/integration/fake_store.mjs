// A fake vector store for the integration tests: one node http server on a
// free 127.0.0.1 port that speaks just enough of Pinecone's and Qdrant's query
// APIs. It records every request (method, path, headers, body) and answers
// with the documented response shapes from `passages`, or with a scripted
// failure: a status with a body, or a hang (the request is read, never answered).
import http from 'node:http';

/**
 * passages: [{ id, score, source, heading, text }], best first. `fail` is null
 * (answer normally) or { status, body } or { hang: true }.
 */
export async function startFakeStore({ passages = [] } = {}) {
  const state = { passages, fail: null };
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
      const f = state.fail;
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
    if (req.method !== 'POST') return send(405, { error: 'method not allowed' });
    if (req.url === '/query') { // Pinecone: POST {host}/query
      const k = rec.json?.topK ?? 10;
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
