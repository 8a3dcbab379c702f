'use strict';
// Journey: list kernelspecs, start a kernel, execute code, read stream and execute_result.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/helpers');

let serverSettings, kernelManager, kernel;

before(async () => {
  ({ serverSettings, kernelManager } = await h.openKernelManager());
});

after(async () => {
  await h.shutdownQuietly(kernel);
  kernelManager.dispose();
});

test('kernelspecs are listed and include the test kernel', async () => {
  const specs = new h.KernelSpecManager({ serverSettings });
  try {
    await h.withTimeout(specs.ready, 20000, 'KernelSpecManager ready');
    await specs.refreshSpecs();
    const { default: def, kernelspecs } = specs.specs;
    const name = h.env().kernelName;
    assert.ok(kernelspecs[name], `kernelspec ${name} missing; have ${Object.keys(kernelspecs)}`);
    assert.ok(kernelspecs[def], `default kernelspec ${def} is not in the list`);
    assert.equal(kernelspecs[name].name, name);
    assert.equal(typeof kernelspecs[name].display_name, 'string');
    assert.equal(typeof kernelspecs[name].language, 'string');
  } finally {
    specs.dispose();
  }
});

test('start a kernel; it is listed by the server and reports kernel info', async () => {
  kernel = await h.startKernel(kernelManager);
  const info = await kernel.info;
  assert.equal(info.status, 'ok');
  assert.equal(info.language_info.name, 'python');
  assert.match(info.protocol_version, /^5\./);
  assert.ok((await h.runningKernelIds()).includes(kernel.id));
  const model = await h.rest('GET', `api/kernels/${kernel.id}`);
  assert.equal(model.status, 200);
  assert.equal(model.json.id, kernel.id);
  assert.equal(model.json.name, h.env().kernelName);
});

test('print(1+1) streams "2\\n" on stdout', async () => {
  const r = await h.execute(kernel, 'print(1+1)');
  assert.equal(r.reply.content.status, 'ok');
  assert.equal(r.stdout, '2\n');
  const streams = r.iopub.filter(m => m.header.msg_type === 'stream');
  assert.ok(streams.length >= 1);
  assert.equal(streams[0].content.name, 'stdout');
  // The request's own iopub traffic: busy, execute_input, …, idle (in that order at the ends).
  const types = r.iopub.map(m => m.header.msg_type);
  assert.ok(types.includes('execute_input'), `iopub: ${types}`);
  for (const m of r.iopub) assert.equal(m.parent_header.msg_id, r.reply.parent_header.msg_id);
});

test('1+1 gives execute_result "2" with an execution count', async () => {
  const r = await h.execute(kernel, '1+1');
  assert.equal(r.reply.content.status, 'ok');
  assert.equal(r.result, '2');
  const result = r.iopub.find(m => m.header.msg_type === 'execute_result');
  assert.equal(result.content.execution_count, r.reply.content.execution_count);
  assert.ok(r.reply.content.execution_count >= 1);
});

test('an exception comes back as an error reply and an error message', async () => {
  const r = await h.execute(kernel, '1/0');
  assert.equal(r.reply.content.status, 'error');
  assert.equal(r.reply.content.ename, 'ZeroDivisionError');
  assert.equal(r.error.ename, 'ZeroDivisionError');
  assert.ok(Array.isArray(r.error.traceback));
});
