// DPoP (RFC 9449) by an unmodified client library (openid-client, on
// oauth4webapi and jose): for ES256 and EdDSA keys, the device grant's token
// request carries a proof and gets a DPoP-bound token, which the gate
// accepts with the library's proofs and refuses as Bearer; then the same
// against a server that requires its nonces (the library retries on
// use_dpop_nonce). JSON facts go to stdout for t/23-dpop.t.
const client = require('openid-client');
const jose = require('jose');

async function pairAndUse(base, ownerToken, clientId, gatedPath, alg) {
  const facts = {};
  const config = await client.discovery(new URL(base), clientId, undefined, client.None(),
    { execute: [client.allowInsecureRequests], algorithm: 'oauth2' });
  facts.algs = config.serverMetadata().dpop_signing_alg_values_supported;
  const keyPair = await client.randomDPoPKeyPair(alg);
  const DPoP = client.getDPoPHandle(config, keyPair);
  const da = await client.initiateDeviceAuthorization(config, { scope: 'dpop' });
  const approve = await fetch(base + '/api/devices/pairing/approve', {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ownerToken}` },
    body: JSON.stringify({ code: da.user_code }),
  });
  facts.approved = approve.status;
  const tokens = await client.pollDeviceAuthorizationGrant(config, da, undefined, { DPoP });
  facts.tokenType = tokens.token_type;
  const url = new URL(base + gatedPath);
  const first = await client.fetchProtectedResource(config, tokens.access_token, url, 'GET', undefined, undefined, { DPoP });
  facts.gated = first.status;
  facts.jktHeader = first.headers.get('x-dpop-jkt');
  facts.jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(keyPair.publicKey));
  const again = await client.fetchProtectedResource(config, tokens.access_token, url, 'GET', undefined, undefined, { DPoP });
  facts.gatedAgain = again.status;
  const asBearer = await fetch(url, { headers: { Authorization: `Bearer ${tokens.access_token}` } });
  facts.asBearer = asBearer.status;
  facts.asBearerChallenge = asBearer.headers.get('www-authenticate');
  return facts;
}

async function main() {
  const [base, nonceBase, ownerToken, clientId, gatedPath] = process.argv.slice(2);
  const out = {};
  for (const alg of ['ES256', 'EdDSA']) out[alg] = await pairAndUse(base, ownerToken, clientId, gatedPath, alg);
  out.nonce = await pairAndUse(nonceBase, ownerToken, clientId, gatedPath, 'ES256');
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + (e && e.error ? ` (${e.error}: ${e.error_description})` : '') + '\n');
  process.exit(1);
});
