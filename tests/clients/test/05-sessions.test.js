'use strict';
// Journey: a notebook session through SessionManager: create (path, type notebook, kernel python3),
// execute, rename (PATCH path), list, shut down; the kernel is gone from /api/kernels afterwards.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/helpers');

let serverSettings, kernelManager, sessionManager, session;
const suffix = Math.random().toString(36).slice(2, 8);
const path1 = `client-tests/journey-${suffix}.ipynb`;
const path2 = `client-tests/renamed-${suffix}.ipynb`;

before(async () => {
  ({ serverSettings, kernelManager } = await h.openKernelManager());
  sessionManager = new h.SessionManager({ kernelManager, serverSettings });
  await h.withTimeout(sessionManager.ready, 20000, 'SessionManager ready');
});

after(async () => {
  if (session && !session.isDisposed) {
    try { await session.shutdown(); } catch { /* already gone */ }
  }
  sessionManager.dispose();
  kernelManager.dispose();
});

test('create a notebook session with a python3 kernel', async () => {
  session = await h.withTimeout(sessionManager.startNew({
    path: path1,
    type: 'notebook',
    name: `journey-${suffix}.ipynb`,
    kernel: { name: h.env().kernelName }
  }), 60000, 'start session');
  assert.ok(session.id);
  assert.equal(session.path, path1);
  assert.equal(session.type, 'notebook');
  assert.ok(session.kernel, 'session has a kernel');
  assert.equal(session.kernel.name, h.env().kernelName);
  await h.withTimeout(session.kernel.info, 60000, 'kernel info');

  const r = await h.rest('GET', `api/sessions/${session.id}`);
  assert.equal(r.status, 200);
  assert.equal(r.json.id, session.id);
  assert.equal(r.json.path, path1);
  assert.equal(r.json.type, 'notebook');
  assert.equal(r.json.kernel.id, session.kernel.id);
});

test('execute in the session kernel', async () => {
  const r = await h.execute(session.kernel, 'for i in range(3):\n    print("line", i)');
  assert.equal(r.reply.content.status, 'ok');
  assert.equal(r.stdout, 'line 0\nline 1\nline 2\n');
});

test('rename the session path (PATCH) keeps the same kernel', async () => {
  const kernelId = session.kernel.id;
  await h.withTimeout(session.setPath(path2), 20000, 'PATCH session path');
  assert.equal(session.path, path2);
  const r = await h.rest('GET', `api/sessions/${session.id}`);
  assert.equal(r.json.path, path2);
  assert.equal(r.json.kernel.id, kernelId);
  const again = await h.execute(session.kernel, 'i');
  assert.equal(again.result, '2', 'kernel state survives the rename');
});

test('the session is listed (by SessionManager and GET /api/sessions)', async () => {
  await sessionManager.refreshRunning();
  const listed = Array.from(sessionManager.running());
  const mine = listed.find(s => s.id === session.id);
  assert.ok(mine, 'session in SessionManager.running()');
  assert.equal(mine.path, path2);
  const r = await h.rest('GET', 'api/sessions');
  assert.equal(r.status, 200);
  assert.ok(r.json.some(s => s.id === session.id && s.path === path2));
  const found = await sessionManager.findByPath(path2);
  assert.equal(found && found.id, session.id);
});

test('shutting the session down removes it and its kernel', async () => {
  const kernelId = session.kernel.id;
  const sessionId = session.id;
  await h.withTimeout(session.shutdown(), 30000, 'session shutdown');
  const s = await h.rest('GET', `api/sessions/${sessionId}`);
  assert.equal(s.status, 404);
  const list = await h.rest('GET', 'api/sessions');
  assert.ok(!list.json.some(x => x.id === sessionId));
  assert.ok(!(await h.runningKernelIds()).includes(kernelId), 'kernel gone from /api/kernels');
  const k = await h.rest('GET', `api/kernels/${kernelId}`);
  assert.equal(k.status, 404);
});
