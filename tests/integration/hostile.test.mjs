// What a hostile model, caller or connection can send, and what switchboard
// must do with it: never crash, never hold more than its ceilings, never drop
// work silently, and answer every malformed request with a clean error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import {
  startFakeUpstream, startSwitchboard, post, scenario, assemble, until, psql, freshDatabase, adminDatabaseUrl, PROVIDER_KEY, INBOUND_KEY,
} from './lib.mjs';

const skip = adminDatabaseUrl ? false : 'no test database (run through tests/run)';
let up, sb, db;
before(async () => {
  if (skip) return;
  db = freshDatabase('hostile');
  up = await startFakeUpstream();
  sb = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, WORKERS: '1' });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

const ask = (content) => [{ role: 'user', content }];
const calls = (list) => JSON.stringify(list);

test('argument names in any script become a tool error the model reads; the server stays up', { skip }, async () => {
  const long = 'a' + 'é'.repeat(70);
  const tickets = psql(db, 'select count(*) from support_tickets');
  const sets = [
    { subject: 'Pedido dañado', description: 'x', priority: 'low', [long]: 'x' },
    { asunto: 'Pedido dañado', correo_electrónico: 'maya@example.com', número_de_pedido: '4417' },
    { subject: 'x', 'descripción': 'y', 'categoría_del_problema': 'z', 'prioridad_señalada': 'alta', 'teléfono_móvil': '1' },
  ];
  for (const args of sets) {
    // the script rides in the user message: 70 escaped letters would not fit in a model name
    const model = scenario({ calls: '@user' });
    const res = await post(sb.base, { model, stream: true, messages: ask(calls([{ name: 'create_support_ticket', arguments: args }])) });
    assert.equal(res.status, 200);
    const out = assemble(res.text);
    assert.ok(out.done, 'the stream ends with [DONE]');
    assert.match(out.content, /RESULTS \{"error":"invalid arguments: unknown argument/, 'the model reads which argument was wrong');
  }
  assert.equal(sb.exited, null, 'switchboard is still running');
  assert.equal((await fetch(`${sb.base}/ping`)).status, 200);
  assert.equal(psql(db, 'select count(*) from support_tickets'), tickets, 'no ticket was written by a refused call');
});

function rssKiB(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

test('streamed answers far larger than STREAM_BUFFER_BYTES are relayed, not kept', { skip, timeout: 120000 }, async () => {
  // tools are offered (DATABASE_URL), so a round's words are kept for a tool call that may follow, up to MAX_ANSWER_BYTES
  const local = await startSwitchboard({
    LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, WORKERS: '1', STREAM_BUFFER_BYTES: '65536',
    MAX_ANSWER_BYTES: '262144',
  });
  try {
    const size = 6 * 1024 * 1024;
    const warm = await post(local.base, { model: scenario({ gen_bytes: '100000' }), stream: true, messages: ask('x') });
    assert.equal(assemble(warm.text).content.length, 100000);
    const baseline = rssKiB(local.proc.pid);
    let peak = baseline;
    const sampler = setInterval(() => { peak = Math.max(peak, rssKiB(local.proc.pid)); }, 20);
    const answers = await Promise.all([1, 2, 3, 4].map((seed) => post(local.base, {
      model: scenario({ gen_bytes: String(size), seed: String(seed) }), stream: true, messages: ask('tell me everything'),
    })));
    clearInterval(sampler);
    for (const res of answers) {
      const out = assemble(res.text);
      assert.ok(out.done && out.errors.length === 0, 'each answer ends cleanly');
      assert.equal(out.content.length, size, 'and arrives whole');
    }
    // 4 answers of 6 MiB: kept once or twice each they are 24 to 48 MiB; relayed, what is held is the stream buffers
    // and at most MAX_ANSWER_BYTES a turn. AddressSanitizer keeps freed memory in quarantine, so RSS says nothing there.
    const growth = peak - baseline;
    console.log(`RSS growth ${growth} KiB`);
    if (!process.env.SB_SANITIZED) assert.ok(growth < 12 * 1024, `RSS grew by ${growth} KiB`);
  } finally {
    await local.stop();
  }
});

test('a JSON answer past MAX_ANSWER_BYTES ends with a clean error; a stream past it is unaffected', { skip }, async () => {
  const local = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '1', MAX_ANSWER_BYTES: '8192' });
  try {
    const res = await post(local.base, { model: scenario({ gen_bytes: '20000' }), messages: ask('x') });
    assert.equal(res.status, 502);
    assert.equal(res.json.error.code, 'answer_too_large');
    assert.match(res.json.error.message, /MAX_ANSWER_BYTES/);
    // a whole answer far past it is not even held: the provider's bytes stop at six times MAX_ANSWER_BYTES (and 64 KiB)
    const huge = await post(local.base, { model: scenario({ gen_bytes: '400000' }), messages: ask('x') });
    assert.equal(huge.status, 502);
    assert.equal(huge.json.error.code, 'answer_too_large');
    const small = await post(local.base, { model: scenario({ gen_bytes: '8000' }), messages: ask('x') });
    assert.equal(small.status, 200);
    assert.equal(small.json.choices[0].message.content.length, 8000);
    const streamed = assemble((await post(local.base, { model: scenario({ gen_bytes: '20000' }), stream: true, messages: ask('x') })).text);
    assert.ok(streamed.done && streamed.errors.length === 0);
    assert.equal(streamed.content.length, 20000, 'no tools are offered, so nothing of a stream is kept');
    await until(() => local.accessLog.filter((l) => l.route).length >= 4, { what: 'four access-log lines' });
    assert.equal(local.accessLog.find((l) => l.status === 502)?.end, 'upstream_error');
  } finally {
    await local.stop();
  }
});

const clientTool = { type: 'function', function: { name: 'lookup_weather', parameters: { type: 'object' } } };
const many = (n, name, args) => Array.from({ length: n }, (_, i) => ({ name, arguments: args(i) }));

for (const n of [20, 100]) {
  test(`${n} parallel calls of the client's tool are all relayed, streamed and not`, { skip }, async () => {
    const script = calls(many(n, 'lookup_weather', (i) => ({ city: `city ${i}` })));
    const body = { model: scenario({ calls: '@user' }), messages: ask(script), tools: [clientTool] };
    const out = assemble((await post(sb.base, { ...body, stream: true })).text);
    assert.deepEqual(out.finish, ['tool_calls']);
    const fragments = out.chunks.flatMap((c) => c.choices?.[0]?.delta?.tool_calls ?? []);
    const byIndex = new Map();
    for (const f of fragments) byIndex.set(f.index, (byIndex.get(f.index) ?? '') + (f.function?.arguments ?? ''));
    assert.equal(byIndex.size, n, 'every call reaches the client');
    assert.deepEqual(JSON.parse(byIndex.get(n - 1)), { city: `city ${n - 1}` }, 'the last one whole');

    const json = (await post(sb.base, body)).json;
    assert.equal(json.choices[0].finish_reason, 'tool_calls');
    assert.equal(json.choices[0].message.tool_calls.length, n);
    assert.deepEqual(JSON.parse(json.choices[0].message.tool_calls[n - 1].function.arguments), { city: `city ${n - 1}` });
  });
}

test('past 128 calls in one round the turn ends with an explicit error, never a silent cut', { skip }, async () => {
  const script = calls(many(129, 'lookup_weather', (i) => ({ i })));
  const body = { model: scenario({ calls: '@user' }), messages: ask(script), tools: [clientTool] };
  const out = assemble((await post(sb.base, { ...body, stream: true })).text);
  assert.ok(out.done);
  assert.equal(out.errors.length, 1);
  assert.equal(out.errors[0].error.code, 'too_many_tool_calls');
  assert.match(out.errors[0].error.message, /more than 128 tool calls/);
  const json = await post(sb.base, body);
  assert.equal(json.status, 502);
  assert.equal(json.json.error.code, 'too_many_tool_calls');
});

test('20 calls of switchboard\'s own tool: 16 run, and the model is told which 4 were not', { skip }, async () => {
  await up.reset();
  const script = calls(many(20, 'get_order_status', () => ({ order_number: '4417' })));
  const out = assemble((await post(sb.base, { model: scenario({ calls: '@user' }), stream: true, messages: ask(script) })).text);
  assert.ok(out.done && out.errors.length === 0);
  const [, second] = await up.requests();
  const results = JSON.parse(second.body).messages.filter((m) => m.role === 'tool');
  assert.equal(results.length, 20, 'every call has its result');
  assert.equal(results.filter((m) => /"status" ?: ?"shipped"/.test(m.content)).length, 16);
  const notRun = results.filter((m) => /not run: at most 16 calls/.test(m.content));
  assert.equal(notRun.length, 4);
  assert.deepEqual(notRun.map((m) => m.tool_call_id), results.slice(16).map((m) => m.tool_call_id), 'the last four');
});

test('streams still open at the drain deadline are ended for their callers, each with its access-log line', { skip, timeout: 30000 }, async () => {
  const local = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '2', DRAIN_TIMEOUT_MS: '1000' });
  await up.reset();
  const words = Array.from({ length: 60 }, (_, i) => `w${i}`).join(' '); // 6 s at 100 ms a word
  const streams = Array.from({ length: 40 }, () => post(local.base, {
    model: scenario({ text: words, pace_ms: '100' }), stream: true, messages: ask('x'),
  }));
  const waiting = post(local.base, { model: scenario({ text: 'late', delay_ms: '6000' }), stream: true, messages: ask('x') });
  const json = post(local.base, { model: scenario({ text: 'late', delay_ms: '6000' }), messages: ask('x') });
  await until(async () => (await up.requests()).filter((r) => r.t_first_byte).length >= 40, { what: 'the streams to start' });
  const killedAt = Date.now();
  local.proc.kill('SIGTERM');
  const results = await Promise.all(streams);
  for (const res of results) {
    const out = assemble(res.text);
    assert.ok(out.done, 'each stream ends with [DONE]');
    assert.equal(out.errors.length, 1);
    assert.equal(out.errors[0].error.code, 'shutting_down');
    assert.equal(out.errors[0].error.message, 'server shutting down');
    assert.ok(out.content.length > 0 && out.content.length < words.length, 'after part of the answer');
  }
  for (const res of [await waiting, await json]) {
    assert.equal(res.status, 503, 'a turn with nothing sent yet gets a 503');
    assert.equal(res.json.error.code, 'shutting_down');
  }
  const elapsed = Date.now() - killedAt;
  assert.ok(elapsed > 900 && elapsed < 4000, `they were ended at the deadline (${elapsed} ms after SIGTERM)`);
  const exit = await local.stop();
  assert.equal(exit.code, 0);
  const turns = local.accessLog.filter((l) => l.route === '/v1/chat/completions');
  assert.equal(turns.length, 42, 'every turn has its access-log line');
  assert.ok(turns.every((l) => l.end === 'shutdown'), JSON.stringify(turns.map((l) => l.end)));
});

/** Sends raw bytes on a fresh connection and collects everything until the server closes it (or `ms` pass). */
function raw(port, bytes, { ms = 3000, halfClose = false } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const got = [];
    let closed = false;
    const timer = setTimeout(() => { sock.destroy(); resolve({ text: Buffer.concat(got).toString('latin1'), closed }); }, ms);
    sock.on('data', (d) => got.push(d));
    sock.on('end', () => { closed = true; });
    sock.on('close', () => { clearTimeout(timer); resolve({ text: Buffer.concat(got).toString('latin1'), closed: true }); });
    sock.on('error', (e) => (e.code === 'ECONNRESET' ? null : reject(e)));
    sock.write(bytes);
    if (halfClose) sock.end();
  });
}

const head = (extra) => `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${INBOUND_KEY}\r\n`
  + `Content-Type: application/json\r\n${extra}\r\n`;

test('differing duplicate Content-Length headers are refused and the connection closed (no smuggled request)', { skip }, async () => {
  const body = JSON.stringify({ model: scenario({ text: 'hi' }), messages: ask('x') });
  const smuggled = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
  const res = await raw(sb.port, head(`Content-Length: ${body.length}\r\nContent-Length: ${body.length + smuggled.length}\r\n`) + body + smuggled);
  assert.match(res.text, /^HTTP\/1\.1 400 /);
  assert.match(res.text, /conflicting Content-Length/);
  assert.match(res.text, /\r\nconnection: close\r\n/i);
  assert.equal((res.text.match(/HTTP\/1\.1 /g) ?? []).length, 1, 'the smuggled request was not answered');
  assert.ok(res.closed, 'the connection was closed');

  const both = await raw(sb.port, head(`Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n`)
    + `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n` + smuggled);
  assert.match(both.text, /^HTTP\/1\.1 400 /, 'Content-Length beside Transfer-Encoding is refused too');
  assert.equal((both.text.match(/HTTP\/1\.1 /g) ?? []).length, 1);

  const same = await raw(sb.port, head(`Content-Length: ${body.length}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n`) + body);
  assert.match(same.text, /^HTTP\/1\.1 200 /, 'identical duplicates are tolerated');
});

test('an oversize body gets the documented 413 over HTTP/2 too, once, not a stream reset', { skip }, async () => {
  const local = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '1', MAX_BODY_BYTES: '65536' });
  try {
    const client = http2.connect(local.base);
    const send = (bytes) => new Promise((resolve, reject) => {
      const req = client.request({ ':method': 'POST', ':path': '/v1/chat/completions', authorization: `Bearer ${INBOUND_KEY}`,
        'content-type': 'application/json' });
      let status = 0;
      const got = [];
      req.on('response', (h) => { status = h[':status']; });
      req.on('data', (d) => got.push(d));
      req.on('end', () => resolve({ status, text: Buffer.concat(got).toString() }));
      req.on('error', reject);
      req.end(JSON.stringify({ messages: ask('x'.repeat(bytes)) }));
    });
    for (const size of [70000, 150000]) {
      const res = await send(size);
      assert.equal(res.status, 413, `${size} bytes`);
      assert.equal(JSON.parse(res.text).error.code, 'request_too_large');
    }
    const ok = await send(1000);
    assert.equal(ok.status, 200, 'the connection still serves');
    client.close();
    const refused = local.accessLog.filter((l) => l.status === 413);
    assert.equal(refused.length, 2, 'each body was answered once: no retried uploads');
  } finally {
    await local.stop();
  }
});

test('an HTTP/1.1 client still sending a refused body reads the 413, not a reset', { skip }, async () => {
  const local = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '1', MAX_BODY_BYTES: '65536' });
  try {
    const declared = 8 * 1024 * 1024; // past h2o's hard limit: refused as soon as the head is read
    const text = await new Promise((resolve, reject) => {
      const sock = net.connect(local.port, '127.0.0.1');
      sock.pause(); // a client that reads only after sending: what it has not read is lost if the server resets
      const got = [];
      sock.on('data', (d) => got.push(d));
      sock.on('end', () => resolve(Buffer.concat(got).toString('latin1')));
      sock.on('error', (e) => reject(new Error(`${e.code} after ${Buffer.concat(got).length} bytes`)));
      sock.write(head(`Content-Length: ${declared}\r\n`) + 'x'.repeat(256 * 1024));
      setTimeout(() => {
        sock.write('y'.repeat(256 * 1024)); // still sending after the server answered
        setTimeout(() => sock.resume(), 300);
      }, 300);
    });
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.equal(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)).error.code, 'request_too_large');
  } finally {
    await local.stop();
  }
});

test('40 concurrent identical turns write one ticket, and every one of them reads it back', { skip, timeout: 30000 }, async () => {
  const local = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, DATABASE_URL: db, WORKERS: '2', PG_POOL_SIZE: '8' });
  try {
    for (let round = 0; round < 10; ++round) {
      const subject = `race ${round} ${Date.now()}`;
      const model = scenario({ calls: calls([{ name: 'create_support_ticket', arguments: { subject, email: 'maya.patel@example.com' } }]) });
      const body = { model, stream: true, turn_id: 7000 + round, channel: 'race', app_id: 'a', user_uid: 'u', messages: ask('my kettle') };
      const answers = await Promise.all(Array.from({ length: 40 }, () => post(local.base, body)));
      const results = answers.map((r) => JSON.parse(/RESULTS (\{.*\})/.exec(assemble(r.text).content)[1]));
      const ids = new Set(results.map((r) => r.ticket_id));
      assert.equal(ids.size, 1, `one ticket: ${JSON.stringify(results.filter((r) => !r.ticket_id))}`);
      assert.equal(results.filter((r) => r.created === true).length, 1, 'one turn wrote it');
      assert.equal(results.filter((r) => r.created === false).length, 39, 'the 39 others read the winner\'s row');
      assert.equal(psql(db, `select count(*) from support_tickets where subject = '${subject}'`), '1');
    }
  } finally {
    await local.stop();
  }
});

test('a client that half-closes after sending still gets its whole answer (a full close is a hang-up: cancel.test.mjs)', { skip, timeout: 20000 }, async () => {
  const words = 'one two three four five six';
  const turn = (extra) => {
    const body = JSON.stringify({ model: scenario({ text: words, pace_ms: '60', delay_ms: '150' }), messages: ask('x'), ...extra });
    return head(`Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n`) + body;
  };
  const streamed = await raw(sb.port, turn({ stream: true }), { halfClose: true, ms: 5000 });
  assert.match(streamed.text, /^HTTP\/1\.1 (100 Continue\r\n\r\nHTTP\/1\.1 )*200 /, 'interim answers only, then the stream');
  const sse = streamed.text.slice(streamed.text.indexOf('\r\n\r\n', streamed.text.indexOf(' 200 ')) + 4)
    .replace(/\r\n[0-9a-f]+\r\n/g, '').replace(/^[0-9a-f]+\r\n/, '');
  assert.equal(assemble(sse.slice(0, sse.lastIndexOf('[DONE]') + 8)).content, words, 'the whole answer');
  const json = await raw(sb.port, turn({ stream: false }), { halfClose: true, ms: 5000 });
  assert.match(json.text, /HTTP\/1\.1 200 OK/);
  assert.equal(JSON.parse(json.text.slice(json.text.lastIndexOf('\r\n\r\n') + 4)).choices[0].message.content, words);
  await until(() => sb.accessLog.filter((l) => l.end === 'done').length >= 2, { what: 'the access log' });
  assert.ok(!sb.accessLog.some((l) => l.end === 'client_gone'), 'neither turn was taken for a hang-up');
});

test('a slow upload within REQUEST_READ_TIMEOUT_MS is served; one past it is dropped', { skip, timeout: 20000 }, async () => {
  const local = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '1', REQUEST_READ_TIMEOUT_MS: '2000' });
  try {
    const body = JSON.stringify({ model: scenario({ text: 'got it' }), messages: ask('y'.repeat(30000)) });
    const upload = (pieces, everyMs) => new Promise((resolve) => {
      const sock = net.connect(local.port, '127.0.0.1');
      const got = [];
      sock.on('data', (d) => got.push(d));
      sock.on('close', () => resolve(Buffer.concat(got).toString()));
      sock.on('error', () => {});
      sock.write(head(`Content-Length: ${body.length}\r\nConnection: close\r\n`));
      const size = Math.ceil(body.length / pieces);
      let i = 0;
      const timer = setInterval(() => {
        if (sock.destroyed) return clearInterval(timer);
        sock.write(body.slice(i * size, (i + 1) * size));
        if (++i === pieces) clearInterval(timer);
      }, everyMs);
    });
    const slow = await upload(10, 120); // 1.2 s: longer than a fast client, shorter than the limit
    assert.match(slow, /^HTTP\/1\.1 200 /);
    assert.equal(JSON.parse(slow.slice(slow.indexOf('\r\n\r\n') + 4)).choices[0].message.content, 'got it');
    const t0 = Date.now();
    const tooSlow = await upload(10, 400); // 4 s
    assert.equal(tooSlow, '', 'dropped without an answer');
    const took = Date.now() - t0;
    assert.ok(took > 1800 && took < 3500, `at the limit (${took} ms)`);
  } finally {
    await local.stop();
  }
});

test('each provider failure names what happened', { skip, timeout: 20000 }, async () => {
  const local = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, WORKERS: '1', LLM_TOTAL_TIMEOUT_MS: '600' });
  try {
    const slow = assemble((await post(local.base, { model: scenario({ text: 'a b c d e f g h i j', pace_ms: '150' }), stream: true, messages: ask('x') })).text);
    assert.equal(slow.errors.length, 1);
    assert.match(slow.errors[0].error.message, /did not finish within LLM_TOTAL_TIMEOUT_MS \(600 ms\)/, 'not "stalled mid-stream"');
    const waiting = await post(local.base, { model: scenario({ text: 'x', delay_ms: '2000' }), stream: true, messages: ask('x') });
    assert.equal(waiting.status, 504);
    assert.match(waiting.json.error.message, /did not finish within LLM_TOTAL_TIMEOUT_MS/);
    const big = await post(local.base, { model: scenario({ text: 'x', header_bytes: '2000000' }), stream: true, messages: ask('x') });
    assert.equal(big.status, 502);
    assert.equal(big.json.error.code, 'upstream_bad_response');
    assert.match(big.json.error.message, /response header larger than/, 'not "could not reach the model provider"');
  } finally {
    await local.stop();
  }
});
