#!/usr/bin/python3
"""DPoP proofs (RFC 9449) made with jwcrypto, a JOSE library of Debian's,
for t/23-dpop.t: the valid proof, and each way a proof can be wrong.

    dpop_proof.py KEYFILE ALG HTM HTU [name=value ...]

KEYFILE holds the client's private JWK (made on first use); ALG is ES256 or
EdDSA. Options: token= (ath is its hash), ath= (this ath instead), iat=
(seconds from now), jti=, nonce=, typ=, alg= (the header's alg: none and
HS256 are signed as they say), private=1 (the jwk with its private part),
thumbprint=1 (print the key's RFC 7638 thumbprint instead of a proof).
"""
import base64, hashlib, hmac, json, os, sys, time, uuid
from jwcrypto import jwk, jws


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b'=').decode()


def main():
    key_file, alg, htm, htu = sys.argv[1:5]
    opts = dict(a.split('=', 1) for a in sys.argv[5:])
    if os.path.exists(key_file):
        key = jwk.JWK.from_json(open(key_file).read())
    else:
        key = jwk.JWK.generate(kty='EC', crv='P-256') if alg == 'ES256' else jwk.JWK.generate(kty='OKP', crv='Ed25519')
        with open(key_file, 'w') as f:
            f.write(key.export_private())
    if opts.get('thumbprint'):
        print(key.thumbprint())
        return
    claims = {'jti': opts.get('jti', str(uuid.uuid4())), 'htm': htm, 'htu': htu,
              'iat': int(time.time()) + int(opts.get('iat', '0'))}
    if 'token' in opts:
        claims['ath'] = b64(hashlib.sha256(opts['token'].encode()).digest())
    if 'ath' in opts:
        claims['ath'] = opts['ath']
    if 'nonce' in opts:
        claims['nonce'] = opts['nonce']
    public = json.loads(key.export_private() if opts.get('private') else key.export_public())
    header = {'typ': opts.get('typ', 'dpop+jwt'), 'alg': opts.get('alg', alg), 'jwk': public}
    payload = json.dumps(claims, separators=(',', ':'))
    if header['alg'] in ('none', 'HS256'):  # what a forger would send: no signature, or a MAC
        signing_input = b64(json.dumps(header).encode()) + '.' + b64(payload.encode())
        mac = hmac.new(b'secret', signing_input.encode(), hashlib.sha256).digest() if header['alg'] == 'HS256' else b''
        print(signing_input + '.' + b64(mac))
        return
    token = jws.JWS(payload)
    token.add_signature(key, alg=alg, protected=json.dumps(header))
    print(token.serialize(compact=True))


main()
