'use strict';
// Shared set-up for the client journeys: connection settings from the environment, a bounded-wait
// helper, and an "execute code and collect what came back" helper built on @jupyterlab/services.
//
// Environment:
//   COMMONLAB_TEST_URL    base URL of the server, e.g. http://127.0.0.1:8888/  (required)
//   COMMONLAB_TEST_TOKEN  API token (required; may be empty for a server without auth)
//   COMMONLAB_TEST_KERNEL kernelspec name to start (default: python3)

const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { ServerConnection, KernelManager, SessionManager, KernelSpecManager } = require('@jupyterlab/services');

function env() {
  const url = process.env.COMMONLAB_TEST_URL;
  const token = process.env.COMMONLAB_TEST_TOKEN;
  if (!url) throw new Error('COMMONLAB_TEST_URL is not set (e.g. http://127.0.0.1:8888/)');
  if (token === undefined) throw new Error('COMMONLAB_TEST_TOKEN is not set');
  const baseUrl = url.endsWith('/') ? url : url + '/';
  const wsUrl = 'ws' + baseUrl.slice('http'.length);
  return { baseUrl, wsUrl, token, kernelName: process.env.COMMONLAB_TEST_KERNEL || 'python3' };
}

// Settings as a Node client builds them. Node 20 has no global WebSocket, so the `ws` package is passed.
// appendToken puts ?token=… on the websocket URL (a browser-style WebSocket cannot set headers);
// REST calls carry `Authorization: token …`.
function makeSettings(overrides = {}) {
  const { baseUrl, wsUrl, token } = env();
  return ServerConnection.makeSettings({
    baseUrl,
    wsUrl,
    token,
    appendToken: true,
    WebSocket,
    fetch: globalThis.fetch,
    Request: globalThis.Request,
    Headers: globalThis.Headers,
    ...overrides
  });
}

// Reject if `promise` does not settle within `ms`.
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Execute `code` on `kernel` and collect the reply and every iopub message of the request.
// `onStdin(msg, future)` is called for input_request messages.
async function execute(kernel, code, { timeoutMs = 30000, onStdin } = {}) {
  const future = kernel.requestExecute({ code, allow_stdin: !!onStdin, stop_on_error: false });
  const iopub = [];
  future.onIOPub = msg => { iopub.push(msg); };
  if (onStdin) future.onStdin = msg => onStdin(msg, future);
  const reply = await withTimeout(future.done, timeoutMs, `execute ${JSON.stringify(code)}`);
  return { reply, iopub, ...summarize(iopub) };
}

// Turn a list of iopub messages into the pieces tests assert on.
function summarize(iopub) {
  const stdout = iopub
    .filter(m => m.header.msg_type === 'stream' && m.content.name === 'stdout')
    .map(m => m.content.text).join('');
  const stderr = iopub
    .filter(m => m.header.msg_type === 'stream' && m.content.name === 'stderr')
    .map(m => m.content.text).join('');
  const result = iopub.find(m => m.header.msg_type === 'execute_result');
  const error = iopub.find(m => m.header.msg_type === 'error');
  const displays = iopub.filter(m => m.header.msg_type === 'display_data');
  return {
    stdout,
    stderr,
    result: result ? result.content.data['text/plain'] : undefined,
    error: error ? error.content : undefined,
    displays
  };
}

// Raw REST call with the token header (or none / a wrong one), for status-code assertions.
async function rest(method, path, { body, token = env().token, rawBody, headers = {} } = {}) {
  const { baseUrl } = env();
  const h = { ...headers };
  if (token !== null) h.Authorization = `token ${token}`;
  let payload;
  if (rawBody !== undefined) payload = rawBody;
  else if (body !== undefined) payload = JSON.stringify(body);
  if (payload !== undefined && !h['Content-Type']) h['Content-Type'] = 'application/json';
  const res = await fetch(new URL(path.replace(/^\//, ''), baseUrl), { method, headers: h, body: payload });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, text, json, headers: res.headers };
}

// Kernel ids the server currently lists.
async function runningKernelIds() {
  const r = await rest('GET', 'api/kernels');
  assert.equal(r.status, 200, r.text);
  return r.json.map(k => k.id);
}

// A KernelManager plus bookkeeping so each test file shuts down what it started and lets Node exit.
async function openKernelManager() {
  const serverSettings = makeSettings();
  const kernelManager = new KernelManager({ serverSettings });
  await withTimeout(kernelManager.ready, 20000, 'KernelManager ready');
  return { serverSettings, kernelManager };
}

async function startKernel(kernelManager) {
  const kernel = await withTimeout(kernelManager.startNew({ name: env().kernelName }), 60000, 'start kernel');
  await withTimeout(kernel.info, 60000, 'kernel_info_reply');
  return kernel;
}

async function shutdownQuietly(kernel) {
  if (!kernel || kernel.isDisposed) return;
  try { await withTimeout(kernel.shutdown(), 20000, 'kernel shutdown'); } catch { /* already gone */ }
  kernel.dispose();
}

module.exports = {
  env,
  makeSettings,
  withTimeout,
  execute,
  summarize,
  rest,
  runningKernelIds,
  openKernelManager,
  startKernel,
  shutdownQuietly,
  KernelManager,
  SessionManager,
  KernelSpecManager,
  WebSocket
};
