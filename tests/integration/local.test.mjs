// deploy/local.sh as a newcomer runs it, in a copy of the repository's files: the port it
// prints is the one it serves, the curl line it prints works, so does the console link it
// prints (and `local.sh console` makes new ones), .env keeps the key and the local
// DATABASE_URL, `db` leaves Postgres running and `db-stop` stops it, the commands are in
// .local/bin, and the README's key line and JavaScript snippet work as written.
// The build under test is used through SWITCHBOARD_BUILD_DIR, so nothing is compiled here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import WebSocket from 'ws';
import { root, buildDir, freePort, until, psql, assemble } from './lib.mjs';

let dir; // the copy
let stack = null; // a running `deploy/local.sh`, detached into its own process group
const env = {
  PATH: process.env.PATH,
  SWITCHBOARD_BUILD_DIR: buildDir,
  ASAN_OPTIONS: process.env.ASAN_OPTIONS || '',
  UBSAN_OPTIONS: process.env.UBSAN_OPTIONS || '',
  LSAN_OPTIONS: process.env.LSAN_OPTIONS || '',
};

/** Runs deploy/local.sh with `args` in the copy to its end: { code, stdout, stderr }. */
function localSh(args, extra = {}) {
  return new Promise((resolve) => {
    execFile(path.join(dir, 'deploy', 'local.sh'), args, { cwd: dir, env: { ...env, ...extra }, timeout: 300000 },
      (err, stdout, stderr) => resolve({ code: err ? err.code ?? err.signal : 0, stdout, stderr }));
  });
}

const setting = (name) => (fs.readFileSync(path.join(dir, '.env'), 'utf8').match(new RegExp(`^${name}=(.*)$`, 'm')) || [])[1];
const pgPort = () => fs.readFileSync(path.join(dir, '.local', 'pg', 'port'), 'utf8').trim();
function pgReady() {
  const bin = fs.readdirSync('/usr/lib/postgresql').sort((a, b) => Number(a) - Number(b)).at(-1);
  try {
    execFileSync(`/usr/lib/postgresql/${bin}/bin/pg_isready`, ['-q', '-h', '127.0.0.1', '-p', pgPort()]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Opens the session of a console link's fragment as the page does (same origin, the token
 * as a subprotocol), optionally asks `question` and waits for the whole answer; returns
 * the type of the first message, closing the socket.
 */
function consoleSays(port, fragment, question) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/sessions/${fragment.get('session')}/ws`, ['switchboard.v1', fragment.get('token')],
      { origin: `http://127.0.0.1:${port}` });
    let first = null;
    let answer = '';
    ws.on('message', (data) => {
      const m = JSON.parse(String(data));
      first ??= m.type;
      if (m.type === 'ready' && question) ws.send(JSON.stringify({ type: 'message', text: question }));
      if (m.type === 'token') answer += m.text;
      if ((m.type === 'ready' && !question) || m.type === 'done' || m.type === 'error') {
        if (question && !/Order 4417 is shipped/.test(answer)) reject(new Error(`the sandbox answered: ${answer} (${JSON.stringify(m)})`));
        ws.close(1001); // a page that goes away: the conversation stays open
        resolve(first);
      }
    });
    ws.on('error', reject);
  });
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-local-'));
  fs.chmodSync(dir, 0o755); // Postgres runs as its own user when the tests run as root
  for (const f of ['deploy', 'env.example', 'README.md', path.join('rag', 'knowledge'), path.join('tests', 'pg')])
    fs.cpSync(path.join(root, f), path.join(dir, f), { recursive: true });
});

after(async () => {
  if (stack && stack.exitCode === null && stack.signalCode === null) {
    process.kill(-stack.pid, 'SIGKILL');
    await new Promise((r) => stack.on('exit', r));
  }
  if (dir) {
    execFileSync(path.join(dir, 'tests', 'pg', 'cluster.sh'), ['stop', path.join(dir, '.local', 'pg')], { stdio: 'ignore' });
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('deploy/local.sh db leaves a loaded Postgres running, keeps its URL in .env; db-stop stops it', { timeout: 300000 }, async () => {
  const run = await localSh(['db']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(setting('SWITCHBOARD_API_KEYS'), /^sb-[0-9a-f]{48}$/, '.env has a fresh inbound key');
  assert.equal(setting('CONSOLE'), 'true', 'the console is on for local use');
  const url = setting('DATABASE_URL');
  assert.equal(url, `postgresql://postgres@127.0.0.1:${pgPort()}/switchboard`, '.env keeps the local DATABASE_URL');
  assert.ok(pgReady(), 'Postgres still runs after local.sh db has ended');
  assert.ok(Number(psql(url, 'select count(*) from rag_chunks')) > 0, 'the knowledge base is loaded');
  assert.ok(Number(psql(url, 'select count(*) from orders')) > 0, 'the demo store is loaded');

  // the commands are where the README says, and find the database through .env
  assert.match(run.stdout, /export PATH="[^"]*\/\.local\/bin:\$PATH"/);
  const shell = (line) => execFileSync('bash', ['-c', line], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  assert.match(shell('export PATH="$PWD/.local/bin:$PATH"; switchboard --settings'), /DATABASE_URL/);
  assert.match(shell('export PATH="$PWD/.local/bin:$PATH"; switchboard migrate 2>&1'), /the schema is (up to date )?at version \d+/);
  assert.match(shell('export PATH="$PWD/.local/bin:$PATH"; switchboard-ingest --sync rag/knowledge 2>&1'), /0 new/);

  const stop = await localSh(['db-stop']);
  assert.equal(stop.code, 0, stop.stderr);
  await until(() => !pgReady(), { timeoutMs: 15000, everyMs: 50, what: 'Postgres to stop' });
});

test('PORT=... deploy/local.sh serves on that port, and the curl line and console link it prints work', { timeout: 300000 }, async () => {
  const port = await freePort();
  stack = spawn(path.join(dir, 'deploy', 'local.sh'), [], { cwd: dir, env: { ...env, PORT: String(port) }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = [];
  const err = [];
  readline.createInterface({ input: stack.stdout }).on('line', (l) => out.push(l));
  readline.createInterface({ input: stack.stderr }).on('line', (l) => err.push(l));
  const printed = await until(() => {
    if (stack.exitCode !== null) throw Object.assign(new Error(`local.sh exited: ${err.join('\n')}`), { fatal: true });
    const i = out.findIndex((l) => l.startsWith('switchboard is starting on'));
    return i >= 0 && out.length > i + 4 ? out.slice(i) : null;
  }, { timeoutMs: 240000, everyMs: 50, what: 'local.sh to print its curl line' });
  assert.equal(printed[0], `switchboard is starting on http://localhost:${port} — try:`, 'the port it serves, not .env\'s 3000');
  const curl = printed.slice(1, 4).join('\n');
  assert.match(curl, new RegExp(`curl -N http://localhost:${port}/v1/chat/completions`));
  assert.ok(curl.includes(`Bearer ${setting('SWITCHBOARD_API_KEYS')}`), 'with the key .env holds');
  await until(async () => (await fetch(`http://127.0.0.1:${port}/ping`)).ok, { timeoutMs: 30000, everyMs: 50, what: 'switchboard on the printed port' });

  const said = assemble(execFileSync('bash', ['-c', curl], { cwd: dir, env, stdio: ['ignore', 'pipe', 'ignore'] }).toString());
  assert.ok(said.done);
  assert.ok(said.chunks.every((c) => c.model === 'switchboard-sandbox'));
  assert.match(said.content, /Order 4417 is shipped/);

  // the README's key line and JavaScript snippet, as written but for the port
  const readme = fs.readFileSync(path.join(dir, 'README.md'), 'utf8');
  const keyLine = readme.match(/^export SWITCHBOARD_KEY=.*$/m)[0];
  const js = readme.match(/```js\n([\s\S]*?)```/)[1]
    .replace("from 'openai'", `from '${path.join(root, 'tests', 'node_modules', 'openai', 'index.mjs')}'`)
    .replace('localhost:3000', `localhost:${port}`);
  assert.match(js, /apiKey: process\.env\.SWITCHBOARD_KEY/);
  fs.writeFileSync(path.join(dir, 'snippet.mjs'), js);
  const answer = execFileSync('bash', ['-c', `${keyLine}\nnode snippet.mjs`], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  assert.match(answer, /Order 4417 is shipped/, 'the key the README sets is the key its snippet reads, and it is accepted');

  // the console link it prints once switchboard answers: the page, and a token its socket accepts
  const link = await until(() => out.map((l) => /^open the console: (\S+)$/.exec(l)).find(Boolean)?.[1],
    { timeoutMs: 30000, everyMs: 50, what: 'local.sh to print the console link' });
  const url = new URL(link);
  assert.equal(`${url.origin}${url.pathname}`, `http://localhost:${port}/console`);
  const page = await fetch(`http://127.0.0.1:${port}${url.pathname}`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /console\.js/);
  const fragment = new URLSearchParams(url.hash.slice(1));
  assert.match(fragment.get('session'), /^sess_/);
  assert.equal(await consoleSays(port, fragment, 'Where is my order 4417?'), 'ready', 'the token opens its session');
  assert.ok(!out.some((l) => l.includes(fragment.get('token')) && !l.startsWith('open the console: ')), 'the token is in no other line (not logged)');

  // a new link for the running stack, and one that goes on with the same session
  const fresh = await localSh(['console']);
  assert.equal(fresh.code, 0, fresh.stderr);
  const again = new URLSearchParams(new URL(fresh.stdout.trim()).hash.slice(1));
  assert.notEqual(again.get('session'), fragment.get('session'));
  assert.equal(await consoleSays(port, again), 'ready');
  const same = await localSh(['console', fragment.get('session')]);
  assert.equal(same.code, 0, same.stderr);
  const resumed = new URLSearchParams(new URL(same.stdout.trim()).hash.slice(1));
  assert.equal(resumed.get('session'), fragment.get('session'));
  assert.equal((await localSh(['console', 'not a session id'])).code, 2);

  // Ctrl-C ends the stack: switchboard, and the Postgres it started
  process.kill(-stack.pid, 'SIGINT');
  await until(() => stack.exitCode !== null || stack.signalCode !== null, { timeoutMs: 30000, everyMs: 50, what: 'local.sh to end' });
  await until(() => !pgReady(), { timeoutMs: 15000, everyMs: 50, what: 'the Postgres local.sh started to stop with it' });
  assert.ok(!fs.existsSync(path.join(dir, '.local', 'port')), 'no running stack is claimed any more');
  await until(async () => {
    try {
      await fetch(`http://127.0.0.1:${port}/ping`);
      return false;
    } catch {
      return true;
    }
  }, { timeoutMs: 15000, everyMs: 50, what: 'switchboard to stop' });
});
