// The review flow of issue 24 ("never lose a reviewer's work") in headless Chromium, driven by
// tests/console_browser/review.rs. Run through scripts/browser:
//
//   CONSOLE_URL=http://127.0.0.1:43211 CONSOLE_DOC=doc-parcel CONSOLE_LONG_DOC=doc-long node tools/browser/review.mjs
//
// Flow: log in -> claim CONSOLE_DOC: the page is titled with the document id, Approve is in view
// at 1280x800 and the answer is shown once -> an empty answer is refused by the page's script,
// and by the server when the script is bypassed -> an unsent edit is restored after leaving the
// page -> the session is lost (cookies cleared, as after a console restart): Approve answers a
// page to log in again that shows the edit; logging in brings her back to her item, claimed by
// her, with her edit -> Approve: "Approved <doc>" -> at 390 px no console page overflows
// sideways. Prints one JSON line on success; on failure says which step failed, saves
// failure.png into SCREENSHOT_DIR (if set) and exits 1.
//
// Environment: CONSOLE_URL, CONSOLE_DOC, CONSOLE_LONG_DOC (required); CONSOLE_EDITED_ANSWER;
// CONSOLE_REVIEWER (default alice); SCREENSHOT_DIR; SLUICE_CHROMIUM (default /usr/bin/chromium).

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const env = process.env;
const STEP_MS = 10_000;
const DEADLINE_MS = 120_000;
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const DESKTOP = { viewport: { width: 1280, height: 800 } };
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };

const URL_ = (env.CONSOLE_URL || '').replace(/\/+$/, '');
const DOC = env.CONSOLE_DOC;
const LONG_DOC = env.CONSOLE_LONG_DOC;
const EDIT = env.CONSOLE_EDITED_ANSWER || 'Edited by the review browser test.';
const REVIEWER = env.CONSOLE_REVIEWER || 'alice';
const shotDir = env.SCREENSHOT_DIR ? resolve(env.SCREENSHOT_DIR) : null;

let step = 'configuration';
let browser = null;
let active = null;
const screenshots = [];

class FlowError extends Error {}
const fail = (message) => { throw new FlowError(message); };
const log = (message) => process.stderr.write(`review: ${message}\n`);

async function run(name, fn) {
  step = name;
  const t0 = Date.now();
  const result = await fn();
  log(`ok  ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  return result;
}

// Every response of 400 or more that the flow did not expect fails it (a missing icon included).
async function newPage(options) {
  const context = await browser.newContext({ ...options, baseURL: URL_ });
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  page.__expected = new Set();
  page.__errors = [];
  page.on('response', (r) => {
    const path = new URL(r.url()).pathname;
    if (r.status() >= 400 && !page.__expected.has(`${r.status()} ${path}`)) {
      page.__errors.push(`${r.status()} for ${r.request().method()} ${path}`);
    }
  });
  page.on('pageerror', (e) => page.__errors.push(`script error: ${e.message}`));
  active = page;
  return page;
}

function check(page) {
  if (page.__errors.length) fail(`the console answered ${page.__errors.splice(0).join('; ')}`);
}

async function goto(page, path) {
  await page.goto(path, { waitUntil: 'load' });
  check(page);
}

async function shot(page, name) {
  if (!shotDir) return;
  const path = join(shotDir, name);
  await page.screenshot({ path, fullPage: true });
  screenshots.push(path);
}

const itemSel = (doc) => `article.item[data-doc="${doc}"]`;

async function login(page) {
  await goto(page, '/login');
  if (await page.locator('header nav').count()) fail('the login page shows the navigation before login');
  await page.locator('form#login input[name=reviewer]').fill(REVIEWER);
  await Promise.all([page.waitForURL(/\/review/), page.locator('form#login button[type=submit]').click()]);
  check(page);
}

async function claim(page, doc) {
  await goto(page, '/review');
  await page.locator(`${itemSel(doc)} button.claim`).click();
  await page.waitForURL(/\/review\/item\//);
  await page.locator('form#decide').waitFor();
  check(page);
}

async function flashText(page) {
  return (await page.locator('.flash').first().innerText()).trim();
}

// The page does not scroll sideways; what sticks out (outside a scrolling box) is named.
async function noSidewaysOverflow(page, what) {
  const found = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const clipped = (el) => {
      for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        if (getComputedStyle(p).overflowX !== 'visible') return true;
      }
      return false;
    };
    const wide = [];
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (r.right > width + 1 && r.width > 0 && !clipped(el)) {
        wide.push(`<${el.localName}${el.id ? '#' + el.id : ''}${typeof el.className === 'string' && el.className ? '.' + el.className.split(' ').join('.') : ''}> to ${Math.round(r.right)}px`);
      }
    }
    return { scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 5) };
  });
  if (found.scroll > found.width) {
    fail(`${what} overflows sideways at ${found.width}px (scrollWidth ${found.scroll}): ${found.wide.join(', ')}`);
  }
}

async function flow() {
  if (!URL_ || !DOC || !LONG_DOC) fail('CONSOLE_URL, CONSOLE_DOC and CONSOLE_LONG_DOC are required');
  if (shotDir) mkdirSync(shotDir, { recursive: true });
  browser = await chromium.launch({ executablePath: env.SLUICE_CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS });
  const page = await newPage(DESKTOP);

  await run('login without navigation, the icon served', async () => {
    await login(page);
    const icon = await page.request.get('/favicon.ico');
    if (icon.status() !== 200) fail(`/favicon.ico answered ${icon.status()}`);
  });

  await run('the item page: its document, Approve in view, the answer once', async () => {
    await claim(page, DOC);
    const title = await page.title();
    if (!title.startsWith(DOC)) fail(`the item page is titled ${JSON.stringify(title)}, not after ${DOC}`);
    const flash = await flashText(page);
    if (!flash.includes(`Claimed ${DOC}`)) fail(`the claim's flash says ${JSON.stringify(flash)}`);
    const left = (await page.locator('.decide .claim').innerText()).trim();
    if (!/\d+ min left/.test(left)) fail(`the form says ${JSON.stringify(left)}, not the time the claim has left`);
    const box = await page.locator('form#decide button[value=approve]').boundingBox();
    if (!box || box.y + box.height > 800) fail(`Approve is at y=${box && Math.round(box.y)}, out of view at 1280x800`);
    const answer = await page.locator('form#decide textarea[name=answer]').inputValue();
    const copies = await page.evaluate((text) => {
      const main = document.querySelector('main').cloneNode(true);
      main.querySelector('#decide').remove();
      return main.textContent.split(text).length - 1;
    }, answer.trim());
    if (copies !== 0) fail(`the answer is shown ${copies} more time(s) beside the form`);
  });

  await run('an empty answer is refused by the page', async () => {
    await page.locator('form#decide textarea[name=answer]').fill('   ');
    await page.locator('form#decide button[value=approve]').click();
    await page.waitForTimeout(300);
    if (!/\/review\/item\//.test(page.url())) fail(`the empty answer was sent: now at ${page.url()}`);
    const why = await page.locator('form#decide textarea[name=answer]').evaluate((t) => t.validationMessage);
    if (!/empty/.test(why)) fail(`the answer box says ${JSON.stringify(why)}`);
  });

  await run('an empty answer is refused by the server, the form kept', async () => {
    // The answer comes back on the same URL: mark this document, and wait for one without it.
    await page.evaluate(() => { document.body.dataset.stale = '1'; });
    await Promise.all([
      page.waitForFunction(() => document.readyState === 'complete' && document.body && document.body.dataset.stale !== '1'),
      page.evaluate(() => {
        const form = document.getElementById('decide');
        const decision = document.createElement('input');
        Object.assign(decision, { type: 'hidden', name: 'decision', value: 'approve' });
        form.appendChild(decision);
        HTMLFormElement.prototype.submit.call(form); // no submit event: the script is bypassed
      }),
    ]);
    check(page);
    const flash = await flashText(page);
    if (!/cannot be empty/.test(flash)) fail(`after an empty approval the page says ${JSON.stringify(flash)}; all: ${JSON.stringify(await page.locator('.flash').allInnerTexts())} answer ${JSON.stringify(await page.locator('form#decide textarea[name=answer]').inputValue())}`);
    await page.locator('form#decide').waitFor();
  });

  await run('an unsent edit is restored after leaving the page', async () => {
    await page.locator('form#decide textarea[name=answer]').fill(EDIT);
    await page.locator('form#decide button[value=reject]').click(); // no note: refused by the page
    await page.waitForTimeout(200);
    if (!/\/review\/item\//.test(page.url())) fail('a rejection without a note was sent');
    const item = page.url();
    await goto(page, '/review');
    await goto(page, item);
    await page.locator('#draft-restored').waitFor();
    const value = await page.locator('form#decide textarea[name=answer]').inputValue();
    if (value !== EDIT) fail(`the restored answer is ${JSON.stringify(value)}`);
  });

  await run('a lost session keeps the edit and her claim', async () => {
    await page.context().clearCookies();
    page.__expected.add(`401 ${new URL(page.url()).pathname}/decide`);
    await Promise.all([page.waitForURL(/\/decide/), page.locator('form#decide button[value=approve]').click()]);
    const h1 = (await page.locator('h1').innerText()).trim();
    if (!/session has ended/i.test(h1)) fail(`after the session was lost the page says ${JSON.stringify(h1)}`);
    const kept = await page.locator('#kept-answer').inputValue();
    if (kept !== EDIT) fail(`the page to log in again shows ${JSON.stringify(kept)}, not the edit`);
    await shot(page, 'review-session-ended.png');
    await page.locator('form#login input[name=reviewer]').fill(REVIEWER);
    await Promise.all([page.waitForURL(/\/review\/item\//), page.locator('form#login button[type=submit]').click()]);
    check(page);
    await page.locator('#draft-kept').waitFor();
    const value = await page.locator('form#decide textarea[name=answer]').inputValue();
    if (value !== EDIT) fail(`back on the item the answer is ${JSON.stringify(value)}`);
    await Promise.all([page.waitForURL(/\/review$/), page.locator('form#decide button[value=approve]').click()]);
    check(page);
    const flash = await flashText(page);
    if (flash !== `Approved ${DOC}`) fail(`the flash says ${JSON.stringify(flash)}, expected "Approved ${DOC}"`);
  });

  await run('no page overflows sideways on a phone', async () => {
    const phone = await newPage({ ...PHONE, storageState: await page.context().storageState() });
    await claim(phone, LONG_DOC);
    await noSidewaysOverflow(phone, 'the item page');
    await shot(phone, 'review-item-phone.png');
    for (const path of ['/review', '/dead-letters', '/pipeline']) {
      await goto(phone, path);
      await noSidewaysOverflow(phone, path);
    }
    phone.__expected.add('404 /no-such-page');
    await goto(phone, '/no-such-page');
    if ((await phone.locator('h1').innerText()).trim() !== 'Page not found') fail('an unknown path has no console page');
    await noSidewaysOverflow(phone, 'the 404 page');
    await phone.context().clearCookies();
    await goto(phone, '/login');
    await noSidewaysOverflow(phone, '/login');
    await phone.context().close();
    active = page;
  });
  return { doc: DOC, screenshots };
}

async function closeBrowser() {
  const b = browser;
  browser = null;
  if (b) await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000).unref())]);
}

async function failure(message) {
  log(`FAILED at step "${step}" on ${active && !active.isClosed() ? active.url() : '(no page)'}: ${message}`);
  if (shotDir && active && !active.isClosed()) {
    await active.screenshot({ path: join(shotDir, 'failure.png'), fullPage: true }).catch(() => {});
  }
  await closeBrowser();
  process.exit(1);
}

const watchdog = setTimeout(() => failure(`the flow did not finish within ${DEADLINE_MS} ms`), DEADLINE_MS);
try {
  const summary = await flow();
  clearTimeout(watchdog);
  await closeBrowser();
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(0);
} catch (error) {
  clearTimeout(watchdog);
  await failure(error instanceof FlowError ? error.message : String(error?.message ?? error).split('\n')[0]);
}
