// What a hostile model, caller or connection can send, and what switchboard
// must do with it: never crash, never hold more than its ceilings, never drop
// work silently, and answer every malformed request with a clean error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakeUpstream, startSwitchboard, post, scenario, assemble, psql, freshDatabase, adminDatabaseUrl, PROVIDER_KEY,
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
