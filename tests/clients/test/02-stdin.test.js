'use strict';
// Journey: input() in the kernel asks the client over the stdin channel; the client's
// input_reply is what input() returns.
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

test('input() round trip over stdin', async () => {
  const prompts = [];
  const r = await h.execute(kernel, 'name = input("who? ")\nprint("hello " + name[::-1])', {
    onStdin: (msg) => {
      assert.equal(msg.header.msg_type, 'input_request');
      assert.equal(msg.channel, 'stdin');
      prompts.push(msg.content.prompt);
      kernel.sendInputReply({ status: 'ok', value: 'nommoc' }, msg.header);
    }
  });
  assert.deepEqual(prompts, ['who? ']);
  assert.equal(r.reply.content.status, 'ok');
  assert.match(r.stdout, /hello common\n$/);
});

test('the value is kept in the kernel after the round trip', async () => {
  const r = await h.execute(kernel, 'name');
  assert.equal(r.result, "'nommoc'");
});

test('getpass() (password input) also goes over stdin', async () => {
  const r = await h.execute(kernel, 'import getpass\nsecret = getpass.getpass("pw: ")\nprint(len(secret))', {
    onStdin: (msg) => {
      assert.equal(msg.content.password, true);
      kernel.sendInputReply({ status: 'ok', value: 'hunter2' }, msg.header);
    }
  });
  assert.equal(r.reply.content.status, 'ok');
  assert.match(r.stdout, /7\n$/);
});
