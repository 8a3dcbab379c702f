'use strict';
// Journey: interrupt a long-running cell; the execution ends promptly with KeyboardInterrupt and the
// kernel stays usable (same state).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/helpers');

let kernelManager, kernel;

before(async () => {
  ({ kernelManager } = await h.openKernelManager());
  kernel = await h.startKernel(kernelManager);
});

after(async () => {
  await h.shutdownQuietly(kernel);
  kernelManager.dispose();
});

test('interrupting time.sleep(100) gives a KeyboardInterrupt error reply within seconds', async () => {
  await h.execute(kernel, 'marker = 41');
  const future = kernel.requestExecute({ code: 'import time\ntime.sleep(100)' });
  const iopub = [];
  future.onIOPub = msg => iopub.push(msg);
  // Wait until the cell is really running (execute_input seen on iopub) before interrupting.
  await h.withTimeout(new Promise(resolve => {
    const check = setInterval(() => {
      if (iopub.some(m => m.header.msg_type === 'execute_input')) { clearInterval(check); resolve(); }
    }, 20);
  }), 20000, 'execute_input of the sleeping cell');
  await new Promise(r => setTimeout(r, 300));
  const t0 = Date.now();
  await h.withTimeout(kernel.interrupt(), 10000, 'interrupt request');
  const reply = await h.withTimeout(future.done, 10000, 'reply after interrupt');
  const elapsed = Date.now() - t0;
  assert.equal(reply.content.status, 'error');
  assert.equal(reply.content.ename, 'KeyboardInterrupt');
  const err = iopub.find(m => m.header.msg_type === 'error');
  assert.ok(err, 'an error message on iopub');
  assert.equal(err.content.ename, 'KeyboardInterrupt');
  assert.ok(elapsed < 10000, `interrupt took ${elapsed} ms`);
});

test('after the interrupt the kernel still runs code and kept its state', async () => {
  const r = await h.execute(kernel, 'marker + 1');
  assert.equal(r.reply.content.status, 'ok');
  assert.equal(r.result, '42');
});
