'use strict';
// Journey: two independent clients (separate settings, managers and websockets) connected to one
// kernel both receive the iopub messages of an execution that only one of them requested.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/helpers');

let a, b, kernelA, kernelB;

before(async () => {
  a = await h.openKernelManager();
  b = await h.openKernelManager();
  kernelA = await h.startKernel(a.kernelManager);
  kernelB = b.kernelManager.connectTo({ model: { id: kernelA.id, name: kernelA.name } });
  await h.withTimeout(kernelB.info, 30000, 'second client kernel_info');
});

after(async () => {
  kernelB.dispose();
  await h.shutdownQuietly(kernelA);
  a.kernelManager.dispose();
  b.kernelManager.dispose();
});

test('the two clients have different client (session) ids', () => {
  assert.notEqual(kernelA.clientId, kernelB.clientId);
  assert.equal(kernelA.id, kernelB.id);
});

test('an execution by client A is seen on iopub by client B', async () => {
  const seenByB = [];
  const onIOPub = (_sender, msg) => seenByB.push(msg);
  kernelB.iopubMessage.connect(onIOPub);
  try {
    const r = await h.execute(kernelA, 'print("shared output")\n21*2');
    assert.equal(r.stdout, 'shared output\n');
    const msgId = r.reply.parent_header.msg_id;
    // B's messages arrive on its own websocket; wait for B to see the idle status of A's request.
    await h.withTimeout(new Promise(resolve => {
      const t = setInterval(() => {
        if (seenByB.some(m => m.parent_header.msg_id === msgId && m.header.msg_type === 'status' &&
            m.content.execution_state === 'idle')) { clearInterval(t); resolve(); }
      }, 20);
    }), 10000, 'client B sees idle for A\'s request');
    const mine = seenByB.filter(m => m.parent_header.msg_id === msgId);
    const types = mine.map(m => m.header.msg_type);
    assert.ok(types.includes('execute_input'), `B saw: ${types}`);
    const stream = mine.find(m => m.header.msg_type === 'stream');
    assert.ok(stream, `B saw a stream message: ${types}`);
    assert.equal(stream.content.text, 'shared output\n');
    const result = mine.find(m => m.header.msg_type === 'execute_result');
    assert.equal(result.content.data['text/plain'], '42');
  } finally {
    kernelB.iopubMessage.disconnect(onIOPub);
  }
});

test('client B can execute on the same kernel and sees A\'s variables', async () => {
  await h.execute(kernelA, 'shared_var = "from A"');
  const r = await h.execute(kernelB, 'shared_var')
  assert.equal(r.result, "'from A'");
});
