# The gateway identity's rotation (POST /api/devices/identity/rotate): a
# hand-over note signed by the old key and the new, the chain served as
# GET /api/devices/identity's handovers and kept across restarts, the first
# checkpoint after a rotation signed by both keys, a leaf in the pairing log,
# attestations of earlier keys still verifying (and saying which key). The
# chain is followed by tools/verify-log (Go's sumdb/note) from the first
# key; forged hand-overs are refused.
use strict;
use warnings;
use Test::More;
use MIME::Base64;
use JSON::PP;
use DPTest;

DPTest::verifier();
sub verify { my ($t, @args) = @_; $t->verify_log(@args) }

my $t = DPTest->new(workers => 2);
$t->standard(zone => 'zone=pairing:4m state=%%DIR%%/state log=on',
             server => 'device_pairing_log_origin gateway.example/pairing;');
$t->start;
my $owner = $t->pair_device(refresh => 1);
my $req = $t->post('/api/devices/pairing/request', json => { requesterId => 'phone' })->{json};
$t->post('/api/devices/pairing/approve', token => $owner, json => { code => $req->{code} });
my $phone = $t->get("/api/devices/pairing/status/$req->{requestId}")->{json}{token};

my $k0 = $t->get('/api/devices/identity')->{json}{publicKey};
is_deeply($t->get('/api/devices/identity')->{json}{handovers}, [], 'no hand-overs before a rotation');
my $att0 = $t->post('/api/devices/attest', token => $owner, json => { data => { n => 0 } })->{json};

DPTest::is_problem($t->post('/api/devices/identity/rotate', token => $phone), 403, 'forbidden', 'a device may not rotate the identity');
DPTest::is_problem($t->post('/api/devices/identity/rotate'), 401, 'authentication_required', 'nor anyone without a token');
my $rot = $t->post('/api/devices/identity/rotate', token => $owner);
is($rot->{status}, 200, 'an owner rotates the identity');
my $k1 = $rot->{json}{publicKey};
isnt($k1, $k0, 'a new key');
like($rot->{json}{handover}, qr/^gateway\.example\/pairing identity hand-over\nold \Q$k0\E\nnew \Q$k1\E\nsize 3\n\n\x{2014} /, 'the hand-over names the origin, both keys and the tree size');
my $id = $t->get('/api/devices/identity')->{json};
is($id->{publicKey}, $k1, 'every worker serves the new key') for 1 .. 4;
is(scalar @{ $id->{handovers} }, 1, 'the chain holds the hand-over');

my $cp = $t->get('/api/devices/log/checkpoint', token => $owner)->{content};
is(scalar(() = $cp =~ /^\x{e2}\x{80}\x{94} /mg), 2, 'the first checkpoint after the rotation is signed by both keys') or diag $cp;
my ($ok, $out) = verify($t, "-token $owner -pin $k0");
ok($ok && $out =~ /hand-over 0: \Q$k0\E -> \Q$k1\E/, 'a verifier holding the first key follows the hand-over') or diag $out;
$t->pair_device;
$cp = $t->get('/api/devices/log/checkpoint', token => $owner)->{content};
is(scalar(() = $cp =~ /^\x{e2}\x{80}\x{94} /mg), 1, 'later checkpoints: the new key only');

my $att1 = $t->post('/api/devices/attest', token => $owner, json => { data => { n => 1 } })->{json};
is($att1->{attestation}{publicKey}, $k1, 'attestations are made with the new key');
my $k2 = $t->post('/api/devices/identity/rotate', token => $owner)->{json}{publicKey};
my $att2 = $t->post('/api/devices/attest', token => $owner, json => { data => { n => 2 } })->{json};

# attestations across rotations
my @verdicts = map { $t->post('/api/devices/verify', json => $_)->{json} } $att0, $att1, $att2;
is_deeply([ map { $_->{valid} ? 1 : 0 } @verdicts ], [ 1, 1, 1 ], 'attestations of every key still verify');
is_deeply([ map { $_->{signer} } @verdicts ], [qw(earlier earlier current)], '... and say which key made them');
is_deeply([ map { $_->{retiredBy} } @verdicts[0, 1] ], [ 0, 1 ], '... and which hand-over retired it');

# the log
my @leaves = map { decode_json(decode_base64($_->{leaf})) } @{ $t->get('/api/devices/log/entries?start=0&end=100', token => $owner)->{json}{entries} };
my @rotations = grep { $_->{event} eq 'identity_rotated' } @leaves;
is_deeply([ map { $_->{key} } @rotations ], [ $k1, $k2 ], 'each rotation is a leaf naming the new key');
is_deeply([ map { $_->{handover} } @rotations ], $t->get('/api/devices/identity')->{json}{handovers},
          '... and holding its hand-over note');

# a reload that resizes the zone: the new zone takes the rotated key
$t->standard(zone => 'zone=pairing:6m state=%%DIR%%/state log=on',
             server => 'device_pairing_log_origin gateway.example/pairing;');
$t->reload;
for (1 .. 50) { last if $t->get('/api/devices/stats', token => $owner)->{json}{zoneBytes} > 5_000_000; select undef, undef, undef, 0.1 }
is($t->get('/api/devices/identity')->{json}{publicKey}, $k2, 'a resized zone keeps the rotated key') for 1 .. 3;

# restart: the chain and the key stay
$t->stop;
$t->start;
$id = $t->get('/api/devices/identity')->{json};
is($id->{publicKey}, $k2, 'the rotated key survives a restart');
is(scalar @{ $id->{handovers} }, 2, 'and so does the chain');
($ok, $out) = verify($t, "-token $owner -pin $k0 -entries");
ok($ok && $out =~ /hand-over 1: \Q$k1\E -> \Q$k2\E/, 'old -> new -> newer: followed from the first key') or diag $out;
($ok, $out) = verify($t, "-token $owner -pin " . encode_base64('k' x 32, ''));
ok(!$ok && $out =~ /starts from/, 'a chain that does not start at the pinned key is refused') or diag $out;

# forged hand-overs, served by a gateway whose state was edited
sub forge {
    my ($t, $signers) = @_;
    return $t->python(<<'PY', $signers);
import base64, hashlib, json, os, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
path = os.path.join(os.environ['DIR'], 'state.identity')
f = json.load(open(path))
origin = 'gateway.example/pairing'
raw = lambda k: k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
seed = lambda k: k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
old = Ed25519PrivateKey.from_private_bytes(base64.b64decode(f['previous']))
new, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
text = '%s identity hand-over\nold %s\nnew %s\nsize 9\n' % (origin, base64.b64encode(raw(old)).decode(), base64.b64encode(raw(new)).decode())
keys = {'new': new, 'stranger': stranger, 'old': old}
note = text + '\n'
for name in sys.argv[1].split(','):
    k = keys[name]
    kid = hashlib.sha256(origin.encode() + b'\n\x01' + raw(k)).digest()[:4]
    note += '\u2014 %s %s\n' % (origin, base64.b64encode(kid + k.sign(text.encode())).decode())
f['handovers'][-1] = note
f['key'] = base64.b64encode(seed(new)).decode()
json.dump(f, open(path, 'w'))
PY
}
$ENV{DIR} = $t->dir;
for my $case (['new', 'signed by the new key only'], ['stranger,new', 'signed by an unrelated key and the new one']) {
    $t->stop;
    my $saved = $t->read_file('state.identity');
    forge($t, $case->[0]);
    $t->start;
    ($ok, $out) = verify($t, "-token $owner -pin $k0");
    ok(!$ok && $out =~ /hand-over 1 is not signed by both/, "a forged hand-over ($case->[1]) is refused") or diag $out;
    $t->stop;
    $t->write_file('state.identity', $saved);
    $t->start;
}
($ok, $out) = verify($t, "-token $owner -pin $k0");
ok($ok, 'the true chain verifies again') or diag $out;
$t->finish;

# without state= there is nowhere to keep a rotated key
my $u = DPTest->new;
$u->standard(zone => 'zone=pairing:1m');
$u->start;
DPTest::is_problem($u->post('/api/devices/identity/rotate', token => $u->operator_token), 501, 'rotation_unavailable', 'no state=: 501');
$u->finish;

done_testing;
