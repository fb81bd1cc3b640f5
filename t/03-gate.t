# The gate: device_pairing_auth bearer|device_key|any in front of an upstream,
# and the three variables it hands to proxy_set_header.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use DPTest;

my $key = 'dk_test_key_for_alice_0123456789';
my $t = DPTest->new;
$t->standard(device_keys => "# comment\n\nalice " . sha256_hex($key) . "\n");
$t->start;

my $op = $t->operator_token;
my $r = $t->get('/api/anything', token => $op);
is($r->{status}, 200, 'operator token admitted');
is($r->{content}, "id=operator account=owner method=operator_token\n", 'variables for the operator token');

my $token = $t->pair_device;
$r = $t->get('/api/anything', token => $token);
like($r->{content}, qr/^id=dev_[0-9a-f]{16} account=owner method=device_token$/m, 'variables for an OTP-paired device');
$r = $t->get('/api/anything', headers => { Authorization => "bearer $token" });
is($r->{status}, 200, 'the Bearer scheme is case-insensitive');
DPTest::is_problem($t->get('/api/anything', headers => { Authorization => "Basic $token" }), 401, 'invalid_token', 'another scheme is rejected');
DPTest::is_problem($t->get('/api/anything', token => $token . 'x'), 401, 'invalid_token', 'a changed token is rejected');

$r = $t->get('/keyed/x', device_key => $key);
is($r->{content}, "id= account=alice method=device_key\n", 'device key gate sets the account');
DPTest::is_problem($t->get('/keyed/x', device_key => 'wrong'), 401, 'invalid_device_key', 'unknown device key');
DPTest::is_problem($t->get('/keyed/x', token => $token), 401, 'authentication_required', 'device_key mode ignores bearer tokens');
is($t->get('/either/x', token => $token)->{content}, "id= account= method=device_token\n", 'any: bearer');
is($t->get('/either/x', device_key => $key)->{content}, "id= account= method=device_key\n", 'any: device key');
DPTest::is_problem($t->get('/either/x'), 401, 'authentication_required', 'any: nothing');

# Two stored hashes that share 31 of 32 bytes: only the exact one matches,
# whichever comes first in the file.
{
    my $alice_hash = sha256_hex($key);
    my $near = substr($alice_hash, 0, 62) . sprintf('%02x', hex(substr($alice_hash, 62)) ^ 1);
    my $p = DPTest->new;
    $p->standard(device_keys => "mallory $near\nalice $alice_hash\n");
    $p->start;
    is($p->get('/keyed/x', device_key => $key)->{content}, "id= account=alice method=device_key\n",
        'a key whose hash differs from another only in the last byte is its own account');
    $p->write_file('device-keys', "mallory $near\n");
    $p->reload;
    DPTest::is_problem($p->get('/keyed/x', device_key => $key), 401, 'invalid_device_key', 'and alone it matches nothing');
    $p->finish;
}

# Hashes, not keys, in the keys file; a bad line fails nginx -t with its number.
my $bad = DPTest->new;
$bad->write_file('device-keys', "alice " . sha256_hex($key) . "\nbob not-a-hash\n");
$bad->standard;
my ($status, $out) = $bad->test_config;
isnt($status, 0, 'a bad keys file fails nginx -t');
like($out, qr/device_pairing_device_keys .*line 2: expected the key's SHA-256/, 'naming the line');

# The keys file is re-read on reload.
my $key2 = 'dk_second_key_for_bob_987654321';
$t->write_file('device-keys', "bob " . sha256_hex($key2) . "\n");
$t->reload;
is($t->get('/keyed/x', device_key => $key2)->{content}, "id= account=bob method=device_key\n", 'new key works after reload');
is($t->get('/keyed/x', device_key => $key)->{status}, 401, 'removed key rejected after reload');

$t->finish;
done_testing;
