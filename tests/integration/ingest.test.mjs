// switchboard-ingest against a real database: loading a folder, idempotent
// re-runs, edits, --sync after a deletion, clear failures, and two runs at
// once. After every write the search index that triggers keep of rag_chunks
// (tools/schema/003_rag_postings.sql) must equal one computed afresh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { psql, freshDatabase, buildDir, root } from './lib.mjs';

const skip = !process.env.SB_TEST_DATABASE_URL && 'SB_TEST_DATABASE_URL is not set';
const bin = path.join(buildDir, 'rag', 'switchboard-ingest');

function ingest(args, env = {}) {
  const r = spawnSync(bin, args, {
    env: {
      PATH: process.env.PATH,
      SWITCHBOARD_ENV_FILE: '/nonexistent/.env',
      ASAN_OPTIONS: process.env.ASAN_OPTIONS || '',
      LSAN_OPTIONS: process.env.LSAN_OPTIONS || '',
      ...env,
    },
    encoding: 'utf8',
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** source -> sorted ids */
function snapshot(url) {
  const rows = psql(url, 'select source, id from rag_chunks order by source, id');
  const map = {};
  for (const line of rows.split('\n').filter(Boolean)) {
    const [source, id] = line.split('|');
    (map[source] ||= []).push(id);
  }
  return map;
}

/** Rows by which rag_postings, rag_lexemes and rag_corpus differ from the same computed afresh from rag_chunks. */
const indexMismatches = (url) => psql(url, `
  WITH want AS (SELECT c.num, l, ts_rank_cd(c.tsv, rag_lexeme_query(l), 32) AS impact
    FROM rag_chunks c, unnest(tsvector_to_array(c.tsv)) AS l),
  have AS (SELECT p.chunk, x.lexeme, p.impact FROM rag_postings p JOIN rag_lexemes x ON x.id = p.lexeme),
  want_df AS (SELECT l, count(*)::integer FROM want GROUP BY l)
  SELECT (SELECT count(*) FROM ((TABLE want EXCEPT TABLE have) UNION ALL (TABLE have EXCEPT TABLE want)) d)
    + (SELECT count(*) FROM ((TABLE want_df EXCEPT SELECT lexeme, df FROM rag_lexemes)
       UNION ALL (SELECT lexeme, df FROM rag_lexemes EXCEPT TABLE want_df)) d)
    + (SELECT count(*) FROM rag_corpus WHERE chunks <> (SELECT count(*) FROM rag_chunks))
    + (SELECT abs(count(*) - 1) FROM rag_corpus)`);

const docs = {
  'refunds.md': '# Refunds\n\nHow refunds work.\n\n## Timing\n\nRefunds take 5 to 10 business days to reach your card.\n\n## PayPal\n\nPayPal refunds take 3 to 5 business days.\n',
  'shipping.md': '# Shipping\n\n## Standard\n\nStandard shipping takes 3 to 5 business days.\n\n## Express\n\nExpress shipping arrives the next business day.\n',
  'guides/warranty.md': '# Warranty\n\nTwo years on every kettle.\n\n## Claims\n\nCall us with your order number to make a claim.\n',
};

test('switchboard-ingest', { skip }, async (t) => {
  const url = freshDatabase('sb_ingest');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-ingest-'));
  for (const [name, text] of Object.entries(docs)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  fs.writeFileSync(path.join(dir, 'notes.json'), '{"not": "ingested"}');
  const env = { DATABASE_URL: url };
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));

  let first;
  await t.test('ingests a folder recursively', () => {
    const r = ingest([dir], env);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /ingested refunds\.md: 3 chunks \(3 new, 0 removed\)/);
    assert.match(r.out, /ingested guides\/warranty\.md: 2 chunks \(2 new, 0 removed\)/);
    first = snapshot(url);
    assert.deepEqual(Object.keys(first).sort(), ['guides/warranty.md', 'refunds.md', 'shipping.md']);
    assert.equal(psql(url, "select title || '|' || heading from rag_chunks where source = 'refunds.md' order by position"),
      'Refunds|\nRefunds|Timing\nRefunds|PayPal');
    assert.equal(indexMismatches(url), '0');
  });

  await t.test('re-ingesting unchanged files writes nothing', () => {
    const before = psql(url, 'select count(*), max(xmin::text::bigint) from rag_chunks');
    const r = ingest([dir], env);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /3 files, 7 chunks: 0 new, 0 removed/);
    assert.doesNotMatch(r.out, /[1-9]\d* new/);
    assert.deepEqual(snapshot(url), first);
    assert.equal(psql(url, 'select count(*), max(xmin::text::bigint) from rag_chunks'), before);
  });

  await t.test('--dry-run reports an edit without writing it', () => {
    fs.writeFileSync(path.join(dir, 'shipping.md'), docs['shipping.md'].replace('next business day', 'same day in most cities'));
    const r = ingest(['--dry-run', dir], env);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /would ingest shipping\.md: 2 chunks \(1 new, 1 removed\)/);
    assert.deepEqual(snapshot(url), first);
  });

  await t.test('editing one file changes only its chunks', () => {
    const r = ingest([dir], env);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /ingested shipping\.md: 2 chunks \(1 new, 1 removed\)/);
    assert.match(r.out, /ingested refunds\.md: 3 chunks \(0 new, 0 removed\)/);
    const now = snapshot(url);
    assert.deepEqual(now['refunds.md'], first['refunds.md']);
    assert.deepEqual(now['guides/warranty.md'], first['guides/warranty.md']);
    assert.equal(now['shipping.md'].filter((id) => first['shipping.md'].includes(id)).length, 1);
    assert.match(psql(url, "select content from rag_chunks where source = 'shipping.md' and heading = 'Express'"), /same day/);
    assert.equal(indexMismatches(url), '0');
  });

  await t.test('a new title keeps the chunks and re-indexes them', () => {
    const before = snapshot(url);
    fs.writeFileSync(path.join(dir, 'refunds.md'), docs['refunds.md'].replace('# Refunds', '# Refunds and reimbursements'));
    const r = ingest([dir], env);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /ingested refunds\.md: 3 chunks \(0 new, 0 removed\)/);
    assert.deepEqual(snapshot(url), before);
    assert.equal(psql(url, "select df from rag_lexemes where lexeme = 'reimburs'"), '3');
    assert.equal(indexMismatches(url), '0');
  });

  await t.test('a deleted file stays without --sync and goes with it', () => {
    fs.rmSync(path.join(dir, 'guides', 'warranty.md'));
    let r = ingest([dir], env);
    assert.equal(r.code, 0, r.err);
    assert.ok(snapshot(url)['guides/warranty.md'], 'kept without --sync');
    r = ingest(['--sync', dir], env);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /removed guides\/warranty\.md: 2 chunks/);
    assert.deepEqual(Object.keys(snapshot(url)).sort(), ['refunds.md', 'shipping.md']);
    assert.equal(indexMismatches(url), '0');
    r = ingest(['--sync', dir], env);
    assert.match(r.out, /0 new, 0 removed/);
  });

  await t.test('failures exit non-zero with a clear message', () => {
    const before = snapshot(url);
    let r = ingest([dir]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /DATABASE_URL is not set/);

    r = ingest([path.join(dir, 'missing')], env);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /cannot read .*missing: No such file or directory/);

    if (process.getuid && process.getuid() !== 0) { // root reads anything
      const locked = path.join(dir, 'locked.md');
      fs.writeFileSync(locked, '# Locked\n');
      fs.chmodSync(locked, 0);
      r = ingest([dir], env);
      fs.rmSync(locked);
      assert.notEqual(r.code, 0);
      assert.match(r.err, /cannot read .*locked\.md: Permission denied/);
    }

    const latin1 = path.join(dir, 'latin1.md');
    fs.writeFileSync(latin1, Buffer.from('# Caf\xe9\n\nna\xefve\n', 'latin1'));
    r = ingest([dir], env);
    fs.rmSync(latin1);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /latin1\.md is not UTF-8/);

    r = ingest([dir], { DATABASE_URL: 'postgresql://someone:hunter2secret@127.0.0.1:1/nowhere', PG_CONNECT_TIMEOUT_MS: '2000' });
    assert.notEqual(r.code, 0);
    assert.match(r.err, /cannot connect to the database at someone@127\.0\.0\.1:1\/nowhere/);
    assert.doesNotMatch(r.out + r.err, /hunter2secret/);

    const bare = url.replace(/\/[^/]*$/, '/postgres');
    r = ingest([dir], { DATABASE_URL: bare });
    assert.notEqual(r.code, 0);
    assert.match(r.err, /switchboard migrate/);

    assert.deepEqual(snapshot(url), before, 'failed runs wrote nothing');
  });
});

/** switchboard-ingest in the background; resolves its exit code and output. */
function ingestAsync(args, env) {
  return new Promise((resolve) => {
    const child = spawn(bin, args, {
      env: { PATH: process.env.PATH, SWITCHBOARD_ENV_FILE: '/nonexistent/.env', ASAN_OPTIONS: process.env.ASAN_OPTIONS || '',
        LSAN_OPTIONS: process.env.LSAN_OPTIONS || '', ...env },
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('close', (code) => resolve({ code, out }));
  });
}

// Each document is one transaction of many statements, and every statement
// changes the document frequency of the common words: without the lock the
// triggers take first, two runs would deadlock on each other's rows.
test('two ingests at once into the same table both succeed', { skip }, async (t) => {
  const url = freshDatabase('sb_ingest_race');
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-ingest-race-'));
  t.after(() => fs.rmSync(base, { recursive: true, force: true }));
  const src = path.join(root, 'rag', 'knowledge');
  const files = fs.readdirSync(src).filter((f) => f.endsWith('.md')).sort();
  for (const half of ['a', 'b']) fs.mkdirSync(path.join(base, half));
  files.forEach((f, i) => {
    const text = fs.readFileSync(path.join(src, f), 'utf8');
    for (const copy of [1, 2, 3]) fs.writeFileSync(path.join(base, i % 2 ? 'b' : 'a', `${copy}-${f}`), text.replace(/^# /m, `# Copy ${copy} `));
  });
  const env = { DATABASE_URL: url };
  const [a, b] = await Promise.all([ingestAsync([path.join(base, 'a')], env), ingestAsync([path.join(base, 'b')], env)]);
  assert.equal(a.code, 0, a.out);
  assert.equal(b.code, 0, b.out);
  const chunks = (r) => Number(r.out.match(/(\d+) chunks: \d+ new/)[1]);
  assert.equal(psql(url, 'select count(*) from rag_chunks'), String(chunks(a) + chunks(b)));
  assert.equal(indexMismatches(url), '0');
});
