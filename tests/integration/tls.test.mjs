// Native TLS (TLS_CERT_FILE, TLS_KEY_FILE) with a self-signed certificate: curl over HTTP/1.1
// and HTTP/2 (ALPN), the official openai client through an https agent that trusts it, and the
// start-up errors for unusable files. Then the other direction: a provider over HTTPS and
// HTTP/2 behind a private CA (LLM_CA_FILE).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { startSwitchboard, until, buildDir, freePort, post, assemble, INBOUND_KEY, PROVIDER_KEY } from './lib.mjs';

let dir, cert, key, sb;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-tls-'));
  cert = path.join(dir, 'cert.pem');
  key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  sb = await startSwitchboard({ TLS_CERT_FILE: cert, TLS_KEY_FILE: key, SANDBOX_WORD_MS: '0' }, { tls: { ca: fs.readFileSync(cert) } });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const body = JSON.stringify({ stream: true, messages: [{ role: 'user', content: 'hello over tls' }] });

function curl(version) {
  const out = execFileSync('curl', ['-sS', '-N', version, '--cacert', cert, '-w', '\n%{http_version}', `https://127.0.0.1:${sb.port}/v1/chat/completions`,
    '-H', `Authorization: Bearer ${INBOUND_KEY}`, '-H', 'Content-Type: application/json', '-d', body]).toString();
  const at = out.lastIndexOf('\n');
  return { text: out.slice(0, at), version: out.slice(at + 1) };
}

test('curl streams a turn over HTTPS with HTTP/1.1', () => {
  const r = curl('--http1.1');
  assert.equal(r.version, '1.1');
  assert.match(r.text, /data: \[DONE\]\s*$/);
  assert.match(r.text, /"object":"chat\.completion\.chunk"/);
});

test('curl streams a turn over HTTPS with HTTP/2, chosen by ALPN', () => {
  const r = curl('--http2');
  assert.equal(r.version, '2');
  assert.match(r.text, /data: \[DONE\]\s*$/);
});

test('plain HTTP to a TLS port gets no answer in clear text', () => {
  const r = spawnSync('curl', ['-sS', '--max-time', '3', `http://127.0.0.1:${sb.port}/ping`], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.doesNotMatch(r.stdout, /pong/);
});

test('the openai client streams and answers through an https agent that trusts the certificate', async () => {
  const httpAgent = new https.Agent({ ca: fs.readFileSync(cert), keepAlive: true });
  const client = new OpenAI({ apiKey: INBOUND_KEY, baseURL: `https://localhost:${sb.port}/v1`, maxRetries: 0, httpAgent });
  const stream = await client.chat.completions.create({ model: 'switchboard-sandbox', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  let words = '';
  for await (const chunk of stream) words += chunk.choices[0]?.delta?.content ?? '';
  assert.match(words, /sandbox/);
  const whole = await client.chat.completions.create({ model: 'switchboard-sandbox', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(whole.object, 'chat.completion');
  httpAgent.destroy();
});

test('unusable certificate or key files stop start-up with a message naming the setting', async () => {
  const run = async (env) => spawnSync(path.join(buildDir, 'src', 'switchboard'), [], {
    env: { PATH: process.env.PATH, SWITCHBOARD_ENV_FILE: '/dev/null', SWITCHBOARD_API_KEYS: INBOUND_KEY, PORT: String(await freePort()), ...env },
    encoding: 'utf8', timeout: 5000,
  });
  let r = await run({ TLS_CERT_FILE: cert });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /TLS_CERT_FILE and TLS_KEY_FILE go together/);
  r = await run({ TLS_CERT_FILE: path.join(dir, 'missing.pem'), TLS_KEY_FILE: key });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /TLS_CERT_FILE: cannot read a PEM certificate chain/);
  r = await run({ TLS_CERT_FILE: cert, TLS_KEY_FILE: path.join(dir, 'missing-key.pem') });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /TLS_KEY_FILE: cannot read a PEM private key/);
  const other = path.join(dir, 'other.pem');
  execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', other], { stdio: 'ignore' });
  r = await run({ TLS_CERT_FILE: cert, TLS_KEY_FILE: other });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /TLS_KEY_FILE is not the key of the certificate/);
  assert.doesNotMatch(r.stderr, /BEGIN|PRIVATE/, 'no key material in the message');
});

// --- a provider over HTTPS and HTTP/2 ---------------------------------------------------------------

/**
 * An OpenAI-compatible provider on HTTPS with HTTP/2 (and HTTP/1.1 by ALPN), certified by the
 * test's own CA. Each request's answer waits until `hold` requests are in, so that many
 * turns are open on it at once; `seen` counts its TLS connections and the HTTP versions asked.
 */
async function startH2Provider({ hold = 1 } = {}) {
  const seen = { connections: 0, versions: [], waiting: [] };
  const server = http2.createSecureServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), allowHTTP1: true });
  server.on('secureConnection', () => ++seen.connections);
  server.on('request', (req, res) => {
    req.resume();
    req.on('end', () => {
      seen.versions.push(req.httpVersion);
      seen.waiting.push(res);
      if (seen.waiting.length < hold) return;
      for (const r of seen.waiting.splice(0)) {
        r.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const word of ['Hello', ' over', ' h2.']) r.write(`data: {"choices":[{"index":0,"delta":{"content":"${word}"}}]}\n\n`);
        r.end('data: [DONE]\n\n');
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: server.address().port, seen, close: () => new Promise((r) => server.close(r)) };
}

const turnBody = JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] });

test('a provider behind a private CA is reached over HTTP/2 when LLM_CA_FILE names the CA', async () => {
  const provider = await startH2Provider();
  const s = await startSwitchboard({ LLM_BASE_URL: `https://localhost:${provider.port}/v1`, OPENAI_API_KEY: PROVIDER_KEY, LLM_CA_FILE: cert });
  try {
    const r = await post(s.base, turnBody);
    assert.equal(r.status, 200);
    assert.equal(assemble(r.text).content, 'Hello over h2.');
    assert.deepEqual(provider.seen.versions, ['2.0']);
  } finally {
    await s.stop();
    await provider.close();
  }
});

test('turns that start together share one HTTP/2 connection to the provider', async () => {
  const n = 20;
  const provider = await startH2Provider({ hold: n }); // no answer until all n are in: they are open at once
  const s = await startSwitchboard({
    LLM_BASE_URL: `https://localhost:${provider.port}/v1`, OPENAI_API_KEY: PROVIDER_KEY, LLM_CA_FILE: cert, WORKERS: '1',
  });
  try {
    const replies = await Promise.all(Array.from({ length: n }, () => post(s.base, turnBody)));
    for (const r of replies) assert.equal(assemble(r.text).content, 'Hello over h2.');
    assert.equal(provider.seen.versions.length, n);
    assert.ok(provider.seen.versions.every((v) => v === '2.0'));
    assert.equal(provider.seen.connections, 1, 'one TLS connection carried every turn');
  } finally {
    await s.stop();
    await provider.close();
  }
});

test('without LLM_CA_FILE the same provider is refused: its certificate is checked', async () => {
  const provider = await startH2Provider();
  const s = await startSwitchboard({ LLM_BASE_URL: `https://localhost:${provider.port}/v1`, OPENAI_API_KEY: PROVIDER_KEY });
  try {
    const r = await post(s.base, turnBody);
    assert.equal(r.status, 502, r.text);
    assert.deepEqual(provider.seen.versions, [], 'no request got through');
  } finally {
    await s.stop();
    await provider.close();
  }
});
