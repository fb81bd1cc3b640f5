# Durability: state= keeps devices and pending pairings (not the OTP) across stop/start
# and kill -9; a zone resize on reload keeps everything; a corrupt state file
# stops startup; a full zone answers 503 and nginx keeps serving; a failed
# write keeps the old file and is retried.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep);
use DPTest;

my $key = 'dk_durability_key_000000000000001';
my $keys = "alice " . sha256_hex($key) . "\n";
my $t = DPTest->new(allow => qr/device_pairing_zone "pairing": cannot open .*state\.lock/);
$t->standard(device_keys => $keys);
$t->start;
my $op = $t->operator_token;

my $token = $t->pair_device(refresh => 0);
my $otp = $t->get('/pair/refresh', token => $op)->{json}{otp};
my $mint = $t->post('/api/v1/device-pairing', device_key => $key)->{json};
my $code = $t->post('/api/devices/pairing/request', json => { requesterId => 'phone' })->{json};
sleep 1.5;    # short-lived records reach the file within a second

$t->stop;
ok(-s "$t->{dir}/state", 'state file written');
is((stat "$t->{dir}/state")[2] & 0777, 0600, 'state file is 0600');
$t->start;
is($t->get('/api/x', token => $token)->{status}, 200, 'stop/start keeps devices');
is($t->get("/api/v1/device-pairing/$mint->{pairing_id}", device_key => $key)->{json}{status}, 'pending', 'and pending mailboxes');
is($t->get("/api/devices/pairing/status/$code->{requestId}")->{json}{status}, 'pending', 'and code requests');
isnt($t->otp, $otp, 'a restart prints a fresh OTP (the OTP is never written to the state file)');
is($t->post('/pair', json => { otp => $otp })->{status}, 401, 'the old one is dead');
is($t->post('/pair', json => { otp => $t->otp })->{status}, 200, 'the fresh one pairs');

# kill -9 of every process right after a pairing: the device was fsynced before the 200.
my $otp2 = $t->get('/pair/refresh', token => $op)->{json}{otp};
my $r = $t->post('/pair', json => { otp => $otp2 });
is($r->{status}, 200, 'paired');
$t->crash;
$t->start;
is($t->get('/api/x', token => $r->{json}{token})->{status}, 200, 'kill -9 right after pairing keeps the device');

# Revocation is durable too.
my $victim = $t->pair_device;
my @ids = map { $_->{id} } @{ $t->get('/api/devices', token => $op)->{json}{devices} };
my $victim_id = $ids[-1];
is($t->request('DELETE', "/api/devices/$victim_id", token => $op)->{status}, 204, 'revoke');
$t->crash;
$t->start;
is($t->get('/api/x', token => $victim)->{status}, 401, 'a revocation survives kill -9');

# Resize the zone on reload: nginx makes a new zone; the module copies the old one.
$t->standard(device_keys => $keys, zone => 'zone=pairing:2m state=%%DIR%%/state');
$t->reload;
like($t->read_file('error.log'), qr/device_pairing_zone "pairing" resized, \d+ devices kept/, 'resize logged');
is($t->get('/api/x', token => $token)->{status}, 200, 'a resize keeps devices');
is($t->get("/api/v1/device-pairing/$mint->{pairing_id}", device_key => $key)->{json}{status}, 'pending', 'and pending mailboxes');

# A failed write keeps the old file, alerts, and is retried by a full rewrite.
my $before = $t->read_file('state');
unlink "$t->{dir}/state.lock";
mkdir "$t->{dir}/state.lock" or die "mkdir: $!";    # the writer cannot take its lock: the write fails
my $during = $t->pair_device(refresh => 0);
sleep 1.2;
is($t->read_file('state'), $before, 'the old state file is intact after a failed write');
like($t->read_file('error.log'), qr/\[alert\].*cannot open .*state\.lock.*old state file is kept/, 'the failure is an alert');
rmdir "$t->{dir}/state.lock";
sleep 1.5;
isnt($t->read_file('state'), $before, 'the next flush rewrites the file');
$t->crash;
$t->start;
is($t->get('/api/x', token => $during)->{status}, 200, 'the device paired during the failure was persisted by the retry');
my $good_state = $t->read_file('state');
$t->finish;

# A corrupt or unreadable state file stops nginx -t and startup with a clear message.
my $c = DPTest->new;
$c->standard;
my $flipped = $good_state;
substr($flipped, 100, 1) = chr(ord(substr($flipped, 100, 1)) ^ 1);
for my $case ([ $flipped, qr/checksum mismatch/, 'a flipped byte' ],
              [ substr($good_state, 0, length($good_state) - 10), qr/checksum mismatch/, 'a truncated file' ],
              [ "DPSTATE\n" . pack('V', 7) . ("\0" x 200), qr/state file version 7 is not supported/, 'a future version' ],
              [ "garbage", qr/not a device pairing state file/, 'another file' ]) {
    $c->write_file('state', $case->[0]);
    my ($status, $out) = $c->test_config;
    isnt($status, 0, "nginx -t fails on $case->[2]");
    like($out, qr/\[emerg\].*device_pairing_zone "pairing": state file ".*\/state": $case->[1]/, 'naming the file and the problem');
}
ok(!$c->start(may_fail => 1), 'nginx does not start on a corrupt state file');

# A full zone: 503 zone_full, nothing else breaks, expired records make room.
my $f = DPTest->new;
$f->standard(zone => 'zone=pairing:32k', device_keys => $keys, http => 'device_pairing_max_pairings 100000; device_pairing_mailbox_ttl 2s;');
$f->start;
my $ftoken = $f->pair_device(refresh => 0);
my ($created, $last) = (0, undef);
for (1 .. 400) {
    $last = $f->post('/api/v1/device-pairing', device_key => $key);
    last if $last->{status} != 201;
    $created++;
}
ok($created > 5, "the zone took $created pairings");
DPTest::is_problem($last, 503, 'zone_full', 'then answers 503 zone_full');
is($f->get('/health')->{status}, 200, 'nginx keeps serving');
is($f->get('/api/x', token => $ftoken)->{status}, 200, 'devices are never evicted');
like($f->read_file('error.log'), qr/\[warn\].*device_pairing_zone "pairing" is full/, 'the full zone is logged once per failure, as a warning');
sleep 2.5;
is($f->post('/api/v1/device-pairing', device_key => $key)->{status}, 201, 'expired records are evicted to make room');
$f->finish;

done_testing;
