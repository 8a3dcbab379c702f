'use strict';
// Journey: restart a kernel; same kernel id, state is gone, kernel usable.
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

test('restart clears state and the kernel is usable afterwards', async () => {
  const before = await h.execute(kernel, 'survivor = "before restart"\nsurvivor');
  assert.equal(before.result, "'before restart'");

  const id = kernel.id;
  await h.withTimeout(kernel.restart(), 60000, 'restart');
  await h.withTimeout(kernel.info, 60000, 'kernel_info after restart');
  assert.equal(kernel.id, id, 'restart keeps the kernel id');

  const after = await h.execute(kernel, 'survivor');
  assert.equal(after.reply.content.status, 'error');
  assert.equal(after.reply.content.ename, 'NameError');

  const r = await h.execute(kernel, 'print(6*7)');
  assert.equal(r.reply.content.status, 'ok');
  assert.equal(r.stdout, '42\n');
  assert.ok((await h.runningKernelIds()).includes(id));
});
