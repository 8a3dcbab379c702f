'use strict';
// Wire-level checks of the kernel websocket that @jupyterlab/services relies on, using its own
// serializer: subprotocol negotiation, the v1 binary framing, and the legacy JSON framing used by
// clients that offer no subprotocol (e.g. jupyter_server's gateway client).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { KernelMessage } = require('@jupyterlab/services');
const { serialize, deserialize } = require('@jupyterlab/services/lib/kernel/serialize');
const h = require('../lib/helpers');

const V1 = 'v1.kernel.websocket.jupyter.org';
let kernelId;

before(async () => {
  const r = await h.rest('POST', 'api/kernels', { body: { name: h.env().kernelName } });
  assert.equal(r.status, 201, r.text);
  assert.match(r.headers.get('location') || '', new RegExp(`api/kernels/${r.json.id}$`));
  kernelId = r.json.id;
});

after(async () => {
  if (kernelId) await h.rest('DELETE', `api/kernels/${kernelId}`);
});

function open(protocols, sessionId) {
  const { wsUrl, token } = h.env();
  const url = `${wsUrl}api/kernels/${kernelId}/channels?session_id=${sessionId}&token=${encodeURIComponent(token)}`;
  const ws = new h.WebSocket(url, protocols);
  ws.binaryType = 'arraybuffer';
  return h.withTimeout(new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  }), 30000, 'websocket open');
}

// Send kernel_info_request on shell and wait for the matching reply (decoded with `protocol`).
async function kernelInfo(ws, protocol, sessionId) {
  const msg = KernelMessage.createMessage({
    msgType: 'kernel_info_request', channel: 'shell', session: sessionId, content: {}
  });
  const replies = new Promise(resolve => {
    ws.on('message', (data, isBinary) => {
      const decoded = deserialize(isBinary ? toArrayBuffer(data) : data.toString(), protocol);
      if (decoded.parent_header && decoded.parent_header.msg_id === msg.header.msg_id &&
          decoded.header.msg_type === 'kernel_info_reply') resolve({ decoded, isBinary });
    });
  });
  // The kernel may still be starting: resend until a reply arrives.
  const t = setInterval(() => ws.send(serialize(msg, protocol)), 1000);
  ws.send(serialize(msg, protocol));
  try {
    return await h.withTimeout(replies, 30000, 'kernel_info_reply over raw websocket');
  } finally {
    clearInterval(t);
  }
}

function toArrayBuffer(data) {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

test('server selects the v1 subprotocol and speaks binary v1 frames', async () => {
  const ws = await open([V1], 'wire-v1');
  try {
    assert.equal(ws.protocol, V1);
    const { decoded, isBinary } = await kernelInfo(ws, V1, 'wire-v1');
    assert.equal(isBinary, true, 'v1 frames are binary');
    assert.equal(decoded.channel, 'shell');
    assert.equal(decoded.content.status, 'ok');
    assert.equal(decoded.parent_header.session, 'wire-v1');
  } finally {
    ws.close();
  }
});

test('without a subprotocol the server speaks legacy JSON text frames', async () => {
  const ws = await open([], 'wire-json');
  try {
    assert.equal(ws.protocol, '');
    const { decoded, isBinary } = await kernelInfo(ws, '', 'wire-json');
    assert.equal(isBinary, false, 'legacy frames are text');
    assert.equal(decoded.channel, 'shell');
    assert.equal(decoded.content.status, 'ok');
  } finally {
    ws.close();
  }
});
