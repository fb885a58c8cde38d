// Opens myriad-push's live page in Debian's Chromium (puppeteer-core from tests/browser, never a
// downloaded browser), publishes while it watches, and prints one JSON line with what the page
// showed. usage: NODE_PATH=tests/browser/node_modules node dashboard.cjs http://127.0.0.1:PORT
// Exit 0 with the JSON (the caller checks it), 1 on a launch or page failure.
const puppeteer = require('puppeteer-core');
const fs = require('fs');
const os = require('os');
const path = require('path');

const base = process.argv[2];
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'myriad-push-chromium-'));

async function publish(topic, body) {
  const r = await fetch(`${base}/publish/${topic}`, { method: 'POST', body });
  if (r.status !== 200) throw new Error(`publish ${topic}: ${r.status}`);
  return r.json();
}

(async () => {
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
    await page.goto(`${base}/?topics=demo/a`, { waitUntil: 'load', timeout: 30000 });
    // Live, and the server's figures arriving.
    await page.waitForFunction('window.pushState.connected && window.pushState.sysCount >= 2',
                               { timeout: 30000 });
    for (let i = 1; i <= 3; i++) await publish('demo/a', `hello-browser-${i}`);
    // A topic the page was not asked for: it follows it from $sys's busiest topics.
    await publish('auto/b', 'found-by-sys');
    await page.waitForFunction(() => {
      const row = document.querySelector('tr[data-topic="demo/a"]');
      return row && row.children[3].textContent === 'hello-browser-3';
    }, { timeout: 30000 });
    await page.waitForFunction(() => {
      const row = document.querySelector('tr[data-topic="auto/b"]');
      return row && row.children[3].textContent === 'found-by-sys';
    }, { timeout: 30000 });
    // The figures the page shows, once $sys has counted this page's connection.
    await page.waitForFunction(() => Number(document.getElementById('conn-ws').textContent) >= 1,
                               { timeout: 30000 });
    const shown = await page.evaluate(() => {
      const text = (id) => document.getElementById(id).textContent;
      const row = (t) => {
        const r = document.querySelector(`tr[data-topic="${t}"]`);
        return r ? Array.from(r.children).map((c) => c.textContent) : null;
      };
      return {
        status: text('status'), epoch: text('epoch'), ws: text('conn-ws'),
        subscriptions: text('subscriptions'), deliveries: text('deliveries'), ttls: text('ttls'),
        demo: row('demo/a'), auto: row('auto/b'), sysCount: window.pushState.sysCount,
        lost: window.pushState.lost,
      };
    });
    console.log(JSON.stringify({ browser: await browser.version(), ...shown }));
    code = 0;
  } catch (e) {
    console.error('dashboard test:', e.message);
  } finally {
    if (browser) await browser.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.exit(code);
})();
