// A full owner session on /pair in Debian's chromium: an owner pairs from the
// QR URL, a second browser context asks for access with a pairing code, the
// owner checks who asks and approves, renames and then revokes that device,
// whose next call fails; a fresh OTP is shown. Screenshots go to the
// artifacts directory; JSON facts go to stdout for t/16-owner-page.t.
const { chromium } = require('playwright-core');
const path = require('path');

async function main() {
  const [base, otp, gatedPath, artifacts] = process.argv.slice(2);
  const shot = (page, name) => page.screenshot({ path: path.join(artifacts, name), fullPage: true });
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const facts = { cspViolations: [] };
  const watch = (page) => page.on('console', (m) => {
    if (/Content Security Policy|Refused to/.test(m.text())) facts.cspViolations.push(m.text());
  });
  const gated = (page, token) => page.evaluate(async ([p, t]) => {
    const res = await fetch(p, { headers: { Authorization: `Bearer ${t}` } });
    return res.status;
  }, [gatedPath, token]);
  try {
    // The owner: the QR URL pairs and the console appears.
    const ownerContext = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const owner = await ownerContext.newPage();
    watch(owner);
    await owner.goto(`${base}/pair#otp=${otp}`);
    await owner.waitForSelector('#console:not([hidden]) #devices tbody tr', { timeout: 10000 });
    facts.ownerRows = await owner.locator('#devices tbody tr').count();
    await shot(owner, '1-owner-console.png');

    // A second browser asks for access with a pairing code.
    const phoneContext = await browser.newContext({ viewport: { width: 420, height: 800 } });
    const phone = await phoneContext.newPage();
    watch(phone);
    await phone.goto(`${base}/pair`);
    await phone.fill('#name', 'Phone in hall');
    await phone.click('#ask');
    await phone.waitForFunction(() => document.querySelector('#asked-code').textContent.length > 0);
    const code = await phone.textContent('#asked-code');
    facts.code = code;
    await shot(phone, '2-phone-asks.png');

    // The owner sees the request, checks the code, sees who asks and from where.
    await owner.click('#reload');
    await owner.waitForFunction(() => /Phone in hall/.test(document.querySelector('#pending').textContent));
    facts.pendingText = await owner.textContent('#pending');
    await owner.fill('#approve-code', code);
    await owner.click('#inspect');
    await owner.waitForSelector('#confirm:not([hidden])');
    facts.confirmText = await owner.textContent('#confirm-text');
    await shot(owner, '3-owner-confirms.png');
    await owner.click('#confirm-approve');

    // The phone is paired by the approval.
    await phone.waitForFunction(() => /paired as a device/.test(document.querySelector('#status').textContent), null, { timeout: 10000 });
    facts.phoneStatus = await phone.textContent('#status');
    const phoneToken = await phone.evaluate(() => localStorage.getItem('device_pairing_token'));
    facts.phoneTokenShape = /^dp_tok_[A-Za-z0-9_-]{43}$/.test(phoneToken || '');
    facts.phoneGatedBefore = await gated(phone, phoneToken);

    // Rename the phone (its record exists once it collected its token).
    await owner.click('#reload');
    const phoneRow = owner.locator('#devices tbody tr[data-role="device"]');
    await phoneRow.waitFor();
    facts.rowsAfterApprove = await owner.locator('#devices tbody tr').count();
    await phoneRow.locator('button.rename').click();
    await phoneRow.locator('input.new-name').fill('Hall phone');
    await phoneRow.locator('button.save').click();
    await owner.waitForFunction(() => {
      const cell = document.querySelector('#devices tbody tr[data-role="device"] td.name');
      return cell && cell.textContent === 'Hall phone';
    });
    facts.renamed = await owner.textContent('#devices tbody tr[data-role="device"] td.name');
    await shot(owner, '4-owner-renamed.png');

    // Revoke it (two clicks: the second confirms).
    await phoneRow.locator('button.revoke').click();
    facts.revokeConfirmLabel = await phoneRow.locator('button.revoke').textContent();
    await phoneRow.locator('button.revoke').click();
    await owner.waitForFunction(() => !document.querySelector('#devices tbody tr[data-role="device"]'));
    facts.rowsAfterRevoke = await owner.locator('#devices tbody tr').count();
    facts.phoneGatedAfter = await gated(phone, phoneToken);
    await phone.reload();
    await phone.waitForFunction(() => /no longer valid/.test(document.querySelector('#status').textContent), null, { timeout: 10000 });
    facts.phoneAfterReload = await phone.textContent('#status');
    facts.phoneTokenKept = await phone.evaluate(() => localStorage.getItem('device_pairing_token'));

    // A fresh OTP with its QR for the next device.
    await owner.click('#refresh');
    await owner.waitForSelector('#otp-box:not([hidden])');
    facts.newOtp = await owner.textContent('#otp-digits');
    facts.qrLoaded = await owner.evaluate(() => {
      const img = document.querySelector('#otp-qr');
      return img.complete && img.naturalWidth > 0;
    });
    await shot(owner, '5-owner-new-otp.png');
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(facts));
}

main().catch((e) => { console.error(e); process.exit(1); });
