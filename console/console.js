// The switchboard console: a chat over the session WebSocket API (README, "Live
// sessions over WebSocket"). The page holds no API key: its session token comes in
// the URL fragment (#token=...&session=...&model=...), which browsers never send to
// a server, and is kept in sessionStorage so a reload resumes the same session.
// Everything is written with textContent: nothing the model or a tool says is HTML.

const STORE = 'switchboard.console';
const PING_MS = 25000; // the server closes a socket with no message for WS_IDLE_S (300 s)
const PONG_WAIT_MS = 10000; // a ping unanswered this long: the connection is dead
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
const SNIPPET = 220; // characters of a retrieved passage shown
const MESSAGE_MAX = 16384; // bytes of one message: switchboard's WS_MAX_MESSAGE_BYTES default

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'), statusText: $('status-text'), retry: $('retry'),
  agent: $('agent'), agentName: $('agent-name'), model: $('model'), modelName: $('model-name'),
  notice: $('notice'), noticeTitle: $('notice-title'), noticeText: $('notice-text'),
  noticeHow: $('notice-how'), noticeCommand: $('notice-command'),
  main: $('main'), log: $('log'), form: $('composer'), input: $('message'), send: $('send'), stop: $('stop'),
};

// --- the session: from the fragment, else from this tab's storage -------------------------------

/** The session id a token names, for a link that gives only the token: "sbs1." base64url(1 | expiry (8) | owner (16) | len | id | ...). */
function sessionOfToken(token) {
  try {
    const b64 = token.slice(5).replace(/-/g, '+').replace(/_/g, '/');
    const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    return token.startsWith('sbs1.') && raw.charCodeAt(0) === 1 ? raw.slice(26, 26 + raw.charCodeAt(25)) : '';
  } catch {
    return '';
  }
}

function loadSession() {
  const hash = new URLSearchParams(location.hash.slice(1));
  let s = null;
  if (hash.get('token')) {
    const token = hash.get('token');
    s = { token, session: hash.get('session') || sessionOfToken(token), model: hash.get('model') || '' };
    sessionStorage.setItem(STORE, JSON.stringify(s));
    // the token leaves the address bar: it is not bookmarked, shared or shown on a shared screen
    history.replaceState(null, '', location.pathname + location.search);
  } else {
    try {
      s = JSON.parse(sessionStorage.getItem(STORE) || 'null');
    } catch {
      s = null;
    }
  }
  return s && s.token && /^[A-Za-z0-9_-]{1,64}$/.test(s.session) ? s : null;
}

const session = loadSession();

// --- what the page shows ------------------------------------------------------------------------

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Keeps the newest entry in view, unless the reader scrolled up to read something older. */
function follow(fn) {
  const m = ui.main;
  const atEnd = m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  const out = fn();
  if (atEnd) m.scrollTop = m.scrollHeight;
  return out;
}

function setStatus(state, text) {
  ui.status.dataset.state = state; // connected | connecting | disconnected
  ui.statusText.textContent = text;
  ui.retry.hidden = state !== 'disconnected' || !reconnectTimer;
}

function showNotice(title, text, how, command) {
  ui.noticeTitle.textContent = title;
  ui.noticeText.textContent = text;
  ui.noticeHow.textContent = how;
  ui.noticeCommand.textContent = command || '';
  ui.noticeCommand.hidden = !command;
  ui.notice.hidden = false;
  ui.input.disabled = true;
  updateButtons();
}

function showAgent(name) {
  if (!name) return;
  ui.agentName.textContent = name;
  ui.agent.hidden = false;
}

/** The JSON text a tool sent or received, indented when it parses. */
function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function snippet(text) {
  const t = (text || '').replace(/\s+/g, ' ').trim();
  if (t.length <= SNIPPET) return t;
  const cut = t.lastIndexOf(' ', SNIPPET);
  return t.slice(0, cut > SNIPPET / 2 ? cut : SNIPPET) + '…';
}

/*
 * The conversation as text bubbles, oldest first: what a `history` message is
 * compared with. `shown[i]` is { role, content, node }.
 */
let shown = [];

function addBubble(role, content, agent) {
  const li = el('li', `msg ${role}`);
  li.append(el('span', 'who', role === 'user' ? 'You' : agent || 'Assistant'));
  const text = el('p', 'text', content);
  li.append(text);
  follow(() => ui.log.append(li));
  const entry = { role, content, node: li, text };
  shown.push(entry);
  return entry;
}

function addNote(className, text, parent = ui.log) {
  const li = el(parent === ui.log ? 'li' : 'div', `note ${className}`, text);
  follow(() => parent.append(li));
  return li;
}

// --- turns: what one message of ours brings back ------------------------------------------------

let nextId = 1;
let turns = new Map(); // the socket's turn ids ("t1", ...) restart with every connection
let live = null; // the turn still streaming, or null
let lastAgent = '';
/** What was sent last: the next turn to start answers it (a new message stops the one before), and a failed one offers it again. */
let lastSent = '';

/** The turn `id` names, made when its first message arrives. */
function turnOf(id) {
  let t = turns.get(id);
  if (!t) {
    const box = el('li', 'turn');
    box.setAttribute('aria-busy', 'true');
    follow(() => ui.log.append(box));
    t = { id, box, segment: null, tools: new Map(), text: lastSent };
    turns.set(id, t);
    live = t;
    updateButtons();
  }
  return t;
}

function onAgent(m) {
  const t = turnOf(m.turn);
  if (m.previous && m.previous !== m.agent) // at the top of the turn: it is why the rest reads as it does
    t.box.prepend(el('div', 'note handover', `Handed over from ${m.previous} to ${m.agent}`));
  lastAgent = m.agent;
  showAgent(m.agent);
}

function onToken(m) {
  const t = turnOf(m.turn);
  if (!t.segment) { // words after a card start a new bubble below it
    const seg = el('div', 'msg assistant');
    seg.append(el('span', 'who', lastAgent || 'Assistant'));
    const text = el('p', 'text');
    seg.append(text);
    follow(() => t.box.append(seg));
    t.segment = { role: 'assistant', content: '', node: seg, text };
    shown.push(t.segment);
  }
  const text = t.segment.content ? m.text : m.text.replace(/^\s+/, ''); // the space after a filler starts no bubble
  t.segment.content += text;
  t.said = true;
  follow(() => t.segment.text.append(text));
}

function onTool(m) {
  const t = turnOf(m.turn);
  t.segment = null;
  let card = t.tools.get(m.id);
  if (!card) {
    const box = el('div', 'card tool');
    box.dataset.state = 'running';
    const head = el('p', 'card-head');
    head.append(el('span', 'kind', 'Tool'), el('code', 'name', m.name));
    const badge = el('span', 'badge', 'running…');
    head.append(badge);
    box.append(head, el('p', 'label', 'Arguments'), el('pre', 'args', pretty(m.arguments || '{}')));
    card = { box, badge };
    t.tools.set(m.id, card);
    follow(() => t.box.append(box));
  }
  if (m.type === 'tool_result') {
    const failed = m.failed === true;
    card.box.dataset.state = failed ? 'failed' : 'done';
    card.badge.textContent = failed ? 'failed' : 'done';
    const details = el('details', 'result');
    const text = pretty(m.result || '');
    details.open = failed || text.length < 2000;
    const pre = el('pre', '', text);
    pre.tabIndex = 0; // it may scroll: a keyboard can then scroll it too
    details.append(el('summary', '', failed ? 'Result (failed)' : 'Result'), pre);
    follow(() => card.box.append(details));
  }
}

function onRetrieval(m) {
  const t = turnOf(m.turn);
  t.segment = null;
  const passages = m.passages || [];
  if (m.outcome !== 'hit' || passages.length === 0) {
    const why = { miss: 'nothing relevant found', timeout: 'no answer in time', error: 'could not be searched' };
    addNote('retrieval', `Knowledge base: ${why[m.outcome] || m.outcome}`, t.box);
    return;
  }
  const box = el('div', 'card retrieval');
  const head = el('p', 'card-head');
  head.append(el('span', 'kind', 'Knowledge'), el('span', 'name', `${passages.length} passage${passages.length === 1 ? '' : 's'}`));
  const list = el('ul', 'passages');
  for (const p of passages) {
    const li = el('li');
    const where = el('p', 'where');
    where.append(el('span', 'source', p.source || ''));
    if (p.heading) where.append(el('span', 'heading', p.heading));
    li.append(where, el('p', 'snippet', snippet(p.text)));
    list.append(li);
  }
  box.append(head, list);
  follow(() => t.box.append(box));
}

// how an answer ended, in words; an error is shown by its own message
const FINISH = { stop: '', error: '', length: 'cut short', interrupted: 'interrupted', cancelled: 'stopped' };

function onDone(m) {
  const t = turns.get(m.turn);
  if (!t) return;
  t.box.setAttribute('aria-busy', 'false');
  const parts = [];
  const finish = m.finish in FINISH ? FINISH[m.finish] : `ended: ${m.finish}`;
  if (finish) parts.push(finish);
  if (!t.said && !t.failed && m.finish === 'stop') parts.push('no answer');
  if (m.usage) parts.push(`${m.usage.total_tokens} tokens`);
  if (m.model) parts.push(m.model);
  if (parts.length) addNote('meta', parts.join(' · '), t.box);
  if (live === t) live = null;
  updateButtons();
}

function onError(m) {
  if (m.category === 'session_expired') {
    expired();
    return;
  }
  if (m.category === 'restarting') { // a connection matter, shown as one; the socket closes next
    setStatus('connecting', 'switchboard is restarting: reconnecting…');
    if (m.turn && turns.has(m.turn)) addNote('meta', 'interrupted: switchboard restarted', turns.get(m.turn).box);
    return;
  }
  const t = m.turn ? turnOf(m.turn) : null;
  if (t) t.failed = true;
  const note = addNote(`error ${m.category || ''}`.trim(), m.message || 'something went wrong', t ? t.box : ui.log);
  note.setAttribute('role', 'alert');
  if (t && t.text && (m.category === 'busy' || m.category === 'unavailable')) {
    const again = el('button', 'quiet', 'Try again');
    again.type = 'button';
    again.addEventListener('click', () => {
      again.remove();
      send(t.text);
    });
    note.append(' ', again);
  }
}

/*
 * The stored conversation, sent after every connect. A page that already shows
 * it (a reconnect) keeps what it shows, with its cards; a page that shows
 * something else (a reload, another tab's turns) shows the history instead.
 */
function onHistory(m) {
  const msgs = (m.messages || []).filter((x) => x.role === 'user' || x.role === 'assistant');
  if (m.incomplete) {
    if (shown.length === 0) addNote('error', 'earlier messages could not be loaded');
    return;
  }
  if (msgs.length === 0 || shows(msgs)) return;
  ui.log.replaceChildren();
  shown = [];
  for (const x of msgs) {
    addBubble(x.role, x.content, x.agent);
    if (x.role === 'assistant' && x.agent) lastAgent = x.agent;
  }
  showAgent(lastAgent);
}

/*
 * A conversation as its exchanges: each user message, then everything the
 * assistant said before the next one as one text (a filler and the answer after
 * a tool may be stored as one message or two), spacing ignored.
 */
function exchanges(list) {
  const out = [];
  for (const x of list) {
    const text = (x.content || '').replace(/\s+/g, ' ').trim();
    if (!text) continue;
    const key = x.role === 'user' ? 'u' : 'a';
    if (key === 'a' && out.length > 0 && out[out.length - 1].startsWith('a:')) out[out.length - 1] += ` ${text}`;
    else out.push(`${key}:${text}`);
  }
  return out;
}

/** Whether the page shows `msgs` already: each of their exchanges, in order, among its own. */
function shows(msgs) {
  const mine = exchanges(shown);
  let i = 0;
  for (const x of exchanges(msgs)) {
    while (i < mine.length && mine[i] !== x) ++i;
    if (i++ === mine.length) return false;
  }
  return true;
}

// --- the socket ---------------------------------------------------------------------------------

let ws = null;
let attempt = 0;
let opened = false; // the current socket reached `ready`
let refused = 0; // sockets refused while switchboard itself answers: the token is not accepted
let reconnectTimer = null;
let pingTimer = null;
let pongTimer = null;
let over = false; // expired, refused or ended: no more reconnecting

function connect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  if (over) return;
  opened = false;
  setStatus('connecting', attempt ? 'Reconnecting…' : 'Connecting…');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const url = `${scheme}://${location.host}/v1/sessions/${encodeURIComponent(session.session)}/ws`;
  const sock = new WebSocket(url, ['switchboard.v1', session.token]);
  ws = sock;
  sock.addEventListener('message', (e) => {
    if (ws === sock) receive(e.data);
  });
  sock.addEventListener('close', (e) => {
    if (ws === sock) closed(e.code);
  });
}

function receive(data) {
  let m;
  try {
    m = JSON.parse(data);
  } catch {
    return;
  }
  switch (m.type) {
    case 'ready':
      opened = true;
      attempt = 0;
      refused = 0;
      turns = new Map();
      setStatus('connected', 'Connected');
      updateButtons();
      startPings();
      break;
    case 'history': onHistory(m); break;
    case 'agent': onAgent(m); break;
    case 'token': onToken(m); break;
    case 'tool_call':
    case 'tool_result': onTool(m); break;
    case 'retrieval': onRetrieval(m); break;
    case 'done': onDone(m); break;
    case 'error': onError(m); break;
    case 'pong': clearTimeout(pongTimer); break;
    default: break;
  }
}

function startPings() {
  clearInterval(pingTimer);
  pingTimer = setInterval(() => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ type: 'ping', t: Date.now() }));
    clearTimeout(pongTimer);
    pongTimer = setTimeout(abandon, PONG_WAIT_MS);
  }, PING_MS);
}

/** A connection that stopped answering: given up at once (its close event may be long in coming), then reconnected. */
function abandon() {
  const dead = ws;
  if (!dead) return;
  closed(1006);
  dead.close();
}

function closed(code) {
  ws = null;
  clearInterval(pingTimer);
  clearTimeout(pongTimer);
  if (live) { // the answer in progress ended with the connection
    live.box.setAttribute('aria-busy', 'false');
    addNote('meta', 'interrupted: the connection dropped', live.box);
    live = null;
  }
  updateButtons();
  if (code === 4001) return expired();
  if (code === 1000 || over) {
    if (!over) setStatus('disconnected', 'Session ended');
    over = true;
    return;
  }
  if (!opened) return checkRefused();
  scheduleReconnect();
}

/*
 * A socket that closed before it opened: switchboard is down (retry), or it is
 * up and refused the handshake (a token it does not accept, or an origin it
 * does not allow: a browser is not told the status). /readyz tells them apart.
 */
async function checkRefused() {
  let up = false;
  try {
    up = (await fetch('/readyz', { cache: 'no-store' })).ok;
  } catch {
    up = false;
  }
  if (up && ++refused >= 2) {
    over = true;
    setStatus('disconnected', 'Not accepted');
    showNotice('This session link was not accepted',
      'switchboard is running but refused this page\'s session token: it may belong to another switchboard, or to a server whose keys have changed.',
      'Get a new link:', `deploy/local.sh console ${session.session}`);
    return;
  }
  if (!up) refused = 0;
  scheduleReconnect();
}

function scheduleReconnect() {
  const base = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
  const delay = Math.round(base * (0.8 + Math.random() * 0.4));
  ++attempt;
  reconnectTimer = setTimeout(connect, delay);
  setStatus('disconnected', `Disconnected: retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
}

function expired() {
  over = true;
  if (ws) ws.close(1000);
  setStatus('disconnected', 'Session expired');
  showNotice('Your session has expired',
    'The token this page was given has run out (a session token lasts SESSION_TOKEN_TTL_S, 15 minutes by default).',
    'For the local stack, this prints a new link that goes on with the same conversation:',
    `deploy/local.sh console ${session.session}`);
}

// --- sending ------------------------------------------------------------------------------------

function connected() {
  return ws !== null && ws.readyState === WebSocket.OPEN && opened;
}

function updateButtons() {
  ui.send.disabled = !connected() || ui.input.disabled;
  ui.stop.disabled = !connected() || live === null;
}

function send(text) {
  if (!connected()) return false;
  const msg = { type: 'message', text, id: `m${nextId++}` };
  if (session.model) msg.model = session.model;
  const wire = JSON.stringify(msg);
  if (new TextEncoder().encode(wire).length > MESSAGE_MAX) { // switchboard would close the socket (1009)
    addNote('error', 'that message is too long to send: shorten it');
    return false;
  }
  ws.send(wire);
  if (live) { // the server stops it (barge-in): its `done` says interrupted
    live.box.setAttribute('aria-busy', 'false');
    live = null;
  }
  lastSent = text;
  addBubble('user', text);
  return true;
}

ui.form.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.input.value.trim();
  if (text && send(text)) ui.input.value = '';
  ui.input.focus();
});

ui.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey && !e.isComposing) {
    e.preventDefault();
    ui.form.requestSubmit();
  } else if (e.key === 'Escape' && live) {
    e.preventDefault();
    cancel();
  }
});

function cancel() {
  if (connected() && live) ws.send(JSON.stringify({ type: 'cancel' }));
}

ui.stop.addEventListener('click', () => {
  cancel();
  ui.input.focus();
});

ui.retry.addEventListener('click', () => {
  attempt = 0;
  connect();
  ui.input.focus(); // the button goes away with the wait it cut short
});

// a new link pasted into this tab (another token, session or model): start again from it
window.addEventListener('hashchange', () => new URLSearchParams(location.hash.slice(1)).get('token') && location.reload());

// back online, or back to the tab: no need to wait out the backoff
window.addEventListener('online', () => reconnectTimer && connect());
document.addEventListener('visibilitychange', () => document.visibilityState === 'visible' && reconnectTimer && connect());

// --- start --------------------------------------------------------------------------------------

if (!session) {
  over = true;
  setStatus('disconnected', 'No session');
  showNotice('This console needs a session',
    'Open it through a link that carries a session token. The page never holds an API key: a server that has one creates the session (POST /v1/sessions) and hands the token to the page.',
    'For the local stack, this prints a link:', 'deploy/local.sh console');
} else {
  if (session.model) {
    ui.modelName.textContent = session.model;
    ui.modelName.title = session.model;
    ui.model.hidden = false;
  }
  connect();
  ui.input.focus();
}
