// The console's pipeline page in Chromium (driven by tests/console_browser/pipeline.rs): a reviewer
// logs in and opens the pipeline page, which must show the sample's age, a row per stage with
// its plots, and the row of the stage whose topic is missing highlighted with the reason; no
// Content-Security-Policy violation (the plots are inline SVG, no inline style); and at phone
// width the stages are cards, with no sideways overflow.
//
// Environment:
//   CONSOLE_URL            the console's base URL
//   CONSOLE_REVIEWER       the name to log in with (a console without tokens)
//   PIPELINE_STAGES        how many stage rows to expect
//   PIPELINE_TROUBLE       the stage whose row must be highlighted
//   PIPELINE_REASON        text its reasons must contain
//   SCREENSHOT_DIR         optional: where pipeline-desktop.png and pipeline-phone.png go
//   SLUICE_CHROMIUM        Chromium binary (default /usr/bin/chromium)
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const env = process.env;
const need = (name) => {
  if (!env[name]) throw new Error(`missing environment: ${name}`);
  return env[name];
};
const URL_ = need('CONSOLE_URL');
const REVIEWER = need('CONSOLE_REVIEWER');
const STAGES = Number(need('PIPELINE_STAGES'));
const TROUBLE = need('PIPELINE_TROUBLE');
const REASON = need('PIPELINE_REASON');
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
const shotDir = env.SCREENSHOT_DIR ? resolve(env.SCREENSHOT_DIR) : null;
if (shotDir) mkdirSync(shotDir, { recursive: true });

const log = (m) => process.stderr.write(`pipeline: ${m}\n`);
const fail = (m) => { throw new Error(m); };
const violations = [];

async function open(browser, options) {
  const context = await browser.newContext({ ...options, baseURL: URL_ });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (/Content Security Policy|Refused to/.test(msg.text())) violations.push(msg.text());
  });
  return page;
}

async function checkPage(page, where) {
  await page.goto('/pipeline');
  await page.locator('#sampled').waitFor();
  await page.locator('table#stages tr.stage').first().waitFor();
  const rows = await page.locator('table#stages tr.stage').count();
  if (rows !== STAGES) fail(`${where}: ${rows} stage rows, expected ${STAGES}`);
  const trouble = page.locator(`table#stages tr.stage.trouble[data-stage="${TROUBLE}"]`);
  if ((await trouble.count()) !== 1) fail(`${where}: the row of stage ${TROUBLE} is not highlighted`);
  const reasons = await trouble.locator('.trouble-reasons').innerText();
  if (!reasons.includes(REASON)) fail(`${where}: its reasons say ${JSON.stringify(reasons)}, not ${REASON}`);
  if ((await page.locator('table#stages svg.spark').count()) === 0) fail(`${where}: no plot`);
}

const browser = await chromium.launch({
  executablePath: env.SLUICE_CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS, timeout: 30_000,
});
try {
  const page = await open(browser, { viewport: { width: 1280, height: 800 } });
  await page.goto('/login');
  await page.locator('form#login input[name=reviewer]').fill(REVIEWER);
  await page.locator('form#login button[type=submit]').click();
  await page.waitForURL((u) => u.pathname.replace(/\/$/, '') === '/review');
  await checkPage(page, 'desktop');
  if (shotDir) await page.screenshot({ path: join(shotDir, 'pipeline-desktop.png'), fullPage: true });
  log('ok  desktop');

  const phone = await open(browser, { ...PHONE, storageState: await page.context().storageState() });
  await checkPage(phone, 'phone');
  const layout = await phone.evaluate(() => ({
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    thead: getComputedStyle(document.querySelector('table#stages thead')).display,
    row: getComputedStyle(document.querySelector('table#stages tr.stage')).display,
  }));
  if (layout.overflow > 0) fail(`phone: the page overflows sideways by ${layout.overflow} px`);
  if (layout.thead !== 'none' || layout.row !== 'block') fail(`phone: stages are not cards: ${JSON.stringify(layout)}`);
  if (shotDir) await phone.screenshot({ path: join(shotDir, 'pipeline-phone.png'), fullPage: true });
  log('ok  phone');
  if (violations.length) fail(`CSP violations: ${violations.join('; ')}`);
  process.stdout.write(`${JSON.stringify({ stages: STAGES, layout })}\n`);
  await browser.close();
  process.exit(0);
} catch (error) {
  log(`FAILED: ${error.message.split('\n')[0]}`);
  await browser.close().catch(() => {});
  process.exit(1);
}
