// The dead-letter pages in headless Chromium (run by tests/console_browser/dead_letters.rs through
// scripts/browser): the overview and a stage's letters at phone width without sideways overflow;
// a PERMANENT letter's preview warns, and its redrive cannot be sent until the confirmation is
// ticked; once redriven, the letter says so and its button is disabled.
//
// Environment: CONSOLE_URL (required), CONSOLE_DLQ_STAGE (required), CONSOLE_DLQ_AT (the letter's
// P:O, required), SLUICE_CHROMIUM (default /usr/bin/chromium), SCREENSHOT_DIR (optional).
// Screenshots dlq-overview.png, dlq-phone.png, dlq-preview.png, dlq-redriven.png go to SCREENSHOT_DIR when set.
// Prints one JSON line on success; on failure, what failed to stderr, and exits 1.

import { chromium } from 'playwright-core';
import { join } from 'node:path';

const env = process.env;
const URL_ = env.CONSOLE_URL;
const STAGE = env.CONSOLE_DLQ_STAGE;
const AT = env.CONSOLE_DLQ_AT;
const STEP_MS = 10_000;
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
const DESKTOP = { viewport: { width: 1280, height: 800 } };

let step = 'start';
const fail = (m) => { throw new Error(m); };
const log = (m) => process.stderr.write(`dead_letters: ${m}\n`);

async function page(browser, options) {
  const context = await browser.newContext({ ...options, baseURL: URL_ });
  context.setDefaultTimeout(STEP_MS);
  return context.newPage();
}

async function noSidewaysOverflow(p, what) {
  const [scroll, width] = await p.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  if (scroll > width) fail(`${what} overflows sideways at ${width} px: ${scroll} px wide`);
}

async function shot(p, name) {
  if (env.SCREENSHOT_DIR) await p.screenshot({ path: join(env.SCREENSHOT_DIR, name), fullPage: true });
}

async function flow(browser) {
  const desk = await page(browser, DESKTOP);
  step = 'login';
  await desk.goto('/login');
  await desk.locator('form#login input[name=reviewer]').fill('dora');
  await desk.locator('form#login button[type=submit]').click();
  await desk.waitForURL((u) => u.pathname !== '/login');

  step = 'overview';
  await desk.goto('/dead-letters');
  await desk.locator('#dlq-overview').waitFor();
  const current = await desk.locator('#dlq-overview tr.current').getAttribute('data-stage');
  if (current !== STAGE) fail(`the page opened on ${current}, not on ${STAGE}, the stage with letters`);
  const letter = desk.locator(`article.letter[data-at="${AT}"]`);
  await letter.waitFor();
  if ((await letter.getAttribute('data-state')) !== 'outstanding') fail(`letter ${AT} is not outstanding at first`);
  await shot(desk, 'dlq-overview.png');

  step = 'phone';
  const phone = await page(browser, { ...PHONE, storageState: await desk.context().storageState() });
  await phone.goto(`/dead-letters?stage=${encodeURIComponent(STAGE)}`);
  await phone.locator('#dlq-overview').waitFor();
  await phone.locator(`article.letter[data-at="${AT}"] details summary`).click();
  await noSidewaysOverflow(phone, 'the dead-letter page');
  await shot(phone, 'dlq-phone.png');
  await phone.locator(`article.letter[data-at="${AT}"] button.redrive-preview`).click();
  await phone.locator('#redrive-warning').waitFor();
  await noSidewaysOverflow(phone, 'the redrive preview');

  step = 'preview';
  await letter.locator('button.redrive-preview').click();
  await desk.locator('#redrive-plan').waitFor();
  await desk.locator('#redrive-warning').waitFor();
  const counts = await desk.locator('#redrive-counts').innerText();
  if (!/finished by earlier runs: 0/.test(counts)) fail(`the preview's counts are not the letter's: ${counts}`);
  await shot(desk, 'dlq-preview.png');

  step = 'confirmation';
  // The browser refuses to send the form while the confirmation is unticked.
  const valid = () => desk.locator('form#redrive-form').evaluate((f) => f.checkValidity());
  if (await valid()) fail('the redrive form can be sent without the confirmation');
  await desk.locator('#redrive-warning input[type=checkbox]').check();
  if (!(await valid())) fail('the redrive form cannot be sent with the confirmation ticked');
  await desk.locator('button.redrive-execute').click();
  await desk.locator('#redrive-result').waitFor();
  const result = (await desk.locator('#redrive-result').innerText()).trim();
  if (!/redriven 1 of 1/.test(result)) fail(`the result says ${JSON.stringify(result)}`);

  step = 'redriven letter';
  await desk.goto(`/dead-letters?stage=${encodeURIComponent(STAGE)}`);
  await letter.waitFor();
  const state = await letter.getAttribute('data-state');
  if (state === 'outstanding') fail(`letter ${AT} still shows as outstanding after its redrive`);
  if (!(await letter.locator('button.redrive-preview').isDisabled())) fail('its redrive button is still active');
  const badge = (await letter.locator('.state').innerText()).trim();
  if (!/^redriven/.test(badge)) fail(`its state says ${JSON.stringify(badge)}`);
  await shot(desk, 'dlq-redriven.png');
  await phone.goto(`/dead-letters?stage=${encodeURIComponent(STAGE)}`);
  await noSidewaysOverflow(phone, 'the dead-letter page after the redrive');
  return { state, badge, result };
}

if (!URL_ || !STAGE || !AT) {
  log('CONSOLE_URL, CONSOLE_DLQ_STAGE and CONSOLE_DLQ_AT are required');
  process.exit(1);
}
const browser = await chromium.launch({ executablePath: env.SLUICE_CHROMIUM || '/usr/bin/chromium', args: ARGS });
try {
  const summary = await flow(browser);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  await browser.close();
  process.exit(0);
} catch (error) {
  log(`FAILED at ${step}: ${String(error && error.message || error).split('\n')[0]}`);
  await browser.close().catch(() => {});
  process.exit(1);
}
