// Agora's LLM audio output mode through switchboard: `modalities` and `audio` reach the
// provider, every `delta.audio` object comes back to the caller byte for byte, and
// PASSTHROUGH_PARAMS lets named provider-specific parameters through (the rest is stripped).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startFakeUpstream, startSwitchboard, post, scenario, assemble, fixtures, PROVIDER_KEY } from './lib.mjs';

let up, sb;
before(async () => {
  up = await startFakeUpstream();
  sb = await startSwitchboard({ LLM_BASE_URL: `${up.base}/v1`, OPENAI_API_KEY: PROVIDER_KEY, PASSTHROUGH_PARAMS: 'top_k, repetition_penalty' });
});
after(async () => {
  try {
    await sb?.stop();
  } finally {
    await up?.stop();
  }
});

const file = 'openai_chat_audio_shaped_stream.sse';
/** The raw text of every `"audio":{...}` object in SSE text, in order. */
function audioObjects(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: {')) continue;
    const at = line.indexOf('"audio":{');
    if (at < 0) continue;
    let depth = 0;
    let i = at + 8;
    for (; i < line.length; ++i) {
      if (line[i] === '{') ++depth;
      else if (line[i] === '}' && --depth === 0) break;
    }
    out.push(line.slice(at + 8, i + 1));
  }
  return out;
}

for (const chunk of ['1', 'random']) {
  test(`delta.audio is relayed byte for byte (${chunk === '1' ? '1-byte' : 'random'} chunking)`, async () => {
    const raw = fs.readFileSync(path.join(fixtures, file), 'utf8');
    const res = await post(sb.base, {
      model: scenario({ file, chunk, seed: '3' }), stream: true, stream_options: { include_usage: true },
      modalities: ['text', 'audio'], audio: { voice: 'alloy', format: 'pcm16' },
      messages: [{ role: 'user', content: 'where is my order?' }],
    });
    assert.equal(res.status, 200);
    const out = assemble(res.text);
    assert.ok(out.done);
    assert.deepEqual(out.finish, ['stop']);
    assert.deepEqual(audioObjects(res.text), audioObjects(raw), 'the same audio objects, byte for byte, in order');
    const transcript = out.chunks.map((c) => c.choices?.[0]?.delta?.audio?.transcript ?? '').join('');
    assert.equal(transcript, 'Your order shipped.');
  });
}

test('modalities, audio and the PASSTHROUGH_PARAMS reach the provider; other unknown fields do not', async () => {
  await up.reset();
  const res = await post(sb.base, {
    model: scenario({ text: 'ok' }), stream: true, modalities: ['text', 'audio'], audio: { voice: 'alloy', format: 'pcm16' },
    top_k: 40, repetition_penalty: 1.1, app_id: 'agora-app', mirostat: 2,
    messages: [{ role: 'user', content: 'hi' }],
  });
  assert.equal(res.status, 200);
  const [req] = await up.requests();
  const body = JSON.parse(req.body);
  assert.deepEqual(body.modalities, ['text', 'audio']);
  assert.deepEqual(body.audio, { voice: 'alloy', format: 'pcm16' });
  assert.equal(body.top_k, 40);
  assert.equal(body.repetition_penalty, 1.1);
  assert.equal(body.app_id, undefined, 'an engine extra is still stripped');
  assert.equal(body.mirostat, undefined, 'a parameter not named in PASSTHROUGH_PARAMS is stripped');
});

test('modalities must be a short list of words', async () => {
  const res = await post(sb.base, { model: 'x', modalities: 'audio', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(res.status, 400);
  assert.equal(res.json.error.param, 'modalities');
});

test('PASSTHROUGH_PARAMS naming a field switchboard handles itself stops start-up', async () => {
  const { spawnSync } = await import('node:child_process');
  const { buildDir, freePort, INBOUND_KEY } = await import('./lib.mjs');
  const r = spawnSync(path.join(buildDir, 'src', 'switchboard'), [], {
    env: { PATH: process.env.PATH, SWITCHBOARD_ENV_FILE: '/dev/null', SWITCHBOARD_API_KEYS: INBOUND_KEY, PORT: String(await freePort()),
      PASSTHROUGH_PARAMS: 'top_k,messages' },
    encoding: 'utf8', timeout: 5000,
  });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /PASSTHROUGH_PARAMS: \W+messages\W+ is not a parameter name/);
});
