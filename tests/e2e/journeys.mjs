// Browser journeys through JupyterLab and Notebook 7 served by a Jupyter-compatible server,
// in Debian's chromium driven by playwright-core. Screenshots of each step go to artifacts/.
//
//   node journeys.mjs   (with COMMONLAB_TEST_URL and COMMONLAB_TEST_TOKEN set; see run.sh)
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const base = process.env.COMMONLAB_TEST_URL.replace(/\/?$/, '/');
const token = process.env.COMMONLAB_TEST_TOKEN;
const artifacts = process.env.COMMONLAB_E2E_ARTIFACTS || path.join(import.meta.dirname, 'artifacts');
const executablePath = process.env.COMMONLAB_CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(artifacts, { recursive: true });

const api = async (method, p, body) => {
  const r = await fetch(new URL(p, base), {
    method,
    headers: { Authorization: `token ${token}`, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  return r;
};

let step = 0;
const shot = async (page, name) => {
  step += 1;
  const file = path.join(artifacts, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  console.log(`  screenshot ${path.basename(file)}`);
};

const results = [];
async function journey(name, fn, ctx) {
  const page = await ctx.newPage();
  const failures = [];
  page.on('pageerror', (e) => console.log(`  [pageerror] ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400 && !r.url().includes('/api/terminals')) failures.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  const started = Date.now();
  try {
    await fn(page);
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
    results.push(true);
  } catch (e) {
    console.log(`not ok - ${name}: ${e.message}`);
    await shot(page, `failed-${name.replace(/\W+/g, '-')}`).catch(() => {});
    results.push(false);
  }
  if (failures.length) console.log(`  responses >= 400:\n    ${failures.join('\n    ')}`);
  await page.close();
}

const NB = `e2e-${process.pid}.ipynb`;

// Waits until the notebook's kernel is connected and idle.
async function kernelIdle(page) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const kernels = await (await api('GET', 'api/kernels')).json();
    if (kernels.some((k) => k.connections > 0 && k.execution_state === 'idle')) break;
    if (Date.now() > deadline) throw new Error(`no connected idle kernel: ${JSON.stringify(kernels)}`);
    await page.waitForTimeout(250);
  }
  // The front end sees the same state a moment later.
  await page.waitForTimeout(500);
}

async function runFirstCell(page, code, expected) {
  await kernelIdle(page);
  const editor = page.locator('.jp-Notebook .jp-Cell').first().locator('.cm-content');
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.type(code);
  await page.keyboard.press('Shift+Enter');
  await page
    .locator('.jp-Notebook .jp-Cell')
    .first()
    .locator('.jp-OutputArea-output', { hasText: expected })
    .waitFor({ timeout: 60_000 });
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'commonlab-e2e-'));
const browser = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
browser.setDefaultTimeout(60_000);

try {
  await journey('JupyterLab: new notebook from the launcher, run print(1+1), save, reload', async (page) => {
    await page.goto(`${base}lab?reset&token=${encodeURIComponent(token)}`);
    const card = page.locator('.jp-LauncherCard[data-category="Notebook"]').first();
    await card.waitFor();
    await shot(page, 'lab-launcher');
    await card.click();
    const noNews = page.locator('.jp-toast-button', { hasText: 'No' });
    noNews.click({ timeout: 5_000 }).catch(() => {});
    await page.locator('.jp-NotebookPanel .jp-Notebook .jp-Cell').first().waitFor();
    // The kernel picked by the Python card is running.
    await page.locator('.jp-NotebookPanel .jp-Toolbar-kernelName', { hasText: 'Python' }).first().waitFor();
    await shot(page, 'lab-new-notebook');
    await runFirstCell(page, 'print(1+1)', /^\s*2\s*$/);
    await shot(page, 'lab-ran-cell');
    // Name it, then save.
    const title = await page.locator('.jp-NotebookPanel').first().getAttribute('id');
    const tabLabel = await page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel').innerText();
    await page.locator('.jp-NotebookPanel-toolbar [data-command="docmanager:save"]').first().click();
    // First save asks for a name.
    const nameInput = page.locator('.jp-Dialog input[type="text"], .jp-Dialog input:not([type])').first();
    await nameInput.fill(NB);
    await page.locator('.jp-Dialog .jp-mod-accept').click();
    await page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current.jp-mod-dirty').waitFor({ state: 'detached' });
    const saved = await (await api('GET', `api/contents/${encodeURIComponent(NB)}`)).json();
    const outputs = saved.content?.cells?.[0]?.outputs ?? [];
    if (!outputs.some((o) => [].concat(o.text ?? '').join('').includes('2'))) throw new Error(`saved notebook lacks the output: ${JSON.stringify(saved).slice(0, 300)}`);
    await shot(page, 'lab-saved');
    // Reload on the tree URL without the token: the cookie authenticates.
    await page.goto(`${base}lab/tree/${NB}`);
    await page
      .locator('.jp-NotebookPanel .jp-OutputArea-output', { hasText: /^\s*2\s*$/ })
      .first()
      .waitFor();
    await shot(page, 'lab-reloaded');
  }, browser);

  await journey('Notebook 7: open the notebook from /tree, run a cell', async (page) => {
    await page.goto(`${base}tree?token=${encodeURIComponent(token)}`);
    const item = page.locator('.jp-DirListing-item', { hasText: NB }).first();
    await item.waitFor();
    await shot(page, 'notebook-tree');
    const [nbPage] = await Promise.all([browser.waitForEvent('page'), item.dblclick()]);
    nbPage.on('pageerror', (e) => console.log(`  [pageerror] ${e.message}`));
    await nbPage.waitForURL(/\/notebooks\//);
    await nbPage.locator('.jp-Notebook .jp-Cell').first().waitFor();
    await nbPage.locator('.jp-OutputArea-output', { hasText: /^\s*2\s*$/ }).first().waitFor();
    await shot(nbPage, 'notebook-opened');
    await runFirstCell(nbPage, 'print(2+3)', /^\s*5\s*$/);
    await shot(nbPage, 'notebook-ran-cell');
    await nbPage.close();
  }, browser);
} finally {
  await browser.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
  // Leave no kernels or sessions behind.
  const sessions = await (await api('GET', 'api/sessions')).json().catch(() => []);
  for (const s of sessions) if (s.path === NB || s.path?.startsWith('Untitled')) await api('DELETE', `api/sessions/${s.id}`);
  await api('DELETE', `api/contents/${encodeURIComponent(NB)}`);
}

const failed = results.filter((r) => !r).length;
console.log(`${results.length - failed}/${results.length} browser journeys passed; screenshots in ${artifacts}`);
process.exit(failed ? 1 : 0);
