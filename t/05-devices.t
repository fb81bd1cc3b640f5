# Device identity, attestations, pairing codes, QR, device management (seed 002).
use strict;
use warnings;
use Test::More;
use JSON::PP;
use MIME::Base64 qw(decode_base64 encode_base64);
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep);
use DPTest;

my $t = DPTest->new;
$t->standard;
$t->start;
my $op = $t->operator_token;

# Identity: the PEM on disk is the key we publish.
my $id = $t->get('/api/devices/identity')->{json};
like($id->{deviceId}, qr/^dev_[0-9a-f]{16}$/, 'deviceId');
is(length decode_base64($id->{publicKey}), 32, 'publicKey: standard base64 of 32 raw bytes');
is($id->{fingerprint}, 'sha256:' . sha256_hex(decode_base64($id->{publicKey})), 'fingerprint is sha256 of the raw key');
is((stat "$t->{dir}/identity.pem")[2] & 0777, 0600, 'identity.pem is 0600');
my $pem_pub = $t->python(<<'PY', "$t->{dir}/identity.pem");
import sys, base64
from cryptography.hazmat.primitives import serialization as s
k = s.load_pem_private_key(open(sys.argv[1], 'rb').read(), None)
print(base64.b64encode(k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)).decode(), end='')
PY
is($pem_pub, $id->{publicKey}, 'the published key is the one in the PEM file');

# Attest, and verify the signature independently (Python cryptography + JCS).
DPTest::is_problem($t->post('/api/devices/attest', json => { data => {} }), 401, 'authentication_required', 'attest needs a bearer token');
my $data = { purpose => 'pairing', n => 42, nested => { z => 1, a => [ 1, 'two', JSON::PP::true ] }, text => "caf\x{e9}" };
my $r = $t->post('/api/devices/attest', token => $op, json => $data);
DPTest::is_problem($r, 400, 'invalid_request', 'data must be under "data"');
$r = $t->post('/api/devices/attest', token => $op, json => { data => $data });
is($r->{status}, 200, 'attest: 200');
my $att = $r->{json}{attestation};
is($att->{deviceId}, $id->{deviceId}, 'attestation names our device');
is($att->{publicKey}, $id->{publicKey}, 'and our key');
like($att->{attestation}{timestamp}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'ISO-8601 UTC timestamp in whole seconds (seed 002)');
ok(length(decode_base64(($att->{attestation}{nonce} =~ tr/-_/+\//r) . '==')) >= 16, 'nonce has >= 128 bits');
is_deeply($att->{attestation}{data}, $data, 'data echoed');
my $checked = $t->python(<<'PY', JSON::PP->new->encode($att));
import sys, json, base64
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
a = json.loads(sys.argv[1]); inner = a['attestation']
msg = {'data': inner['data'], 'deviceId': a['deviceId'], 'nonce': inner['nonce'],
       'publicKey': a['publicKey'], 'timestamp': inner['timestamp']}
canon = json.dumps(msg, sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode()
Ed25519PublicKey.from_public_bytes(base64.b64decode(a['publicKey'])).verify(base64.b64decode(inner['signature']), canon)
print('verified', end='')
PY
is($checked, 'verified', 'signature verifies with Python cryptography over the JCS bytes');

DPTest::is_problem($t->post('/api/devices/attest', token => $op, json => { data => 'text' }), 400, 'invalid_request', 'non-object data');
DPTest::is_problem($t->post('/api/devices/attest', token => $op, json => { data => { big => 'x' x 5000 } }), 413, 'data_too_large', 'oversize data');

# Verify: valid, replay, tamper, age, binding.
$r = $t->post('/api/devices/verify', json => { attestation => $att, maxAgeMs => 60000 });
is_deeply($r->{json}, { valid => JSON::PP::true, reason => undef, signer => 'current' }, 'verify: valid, by the current identity');
is($t->post('/api/devices/verify', json => { attestation => $att, maxAgeMs => 60000 })->{json}{reason}, 'replay', 'the same nonce again is a replay');
my $fresh = $t->post('/api/devices/attest', token => $op, json => { data => { v => 1 } })->{json}{attestation};
my $tampered = JSON::PP->new->decode(JSON::PP->new->encode($fresh));
$tampered->{attestation}{data}{v} = 2;
is($t->post('/api/devices/verify', json => { attestation => $tampered })->{json}{reason}, 'invalid_signature', 'tampered data');
my $rebound = JSON::PP->new->decode(JSON::PP->new->encode($fresh));
$rebound->{deviceId} = 'dev_0000000000000000';
is($t->post('/api/devices/verify', json => { attestation => $rebound })->{json}{reason}, 'device_id_mismatch', 'deviceId not bound to the key');
sleep 0.05;
is($t->post('/api/devices/verify', json => { attestation => $fresh, maxAgeMs => 1 })->{json}{reason}, 'expired', 'older than maxAgeMs');
is($t->post('/api/devices/verify', json => { attestation => $fresh, maxAgeMs => 60000 })->{json}{valid}, JSON::PP::true, 'still valid with a longer window (no nonce spent on failure)');

# Attestations made elsewhere (another device's key, signed by Python) verify too.
my $foreign = $t->python(<<'PY');
import json, base64, hashlib, datetime, os
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization as s
k = Ed25519PrivateKey.generate(); raw = k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
pub = base64.b64encode(raw).decode(); dev = 'dev_' + hashlib.sha256(raw).hexdigest()[:16]
out = []
for skew in (0, 3600):
    ts = (datetime.datetime.utcnow() + datetime.timedelta(seconds=skew)).strftime('%Y-%m-%dT%H:%M:%S.000Z')
    inner = {'timestamp': ts, 'nonce': base64.b64encode(os.urandom(16)).decode(), 'data': {'from': 'python'}}
    msg = dict(inner, deviceId=dev, publicKey=pub)
    canon = json.dumps(msg, sort_keys=True, separators=(',', ':')).encode()
    inner['signature'] = base64.b64encode(k.sign(canon)).decode()
    out.append({'deviceId': dev, 'publicKey': pub, 'attestation': inner})
print(json.dumps(out))
PY
my ($other, $future) = @{ decode_json($foreign) };
is($t->post('/api/devices/verify', json => { attestation => $other })->{json}{valid}, JSON::PP::true, "another device's attestation verifies");
is($t->post('/api/devices/verify', json => { attestation => $future })->{json}{reason}, 'future_timestamp', 'a timestamp an hour ahead is rejected');

for my $bad ({ attestation => 'x' }, { attestation => { deviceId => 'd' } },
             { attestation => { %$fresh, publicKey => 'not base64!' } },
             { attestation => { %$fresh, attestation => { %{ $fresh->{attestation} }, timestamp => 'yesterday' } } }) {
    DPTest::is_problem($t->post('/api/devices/verify', json => $bad), 400, 'invalid_attestation', 'malformed attestation: 400');
}
DPTest::is_problem($t->post('/api/devices/verify', json => { attestation => $fresh, maxAgeMs => -5 }), 400, 'invalid_request', 'bad maxAgeMs');

# Pairing codes: request, approve in another case without separators, one-time token.
$r = $t->post('/api/devices/pairing/request', json => { requesterId => 'mobile-app-id', meta => { platform => 'ios' } });
is($r->{status}, 200, 'pairing request');
my $req = $r->{json};
like($req->{requestId}, qr/^pair_[A-Za-z0-9_-]{22}$/, 'requestId has 128 random bits');
like($req->{code}, qr/^[A-HJKMNP-Z2-9]{3}-[A-HJKMNP-Z2-9]{3}-[A-HJKMNP-Z2-9]{3}$/, 'code: 9 unambiguous characters, XXX-XXX-XXX');
(my $spaced = $req->{code}) =~ tr/-/ /;
is($req->{formatted}, $spaced, 'formatted with spaces');
my $status_path = "/api/devices/pairing/status/$req->{requestId}";
is_deeply($t->get($status_path)->{json}, { status => 'pending' }, 'status: pending');
my $pending = $t->get('/api/devices/pairing/pending', token => $op)->{json}{requests};
ok((grep { $_->{requesterId} eq 'mobile-app-id' && $_->{meta}{platform} eq 'ios' } @$pending), 'the owner sees it pending');
unlike(encode_json($pending), qr/\Q$req->{code}\E|\Q$req->{requestId}\E/, 'the pending list shows neither the code nor the request id');

DPTest::is_problem($t->post('/api/devices/pairing/approve', json => { code => $req->{code} }), 401, 'authentication_required', 'approve needs a token');
(my $typed = lc $req->{code}) =~ s/-//g;
$r = $t->post('/api/devices/pairing/approve', token => $op, json => { code => $typed, approvedBy => 'usr_01' });
is($r->{json}{status}, 'approved', 'approved with a lower-case code without separators');
$r = $t->get($status_path);
is($r->{json}{status}, 'approved', 'status: approved');
my $device_token = $r->{json}{token};
like($device_token, qr/^dp_tok_/, 'the requester receives its token');
ok($r->{json}{approvedAt}, 'approvedAt');
$r = $t->get($status_path);
ok($r->{json}{status} eq 'approved' && $r->{json}{token} eq $device_token, 'a retried status call within the grace gets the same token');
like($t->get('/api/x', token => $device_token)->{content}, qr/account=device method=device_token/, 'a code-paired device has the device role');
DPTest::is_problem($t->post('/api/devices/pairing/approve', token => $op, json => { code => $req->{code} }), 409, 'request_not_pending', 'approving twice');

# Roles: devices may approve, not list pending or revoke others.
DPTest::is_problem($t->get('/api/devices/pairing/pending', token => $device_token), 403, 'forbidden', 'pending is owner-only');
DPTest::is_problem($t->get('/api/devices/stats', token => $device_token), 403, 'forbidden', 'stats are owner-only');
my $req2 = $t->post('/api/devices/pairing/request', json => { requesterId => 'tablet' })->{json};
is($t->post('/api/devices/pairing/reject', token => $device_token, json => { code => $req2->{formatted} })->{json}{status}, 'rejected', 'a device may reject');
is($t->get("/api/devices/pairing/status/$req2->{requestId}")->{json}{status}, 'rejected', 'status: rejected');

# Unknown codes are rate limited per address.
for my $i (1 .. 5) {
    DPTest::is_problem($t->post('/api/devices/pairing/approve', token => $op, json => { code => 'AAA-AAA-AAA' }, from => '127.0.0.9'), 404, 'code_not_found', "unknown code $i");
}
DPTest::is_problem($t->post('/api/devices/pairing/approve', token => $op, json => { code => 'AAA-AAA-AAA' }, from => '127.0.0.9'), 429, 'rate_limited', 'then 429');

# Who approved each device: the list and the audit log say.
{
    my $by_device_req = $t->post('/api/devices/pairing/request', json => { requesterId => 'minted-by-a-device' })->{json};
    is($t->post('/api/devices/pairing/approve', token => $device_token, json => { code => $by_device_req->{code} })->{status}, 200,
       'device_pairing_approvers any (the default): a device approves');
    my $minted = $t->get("/api/devices/pairing/status/$by_device_req->{requestId}")->{json}{token};
    my @list = @{ $t->get('/api/devices', token => $op)->{json}{devices} };
    my ($approver) = map { $_->{id} } grep { $_->{name} eq 'mobile-app-id' } @list;
    my ($minted_dev) = grep { $_->{name} eq 'minted-by-a-device' } @list;
    is($minted_dev->{approvedBy}, $approver, 'the list says which device approved it');
    my ($first) = grep { $_->{name} eq 'mobile-app-id' } @list;
    is($first->{approvedBy}, 'operator', 'or that the operator token did');
}

# QR: a standalone SVG that a real decoder reads back as the pairing URL.
$r = $t->get('/api/devices/pairing/qr');
my $qr = $r->{json};
like($qr->{pairingUrl}, qr{^devicepairing://pair\?code=[A-Z2-9]{3}-[A-Z2-9]{3}-[A-Z2-9]{3}&host=127\.0\.0\.1:\d+$}, 'pairingUrl from the default template');
$t->write_file('qr.svg', $qr->{qrSvg});
system("rsvg-convert -w 400 -b white $t->{dir}/qr.svg -o $t->{dir}/qr.png") == 0 or diag 'rsvg-convert failed';
my $decoded = `zbarimg --raw -q $t->{dir}/qr.png 2>/dev/null`;
chomp $decoded;
is($decoded, $qr->{pairingUrl}, 'zbarimg decodes the SVG to the pairing URL');
is($t->get("/api/devices/pairing/status/$qr->{requestId}")->{json}{status}, 'pending', 'the QR created a request');

# Devices: list (never a token), revoke at once in every worker.
my $owner_device = $t->pair_device(json => { name => 'laptop' });
my $list = $t->get('/api/devices', token => $device_token);
is($list->{status}, 200, 'any paired device may list');
unlike($list->{content}, qr/dp_tok_|dp_op_/, 'the list never shows a token');
my %by_name = map { $_->{name} => $_ } @{ $list->{json}{devices} };
ok($by_name{laptop} && $by_name{'mobile-app-id'}, 'both devices listed');
is($by_name{'mobile-app-id'}{method}, 'code', 'method recorded');
ok($by_name{laptop}{createdAt} && $by_name{laptop}{lastSeenAt} && $by_name{laptop}{role} eq 'owner', 'created, last seen, role');
DPTest::is_problem($t->request('DELETE', "/api/devices/$by_name{laptop}{id}", token => $device_token), 403, 'forbidden', 'a device cannot revoke another');
DPTest::is_problem($t->request('DELETE', '/api/devices/dev_0000000000000000', token => $op), 404, 'device_not_found', 'unknown device');
is($t->request('DELETE', "/api/devices/$by_name{'mobile-app-id'}{id}", token => $op)->{status}, 204, 'the owner revokes it');
my @after = map { $t->get('/api/x', token => $device_token)->{status} } 1 .. 6;
is_deeply(\@after, [ (401) x 6 ], 'revoked at once, in every worker');
is($t->request('DELETE', "/api/devices/$by_name{laptop}{id}", token => $owner_device)->{status}, 204, 'a device may revoke itself');

# Identity survives reload and restart.
$t->reload;
is($t->get('/api/devices/identity')->{json}{publicKey}, $id->{publicKey}, 'same identity after reload');
$t->stop;
$t->start;
is($t->get('/api/devices/identity')->{json}{publicKey}, $id->{publicKey}, 'same identity after restart');
$t->finish;

# device_pairing_approvers owner: a device gets 403 on approve and reject.
{
    my $o = DPTest->new;
    $o->standard(http => 'device_pairing_approvers owner;');
    $o->start;
    my $oop = $o->operator_token;
    my $q = $o->post('/api/devices/pairing/request', json => { requesterId => 'phone' })->{json};
    $o->post('/api/devices/pairing/approve', token => $oop, json => { code => $q->{code} });
    my $dev = $o->get("/api/devices/pairing/status/$q->{requestId}")->{json}{token};
    my $q2 = $o->post('/api/devices/pairing/request', json => { requesterId => 'rogue' })->{json};
    DPTest::is_problem($o->post('/api/devices/pairing/approve', token => $dev, json => { code => $q2->{code} }), 403, 'forbidden',
                       'approvers owner: a device may not approve');
    DPTest::is_problem($o->post('/api/devices/pairing/reject', token => $dev, json => { code => $q2->{code} }), 403, 'forbidden',
                       'nor reject');
    is($o->get("/api/devices/pairing/status/$q2->{requestId}")->{json}{status}, 'pending', 'the request is untouched');
    is($o->post('/api/devices/pairing/approve', token => $oop, json => { code => $q2->{code} })->{status}, 200, 'an owner approves');
    $o->finish;
}

# Expiry and cleanup with a short code lifetime.
my $e = DPTest->new;
$e->standard(http => 'device_pairing_code_ttl 1s;');
$e->start;
my $eop = $e->operator_token;
my $old = $e->post('/api/devices/pairing/request', json => {})->{json};
sleep 2.1;
is($e->get("/api/devices/pairing/status/$old->{requestId}")->{json}{status}, 'expired', 'status: expired');
DPTest::is_problem($e->post('/api/devices/pairing/approve', token => $eop, json => { code => $old->{code} }), 404, 'code_not_found', 'an expired code cannot be approved');
is($e->post('/api/devices/pairing/cleanup', token => $eop)->{json}{removed}, 1, 'cleanup removes the expired request');
DPTest::is_problem($e->get("/api/devices/pairing/status/$old->{requestId}"), 404, 'request_not_found', 'gone after cleanup');
$e->finish;

done_testing;
