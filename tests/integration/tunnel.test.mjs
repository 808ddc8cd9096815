// deploy/tunnel.sh with a stand-in `ngrok` first on the PATH: a small program that serves
// the tunnel list of ngrok's local API (empty at first, as while ngrok connects) and
// records how it was started and stopped. The script must print the `llm` block of an
// Agora join request with the https URL and the first inbound key, and stop ngrok on exit.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root, freePort, until } from './lib.mjs';

const script = path.join(root, 'deploy', 'tunnel.sh');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-tunnel-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

// The stand-in: `ngrok http PORT ...` serves NGROK_API_URL's port; the third answer onwards
// lists an http and an https tunnel to PORT, and one https tunnel to another port.
const fakeNgrok = `#!/usr/bin/env node
const http = require('node:http');
const fs = require('node:fs');
const [cmd, port] = process.argv.slice(2);
const log = (line) => fs.appendFileSync(process.env.FAKE_NGROK_LOG, line + '\\n');
log('args ' + process.argv.slice(2).join(' '));
process.on('SIGTERM', () => { log('stopped'); process.exit(0); });
let asked = 0;
const tunnel = (proto, url, addr) => ({ name: proto, proto, public_url: url, config: { addr, inspect: true } });
http.createServer((req, res) => {
  asked++;
  const tunnels = asked < 3 ? [] : [
    tunnel('https', 'https://elsewhere.ngrok-free.app', 'http://localhost:9'),
    tunnel('http', 'http://abc123.ngrok-free.app', 'http://localhost:' + port),
    tunnel('https', 'https://abc123.ngrok-free.app', 'http://localhost:' + port),
  ];
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ tunnels, uri: '/api/tunnels' }));
}).listen(Number(new URL(process.env.NGROK_API_URL).port), '127.0.0.1');
`;
const bin = path.join(dir, 'bin');
fs.mkdirSync(bin);
fs.writeFileSync(path.join(bin, 'ngrok'), fakeNgrok, { mode: 0o755 });

/** Runs tunnel.sh from a copy of deploy/ in `work` (so its .env is the test's own). */
function workspace(name, envFile) {
  const work = path.join(dir, name);
  fs.mkdirSync(path.join(work, 'deploy'), { recursive: true });
  fs.copyFileSync(script, path.join(work, 'deploy', 'tunnel.sh'));
  fs.chmodSync(path.join(work, 'deploy', 'tunnel.sh'), 0o755);
  if (envFile !== undefined) fs.writeFileSync(path.join(work, '.env'), envFile);
  return path.join(work, 'deploy', 'tunnel.sh');
}

async function runTunnel(scriptPath, env) {
  const apiPort = await freePort();
  const ngrokLog = path.join(dir, `ngrok-${apiPort}.log`);
  const proc = spawn(scriptPath, [], {
    env: {
      PATH: `${bin}:${process.env.PATH}`,
      NGROK_API_URL: `http://127.0.0.1:${apiPort}/api/tunnels`,
      FAKE_NGROK_LOG: ngrokLog,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; });
  let exited = null;
  proc.on('exit', (code) => { exited = code; });
  await until(() => {
    if (exited !== null) throw Object.assign(new Error(`tunnel.sh exited ${exited}: ${err}`), { fatal: true });
    return out.includes('Ctrl-C');
  }, { timeoutMs: 15000, what: 'the llm block' });
  const block = JSON.parse(`{${/("llm": \{[\s\S]*?\n\})/.exec(out)[1]}}`).llm;
  proc.kill('SIGINT'); // as Ctrl-C
  await until(() => exited !== null, { timeoutMs: 5000, what: 'tunnel.sh to exit' });
  const ngrok = fs.readFileSync(ngrokLog, 'utf8');
  return { out, err, block, code: exited, ngrok };
}

test('the llm block carries the https URL of the tunnel to PORT and the first key from the environment', async () => {
  const r = await runTunnel(workspace('env'), {
    PORT: '3456', SWITCHBOARD_API_KEYS: 'sb-first-key-0123456789abcdef,sb-second-key-0123456789abcdef',
  });
  assert.deepEqual(r.block, {
    url: 'https://abc123.ngrok-free.app/v1/chat/completions',
    api_key: 'sb-first-key-0123456789abcdef',
    vendor: 'custom',
    params: { model: 'gpt-4o-mini', max_tokens: 512 },
  });
  assert.match(r.ngrok, /^args http 3456\b/m, 'ngrok forwards the port switchboard serves');
  assert.match(r.ngrok, /^stopped$/m, 'Ctrl-C stops ngrok too');
  assert.equal(r.code, 0);
});

test("the port, key and model come from .env when the environment has none", async () => {
  const r = await runTunnel(workspace('dotenv', 'PORT=4567\nSWITCHBOARD_API_KEYS=sb-dotenv-key-0123456789abcdef\nOPENAI_MODEL=llama-3.1-8b\n'), {});
  assert.equal(r.block.api_key, 'sb-dotenv-key-0123456789abcdef');
  assert.equal(r.block.params.model, 'llama-3.1-8b');
  assert.equal(r.block.url, 'https://abc123.ngrok-free.app/v1/chat/completions');
  assert.match(r.ngrok, /^args http 4567\b/m);
  assert.match(r.out, /localhost:4567/);
});

test('with no ngrok on the PATH it says how to install it, and cloudflared as the alternative', () => {
  const noNgrok = path.join(dir, 'empty-bin');
  fs.mkdirSync(noNgrok, { recursive: true });
  // Only what the script needs up to its message: bash, sed, tail, dirname, cat.
  for (const tool of ['bash', 'sed', 'tail', 'dirname', 'cat']) {
    const found = spawnSync('bash', ['-c', `command -v ${tool}`]).stdout.toString().trim();
    fs.symlinkSync(found, path.join(noNgrok, tool));
  }
  const r = spawnSync(workspace('none'), [], { env: { PATH: noNgrok }, encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /ngrok is not installed/);
  assert.match(r.stderr, /https:\/\/ngrok\.com\/download/);
  assert.match(r.stderr, /cloudflared tunnel --url http:\/\/localhost:3000/);
  assert.equal(r.stdout, '');
});
