// Drives the Debian chromium package (never a downloaded browser) with puppeteer-core: loads the
// page at argv[2], waits until it says it is done (at most 30 s), prints what it received as one
// JSON line, and exits 0 (the caller checks the contents). Exit 1 on a launch or page failure.
import puppeteer from 'puppeteer-core';
import fs from 'fs';
import os from 'os';
import path from 'path';

const url = process.argv[2];
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'myriad-chromium-'));
let browser;
let code = 1;
try {
  browser = await puppeteer.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    userDataDir: profile,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run',
           `--user-data-dir=${profile}`],
  });
  const page = await browser.newPage();
  page.on('console', (m) => console.error('page:', m.text()));
  await page.goto(url, { waitUntil: 'load', timeout: 30000 });
  await page.waitForFunction('window.done === true', { timeout: 30000 }).catch(() => {});
  const results = await page.evaluate(() => ({ done: window.done, ...window.results }));
  console.log(JSON.stringify({ browser: await browser.version(), ...results }));
  code = 0;
} catch (e) {
  console.error('browser test:', e.message);
} finally {
  if (browser) await browser.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
