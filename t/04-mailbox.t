# Relay mailbox (seed 001): mint, single-use write token, key validation,
# status rules, the race, accounts, long poll, cancel, expiry, reload.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use MIME::Base64 qw(encode_base64 decode_base64);
use Time::HiRes qw(time sleep);
use DPTest;

my ($alice, $bob, $carol) = ('dk_alice_desktop_key_000000000001', 'dk_bob_desktop_key_00000000000002', 'dk_carol_key_0000000000000000003');
my $t = DPTest->new;
$t->standard(
    device_keys => join('', map { "$_->[0] " . sha256_hex($_->[1]) . "\n" } [ alice => $alice ], [ bob => $bob ], [ carol => $carol ]),
    http => "device_pairing_mailbox_ttl 4s; device_pairing_max_pairings 50;",
);
$t->start;

# Real keys from an implementation that is not ours.
my $keys = $t->python(<<'PY');
import base64
from cryptography.hazmat.primitives.asymmetric import ed25519, ec
from cryptography.hazmat.primitives import serialization as s
b = lambda x: base64.b64encode(x).decode()
ed = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
p = ec.generate_private_key(ec.SECP256R1()).public_key()
raw = p.public_bytes(s.Encoding.X962, s.PublicFormat.UncompressedPoint)
comp = p.public_bytes(s.Encoding.X962, s.PublicFormat.CompressedPoint)
off = bytearray(raw); off[-1] ^= 1
others = [b(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)) for _ in range(40)]
print(b(ed), b(raw), b(comp), b(bytes(off)), b(bytes([2]) + raw[1:]), *others)
PY
my ($session_pub, $ecdh_pub, $compressed, $off_curve, $prefix02, @racers) = split ' ', $keys;
# 0xfb 0xff encodes as "+/": its URL-safe form always differs from the standard one.
my $urlsafe = encode_base64("\xfb\xff" x 16, '');
$urlsafe =~ tr{+/}{-_};

sub mint {
    my ($key) = @_;
    my $r = $t->post('/api/v1/device-pairing', device_key => $key);
    return $r;
}

DPTest::is_problem($t->post('/api/v1/device-pairing'), 401, 'authentication_required', 'mint needs a device key');
DPTest::is_problem(mint('dk_nobody'), 401, 'invalid_device_key', 'mint with an unknown key');
my $r = mint($alice);
is($r->{status}, 201, 'mint: 201');
my ($id, $wt) = @{ $r->{json} }{qw(pairing_id write_token)};
like($id, qr/^[A-Za-z0-9_-]{22}$/, 'pairing_id has 128 random bits');
like($wt, qr/^dp_wt_[A-Za-z0-9_-]{43}$/, 'write token has 256 random bits');
is($r->{json}{expires_in_secs}, 4, 'expires_in_secs follows device_pairing_mailbox_ttl');
is($r->{headers}{'cache-control'}, 'no-store', 'no-store');

my $path = "/api/v1/device-pairing/$id";
is_deeply($t->get($path, device_key => $alice)->{json}, { status => 'pending' }, 'poll: pending, no key fields');

# Write token rules before the body is looked at.
DPTest::is_problem($t->request('PUT', $path, json => { session_pub => $session_pub, ecdh_pub => $ecdh_pub }), 401, 'invalid_write_token', 'PUT without a token');
DPTest::is_problem($t->request('PUT', $path, token => 'dp_wt_wrong', json => { session_pub => $session_pub, ecdh_pub => $ecdh_pub }), 401, 'invalid_write_token', 'PUT with a wrong token');
DPTest::is_problem($t->request('PUT', "/api/v1/device-pairing/unknownid", token => $wt, json => {}), 404, 'pairing_not_found', 'PUT to an unknown pairing');

# Every bad encoding is a 400 and leaves the token unspent.
my @bad = (
    [ { session_pub => $urlsafe, ecdh_pub => $ecdh_pub }, 'invalid_key_encoding', 'URL-safe alphabet' ],
    [ { session_pub => substr($session_pub, 0, -1), ecdh_pub => $ecdh_pub }, 'invalid_key_encoding', 'missing padding' ],
    [ { session_pub => " $session_pub", ecdh_pub => $ecdh_pub }, 'invalid_key_encoding', 'whitespace' ],
    [ { session_pub => encode_base64('a' x 31, ''), ecdh_pub => $ecdh_pub }, 'invalid_key_length', '31 bytes' ],
    [ { session_pub => encode_base64('a' x 33, ''), ecdh_pub => $ecdh_pub }, 'invalid_key_length', '33 bytes' ],
    [ { session_pub => encode_base64("\x01" . ("\0" x 31), ''), ecdh_pub => $ecdh_pub }, 'invalid_key', 'small-order Ed25519 (identity)' ],
    [ { session_pub => encode_base64(pack('H*', 'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a'), ''), ecdh_pub => $ecdh_pub }, 'invalid_key', 'small-order Ed25519 (order 8)' ],
    [ { session_pub => encode_base64(pack('H*', 'ed' . ('ff' x 30) . '7f'), ''), ecdh_pub => $ecdh_pub }, 'invalid_key', 'non-canonical Ed25519 y >= p' ],
    [ { session_pub => $session_pub, ecdh_pub => $off_curve }, 'invalid_key', 'off-curve P-256' ],
    [ { session_pub => $session_pub, ecdh_pub => $compressed }, 'invalid_key_length', 'compressed P-256 (33 bytes)' ],
    [ { session_pub => $session_pub, ecdh_pub => $prefix02 }, 'invalid_key', '65 bytes with 0x02 first' ],
    [ { session_pub => $session_pub }, 'invalid_request', 'missing ecdh_pub' ],
);
for my $case (@bad) {
    DPTest::is_problem($t->request('PUT', $path, token => $wt, json => $case->[0]), 400, $case->[1], "400 $case->[1]: $case->[2]");
}
DPTest::is_problem($t->request('PUT', $path, token => $wt, json => '{"session_pub":'), 400, 'invalid_request', 'truncated body');
is_deeply($t->get($path, device_key => $alice)->{json}, { status => 'pending' }, 'still pending after the 400s');

# The race: 40 concurrent valid PUTs of 40 different phones, exactly one 204.
my %count = %{ DPTest::concurrently(40, sub {
    $t->request('PUT', $path, token => $wt, json => { session_pub => $racers[$_[0] - 1], ecdh_pub => $ecdh_pub })->{status};
}) };
is($count{204}, 1, 'exactly one of 40 concurrent deposits gets 204');
is($count{409}, 39, 'the rest get 409');
my $winner = $t->get($path, device_key => $alice)->{json}{session_pub};
ok((grep { $_ eq $winner } @racers), 'the pairing holds the winner\'s key');
is($t->request('PUT', $path, token => $wt, json => { session_pub => $winner, ecdh_pub => $ecdh_pub })->{status}, 204,
    'the winner retrying the same body (its 204 lost): 204 again');
DPTest::is_problem($t->request('PUT', $path, token => $wt, json => { session_pub => $session_pub, ecdh_pub => $ecdh_pub }), 409, 'pairing_already_completed', 'the spent token with other keys: 409');
$session_pub = $winner;
DPTest::is_problem($t->request('PUT', $path, token => 'dp_wt_other', json => {}), 401, 'invalid_write_token', 'another token on a completed pairing: 401');

$r = $t->get($path, device_key => $alice);
is_deeply($r->{json}, { status => 'ready', session_pub => $session_pub, ecdh_pub => $ecdh_pub }, 'poll: ready with both keys, byte for byte');
DPTest::is_problem($t->get($path, device_key => $bob), 404, 'pairing_not_found', "another account's poll: 404");
DPTest::is_problem($t->request('DELETE', $path, device_key => $bob), 404, 'pairing_not_found', "another account cannot cancel");
DPTest::is_problem($t->get('/api/v1/device-pairing/nope', device_key => $alice), 404, 'pairing_not_found', 'unknown id: 404');

# Long poll: the deposit lands while the GET waits (2 workers, separate connections).
$r = mint($alice);
my ($id2, $wt2) = @{ $r->{json} }{qw(pairing_id write_token)};
DPTest::is_problem($t->get("/api/v1/device-pairing/$id2?wait=31", device_key => $alice), 400, 'invalid_request', 'wait over 30 s is a 400');
pipe my $rd, my $wr or die;
my $pid = fork // die;
if (!$pid) {
    close $rd;
    my $start = time;
    my $res = $t->get("/api/v1/device-pairing/$id2?wait=20", device_key => $alice);
    printf $wr "%s %.2f", ($res->{json}{status} // 'none'), time - $start;
    exit 0;
}
close $wr;
sleep 0.8;
is($t->request('PUT', "/api/v1/device-pairing/$id2", token => $wt2, json => { session_pub => $session_pub, ecdh_pub => $ecdh_pub })->{status}, 204, 'deposit during the long poll');
my ($status, $elapsed) = split ' ', scalar readline $rd;
waitpid $pid, 0;
is($status, 'ready', 'the long poll returns ready');
ok($elapsed >= 0.7 && $elapsed < 3, "it returned as the deposit landed (${elapsed}s), not at the deadline");
my $start = time;
$r = $t->get('/api/v1/device-pairing/' . mint($alice)->{json}{pairing_id} . '?wait=1', device_key => $alice);
ok($r->{json}{status} eq 'pending' && time - $start >= 0.9, 'an unanswered long poll returns pending at the deadline');
is($t->get('/health')->{status}, 200, 'workers keep serving during long polls');

# Cancel.
$r = mint($alice);
my ($id3, $wt3) = @{ $r->{json} }{qw(pairing_id write_token)};
is($t->request('DELETE', "/api/v1/device-pairing/$id3", device_key => $alice)->{status}, 204, 'cancel: 204');
DPTest::is_problem($t->request('PUT', "/api/v1/device-pairing/$id3", token => $wt3, json => { session_pub => $session_pub, ecdh_pub => $ecdh_pub }), 404, 'pairing_not_found', 'PUT after cancel');
DPTest::is_problem($t->get("/api/v1/device-pairing/$id3", device_key => $alice), 404, 'pairing_not_found', 'poll after cancel');

# Reload in the middle of a pending pairing.
$r = mint($alice);
my ($id4, $wt4) = @{ $r->{json} }{qw(pairing_id write_token)};
$t->reload;
is($t->request('PUT', "/api/v1/device-pairing/$id4", token => $wt4, json => { session_pub => $session_pub, ecdh_pub => $ecdh_pub })->{status}, 204, 'deposit after a reload');
is($t->get("/api/v1/device-pairing/$id4", device_key => $alice)->{json}{status}, 'ready', 'ready after a reload');

# Expiry (device_pairing_mailbox_ttl 4s).
$r = mint($alice);
my ($id5, $wt5) = @{ $r->{json} }{qw(pairing_id write_token)};
sleep 5.1;
DPTest::is_problem($t->request('PUT', "/api/v1/device-pairing/$id5", token => $wt5, json => { session_pub => $session_pub, ecdh_pub => $ecdh_pub }), 404, 'pairing_not_found', 'an expired pairing cannot be written');
DPTest::is_problem($t->get("/api/v1/device-pairing/$id5", device_key => $alice), 404, 'pairing_not_found', 'an expired pairing is not found');

# The per-account cap.
my $cap = DPTest->new;
$cap->standard(device_keys => "carol " . sha256_hex($carol) . "\n", http => 'device_pairing_max_pairings 3;');
$cap->start;
is($cap->post('/api/v1/device-pairing', device_key => $carol)->{status}, 201, "mint $_ of 3") for 1 .. 3;
DPTest::is_problem($cap->post('/api/v1/device-pairing', device_key => $carol), 429, 'too_many_pairings', 'the 4th live pairing is refused');
$cap->finish;

$t->finish;
done_testing;
