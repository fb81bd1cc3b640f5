// An unmodified OAuth client (openid-client, RFC 8628 device grant) pairs
// with nginx: discovery from /.well-known/oauth-authorization-server, a
// device authorization, polling through authorization_pending and one
// slow_down, an owner's approval in the console (Debian's chromium on the
// verification_uri_complete), the token on the gated API, revocation; then
// a rejected request (access_denied) and, on the short-lived server, an
// expired one (expired_token). JSON facts go to stdout for t/21-oauth.t.
const client = require('openid-client');
const { chromium } = require('playwright-core');

async function main() {
  const [base, shortBase, ownerToken, clientId, gatedPath] = process.argv.slice(2);
  const facts = { tokenErrors: [] };
  const discover = async (url) => {
    const config = await client.discovery(new URL(url), clientId, undefined, client.None(),
      { execute: [client.allowInsecureRequests], algorithm: 'oauth2' });
    // Every token endpoint answer, as the server sent it.
    config[client.customFetch] = async (url, options) => {
      const res = await fetch(url, options);
      if (String(url).endsWith('/oauth/token')) {
        const body = await res.clone().json().catch(() => ({}));
        facts.tokenErrors.push(body.error || (body.access_token ? 'token' : 'none'));
      }
      return res;
    };
    return config;
  };
  const config = await discover(base);
  const meta = config.serverMetadata();
  facts.issuer = meta.issuer;
  facts.grantTypes = meta.grant_types_supported;

  // 1. Approved: the owner approves in the console while the client polls.
  const da = await client.initiateDeviceAuthorization(config, { scope: 'sensors:read' });
  facts.userCode = da.user_code;
  facts.verificationUri = da.verification_uri;
  facts.interval = da.interval;
  const polled = client.pollDeviceAuthorizationGrant(config, da);
  // A poll of our own between two of the library's: its next poll comes too
  // soon and gets slow_down (the library then waits 5 s longer).
  await new Promise((r) => setTimeout(r, da.interval * 1000 * 1.5));
  const early = await fetch(meta.token_endpoint, {
    method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
                                device_code: da.device_code, client_id: clientId }),
  });
  facts.manualPoll = (await early.json()).error;

  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = await browser.newContext();
    await context.addInitScript((t) => localStorage.setItem('device_pairing_token', t), ownerToken);
    const page = await context.newPage();
    await page.goto(da.verification_uri_complete);
    await page.waitForSelector('#console:not([hidden])', { timeout: 10000 });
    facts.prefilled = await page.inputValue('#approve-code');
    facts.confirmShownBeforeClick = await page.isVisible('#confirm');
    await page.click('#inspect');
    await page.waitForSelector('#confirm:not([hidden])', { timeout: 10000 });
    facts.confirmText = await page.textContent('#confirm-text');
    await page.click('#confirm-approve');
    await page.waitForFunction(() => /Approved/.test(document.querySelector('#console-status').textContent),
                               null, { timeout: 10000 });
  } finally {
    await browser.close();
  }
  const tokens = await polled;
  facts.tokenType = tokens.token_type;
  facts.scope = tokens.scope;
  facts.accessTokenShape = /^dp_tok_/.test(tokens.access_token);
  const api = await client.fetchProtectedResource(config, tokens.access_token, new URL(base + gatedPath), 'GET');
  facts.gatedStatus = api.status;
  facts.gatedBody = await api.text();
  facts.gatedScope = api.headers.get('x-granted-scope');
  await client.tokenRevocation(config, tokens.access_token);
  try {
    const after = await client.fetchProtectedResource(config, tokens.access_token, new URL(base + gatedPath), 'GET');
    facts.gatedAfterRevoke = after.status;
  } catch (e) {  // the library turns a 401 with a WWW-Authenticate challenge into an error
    facts.gatedAfterRevoke = e.status || (e.response && e.response.status) || String(e);
  }

  // 2. Rejected through the owner API with the user code.
  const denied = await client.initiateDeviceAuthorization(config, {});
  const reject = await fetch(base + '/api/devices/pairing/reject', {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ownerToken}` },
    body: JSON.stringify({ code: denied.user_code.toLowerCase().replace('-', ' ') }),
  });
  facts.rejectStatus = reject.status;
  try {
    await client.pollDeviceAuthorizationGrant(config, denied);
    facts.deniedError = 'none';
  } catch (e) {
    facts.deniedError = e.error || e.code || String(e);
  }

  // 3. Expired: nobody approves on the server whose codes live 2 s.
  const shortConfig = await discover(shortBase);
  const expiring = await client.initiateDeviceAuthorization(shortConfig, {});
  facts.shortExpiresIn = expiring.expires_in;
  try {
    // The library gives up by itself at expires_in (OAUTH_TIMEOUT): told a
    // longer life, it polls on and hears the server's expired_token.
    await client.pollDeviceAuthorizationGrant(shortConfig, { ...expiring, expires_in: 30 });
    facts.expiredError = 'none';
  } catch (e) {
    facts.expiredError = e.error || e.code || String(e);
  }
  process.stdout.write(JSON.stringify(facts));
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
