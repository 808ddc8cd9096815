// What the benchmark scripts share: percentiles, CPU time of processes and of
// the machine read from /proc, a free port, a voice turn's request body.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

/** The p-th percentile of the finite values in xs, nearest rank (p = 100 is the largest); NaN when there are none. */
export function pct(xs, p) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

const TICK_MS = 1000 / 100; // USER_HZ is 100 on Linux

function statFields(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' '); // fields from the third on: state, ppid, ...
}

/** CPU time (user + system, ms) a process has used; 0 once it is gone. */
export function cpuMs(pid) {
  try {
    const f = statFields(pid);
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

/** CPU time (ms) of this process's children that have exited and been waited for. */
export function reapedChildrenCpuMs() {
  const f = statFields('self');
  return (Number(f[13]) + Number(f[14])) * TICK_MS;
}

/** The pids whose parent is ppid (a Postgres postmaster's backends, nginx's workers). */
export function childPids(ppid) {
  const kids = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (Number(statFields(d)[1]) === ppid) kids.push(Number(d));
    } catch { /* gone */ }
  }
  return kids;
}

/** CPU time of a process and all its children now running (Postgres: the postmaster and its backends). */
export const treeCpuMs = (pid) => [pid, ...childPids(pid)].reduce((a, p) => a + cpuMs(p), 0);

/** The whole machine's CPU time (ms, all cores) from /proc/stat: busy (idle and iowait left out) and in all. */
export function machineCpuMs() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + (b || 0), 0) * TICK_MS;
  return { busy: total - (f[3] + f[4]) * TICK_MS, total };
}

/** A TCP port free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * One streamed Chat Completions turn of `body` (an object) to `base` with
 * bearer `key` over `agent`: ms from the request to the first chunk with
 * words, and whether the stream ended with [DONE].
 */
export function firstTokenTurn(base, key, body, agent) {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let first = NaN;
    let text = '';
    const req = http.request(`${base}/v1/chat/completions`, {
      method: 'POST', agent,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'content-length': Buffer.byteLength(payload) },
    }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (d) => {
        if (Number.isNaN(first) && /"content":"[^"]/.test(d)) first = performance.now() - t0;
        text += d;
      });
      res.on('end', () => resolve({ ms: first, ok: res.statusCode === 200 && text.endsWith('[DONE]\n\n') }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** What a voice engine sends on a turn, as JSON: a system prompt, some history, the new user utterance (~800 bytes). */
export function voiceTurnBody(model, stream = true) {
  return JSON.stringify({
    model,
    stream,
    temperature: 0.7,
    max_tokens: 256,
    messages: [
      {
        role: 'system',
        content:
          'You are Ava, the phone receptionist of Bistro Lumière. Speak in short, friendly sentences that sound natural ' +
          'when read aloud. Never use lists, markdown or emoji. If the caller wants to book a table, collect the party ' +
          'size, the date and the time, then confirm them back in one sentence. Opening hours are noon to eleven, every day.',
      },
      { role: 'user', content: 'Hi, I would like to book a table.' },
      { role: 'assistant', content: 'Of course! For how many people, and when would you like to come?' },
      { role: 'user', content: 'Four people, tonight at seven please.' },
    ],
  });
}
