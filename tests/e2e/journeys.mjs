// Browser journeys through JupyterLab and Notebook 7 served by a Jupyter-compatible server,
// in Debian's chromium driven by playwright-core. A screenshot of each step goes to the
// artifacts folder (target/e2e-artifacts/ by default; its path is printed at the end).
//
//   node journeys.mjs   (with COMMONLAB_TEST_URL and COMMONLAB_TEST_TOKEN set; see run.sh)
//
// COMMONLAB_TEST_ROOT_DIR, when set, is the server's root directory: renames and saves are then
// also checked on disk. A journey fails on any page error or console error that is not in
// HARMLESS below.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const base = process.env.COMMONLAB_TEST_URL.replace(/\/?$/, '/');
const token = process.env.COMMONLAB_TEST_TOKEN;
const rootDir = process.env.COMMONLAB_TEST_ROOT_DIR || '';
const artifacts = path.resolve(
  process.env.COMMONLAB_E2E_ARTIFACTS || path.join(import.meta.dirname, '../../target/e2e-artifacts'),
);
const executablePath = process.env.COMMONLAB_CHROMIUM || '/usr/bin/chromium';
fs.rmSync(artifacts, { recursive: true, force: true });
fs.mkdirSync(artifacts, { recursive: true });

// Page and console errors known to be harmless, each with the reason. Anything else fails the
// journey it happens in.
const HARMLESS = [
  {
    // Notebook 7's shortcuts plugin reads its own settings in a `pluginChanged` handler that
    // can run before they are loaded (an upstream race; jupyter_server pages show it too).
    why: 'Notebook 7 shortcuts-extension settings race',
    test: (e) =>
      e.kind === 'pageerror' &&
      e.text === "Cannot read properties of undefined (reading 'schema')" &&
      e.stack.includes('/static/notebook/'),
  },
  {
    // Notebook 7's execution indicator applies its settings after its toolbar was disposed
    // (page left or reloaded) and logs the failure (upstream; jupyter_server pages show it too).
    why: 'Notebook 7 execution indicator disposed before its settings arrived',
    test: (e) =>
      e.kind === 'console' &&
      e.text === "Cannot read properties of null (reading 'updateRenderOption')" &&
      e.url.includes('/static/notebook/'),
  },
  {
    // After the first save renamed Untitled.ipynb, JupyterLab asks for the old name once more
    // (jupyter_server gets the same requests and answers 404 too).
    why: 'old name of a notebook renamed on its first save',
    test: (e) => e.kind === 'console' && /status of 404/.test(e.text) && /\/api\/contents\/Untitled[^/]*\.ipynb\?/.test(e.url),
  },
];

const api = async (method, p, body) =>
  fetch(new URL(p, base), {
    method,
    headers: { Authorization: `token ${token}`, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
const getJson = async (p) => {
  const r = await api('GET', p);
  if (!r.ok) throw new Error(`GET ${p}: ${r.status} ${await r.text()}`);
  return r.json();
};

let step = 0;
const shot = async (page, name) => {
  step += 1;
  const file = path.join(artifacts, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  console.log(`  screenshot ${path.basename(file)}`);
};

// Errors of the journey running now, from every page of the browser context.
let pageErrors = [];
const watch = (page) => {
  page.on('pageerror', (e) => pageErrors.push({ kind: 'pageerror', text: e.message, stack: e.stack ?? '', url: page.url() }));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push({ kind: 'console', text: m.text(), stack: '', url: m.location()?.url ?? '' });
  });
  page.on('response', (r) => {
    if (r.status() >= 400) console.log(`  [${r.status()}] ${r.request().method()} ${r.url()}`);
  });
};

const results = [];
async function journey(name, context, fn) {
  pageErrors = [];
  const page = await context.newPage();
  const started = Date.now();
  let failure = null;
  try {
    await fn(page);
  } catch (e) {
    failure = e.message;
    for (const p of context.pages()) await shot(p, `failed-${name.split(':')[0].replace(/\W+/g, '-')}`).catch(() => {});
  }
  const unexpected = [];
  for (const e of pageErrors) {
    const known = HARMLESS.find((h) => h.test(e));
    if (known) console.log(`  harmless ${e.kind} (${known.why}): ${e.text.split('\n')[0]}`);
    else unexpected.push(e);
  }
  if (!failure && unexpected.length) {
    failure = `unexpected page errors:\n    ${unexpected.map((e) => `${e.kind}: ${e.text.split('\n')[0]} [${e.url}]`).join('\n    ')}`;
  }
  for (const p of context.pages()) await p.close();
  if (failure) console.log(`not ok - ${name}: ${failure}`);
  else console.log(`ok - ${name} (${Date.now() - started} ms)`);
  results.push(!failure);
}

// Polls `check` (an async function returning a truthy value when done) until it holds.
async function until(what, check, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)?.slice(0, 300)})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// The toolbar's execution indicator of the notebook on `page` says idle. It starts out idle
// before any kernel is attached, so on a fresh page wait for `kernelConnected` first.
const kernelIdle = (page) =>
  page.locator('.jp-NotebookPanel-toolbar [data-jp-item-name="executionProgress"] [data-status="idle"]').first().waitFor();

// A new session matching `isOurs` has its kernel idle with a WebSocket open: the page's kernel
// connection exists, so cells run from now on reach the kernel (before, they are dropped).
const kernelConnected = (isOurs) =>
  until('the notebook\'s kernel connected and idle', async () => {
    const sessions = (await getJson('api/sessions')).filter((s) => !sessionsBefore.has(s.id) && isOurs(s));
    return sessions.some((s) => s.kernel?.connections > 0 && s.kernel?.execution_state === 'idle');
  });

const cell = (page, index) => page.locator('.jp-NotebookPanel .jp-Notebook .jp-Cell').nth(index);

// Types `code` into cell `index` (replacing its text) and runs it with Shift+Enter.
async function runCell(page, index, code) {
  const target = cell(page, index);
  await target.locator('.cm-content').click();
  await page.keyboard.press('Control+A');
  // insertText, not type: no auto-closed brackets or auto-indent.
  await page.keyboard.insertText(code);
  await page.keyboard.press('Shift+Enter');
  return target;
}

// The cell's prompt shows an execution count, so it has finished.
const executed = (target) => target.locator('.jp-InputPrompt', { hasText: /\[\d+\]/ }).waitFor();

const CODE = {
  print: 'print(1+1)',
  png: [
    '%matplotlib inline',
    'import matplotlib.pyplot as plt',
    'plt.plot([1, 3, 2])',
    'plt.show()',
  ].join('\n'),
  table: [
    'from IPython.display import HTML',
    "HTML('<table class=\"e2e-table\"><tr><th>name</th><th>value</th></tr><tr><td>answer</td><td>42</td></tr></table>')",
  ].join('\n'),
  sleep: "import time\nprint('sleeping', flush=True)\ntime.sleep(100)",
};

// Checks the four outputs of the lab notebook on `page`, in cells 0 to 3.
async function labOutputsShown(page) {
  await cell(page, 0).locator('.jp-OutputArea-output', { hasText: /^\s*2\s*$/ }).waitFor();
  await cell(page, 1).locator('.jp-OutputArea-output img[src^="data:image/png"]').waitFor();
  const table = cell(page, 2).locator('.jp-OutputArea-output table');
  await table.locator('td', { hasText: '42' }).waitFor();
  await cell(page, 3).locator('.jp-OutputArea-output', { hasText: 'KeyboardInterrupt' }).first().waitFor();
}

// The saved notebook `model` holds every output of the lab journey.
function checkSavedLabNotebook(model) {
  const outputs = model.content.cells.map((c) => c.outputs ?? []);
  const text = (o) => [].concat(o.text ?? '').join('');
  const problems = [];
  if (!outputs[0]?.some((o) => o.output_type === 'stream' && text(o).trim() === '2')) problems.push('cell 1 lacks stdout "2"');
  if (!outputs[1]?.some((o) => typeof o.data?.['image/png'] === 'string' && o.data['image/png'].length > 100)) problems.push('cell 2 lacks an image/png');
  if (!outputs[2]?.some((o) => [].concat(o.data?.['text/html'] ?? '').join('').includes('<table'))) problems.push('cell 3 lacks the text/html table');
  if (!outputs[3]?.some((o) => o.output_type === 'error' && o.ename === 'KeyboardInterrupt')) problems.push('cell 4 lacks the KeyboardInterrupt error');
  if (problems.length) throw new Error(`saved notebook: ${problems.join('; ')}`);
}

const stamp = `${process.pid}`;
const LAB_NB = `e2e-lab-${stamp}.ipynb`;
const LAB_RENAMED = `e2e-lab-${stamp}-renamed.ipynb`;
const NB7_NB = `e2e-notebook7-${stamp}.ipynb`;

// Sessions and kernels that were there before the journeys are left alone.
const sessionsBefore = new Set((await getJson('api/sessions')).map((s) => s.id));
const kernelsBefore = new Set((await getJson('api/kernels')).map((k) => k.id));

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'commonlab-e2e-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
context.setDefaultTimeout(60_000);
context.on('page', watch);
for (const p of context.pages()) watch(p);

try {
  await journey('JupyterLab: new Python notebook; text, PNG and HTML outputs; interrupt; save; reload; rename', context, async (page) => {
    await page.goto(`${base}lab?reset&token=${encodeURIComponent(token)}`);
    const card = page.locator('.jp-LauncherCard[data-category="Notebook"]', { hasText: 'Python 3' }).first();
    await card.waitFor();
    await shot(page, 'lab-launcher');

    // The launcher's Python 3 card creates a notebook with that kernel.
    await card.click();
    await cell(page, 0).waitFor();
    await page.locator('.jp-NotebookPanel-toolbar .jp-KernelName', { hasText: 'Python 3 (ipykernel)' }).waitFor();
    await kernelConnected((s) => s.kernel?.name === 'python3');
    await kernelIdle(page);
    await shot(page, 'lab-new-notebook');

    let target = await runCell(page, 0, CODE.print);
    await target.locator('.jp-OutputArea-output', { hasText: /^\s*2\s*$/ }).waitFor();
    await shot(page, 'lab-print');

    target = await runCell(page, 1, CODE.png);
    await target.locator('.jp-OutputArea-output img[src^="data:image/png"]').waitFor();
    await shot(page, 'lab-png');

    target = await runCell(page, 2, CODE.table);
    await target.locator('.jp-OutputArea-output table td', { hasText: '42' }).waitFor();
    await target.scrollIntoViewIfNeeded();
    await shot(page, 'lab-html-table');

    // Interrupt a sleeping cell from the toolbar.
    target = await runCell(page, 3, CODE.sleep);
    await target.locator('.jp-OutputArea-output', { hasText: 'sleeping' }).waitFor();
    await target.locator('.jp-InputPrompt', { hasText: '[*]' }).waitFor();
    await target.scrollIntoViewIfNeeded();
    await shot(page, 'lab-sleeping');
    await page.locator('.jp-NotebookPanel-toolbar [data-command="notebook:interrupt-kernel"]').click();
    await target.locator('.jp-OutputArea-output', { hasText: 'KeyboardInterrupt' }).first().waitFor();
    await executed(target);
    await kernelIdle(page);
    await until('the kernel idle in /api/kernels', async () => {
      const kernels = (await getJson('api/kernels')).filter((k) => !kernelsBefore.has(k.id));
      return kernels.length > 0 && kernels.every((k) => k.execution_state === 'idle');
    });
    await target.scrollIntoViewIfNeeded();
    await shot(page, 'lab-interrupted');

    // Save: the first save of an untitled notebook asks for its name.
    await page.locator('.jp-NotebookPanel-toolbar [data-command="docmanager:save"]').click();
    const nameInput = page.locator('.jp-Dialog input').first();
    await nameInput.fill(LAB_NB);
    await page.locator('.jp-Dialog .jp-mod-accept').click();
    await page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current', { hasText: LAB_NB }).waitFor();
    await page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current.jp-mod-dirty').waitFor({ state: 'detached' });
    checkSavedLabNotebook(await getJson(`api/contents/${encodeURIComponent(LAB_NB)}`));
    await shot(page, 'lab-saved');

    // Reload on the tree URL without the token (the cookie authenticates): outputs intact.
    await page.goto(`${base}lab/tree/${encodeURIComponent(LAB_NB)}`);
    await labOutputsShown(page);
    await kernelIdle(page);
    await shot(page, 'lab-reloaded');

    // Rename in the file browser.
    const item = page.locator('#filebrowser .jp-DirListing-item', { hasText: LAB_NB });
    await item.click({ button: 'right' });
    await page.locator('.lm-Menu-item[data-command="filebrowser:rename"]').click();
    const editor = page.locator('#filebrowser .jp-DirListing-editor');
    await editor.fill(LAB_RENAMED);
    await editor.press('Enter');
    await page.locator('#filebrowser .jp-DirListing-item', { hasText: LAB_RENAMED }).waitFor();
    await page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current', { hasText: LAB_RENAMED }).waitFor();
    const old = await api('GET', `api/contents/${encodeURIComponent(LAB_NB)}`);
    if (old.status !== 404) throw new Error(`the old name still answers ${old.status}`);
    checkSavedLabNotebook(await getJson(`api/contents/${encodeURIComponent(LAB_RENAMED)}`));
    if (rootDir) {
      if (fs.existsSync(path.join(rootDir, LAB_NB))) throw new Error(`${LAB_NB} is still on disk`);
      JSON.parse(fs.readFileSync(path.join(rootDir, LAB_RENAMED), 'utf8'));
    }
    await until('the session to follow the rename', async () =>
      (await getJson('api/sessions')).some((s) => s.path === LAB_RENAMED));
    await shot(page, 'lab-renamed');
  });

  await journey('Notebook 7: open a notebook from /tree, run a cell, save, reload', context, async (page) => {
    const notebook = {
      cells: [{ cell_type: 'code', execution_count: null, id: 'e2e-cell', metadata: {}, outputs: [], source: '' }],
      metadata: { kernelspec: { display_name: 'Python 3 (ipykernel)', language: 'python', name: 'python3' } },
      nbformat: 4,
      nbformat_minor: 5,
    };
    const put = await api('PUT', `api/contents/${encodeURIComponent(NB7_NB)}`, { type: 'notebook', content: notebook });
    if (put.status !== 201) throw new Error(`creating ${NB7_NB}: ${put.status} ${await put.text()}`);

    await page.goto(`${base}tree?token=${encodeURIComponent(token)}`);
    const item = page.locator('.jp-DirListing-item', { hasText: NB7_NB }).first();
    await item.waitFor();
    await shot(page, 'notebook7-tree');

    const [nbPage] = await Promise.all([context.waitForEvent('page'), item.dblclick()]);
    await nbPage.waitForURL(/\/notebooks\//);
    await cell(nbPage, 0).waitFor();
    await kernelConnected((s) => s.path === NB7_NB);
    await kernelIdle(nbPage);
    await shot(nbPage, 'notebook7-opened');

    const target = await runCell(nbPage, 0, 'print(2+3)');
    await target.locator('.jp-OutputArea-output', { hasText: /^\s*5\s*$/ }).waitFor();
    await shot(nbPage, 'notebook7-ran-cell');

    await nbPage.keyboard.press('Control+s');
    await until('the output saved', async () => {
      const model = await getJson(`api/contents/${encodeURIComponent(NB7_NB)}`);
      return model.content.cells[0].outputs.some((o) => [].concat(o.text ?? '').join('').trim() === '5');
    });
    await shot(nbPage, 'notebook7-saved');

    await nbPage.reload();
    await cell(nbPage, 0).locator('.jp-OutputArea-output', { hasText: /^\s*5\s*$/ }).waitFor();
    await kernelIdle(nbPage);
    await shot(nbPage, 'notebook7-reloaded');
  });
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
  // Leave no sessions, kernels or files behind.
  for (const s of await getJson('api/sessions')) if (!sessionsBefore.has(s.id)) await api('DELETE', `api/sessions/${s.id}`);
  for (const k of await getJson('api/kernels')) if (!kernelsBefore.has(k.id)) await api('DELETE', `api/kernels/${k.id}`);
  for (const p of [LAB_NB, LAB_RENAMED, NB7_NB]) await api('DELETE', `api/contents/${encodeURIComponent(p)}`);
}
const leftover = (await getJson('api/kernels')).filter((k) => !kernelsBefore.has(k.id));
if (leftover.length) {
  console.log(`not ok - kernels left running after the journeys: ${leftover.map((k) => k.id).join(', ')}`);
  results.push(false);
}

const failed = results.filter((r) => !r).length;
console.log(`${results.length - failed}/${results.length} browser journeys passed; screenshots in ${artifacts}`);
process.exit(failed ? 1 : 0);
