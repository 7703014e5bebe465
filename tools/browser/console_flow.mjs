// Drives headless Chromium through the sluice web console (`sluice console`), the browser half of
// the console's end-to-end test. Run through scripts/browser, which installs Chromium and
// playwright-core and exports SLUICE_CHROMIUM and SLUICE_BROWSER_FLOW:
//
//   CONSOLE_URL=http://127.0.0.1:43211 CONSOLE_APPROVE_DOC=... node "$SLUICE_BROWSER_FLOW"
//
// Flow: login -> /review (+ phone-sized screenshot) -> the XSS item is escaped in the list and on
// its item page (claimed, not decided) -> approve one item with an edited answer and a note ->
// reject another -> /dead-letters?stage=S, preview and execute the redrive of one letter ->
// /pipeline. On success prints one JSON line to stdout and exits 0; on failure prints what step
// failed at which URL to stderr, saves failure.png into SCREENSHOT_DIR (if set) and exits 1.
// Progress goes to stderr.
//
// Environment:
//   CONSOLE_URL              console base URL (required)
//   CONSOLE_REVIEWER         reviewer name to log in as (default alice)
//   CONSOLE_TOKEN            access token for the login form, when the console requires one
//   CONSOLE_APPROVE_DOC      document id of the queue item to approve (required)
//   CONSOLE_REJECT_DOC       document id of the queue item to reject (required)
//   CONSOLE_EDITED_ANSWER    answer text submitted with the approval
//   CONSOLE_NOTE             note submitted with both decisions
//   CONSOLE_XSS_DOC          document id of the queue item whose content carries markup (required)
//   CONSOLE_DLQ_STAGE        stage whose dead-letter topic holds the letter to redrive (required)
//   CONSOLE_REDRIVE_DOC      document id shown on that letter (required)
//   SCREENSHOT_DIR           where to save full-page PNGs (optional)
//   SLUICE_CHROMIUM          Chromium binary (default /usr/bin/chromium)
//   CONSOLE_STEP_TIMEOUT_MS  timeout of every single wait (default 10000)
//   CONSOLE_FLOW_DEADLINE_MS the whole run is cut off after this (default 180000)

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const env = process.env;
const STEP_MS = positiveInt('CONSOLE_STEP_TIMEOUT_MS', 10_000);
const DEADLINE_MS = positiveInt('CONSOLE_FLOW_DEADLINE_MS', 180_000);

// The flags Chromium needs as root on a machine without a network beyond loopback: without the
// background-networking ones it dials out at start and those connections are refused.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const DESKTOP = { viewport: { width: 1280, height: 800 } };
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
const XSS_MARKER = '__sluiceXss';

let step = 'configuration';
let activePage = null;
let browser = null;
let shotDir = null;
const screenshots = [];
const started = Date.now();

function positiveInt(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

function log(message) {
  process.stderr.write(`console_flow: ${message}\n`);
}

class FlowError extends Error {}

function fail(message) {
  throw new FlowError(message);
}

// A CSS attribute selector for an arbitrary value: [data-doc="..."].
function attr(name, value) {
  return `[${name}="${String(value).replace(/["\\]/g, '\\$&').replace(/\n/g, '\\a ')}"]`;
}

function pathOf(page) {
  return new URL(page.url()).pathname;
}

async function run(name, fn) {
  step = name;
  const t0 = Date.now();
  const result = await fn();
  log(`ok  ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  return result;
}

async function newPage(options) {
  const context = await browser.newContext({ ...options, baseURL: CONSOLE_URL });
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(STEP_MS);
  const page = await context.newPage();
  // A console page that fails to render is reported with the step, not as a timeout on a missing element.
  page.on('response', (response) => {
    if (response.request().isNavigationRequest() && response.frame() === page.mainFrame() && response.status() >= 400) {
      page.__httpErrors.push(`${response.status()} ${response.statusText()} for ${response.request().method()} ${response.url()}`);
    }
  });
  page.on('pageerror', (error) => log(`page script error on ${page.url()}: ${error.message}`));
  page.__httpErrors = [];
  activePage = page;
  return page;
}

function checkHttp(page) {
  if (page.__httpErrors.length) {
    const errors = page.__httpErrors.splice(0);
    fail(`the console answered ${errors.join('; ')}`);
  }
}

async function goto(page, path) {
  let response;
  try {
    response = await page.goto(path, { waitUntil: 'load' });
  } catch (error) {
    fail(`GET ${new URL(path, CONSOLE_URL + '/')} failed: ${firstLine(error).replace(/^page\.goto: /, '')}`);
  }
  checkHttp(page);
  if (response && response.status() >= 400) fail(`GET ${path} answered ${response.status()}`);
}

async function waitForPath(page, test, description) {
  try {
    await page.waitForURL((url) => test(url.pathname), { waitUntil: 'load' });
  } catch (error) {
    checkHttp(page);
    fail(`expected to arrive at ${description}, still at ${page.url()} (${firstLine(error)})`);
  }
  checkHttp(page);
}

async function waitVisible(page, selector, what) {
  try {
    await page.locator(selector).first().waitFor({ state: 'visible' });
  } catch (error) {
    checkHttp(page);
    fail(`${what} (${selector}) did not appear within ${STEP_MS} ms`);
  }
}

// The decision is applied asynchronously in the console's backend, so an item may still be listed
// right after the redirect: reload /review until it is gone.
async function waitGone(page, selector, what) {
  const until = Date.now() + STEP_MS;
  for (;;) {
    if ((await page.locator(selector).count()) === 0) return;
    if (Date.now() > until) fail(`${what} (${selector}) is still listed on ${page.url()} after ${STEP_MS} ms`);
    await page.waitForTimeout(300);
    await goto(page, '/review');
  }
}

async function checkNav(page) {
  for (const [id, path] of [['nav-review', '/review'], ['nav-dlq', '/dead-letters'], ['nav-pipeline', '/pipeline']]) {
    const link = page.locator(`a#${id}`);
    if ((await link.count()) !== 1) fail(`the page has no nav link a#${id}`);
    const href = await link.getAttribute('href');
    const target = new URL(href ?? '', page.url()).pathname;
    if (target !== path) fail(`nav link a#${id} goes to ${JSON.stringify(href)}, expected ${path}`);
  }
}

async function shot(page, name) {
  if (!shotDir) return;
  const path = join(shotDir, name);
  await page.screenshot({ path, fullPage: true, timeout: STEP_MS });
  screenshots.push(path);
}

// The flash after an action: success expected, its text must match `expect`.
async function expectFlash(page, expect) {
  await waitVisible(page, '.flash', 'the flash message');
  const flash = page.locator('.flash').first();
  const text = (await flash.innerText()).trim();
  const classes = (await flash.getAttribute('class')) ?? '';
  if (classes.split(/\s+/).includes('error')) fail(`the console flashed an error: ${JSON.stringify(text)}`);
  if (!expect.test(text)) fail(`the flash says ${JSON.stringify(text)}, expected it to match ${expect}`);
  return text;
}

// Content with markup must be shown as text: no injected element, no handler ran, the text visible.
async function checkEscaped(page, scope, where) {
  await page.waitForLoadState('load');
  await page.waitForTimeout(250); // let an injected <img onerror> fire if there is one
  const found = await page.evaluate(
    ({ marker, scope }) => {
      const injected = [];
      for (const el of document.querySelectorAll('script')) {
        if (el.textContent.includes(marker)) injected.push('<script> element');
      }
      for (const el of document.querySelectorAll('*')) {
        for (const a of el.attributes) {
          if (a.name.startsWith('on') && a.value.includes(marker)) injected.push(`<${el.localName} ${a.name}> attribute`);
        }
      }
      const root = scope ? document.querySelector(scope) : document.body;
      return {
        value: window[marker] === undefined ? null : String(window[marker]),
        injected,
        text: root ? root.innerText : null,
      };
    },
    { marker: XSS_MARKER, scope },
  );
  if (found.value !== null) fail(`${where}: window.${XSS_MARKER} is ${found.value}: the content's markup ran`);
  if (found.injected.length) fail(`${where}: the content's markup was rendered as ${found.injected.join(', ')}`);
  if (found.text === null) fail(`${where}: ${scope} is not on the page`);
  if (!found.text.includes('<script>')) {
    fail(`${where}: the literal text "<script>" is not visible${scope ? ` in ${scope}` : ''} (escaped content expected, not dropped)`);
  }
}

async function claim(page, doc, what) {
  const item = page.locator(`article.item${attr('data-doc', doc)}`).first();
  await waitVisible(page, `article.item${attr('data-doc', doc)}`, `the queue item of ${what} document ${doc}`);
  const id = await item.getAttribute('data-item');
  const m = /^(\d+)-(\d+)$/.exec(id ?? '');
  if (!m) fail(`article.item of document ${doc} has data-item=${JSON.stringify(id)}, expected "<partition>-<offset>"`);
  const itemPath = `/review/item/${m[1]}/${m[2]}`;
  const button = item.locator('button.claim');
  if ((await button.count()) !== 1) fail(`article.item of document ${doc} has no (single) button.claim`);
  await button.click();
  await waitForPath(page, (p) => p.replace(/\/$/, '') === itemPath, `the item page ${itemPath}`);
  await waitVisible(page, 'form#decide', 'the decision form');
  await checkNav(page);
  return id;
}

async function decide(page, doc, decision, { answer, note, screenshot }) {
  const id = await claim(page, doc, `the ${decision}`);
  const answerBox = page.locator('form#decide textarea[name=answer]');
  const noteBox = page.locator('form#decide textarea[name=note]');
  if ((await answerBox.count()) !== 1) fail('form#decide has no textarea[name=answer]');
  if ((await noteBox.count()) !== 1) fail('form#decide has no textarea[name=note]');
  const generated = await answerBox.inputValue();
  if (!generated.trim()) fail('textarea[name=answer] is not prefilled with the generated answer');
  if (answer !== undefined) await answerBox.fill(answer);
  await noteBox.fill(note);
  if (screenshot) await shot(page, screenshot);
  const button = page.locator(`form#decide button[name=decision][value=${decision}]`);
  if ((await button.count()) !== 1) fail(`form#decide has no button[name=decision][value=${decision}]`);
  await button.click();
  await waitForPath(page, (p) => p.replace(/\/$/, '') === '/review', '/review after the decision');
  const flash = await expectFlash(page, decision === 'approve' ? /approv/i : /reject/i);
  await waitGone(page, `article.item${attr('data-doc', doc)}`, `the ${decision === 'approve' ? 'approved' : 'rejected'} item`);
  return { doc, item: id, flash };
}

function firstLine(error) {
  return String(error?.message ?? error).split('\n')[0];
}

function required(name) {
  const value = env[name];
  if (value === undefined || value === '') return null;
  return value;
}

const missing = [];
function need(name) {
  const v = required(name);
  if (v === null) missing.push(name);
  return v;
}

const CONSOLE_URL = need('CONSOLE_URL')?.replace(/\/+$/, '');
const REVIEWER = env.CONSOLE_REVIEWER || 'alice';
const TOKEN = required('CONSOLE_TOKEN');
const APPROVE_DOC = need('CONSOLE_APPROVE_DOC');
const REJECT_DOC = need('CONSOLE_REJECT_DOC');
const EDITED_ANSWER = env.CONSOLE_EDITED_ANSWER ?? 'Answer edited by the console browser test.';
const NOTE = env.CONSOLE_NOTE ?? 'Decided by the console browser test.';
const XSS_DOC = need('CONSOLE_XSS_DOC');
const DLQ_STAGE = need('CONSOLE_DLQ_STAGE');
const REDRIVE_DOC = need('CONSOLE_REDRIVE_DOC');
const EXECUTABLE = env.SLUICE_CHROMIUM || '/usr/bin/chromium';

async function flow() {
  if (missing.length) fail(`missing environment: ${missing.join(', ')}`);
  if (!/^https?:\/\//.test(CONSOLE_URL)) fail(`CONSOLE_URL must be an http(s) URL, got ${JSON.stringify(CONSOLE_URL)}`);
  if (env.SCREENSHOT_DIR) {
    shotDir = resolve(env.SCREENSHOT_DIR);
    mkdirSync(shotDir, { recursive: true });
  }

  await run(`launch ${EXECUTABLE}`, async () => {
    browser = await chromium.launch({
      executablePath: EXECUTABLE,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 3 * STEP_MS,
    });
  });
  const page = await newPage(DESKTOP);

  await run('login', async () => {
    await goto(page, '/');
    await waitForPath(page, (p) => p === '/login', '/login (GET / without a session must redirect there)');
    await waitVisible(page, 'form#login', 'the login form');
    await page.locator('form#login input[name=reviewer]').fill(REVIEWER);
    const tokenBox = page.locator('form#login input[name=token]');
    const hasToken = (await tokenBox.count()) > 0;
    if (hasToken && TOKEN === null) fail('the console asks for a token (input[name=token]) but CONSOLE_TOKEN is not set');
    if (!hasToken && TOKEN !== null) fail('CONSOLE_TOKEN is set but the login form has no input[name=token]');
    if (hasToken) await tokenBox.fill(TOKEN);
    await page.locator('form#login button[type=submit]').click();
    await waitForPath(page, (p) => p.replace(/\/$/, '') === '/review', '/review after login');
  });

  await run('review queue', async () => {
    await waitVisible(page, `article.item${attr('data-doc', APPROVE_DOC)}`, `the queue item of document ${APPROVE_DOC}`);
    await waitVisible(page, 'table#depth', 'the depth-per-tenant table');
    for (const sel of ['form#filters select[name=tenant]', 'form#filters select[name=label]']) {
      if ((await page.locator(sel).count()) !== 1) fail(`the queue page has no ${sel}`);
    }
    await checkNav(page);
    await shot(page, 'review.png');
  });

  if (shotDir) {
    await run('review queue on a phone', async () => {
      const phone = await newPage({ ...PHONE, storageState: await page.context().storageState() });
      await goto(phone, '/review');
      if (pathOf(phone).replace(/\/$/, '') !== '/review') fail(`the phone session landed on ${phone.url()}, not /review`);
      await waitVisible(phone, 'article.item', 'a queue item');
      await shot(phone, 'review-phone.png');
      await phone.context().close();
      activePage = page;
    });
  }

  await run('xss in the review list', async () => {
    await goto(page, '/review');
    await checkEscaped(page, `article.item${attr('data-doc', XSS_DOC)}`, 'review list');
  });

  await run('xss on the item page', async () => {
    await claim(page, XSS_DOC, 'the markup');
    await checkEscaped(page, null, `item page ${pathOf(page)}`);
    await goto(page, '/review');
  });

  const approved = await run('approve', () =>
    decide(page, APPROVE_DOC, 'approve', { answer: EDITED_ANSWER, note: NOTE, screenshot: 'review-item.png' }),
  );
  const rejected = await run('reject', () => decide(page, REJECT_DOC, 'reject', { note: NOTE }));

  const redriven = await run('redrive', async () => {
    await goto(page, `/dead-letters?stage=${encodeURIComponent(DLQ_STAGE)}`);
    for (const sel of ['form#dlq-filter select[name=stage]', 'form#dlq-filter select[name=class]']) {
      if ((await page.locator(sel).count()) !== 1) fail(`the dead-letter page has no ${sel}`);
    }
    await checkNav(page);
    const letterSel = `article.letter${attr('data-doc', REDRIVE_DOC)}`;
    await waitVisible(page, letterSel, `the dead letter of document ${REDRIVE_DOC} in stage ${DLQ_STAGE}`);
    const letter = page.locator(letterSel).first();
    const offset = await letter.getAttribute('data-offset');
    await shot(page, 'dead-letters.png');

    step = 'redrive preview';
    const preview = letter.locator('button.redrive-preview');
    if ((await preview.count()) !== 1) fail(`the letter of document ${REDRIVE_DOC} has no (single) button.redrive-preview`);
    await preview.click();
    await waitVisible(page, 'table#redrive-plan, .flash.error', 'the dry-run plan');
    checkHttp(page);
    if (await page.locator('.flash.error').count()) fail(`the preview flashed an error: ${JSON.stringify((await page.locator('.flash.error').first().innerText()).trim())}`);
    await waitVisible(page, 'table#redrive-plan', 'the dry-run plan');
    await shot(page, 'redrive-preview.png');

    step = 'redrive execute';
    const execute = page.locator('button.redrive-execute');
    if ((await execute.count()) !== 1) fail('the preview page has no (single) button.redrive-execute');
    // The provider refused the document for good (PERMANENT): the preview warns that it will fail
    // again unless its cause changed, and redriving it needs the box ticked.
    const confirm = page.locator('#redrive-warning input[type=checkbox]');
    if ((await confirm.count()) !== 1) fail('the preview of a PERMANENT letter has no warning to confirm');
    await confirm.check();
    await execute.click();
    await waitVisible(page, '#redrive-result, .flash.error', 'the redrive result');
    checkHttp(page);
    if (await page.locator('.flash.error').count()) fail(`the redrive flashed an error: ${JSON.stringify((await page.locator('.flash.error').first().innerText()).trim())}`);
    const result = (await page.locator('#redrive-result').first().innerText()).trim();
    if (!/\bredriven 1\b/.test(result)) fail(`#redrive-result says ${JSON.stringify(result)}, expected "redriven 1"`);
    return { doc: REDRIVE_DOC, stage: DLQ_STAGE, offset, result };
  });

  const stages = await run('pipeline', async () => {
    await goto(page, '/pipeline');
    await waitVisible(page, 'table#stages tr.stage', 'a stage row');
    await checkNav(page);
    await shot(page, 'pipeline.png');
    return page.locator('table#stages tr.stage').count();
  });

  return { approved, rejected, redriven, stages, screenshots };
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = null;
  await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000).unref())]);
}

let failing = false;
async function failure(message) {
  if (failing) return; // the watchdog and the interrupted step both report: the first one wins
  failing = true;
  const url = activePage && !activePage.isClosed() ? activePage.url() : '(no page)';
  log(`FAILED at step "${step}" on ${url}: ${message}`);
  if (shotDir && activePage && !activePage.isClosed()) {
    const path = join(shotDir, 'failure.png');
    try {
      await activePage.screenshot({ path, fullPage: true, timeout: 5000 });
      log(`screenshot of the failure: ${path}`);
    } catch (error) {
      log(`could not save ${path}: ${firstLine(error)}`);
    }
  }
  await closeBrowser();
  process.exit(1);
}

const watchdog = setTimeout(() => {
  failure(`the whole flow did not finish within ${DEADLINE_MS} ms`);
}, DEADLINE_MS);

try {
  const summary = await flow();
  await closeBrowser();
  clearTimeout(watchdog);
  log(`passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(0);
} catch (error) {
  clearTimeout(watchdog);
  await failure(error instanceof FlowError ? error.message : firstLine(error));
}
