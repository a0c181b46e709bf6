// Stratum dashboard: a plain ES module over the REST API (/api/v1), no build step.
// Views are hash routes; each returns a function that stops its timers and streams.
// Text from the API (tags, logs, commands) only ever reaches the page as text nodes.

const BUILD_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const POLL_MS = 2000;
const MAX_LOG_CHARS = 2_000_000;

const view = document.getElementById('view');

// ---------------------------------------------------------------- helpers

/** h('a', {href: '#'}, 'text', child…): an element; attributes starting with `on` are listeners. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) {
      continue;
    }
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) {
      continue;
    }
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? `${body.code ?? status}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
  }
}

/** The body of an answer: JSON, or its text as `{message}`. */
async function bodyOf(res) {
  const text = await res.text();
  try {
    return text === '' ? null : JSON.parse(text);
  } catch {
    return { message: text };
  }
}

async function api(path, init = {}) {
  const token = storedToken();
  const res = await fetch(path, {
    ...init,
    headers: { accept: 'application/json', ...authHeaders(), ...(init.headers ?? {}) },
  });
  const body = await bodyOf(res);
  if (!res.ok) {
    const err = new ApiError(res.status, body);
    if (res.status === 401) {
      needSignIn(err, token);
    }
    throw err;
  }
  return body;
}

// ---------------------------------------------------------------- sign-in (API_AUTH)

// With API_AUTH on every /api request needs `Authorization: Bearer <token>` (a token of
// API_TOKENS, or a robot's). The first 401 puts up the sign-in form; the token is kept for this
// tab only (sessionStorage) and sent on every /api request, the log streams included. With
// API_AUTH off no request answers 401 and the form never shows.

const TOKEN_KEY = 'stratum.apiToken';

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage refused (a sandboxed frame): no token kept
  }
}

function authHeaders() {
  const token = storedToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

let signingIn = false;
const signInError = h('p', { class: 'error', role: 'alert', id: 'signin-error', hidden: true });
const tokenInput = h('input', {
  type: 'password',
  name: 'token',
  id: 'signin-token',
  autocomplete: 'current-password',
  required: true,
});
const signInForm = h(
  'form',
  { class: 'card signin', id: 'signin' },
  h('h1', {}, 'Sign in'),
  h(
    'p',
    { class: 'muted' },
    'This Stratum needs an API token: the token of a ',
    h('code', {}, 'name:token'),
    ' pair of API_TOKENS, or a robot account’s token. It is kept for this tab only.',
  ),
  h('label', {}, 'API token', tokenInput),
  h('button', { type: 'submit' }, 'Sign in'),
  signInError,
);

function showSignInError(message) {
  signInError.textContent = message;
  signInError.hidden = message === null;
}

/**
 * A 401 from the API: the view stops polling and streaming, and the sign-in form takes its
 * place (once: the other requests of the view answer 401 too). A stored token that the API no
 * longer takes (revoked robot, changed API_TOKENS) is dropped, and why is shown; a 401 to a
 * request sent before the current sign-in (`sentToken` is not the kept one) is stale and ignored.
 */
function needSignIn(err, sentToken) {
  const kept = storedToken();
  if (kept !== null && kept !== sentToken) {
    return; // asked before the current sign-in: stale
  }
  if (kept !== null) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignInError(`Signed out: ${err.message}`);
  }
  updateSignOut();
  if (signingIn) {
    return;
  }
  signingIn = true;
  stop();
  stop = () => undefined;
  replace(view, signInForm);
  tokenInput.focus();
}

signInForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const token = tokenInput.value.trim();
  const button = signInForm.querySelector('button');
  button.disabled = true;
  try {
    // Checked with a cheap read before it is kept: a wrong token shows the API's own answer.
    const res = await fetch('/api/v1/builds?limit=1', {
      headers: { accept: 'application/json', authorization: `Bearer ${token}` },
    });
    if (!res.ok) {
      showSignInError(new ApiError(res.status, await bodyOf(res)).message);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    tokenInput.value = '';
    showSignInError(null);
    signingIn = false;
    updateSignOut();
    route();
  } catch (err) {
    showSignInError(err instanceof Error ? err.message : String(err));
  } finally {
    button.disabled = false;
  }
});

/** The header's sign-out control: shown while a token is kept. */
function updateSignOut() {
  const button = document.getElementById('sign-out');
  if (button) {
    button.hidden = storedToken() === null;
  }
}

document.getElementById('sign-out')?.addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showSignInError(null);
  updateSignOut();
  route(); // the view's first request answers 401: the form
});

// ---------------------------------------------------------------- server-sent events

const EOL = /\r\n|\r|\n/g;

/**
 * Reads a Server-Sent Events stream with fetch(), so that it carries the Authorization header
 * (EventSource cannot send one). As EventSource does (https://html.spec.whatwg.org/multipage/server-sent-events.html):
 * `event:`/`data:`/`id:`/`retry:` fields, comments and a leading BOM skipped, an event
 * dispatched at a blank line; when the stream ends or the network fails it reconnects after the
 * retry delay, sending the last event id as Last-Event-ID; a non-2xx answer or another content
 * type fails it for good. `on.event(type, data, id)` per event, `on.error({closed, error})` on
 * each break (closed: no reconnect follows). Returns `{close()}`.
 */
function sseStream(url, on) {
  let closed = false;
  let lastEventId = '';
  let retryMs = 3000;
  let controller = null;
  let timer = null;

  const fail = (error, reconnect) => {
    if (closed) {
      return;
    }
    if (!reconnect) {
      closed = true;
    }
    on.error({ closed: !reconnect, error });
    if (reconnect && !closed) {
      timer = setTimeout(() => void connect(), retryMs);
    }
  };

  const connect = async () => {
    controller = new AbortController();
    const token = storedToken();
    const headers = { accept: 'text/event-stream', ...authHeaders() };
    if (lastEventId !== '') {
      headers['last-event-id'] = lastEventId;
    }
    let res;
    try {
      res = await fetch(url, { headers, cache: 'no-store', signal: controller.signal });
    } catch (err) {
      fail(err, true);
      return;
    }
    const type = res.headers.get('content-type') ?? '';
    if (!res.ok || !type.toLowerCase().startsWith('text/event-stream')) {
      const err = res.ok
        ? new Error(`not an event stream (${type})`)
        : new ApiError(res.status, await bodyOf(res).catch(() => null));
      if (res.status === 401) {
        needSignIn(err, token);
      }
      fail(err, false);
      return;
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let eventType = '';
    let data = [];
    const line = (text) => {
      if (text === '') {
        if (data.length > 0) {
          const payload = data.join('\n');
          const name = eventType || 'message';
          data = [];
          eventType = '';
          on.event(name, payload, lastEventId);
        }
        eventType = '';
        return;
      }
      if (text.startsWith(':')) {
        return;
      }
      const colon = text.indexOf(':');
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? '' : text.slice(colon + 1);
      if (value.startsWith(' ')) {
        value = value.slice(1);
      }
      if (field === 'event') {
        eventType = value;
      } else if (field === 'data') {
        data.push(value);
      } else if (field === 'id' && !value.includes('\0')) {
        lastEventId = value;
      } else if (field === 'retry' && /^\d+$/.test(value)) {
        retryMs = Number(value);
      }
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || closed) {
          break;
        }
        buffer += value;
        EOL.lastIndex = 0;
        let start = 0;
        let m;
        while (!closed && (m = EOL.exec(buffer)) !== null) {
          if (m[0] === '\r' && EOL.lastIndex === buffer.length) {
            break; // a CR that ends the chunk may be the first half of a CRLF
          }
          line(buffer.slice(start, m.index));
          start = EOL.lastIndex;
        }
        buffer = buffer.slice(start);
      }
    } catch (err) {
      fail(err, true);
      return;
    }
    // The server ended the stream: EventSource reconnects, and so does this (unless closed).
    fail(new Error('the stream ended'), true);
  };

  void connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      controller?.abort();
    },
  };
}

function bytes(n) {
  if (n === null || n === undefined) {
    return '—';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

function duration(ms) {
  if (ms === null || ms === undefined) {
    return '—';
  }
  if (ms < 1000) {
    return `${Math.round(ms)} ms`;
  }
  const s = ms / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} m ${Math.round(s % 60)} s`;
}

function between(start, end) {
  if (!start) {
    return null;
  }
  return (end ? Date.parse(end) : Date.now()) - Date.parse(start);
}

function when(iso) {
  if (!iso) {
    return '—';
  }
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

const short = (digest) => (digest ? digest.replace(/^sha256:/, '').slice(0, 12) : '—');
const badge = (state) => h('span', { class: `badge ${state}`, dataset: { state } }, state);

function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err instanceof Error ? err.message : String(err));
}

/** Runs `tick` now and every `ms` until the returned stop function is called. */
function poll(ms, tick) {
  let stopped = false;
  let timer = null;
  const run = async () => {
    try {
      await tick();
    } finally {
      if (!stopped) {
        timer = setTimeout(run, ms);
      }
    }
  };
  void run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// ---------------------------------------------------------------- build sources

/** `refs/heads/main` → `main`; tags and pull requests keep a word saying what they are. */
function refName(ref) {
  if (!ref) {
    return '';
  }
  return ref
    .replace(/^refs\/heads\//, '')
    .replace(/^refs\/tags\//, 'tag ')
    .replace(/^refs\/pull\/(\d+)\/head$/, 'PR #$1');
}

/** The short commit id, linked to its page on the forge when the project's URL gives one. */
function commitLink(sha, url) {
  if (!sha) {
    return null;
  }
  const text = sha.slice(0, 7);
  // Only http(s) links: a URL from a record never becomes a javascript: link.
  return url && /^https?:\/\//.test(url)
    ? h('a', { href: url, class: 'mono commit', target: '_blank', rel: 'noopener' }, text)
    : h('span', { class: 'mono commit' }, text);
}

/** A build's source in a table cell: project (link to its builds), ref, commit, trigger. */
function sourceCell(source) {
  if (!source || !source.project) {
    return h('span', { class: 'muted' }, source ? source.trigger : '—');
  }
  return h(
    'span',
    { class: 'source' },
    h('a', { href: `#/builds?project=${encodeURIComponent(source.project)}` }, source.project),
    ' ',
    h(
      'a',
      {
        href: `#/builds?project=${encodeURIComponent(source.project)}&ref=${encodeURIComponent(source.ref ?? '')}`,
        class: 'ref',
      },
      refName(source.ref),
    ),
    ' ',
    commitLink(source.sha, source.commitUrl),
    ' ',
    h('span', { class: 'muted' }, `(${source.trigger})`),
  );
}

// ---------------------------------------------------------------- builds

function buildsView(params) {
  const state = BUILD_STATES.includes(params.get('state')) ? params.get('state') : null;
  // Builds of one project (and ref): the source filter of GET /api/v1/builds.
  const filter = new URLSearchParams();
  if (params.get('project')) {
    filter.set('project', params.get('project'));
    if (params.get('ref')) {
      filter.set('ref', params.get('ref'));
    }
  }
  const filtered = filter.toString();
  const counts = h('div', { class: 'tabs', id: 'state-tabs' });
  const table = h('div', { id: 'builds-table' });
  const status = h('div');
  const title = filtered
    ? h(
        'h1',
        {},
        'Builds of ',
        h('span', { id: 'builds-filter' }, `${filter.get('project')} ${refName(filter.get('ref'))}`.trim()),
        ' ',
        h('a', { href: '#/builds', class: 'muted small' }, '(all builds)'),
      )
    : h('h1', {}, 'Builds');
  const trends = h(
    'details',
    { id: 'builds-trends', class: 'card' },
    h('summary', {}, 'Trends, last 14 days'),
  );
  replace(view, title, filtered ? null : submitForm(), counts, status, table, trends);
  const withFilter = (q) => (filtered ? `${q}&${filtered}` : q);
  const statsQuery = new URLSearchParams({ days: '14' });
  if (filter.get('project')) {
    statsQuery.set('project', filter.get('project'));
  }
  let statsAt = 0;
  const refreshTrends = async () => {
    // trends move slowly: every 30 s is plenty
    if (Date.now() - statsAt < 30_000) {
      return;
    }
    statsAt = Date.now();
    const stats = await api(`/api/v1/builds/stats?${statsQuery}`);
    replace(trends, h('summary', {}, `Trends, last 14 days (${stats.sampled} builds)`), trendsTable(stats));
  };

  return poll(POLL_MS, async () => {
    try {
      const query = new URLSearchParams({ limit: '50' });
      if (state) {
        query.set('state', state);
      }
      const [page, ...totals] = await Promise.all([
        api(withFilter(`/api/v1/builds?${query}`)),
        ...BUILD_STATES.map((s) => api(withFilter(`/api/v1/builds?limit=1&state=${s}`)).then((p) => p.total)),
      ]);
      const all = totals.reduce((a, b) => a + b, 0);
      const tab = (s) => `#/builds?${new URLSearchParams([...filter, ...(s ? [['state', s]] : [])])}`;
      replace(
        counts,
        h('a', { href: tab(null), class: state === null ? 'active' : null }, `all ${all}`),
        BUILD_STATES.map((s, i) =>
          h(
            'a',
            { href: tab(s), class: state === s ? 'active' : null, dataset: { count: s } },
            `${s} ${totals[i]}`,
          ),
        ),
      );
      replace(status);
      replace(table, buildsTable(page.items));
      await refreshTrends();
    } catch (err) {
      replace(status, errorBox(err));
    }
  });
}

function buildsTable(items) {
  if (items.length === 0) {
    return h('p', { class: 'muted' }, 'No builds.');
  }
  return h(
    'table',
    {},
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['build', 'state', 'source', 'tags', 'created', 'duration', 'steps', 'image'].map((c) =>
          h('th', {}, c),
        ),
      ),
    ),
    h(
      'tbody',
      {},
      items.map((b) => {
        // List items are summaries (GET /api/v1/builds): step counts, no steps array.
        return h(
          'tr',
          { dataset: { build: b.id, state: b.state } },
          h('td', {}, h('a', { href: `#/builds/${b.id}`, class: 'mono' }, b.id.slice(0, 8))),
          h('td', {}, badge(b.state)),
          h('td', {}, sourceCell(b.source)),
          h('td', {}, b.tags.length ? b.tags.join(', ') : h('span', { class: 'muted' }, 'untagged')),
          h('td', {}, when(b.createdAt)),
          h('td', { class: 'num' }, duration(between(b.startedAt, b.finishedAt))),
          h('td', { class: 'num' }, `${b.stepCount} (${b.cachedSteps} cached)`),
          h('td', { class: 'mono' }, short(b.imageDigest)),
        );
      }),
    ),
  );
}

/** Uploads a context tar (or tar.gz) picked from disk as `POST /api/v1/builds`. */
function submitForm() {
  const file = h('input', { type: 'file', name: 'context', accept: '.tar,.tgz,.gz,application/x-tar' });
  const tags = h('input', { type: 'text', name: 'tags', placeholder: 'repo:tag, other:tag' });
  const dockerfile = h('input', { type: 'text', name: 'dockerfile', value: 'Dockerfile' });
  const nocache = h('input', { type: 'checkbox', name: 'nocache' });
  const message = h('span', { class: 'muted' });
  const submit = h('button', { type: 'submit' }, 'Build');
  const form = h(
    'form',
    { class: 'inline card', id: 'submit-build' },
    h('label', {}, 'Context (tar or tar.gz)', file),
    h('label', {}, 'Tags', tags),
    h('label', {}, 'Dockerfile', dockerfile),
    h('label', {}, 'No cache', nocache),
    submit,
    message,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const picked = file.files && file.files[0];
    if (!picked) {
      replace(message, 'Pick a context tar first.');
      return;
    }
    const query = new URLSearchParams({ dockerfile: dockerfile.value || 'Dockerfile' });
    for (const t of tags.value.split(/[\s,]+/).filter(Boolean)) {
      query.append('t', t);
    }
    if (nocache.checked) {
      query.set('nocache', 'true');
    }
    submit.disabled = true;
    replace(message, 'Uploading…');
    try {
      const gz = /\.(tgz|gz)$/.test(picked.name);
      const res = await api(`/api/v1/builds?${query}`, {
        method: 'POST',
        headers: { 'content-type': gz ? 'application/gzip' : 'application/x-tar' },
        body: picked,
      });
      location.hash = `#/builds/${res.id}`;
    } catch (err) {
      replace(message, errorBox(err));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function buildView(id) {
  let build = null;
  let source = null;
  let stopped = false;
  let logChars = 0;
  const steps = new Map();

  const title = h('h1', {}, 'Build ', h('span', { class: 'mono' }, id));
  const stateEl = h('span', { id: 'build-state' });
  const cancel = h('button', { class: 'danger', id: 'cancel-build', disabled: true }, 'Cancel');
  const retry = h('button', { class: 'secondary', id: 'retry-build', disabled: true }, 'Retry');
  const message = h('div');
  const meta = h('div', { class: 'card' });
  const stepsEl = h('div', { id: 'build-steps' });
  const timelineEl = h('div', { id: 'build-timeline', class: 'card' });
  const log = h('pre', { class: 'log', id: 'build-log' });
  replace(
    view,
    h('p', {}, h('a', { href: '#/builds' }, '← builds')),
    title,
    h('div', { class: 'actions' }, stateEl, cancel, retry),
    message,
    meta,
    h('h2', {}, 'Steps'),
    stepsEl,
    h('h2', {}, 'Timeline'),
    timelineEl,
    h('h2', {}, 'Log'),
    log,
  );

  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    try {
      render(await api(`/api/v1/builds/${id}`, { method: 'DELETE' }));
    } catch (err) {
      replace(message, errorBox(err));
    }
  });
  retry.addEventListener('click', async () => {
    retry.disabled = true;
    try {
      const created = await api(`/api/v1/builds/${id}/retry`, { method: 'POST' });
      location.hash = `#/builds/${created.id}`;
    } catch (err) {
      replace(message, errorBox(err));
      retry.disabled = false;
    }
  });

  function render(record) {
    build = record;
    for (const s of record.steps) {
      steps.set(s.index, s);
    }
    replace(stateEl, badge(record.state));
    cancel.disabled = TERMINAL.has(record.state);
    retry.disabled = !TERMINAL.has(record.state);
    const rows = [
      ['tags', record.tags.length ? record.tags.join(', ') : 'untagged'],
      ['image digest', h('code', { id: 'image-digest' }, record.imageDigest ?? '—')],
      ['created', when(record.createdAt)],
      ['started', when(record.startedAt)],
      ['finished', when(record.finishedAt)],
      ['duration', duration(between(record.startedAt, record.finishedAt))],
      ['dockerfile', record.dockerfile],
      ['target', record.target ?? '—'],
      ['build args', Object.keys(record.buildArgs).length ? JSON.stringify(record.buildArgs) : '—'],
      ['no cache', record.noCache ? 'yes' : 'no'],
      ['context', h('code', {}, `${record.contextDigest} (${bytes(record.contextSize)})`)],
      ['attempts', record.attempts],
      [
        'workers',
        h(
          'span',
          { id: 'build-workers' },
          record.attemptHistory && record.attemptHistory.length
            ? record.attemptHistory.map((a) => `#${a.attempt} ${a.worker}`).join(', ')
            : record.worker || '—',
        ),
      ],
    ];
    const src = record.source;
    if (src && src.project) {
      rows.unshift(
        ['project', h('a', { href: `#/builds?project=${encodeURIComponent(src.project)}` }, src.project)],
        ['ref', h('span', { id: 'build-ref' }, src.ref ?? '—')],
        ['commit', h('span', { id: 'build-commit' }, commitLink(src.sha, src.commitUrl) ?? '—')],
        ['author', src.author ?? '—'],
        ['message', src.message ?? '—'],
        ...(src.prNumber !== null ? [['pull request', `#${src.prNumber}`]] : []),
      );
    }
    if (src) {
      rows.unshift(['trigger', src.trigger]);
    }
    if (record.error) {
      rows.push(['error', h('span', { class: 'error', id: 'build-error' }, record.error)]);
    }
    replace(
      meta,
      h(
        'dl',
        { class: 'meta' },
        rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
      ),
    );
    renderSteps();
  }

  function renderSteps() {
    const list = [...steps.values()].sort((a, b) => a.index - b.index);
    if (build) {
      replace(timelineEl, timeline(build, list));
    }
    if (list.length === 0) {
      replace(stepsEl, h('p', { class: 'muted' }, 'No step has started yet.'));
      return;
    }
    replace(
      stepsEl,
      h(
        'table',
        {},
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { class: 'num' }, '#'),
            h('th', {}, 'instruction'),
            h('th', {}, 'status'),
            h('th', { class: 'num' }, 'duration'),
            h('th', { class: 'num' }, 'layer'),
          ),
        ),
        h(
          'tbody',
          {},
          list.map((s) =>
            h(
              'tr',
              { dataset: { step: s.index, status: s.status } },
              h('td', { class: 'num' }, s.index + 1),
              h('td', { class: 'mono' }, s.name),
              h('td', {}, badge(s.status)),
              h('td', { class: 'num' }, duration(s.durationMs)),
              h('td', { class: 'num' }, bytes(s.layerSize)),
            ),
          ),
        ),
      ),
    );
  }

  function appendLog(text, stream) {
    if (logChars > MAX_LOG_CHARS) {
      return;
    }
    logChars += text.length;
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(stream === 'stdout' ? document.createTextNode(text) : h('span', { class: stream }, text));
    if (logChars > MAX_LOG_CHARS) {
      log.append(h('span', { class: 'system' }, '\n… log truncated here; the full log is on the API\n'));
    }
    if (atBottom) {
      log.scrollTop = log.scrollHeight;
    }
  }

  /** Renders the record; false when there is no such build (to this caller), so nothing to follow. */
  async function refresh() {
    try {
      render(await api(`/api/v1/builds/${id}`));
    } catch (err) {
      replace(message, errorBox(err));
      return !(err instanceof ApiError && err.status === 404);
    }
    return true;
  }

  // The stream replays the build's events from the start, then follows it live; the server ends
  // it after the terminal state, and the reader would reconnect (as EventSource), so close it then.
  function follow() {
    source = sseStream(`/api/v1/builds/${id}/logs`, {
      event(type, data) {
        if (type === 'log') {
          const ev = JSON.parse(data);
          appendLog(ev.text, ev.stream);
        } else if (type === 'step') {
          const ev = JSON.parse(data);
          steps.set(ev.step.index, ev.step);
          renderSteps();
        } else if (type === 'result') {
          void refresh();
        } else if (type === 'error') {
          appendLog(`error: ${JSON.parse(data).message}\n`, 'stderr');
        } else if (type === 'state') {
          const ev = JSON.parse(data);
          if (build) {
            replace(stateEl, badge(ev.state));
          }
          if (TERMINAL.has(ev.state)) {
            source.close();
            log.dataset.ended = 'true';
          }
          void refresh();
        }
      },
      error({ closed }) {
        if (closed && !stopped && !signingIn) {
          replace(message, errorBox('the log stream closed'));
        }
      },
    });
  }

  // Not for a build that is not there: its stream's 404 would replace the page's "no build" error.
  void refresh().then((found) => {
    if (found && !stopped) {
      follow();
    }
  });
  return () => {
    stopped = true;
    source?.close();
  };
}

/**
 * A Gantt chart of one build: the queue wait, each step by stage (run or cached) and the
 * image export after the last step, on one time axis from submission to the end (or now).
 */
function timeline(record, list) {
  const t0 = Date.parse(record.createdAt);
  const end = record.finishedAt ? Date.parse(record.finishedAt) : Date.now();
  const span = Math.max(1, end - t0);
  const pct = (t) => `${(Math.min(Math.max(0, t - t0), span) / span) * 100}%`;
  const bar = (kind, label, start, stop, extra = {}) =>
    h(
      'div',
      { class: 'tl-row', dataset: { bar: kind, startMs: start - t0, endMs: stop - t0, ...extra } },
      h('span', { class: 'tl-label mono', title: label }, label),
      h(
        'span',
        { class: 'tl-track' },
        h('span', {
          class: `tl-bar ${kind} ${extra.status ?? ''}`,
          style: `left: ${pct(start)}; width: max(2px, calc(${pct(stop)} - ${pct(start)}))`,
          title: `${label}: ${duration(stop - start)}`,
        }),
      ),
      h('span', { class: 'tl-time num' }, duration(stop - start)),
    );
  const rows = [];
  const started = record.startedAt ? Date.parse(record.startedAt) : null;
  rows.push(bar('queue', 'queued', t0, started ?? end));
  let stage = null;
  let lastEnd = started;
  for (const s of list) {
    if (!s.startedAt) {
      continue;
    }
    const name = /^\[([^\]]+)\]/.exec(s.name)?.[1] ?? '';
    if (name !== stage) {
      stage = name;
      rows.push(h('div', { class: 'tl-stage muted', dataset: { stage: name } }, name));
    }
    const a = Date.parse(s.startedAt);
    const b = s.finishedAt ? Date.parse(s.finishedAt) : Date.now();
    lastEnd = Math.max(lastEnd ?? b, b);
    rows.push(bar('step', s.name.replace(/^\[[^\]]+\]\s*/, ''), a, b, { step: s.index, status: s.status }));
  }
  if (record.finishedAt && lastEnd !== null && record.state === 'succeeded') {
    rows.push(bar('export', 'layers stored, image written', lastEnd, end));
  }
  return h(
    'div',
    { class: 'timeline' },
    rows,
    h('div', { class: 'tl-axis muted small' }, `0 s — ${duration(span)}`),
  );
}

/** Per-day trends of finished builds (GET /api/v1/builds/stats): p50/p95 run time and cache hits. */
function trendsTable(stats) {
  const max = Math.max(1, ...stats.days.map((d) => d.p95Ms ?? 0));
  return h(
    'table',
    { class: 'trends' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', {}, 'day'),
        h('th', { class: 'num' }, 'builds'),
        h('th', { class: 'num' }, 'failed'),
        h('th', {}, 'run time (p50 bar, p95 mark)'),
        h('th', { class: 'num' }, 'p50'),
        h('th', { class: 'num' }, 'p95'),
        h('th', { class: 'num' }, 'cache hits'),
      ),
    ),
    h(
      'tbody',
      {},
      stats.days.map((d) =>
        h(
          'tr',
          { dataset: { day: d.day, builds: d.builds } },
          h('td', {}, d.day),
          h('td', { class: 'num' }, d.builds),
          h('td', { class: 'num' }, d.failed),
          h(
            'td',
            {},
            h(
              'span',
              { class: 'trend-track' },
              d.p50Ms !== null
                ? h('span', { class: 'trend-p50', style: `width: ${(d.p50Ms / max) * 100}%` })
                : null,
              d.p95Ms !== null
                ? h('span', { class: 'trend-p95', style: `left: ${(d.p95Ms / max) * 100}%` })
                : null,
            ),
          ),
          h('td', { class: 'num' }, duration(d.p50Ms)),
          h('td', { class: 'num' }, duration(d.p95Ms)),
          h('td', { class: 'num' }, d.cacheHitRate === null ? '—' : `${Math.round(d.cacheHitRate * 100)}%`),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------- images

function imagesView() {
  const body = h('div');
  replace(view, h('h1', {}, 'Images'), body);
  return poll(5000, async () => {
    try {
      const images = await api('/api/v1/images');
      if (images.length === 0) {
        replace(body, h('p', { class: 'muted' }, 'No repository has a tag yet.'));
        return;
      }
      const byRepo = new Map();
      for (const img of images) {
        byRepo.set(img.repository, [...(byRepo.get(img.repository) ?? []), img]);
      }
      replace(
        body,
        h(
          'table',
          {},
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['repository', 'tag', 'digest', 'platforms', 'size', 'created'].map((c) => h('th', {}, c)),
            ),
          ),
          h(
            'tbody',
            {},
            [...byRepo.entries()].map(([repo, tags]) =>
              tags.map((img, i) => {
                const ref = `${img.repository}:${img.tag}`;
                return h(
                  'tr',
                  { dataset: { image: ref } },
                  h('td', {}, i === 0 ? repo : ''),
                  h('td', {}, h('a', { href: `#/images/${encodeURIComponent(ref)}` }, img.tag)),
                  h('td', { class: 'mono' }, short(img.manifestDigest)),
                  h('td', { class: 'platforms' }, img.platforms ? img.platforms.join(', ') : ''),
                  h('td', { class: 'num' }, bytes(img.size)),
                  h('td', {}, when(img.created)),
                );
              }),
            ),
          ),
        ),
      );
    } catch (err) {
      replace(body, errorBox(err));
    }
  });
}

function imageView(ref) {
  const body = h('div');
  replace(view, h('p', {}, h('a', { href: '#/images' }, '← images')), h('h1', {}, ref), body);
  api(`/api/v1/images/${encodeURIComponent(ref)}`).then(
    (img) => {
      const c = img.config ?? {};
      replace(
        body,
        h(
          'div',
          { class: 'card' },
          h(
            'dl',
            { class: 'meta' },
            [
              ['manifest', h('code', { id: 'manifest-digest' }, img.manifestDigest)],
              ['config', h('code', {}, img.configDigest)],
              ['platform', `${img.os}/${img.architecture}`],
              ...(img.platforms
                ? [
                    ['index', h('code', { id: 'index-digest' }, img.index)],
                    [
                      'platforms',
                      h(
                        'ul',
                        { id: 'image-platforms' },
                        img.platforms.map((p) =>
                          h(
                            'li',
                            {},
                            `${p.platform} `,
                            h('code', {}, short(p.manifestDigest)),
                            ` ${bytes(p.size)}`,
                          ),
                        ),
                      ),
                    ],
                  ]
                : []),
              ['created', when(img.created)],
              ['author', img.author ?? '—'],
              ['size', bytes(img.size)],
              ['entrypoint', c.Entrypoint ? JSON.stringify(c.Entrypoint) : '—'],
              ['cmd', c.Cmd ? JSON.stringify(c.Cmd) : '—'],
              ['env', (c.Env ?? []).join('\n') || '—'],
              ['workdir', c.WorkingDir || '—'],
            ].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
          ),
        ),
        h('h2', {}, `Layers (${img.layers.length})`),
        h(
          'table',
          { id: 'image-layers' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['#', 'digest', 'diffID', 'size', 'media type'].map((t) => h('th', {}, t)),
            ),
          ),
          h(
            'tbody',
            {},
            img.layers.map((l, i) =>
              h(
                'tr',
                {},
                h('td', { class: 'num' }, i + 1),
                h('td', { class: 'mono', title: l.digest }, short(l.digest)),
                h('td', { class: 'mono', title: l.diffId }, short(l.diffId)),
                h('td', { class: 'num' }, bytes(l.size)),
                h('td', { class: 'mono' }, l.mediaType),
              ),
            ),
          ),
        ),
        h('h2', {}, 'History'),
        h(
          'table',
          { id: 'image-history' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['created', 'created by', 'layer', 'comment'].map((t) => h('th', {}, t)),
            ),
          ),
          h(
            'tbody',
            {},
            img.history.map((e) =>
              h(
                'tr',
                {},
                h('td', {}, when(e.created)),
                h('td', { class: 'mono' }, e.created_by ?? ''),
                h('td', {}, e.empty_layer ? h('span', { class: 'muted' }, 'none') : 'yes'),
                h('td', {}, e.comment ?? ''),
              ),
            ),
          ),
        ),
      );
    },
    (err) => replace(body, errorBox(err)),
  );
  return () => undefined;
}

// ---------------------------------------------------------------- containers

function containersView() {
  const body = h('div');
  replace(view, h('h1', {}, 'Containers'), body);
  return poll(3000, async () => {
    try {
      const list = await api('/api/v1/containers');
      if (list.length === 0) {
        replace(body, h('p', { class: 'muted' }, 'No containers.'));
        return;
      }
      replace(
        body,
        h(
          'table',
          {},
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['container', 'image', 'command', 'state', 'exit', 'created', 'commits'].map((c) =>
                h('th', {}, c),
              ),
            ),
          ),
          h(
            'tbody',
            {},
            list.map((c) =>
              h(
                'tr',
                { dataset: { container: c.id } },
                h('td', { class: 'mono', title: c.id }, c.id.slice(0, 12)),
                h('td', {}, c.image),
                h('td', { class: 'mono' }, c.command.join(' ')),
                h('td', {}, badge(c.state)),
                h('td', { class: 'num' }, c.exitCode ?? c.signal ?? '—'),
                h('td', {}, when(c.createdAt)),
                h(
                  'td',
                  {},
                  (c.commits ?? []).map((m) =>
                    h('div', {}, `${m.repository}:${m.tag} `, badge(m.state), ' ', short(m.imageDigest)),
                  ),
                ),
              ),
            ),
          ),
        ),
      );
    } catch (err) {
      replace(body, errorBox(err));
    }
  });
}

// ---------------------------------------------------------------- queues

const QUEUE_COLUMNS = ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'];

function queuesView() {
  const body = h('div');
  replace(view, h('h1', {}, 'Queues'), body);
  return poll(POLL_MS, async () => {
    try {
      const [q, deliveries, workers] = await Promise.all([
        api('/api/v1/queues'),
        api('/api/v1/notifications/deliveries?limit=50'),
        api('/api/v1/workers'),
      ]);
      const gone = workers.filter((w) => !w.live);
      replace(
        body,
        h(
          'div',
          { class: 'counts' },
          h('div', { class: 'count', id: 'workers-online' }, h('b', {}, q.workers.length), 'workers online'),
        ),
        h(
          'p',
          { class: 'muted' },
          q.workers.length ? `workers: ${q.workers.join(', ')}` : 'No worker is connected.',
        ),
        h(
          'table',
          { id: 'queues-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', {}, 'queue'),
              QUEUE_COLUMNS.map((c) => h('th', { class: 'num' }, c)),
              h('th', {}, 'workers'),
            ),
          ),
          h(
            'tbody',
            {},
            q.queues.map((queue) =>
              h(
                'tr',
                { dataset: { queue: queue.name } },
                h('td', { class: 'mono' }, queue.name, queue.paused ? [' ', badge('paused')] : null),
                QUEUE_COLUMNS.map((c) => h('td', { class: 'num', dataset: { col: c } }, queue.counts[c])),
                h(
                  'td',
                  {},
                  queue.owner?.goneSince
                    ? h(
                        'span',
                        { class: 'error', dataset: { gone: queue.owner.workerId } },
                        `worker ${queue.owner.workerId} gone since `,
                        when(queue.owner.goneSince),
                      )
                    : queue.workers.join(', ') || h('span', { class: 'error' }, 'none'),
                ),
              ),
            ),
          ),
        ),
        h('p', { class: 'muted' }, `as of ${new Date(q.at).toLocaleTimeString()}`),
        gone.length === 0
          ? null
          : [
              h('h2', {}, 'Gone workers'),
              h(
                'p',
                { class: 'muted' },
                'Commits and removals of their containers fail once the timeout has passed; ',
                h('code', {}, 'stratum workers rm ID'),
                ' removes what a worker that will not return left.',
              ),
              h(
                'table',
                { id: 'gone-workers' },
                h(
                  'thead',
                  {},
                  h(
                    'tr',
                    {},
                    ['worker', 'gone since', 'requests fail after', 'containers', 'pending jobs'].map((c) =>
                      h('th', {}, c),
                    ),
                  ),
                ),
                h(
                  'tbody',
                  {},
                  gone.map((w) =>
                    h(
                      'tr',
                      { dataset: { worker: w.id } },
                      h('td', { class: 'mono' }, w.id),
                      h('td', {}, when(w.goneSince)),
                      h('td', {}, when(w.failsAfter)),
                      h('td', { class: 'num' }, w.containers.length),
                      h('td', { class: 'num' }, w.pendingJobs),
                    ),
                  ),
                ),
              ),
            ],
        h('h2', {}, 'Notification deliveries'),
        deliveries.length === 0
          ? h('p', { class: 'muted' }, 'None yet (NOTIFY_URLS, or a project’s notifyUrl).')
          : h(
              'table',
              { id: 'deliveries-table' },
              h(
                'thead',
                {},
                h(
                  'tr',
                  {},
                  ['when', 'event', 'receiver', 'result'].map((c) => h('th', {}, c)),
                ),
              ),
              h(
                'tbody',
                {},
                deliveries.map((d) =>
                  h(
                    'tr',
                    { dataset: { ok: String(d.ok), event: d.eventId } },
                    h('td', {}, when(d.at)),
                    h('td', { class: 'mono' }, d.type),
                    h('td', { class: 'mono' }, d.project ? `${d.url} (${d.project})` : d.url),
                    h(
                      'td',
                      {},
                      d.ok ? badge('succeeded') : badge('failed'),
                      ' ',
                      d.status !== null ? `HTTP ${d.status}` : '',
                      d.error ? h('span', { class: 'error' }, ` ${d.error}`) : null,
                    ),
                  ),
                ),
              ),
            ),
      );
    } catch (err) {
      replace(body, errorBox(err));
    }
  });
}

// ---------------------------------------------------------------- maintenance

/** `{blobs: 3, bytes: 1024}` -> "blobs 3, bytes 1024" (zero counts left out). */
function counts(map) {
  const parts = Object.entries(map ?? {})
    .filter(([, n]) => n !== 0)
    .map(([k, n]) => `${k} ${n}`);
  return parts.length ? parts.join(', ') : 'nothing';
}

function maintenanceView() {
  const body = h('div');
  const status = h('span', { class: 'muted', id: 'gc-status' });
  const button = h('button', { id: 'run-gc', type: 'button' }, 'Run maintenance now');
  button.addEventListener('click', async () => {
    button.disabled = true;
    status.textContent = ' running…';
    try {
      const run = await api('/api/v1/maintenance/gc', { method: 'POST' });
      status.textContent = ` ${run.status}: freed ${counts(run.freed)}`;
    } catch (err) {
      status.textContent = ` ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      button.disabled = false;
    }
  });
  replace(view, h('h1', {}, 'Maintenance'), h('p', {}, button, status), body);
  return poll(POLL_MS, async () => {
    try {
      const runs = await api('/api/v1/maintenance/runs?limit=50');
      replace(
        body,
        runs.length === 0
          ? h('p', { class: 'muted' }, 'No maintenance run yet.')
          : h(
              'table',
              { id: 'maintenance-runs' },
              h(
                'thead',
                {},
                h(
                  'tr',
                  {},
                  ['started', 'task', 'trigger', 'status', 'freed', 'details'].map((c) => h('th', {}, c)),
                ),
              ),
              h(
                'tbody',
                {},
                runs.map((r) =>
                  h(
                    'tr',
                    { dataset: { run: r.id } },
                    h('td', {}, new Date(r.startedAt).toLocaleString()),
                    h('td', { class: 'mono' }, r.task),
                    h('td', {}, r.trigger),
                    h('td', {}, badge(r.status)),
                    h('td', { class: 'freed' }, counts(r.freed)),
                    h('td', { class: 'muted' }, r.error ?? counts(r.stats)),
                  ),
                ),
              ),
            ),
      );
    } catch (err) {
      replace(body, errorBox(err));
    }
  });
}

// ---------------------------------------------------------------- audit

const AUDIT_ACTIONS = ['login', 'push', 'delete', 'tag', 'build', 'commit', 'import', 'robot'];

/** The audit log (GET /api/v1/audit), newest first, filtered by action, who and repository. */
function auditView(params) {
  const body = h('div');
  const action = h(
    'select',
    { id: 'audit-action', name: 'action' },
    h('option', { value: '' }, 'any action'),
    AUDIT_ACTIONS.map((a) => h('option', { value: a, selected: params.get('action') === a }, a)),
  );
  const subject = h('input', {
    id: 'audit-subject',
    name: 'subject',
    placeholder: 'who (user, token:…, robot:…)',
    value: params.get('subject') ?? '',
  });
  const repository = h('input', {
    id: 'audit-repository',
    name: 'repository',
    placeholder: 'repository',
    value: params.get('repository') ?? '',
  });
  const form = h(
    'form',
    { id: 'audit-filter', class: 'filters' },
    action,
    subject,
    repository,
    h('button', { type: 'submit' }, 'Filter'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of [
      ['action', action],
      ['subject', subject],
      ['repository', repository],
    ]) {
      if (el.value.trim() !== '') {
        q.set(k, el.value.trim());
      }
    }
    location.hash = `#/audit${q.size > 0 ? `?${q}` : ''}`;
  });
  replace(view, h('h1', {}, 'Audit log'), form, body);
  const query = new URLSearchParams([['limit', '200']]);
  for (const k of ['action', 'subject', 'repository']) {
    if (params.get(k)) {
      query.set(k, params.get(k));
    }
  }
  return poll(POLL_MS * 5, async () => {
    try {
      const entries = await api(`/api/v1/audit?${query}`);
      replace(
        body,
        entries.length === 0
          ? h('p', { class: 'muted' }, 'No audit entries match.')
          : h(
              'table',
              { id: 'audit-table' },
              h(
                'thead',
                {},
                h(
                  'tr',
                  {},
                  ['when', 'action', 'who', 'from', 'repository', 'target', 'outcome', 'detail'].map((c) =>
                    h('th', {}, c),
                  ),
                ),
              ),
              h(
                'tbody',
                {},
                entries.map((e) =>
                  h(
                    'tr',
                    { dataset: { entry: e.id, action: e.action, subject: e.subject } },
                    h('td', {}, when(e.at)),
                    h('td', { class: 'mono', 'data-col': 'action' }, e.action),
                    h('td', { 'data-col': 'subject' }, e.subject),
                    h('td', { class: 'mono' }, e.client),
                    h('td', { 'data-col': 'repository' }, e.repository ?? ''),
                    h('td', { class: 'mono', 'data-col': 'target' }, e.target ?? ''),
                    h(
                      'td',
                      {},
                      h(
                        'span',
                        {
                          class: `badge ${e.outcome === 'ok' ? 'succeeded' : 'failed'}`,
                          'data-col': 'outcome',
                        },
                        e.outcome,
                      ),
                    ),
                    h('td', { class: 'muted' }, e.detail ?? ''),
                  ),
                ),
              ),
            ),
      );
    } catch (err) {
      replace(body, errorBox(err));
    }
  });
}

// ---------------------------------------------------------------- projects

/** Each project with the branches, tags and pull requests it built and their latest build. */
function projectsView() {
  const body = h('div', { id: 'projects' });
  replace(view, h('h1', {}, 'Projects'), body);
  return poll(POLL_MS * 2, async () => {
    try {
      const projects = await api('/api/v1/projects');
      if (projects.length === 0) {
        replace(body, h('p', { class: 'muted' }, 'No projects. Add one with POST /api/v1/projects.'));
        return;
      }
      const refs = await Promise.all(
        projects.map((p) => api(`/api/v1/projects/${encodeURIComponent(p.name)}/refs`)),
      );
      replace(
        body,
        projects.map((p, i) =>
          h(
            'section',
            { class: 'project', dataset: { project: p.name } },
            h(
              'h2',
              {},
              h('a', { href: `#/builds?project=${encodeURIComponent(p.name)}` }, p.name),
              ' ',
              h('span', { class: 'muted small mono' }, p.repoUrl),
            ),
            refs[i].length === 0
              ? h('p', { class: 'muted' }, 'Nothing built yet.')
              : h(
                  'table',
                  {},
                  h(
                    'thead',
                    {},
                    h(
                      'tr',
                      {},
                      ['ref', 'latest build', 'state', 'commit', 'created'].map((c) => h('th', {}, c)),
                    ),
                  ),
                  h(
                    'tbody',
                    {},
                    refs[i].map((r) =>
                      h(
                        'tr',
                        { dataset: { ref: r.ref, state: r.state } },
                        h(
                          'td',
                          {},
                          h(
                            'a',
                            {
                              href: `#/builds?project=${encodeURIComponent(p.name)}&ref=${encodeURIComponent(r.ref)}`,
                            },
                            refName(r.ref),
                          ),
                        ),
                        h(
                          'td',
                          {},
                          h('a', { href: `#/builds/${r.buildId}`, class: 'mono' }, r.buildId.slice(0, 8)),
                        ),
                        h('td', {}, badge(r.state)),
                        h('td', {}, commitLink(r.sha, r.commitUrl) ?? '—'),
                        h('td', {}, when(r.createdAt)),
                      ),
                    ),
                  ),
                ),
          ),
        ),
      );
    } catch (err) {
      replace(body, errorBox(err));
    }
  });
}

// ---------------------------------------------------------------- outage banner

const HEALTH_POLL_MS = 3000;

/** What /healthz says is down, in words; null when all is well. */
async function outageProblem() {
  let res;
  try {
    res = await fetch('/healthz', { headers: { accept: 'application/json' }, cache: 'no-store' });
  } catch (err) {
    return `The API does not answer (${err.message}).`;
  }
  if (res.ok) {
    return null;
  }
  const body = await res.json().catch(() => null);
  const down = [];
  if (body && typeof body.storage === 'string' && body.storage !== 'ok') {
    down.push(`object storage does not answer (${body.storage})`);
  }
  if (body && typeof body.redis === 'string' && body.redis !== 'ok') {
    down.push(`Redis does not answer (${body.redis})`);
  }
  if (down.length === 0) {
    return `The service is degraded (HTTP ${res.status} from /healthz).`;
  }
  return `Outage: ${down.join('; ')}. Queued builds wait and keep their attempts; running ones retry.`;
}

/** Polls /healthz for the life of the page and shows what is down above every view. */
function watchHealth() {
  const banner = document.getElementById('outage');
  let since = null;
  const check = async () => {
    const problem = await outageProblem();
    if (problem === null) {
      since = null;
      banner.hidden = true;
      banner.replaceChildren();
    } else {
      since = since ?? new Date().toISOString();
      replace(banner, problem, ' Since ', when(since), '.');
      banner.hidden = false;
    }
    setTimeout(check, HEALTH_POLL_MS);
  };
  void check();
}

// ---------------------------------------------------------------- router

let stop = () => undefined;

function route() {
  stop();
  stop = () => undefined;
  if (signingIn) {
    replace(view, signInForm);
    return;
  }
  const hash = location.hash.replace(/^#/, '') || '/builds';
  const [path, queryString] = hash.split('?');
  const params = new URLSearchParams(queryString ?? '');
  const parts = path.split('/').filter(Boolean);
  const section = parts[0] ?? 'builds';
  for (const a of document.querySelectorAll('[data-nav]')) {
    a.classList.toggle('active', a.dataset.nav === section);
  }
  try {
    if (section === 'builds' && parts[1]) {
      stop = buildView(decodeURIComponent(parts[1]));
    } else if (section === 'images' && parts[1]) {
      stop = imageView(decodeURIComponent(parts.slice(1).join('/')));
    } else if (section === 'images') {
      stop = imagesView();
    } else if (section === 'containers') {
      stop = containersView();
    } else if (section === 'projects') {
      stop = projectsView();
    } else if (section === 'queues') {
      stop = queuesView();
    } else if (section === 'maintenance') {
      stop = maintenanceView();
    } else if (section === 'audit') {
      stop = auditView(params);
    } else {
      stop = buildsView(params);
    }
  } catch (err) {
    replace(view, errorBox(err));
    stop = () => undefined;
  }
}

window.addEventListener('hashchange', route);
updateSignOut();
route();
watchHealth();
