// Drives Debian's chromium through GET /pair: a wrong code typed by hand,
// then the QR URL (/pair#otp=...) pairing automatically; prints JSON facts
// for t/06-browser.t to check.
const { chromium } = require('playwright-core');

async function main() {
  const [base, otp, gatedPath, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const facts = {};
  try {
    const context = await browser.newContext();
    const page = await context.newPage();

    await page.goto(`${base}/pair`);
    await page.fill('#otp', otp === '000000' ? '111111' : '000000');
    await page.click('#pair');
    await page.waitForFunction(() => /Invalid or expired code/.test(document.querySelector('#status').textContent));
    facts.wrongCodeMessage = await page.textContent('#status');

    // A phone opens the scanned URL as a fresh page load.
    const scanned = await context.newPage();
    await scanned.goto(`${base}/pair#otp=${otp}`);
    await scanned.waitForFunction(() => /Paired/.test(document.querySelector('#status').textContent), null, { timeout: 10000 });
    facts.pairedMessage = await scanned.textContent('#status');
    facts.urlAfter = scanned.url();
    facts.token = await scanned.evaluate(() => localStorage.getItem('device_pairing_token'));
    facts.gated = await scanned.evaluate(async ([path, token]) => {
      const res = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
      return { status: res.status, body: await res.text() };
    }, [gatedPath, facts.token]);
    if (shot) await scanned.screenshot({ path: shot });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(facts));
}

main().catch((e) => { console.error(e); process.exit(1); });
