'use strict';
// Journey: bad requests get the same status codes (and JSON error bodies) as jupyter_server 2.x,
// and the server is healthy afterwards.
//
// What jupyter_server 2.21 answers (bodies are JSON {"message": …, "reason": null} unless noted):
//   wrong token (header or ?token=), missing token     403 {"message": "Forbidden", "reason": null}
//   POST without any auth                              403 "'_xsrf' argument missing from POST"
//   GET/DELETE /api/kernels/<unknown uuid>, interrupt   404 "Kernel does not exist: <id>"
//   POST /api/kernels/<unknown uuid>/restart            500 "Exception restarting kernel" (error status asserted)
//   /api/kernels/<not a uuid>, /api/sessions/<not a uuid> 404 with an HTML body (no route matches)
//   POST /api/sessions with malformed JSON             400 "Invalid JSON in body of request"
//   POST /api/sessions without "path"                  400 "Missing field in JSON data: path"
//   POST /api/sessions, unknown kernel name            501 {"message": "The 'x' kernel is not available. …",
//                                                          "short_message": "x not found"}
//   POST /api/kernels, unknown kernel name             500 "Unhandled error" (an unhandled NoSuchKernel;
//                                                          only "an error status" is asserted here)
//   GET /api/kernelspecs/<unknown>                     404 "Kernel spec <x> not found"
//   websocket to an unknown kernel                     404 (HTML body); without a token: 403
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/helpers');

const UNKNOWN = '00000000-0000-0000-0000-000000000000';
const cleanup = [];

after(async () => {
  for (const id of cleanup) await h.rest('DELETE', `api/kernels/${id}`);
});

function assertJsonError(r, status, messagePattern) {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`);
  assert.ok(r.json && typeof r.json.message === 'string', `JSON body with a message: ${r.text}`);
  if (messagePattern) assert.match(r.json.message, messagePattern);
}

test('wrong token in the Authorization header -> 403', async () => {
  assertJsonError(await h.rest('GET', 'api/kernels', { token: 'wrong-' + h.env().token }), 403);
  assertJsonError(await h.rest('GET', 'api/sessions', { token: 'wrong-' + h.env().token }), 403);
});

test('wrong token in ?token= -> 403', async () => {
  const r = await h.rest('GET', 'api/kernels?token=wrong', { token: null });
  assertJsonError(r, 403);
});

test('missing token -> 403 on GET and POST', { skip: h.env().token === '' && 'server has no token' }, async () => {
  assertJsonError(await h.rest('GET', 'api/kernels', { token: null }), 403);
  const before = await h.runningKernelIds();
  const post = await h.rest('POST', 'api/kernels', { token: null, body: { name: h.env().kernelName } });
  assertJsonError(post, 403);
  assert.deepEqual((await h.runningKernelIds()).sort(), before.sort(), 'no kernel started');
});

test('token accepted via ?token= and via "Authorization: Bearer"', async () => {
  const q = await h.rest('GET', `api/kernels?token=${encodeURIComponent(h.env().token)}`, { token: null });
  assert.equal(q.status, 200);
  const b = await h.rest('GET', 'api/kernels', { token: null, headers: { Authorization: `Bearer ${h.env().token}` } });
  assert.equal(b.status, 200);
});

test('GET /api is public and reports a version', async () => {
  const r = await h.rest('GET', 'api', { token: null });
  assert.equal(r.status, 200);
  assert.equal(typeof r.json.version, 'string');
});

test('unknown kernel id -> 404 for GET, DELETE, interrupt, restart', async () => {
  assertJsonError(await h.rest('GET', `api/kernels/${UNKNOWN}`), 404, /Kernel does not exist/);
  assertJsonError(await h.rest('DELETE', `api/kernels/${UNKNOWN}`), 404);
  assertJsonError(await h.rest('POST', `api/kernels/${UNKNOWN}/interrupt`), 404);
  // jupyter_server answers 500 {"message": "Exception restarting kernel"} here; any error status passes.
  const restart = await h.rest('POST', `api/kernels/${UNKNOWN}/restart`);
  assert.ok(restart.status >= 400, `restart of an unknown kernel: ${restart.status}`);
});

test('unknown session id -> 404 for GET, PATCH, DELETE', async () => {
  assertJsonError(await h.rest('GET', `api/sessions/${UNKNOWN}`), 404, /Session not found/);
  assertJsonError(await h.rest('PATCH', `api/sessions/${UNKNOWN}`, { body: { path: 'x.ipynb' } }), 404);
  assertJsonError(await h.rest('DELETE', `api/sessions/${UNKNOWN}`), 404);
});

test('websocket to an unknown kernel -> 404; without token -> 403', async () => {
  const { wsUrl, token } = h.env();
  const status = (url) => new Promise((resolve, reject) => {
    const ws = new h.WebSocket(url, ['v1.kernel.websocket.jupyter.org']);
    ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode); res.resume(); ws.terminate(); });
    ws.on('open', () => { ws.close(); reject(new Error(`websocket ${url} opened`)); });
    ws.on('error', () => { /* reported through unexpected-response */ });
  });
  const base = `${wsUrl}api/kernels/${UNKNOWN}/channels?session_id=bad-input-test`;
  assert.equal(await h.withTimeout(status(`${base}&token=${encodeURIComponent(token)}`), 10000, 'ws 404'), 404);
  if (token !== '') {
    assert.equal(await h.withTimeout(status(base), 10000, 'ws 403'), 403);
  }
});

test('malformed JSON body to POST /api/sessions -> 400', async () => {
  assertJsonError(await h.rest('POST', 'api/sessions', { rawBody: '{"path": "x.ipynb", ' }), 400, /Invalid JSON/);
  assertJsonError(await h.rest('POST', 'api/sessions', { rawBody: '' }), 400);
  assertJsonError(await h.rest('POST', 'api/sessions', { body: { type: 'notebook', kernel: { name: h.env().kernelName } } }),
    400, /path/);
  assertJsonError(await h.rest('POST', 'api/kernels', { rawBody: '{nope' }), 400, /Invalid JSON/);
});

test('unknown kernelspec -> error, and no kernel or session is created', async () => {
  const kernelsBefore = await h.runningKernelIds();
  const sessionsBefore = (await h.rest('GET', 'api/sessions')).json.length;

  const s = await h.rest('POST', 'api/sessions', {
    body: { path: 'no-such-kernel.ipynb', type: 'notebook', name: '', kernel: { name: 'no-such-kernel' } }
  });
  assert.equal(s.status, 501, s.text);
  assert.match(s.json.message, /no-such-kernel/);
  assert.equal(s.json.short_message, 'no-such-kernel not found');

  const k = await h.rest('POST', 'api/kernels', { body: { name: 'no-such-kernel' } });
  assert.ok(k.status >= 400 && k.status < 600, `error status expected, got ${k.status}`);
  if (k.status >= 200 && k.status < 300 && k.json && k.json.id) cleanup.push(k.json.id);

  assertJsonError(await h.rest('GET', 'api/kernelspecs/no-such-kernel'), 404);

  // Through the client library too: startNew rejects.
  const { kernelManager } = await h.openKernelManager();
  try {
    await assert.rejects(h.withTimeout(kernelManager.startNew({ name: 'no-such-kernel' }), 20000, 'startNew'));
  } finally {
    kernelManager.dispose();
  }

  assert.deepEqual((await h.runningKernelIds()).sort(), kernelsBefore.sort());
  assert.equal((await h.rest('GET', 'api/sessions')).json.length, sessionsBefore);
});

test('server is healthy afterwards: status, and a kernel runs code', async () => {
  const st = await h.rest('GET', 'api/status');
  assert.equal(st.status, 200);
  assert.equal(typeof st.json.kernels, 'number');
  const { kernelManager } = await h.openKernelManager();
  let kernel;
  try {
    kernel = await h.startKernel(kernelManager);
    const r = await h.execute(kernel, 'print("still fine")');
    assert.equal(r.stdout, 'still fine\n');
  } finally {
    await h.shutdownQuietly(kernel);
    kernelManager.dispose();
  }
});
