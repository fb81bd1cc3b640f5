# Security findings from an outside attack on the module, one block each:
# every block failed on the code before the fix.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use JSON::PP;
use Time::HiRes qw(sleep time);
use DPTest;

my $JSON = JSON::PP->new->canonical;

# The README's configuration without device_pairing_url: URLs come from Host.
my $t = DPTest->new;
$t->standard(no_url => 1);
$t->start;
my $op = $t->operator_token;
my $port = $t->port;

sub get_with_host {
    my ($path, $host, %opt) = @_;
    my $auth = $opt{token} ? "Authorization: Bearer $opt{token}\r\n" : '';
    return $t->raw("GET $path HTTP/1.1\r\nHost: $host\r\n${auth}Connection: close\r\n\r\n");
}

# 1. Host: $host made the app-URL expansion loop forever; x$hostx grew without bound.
for my $host ('$host', 'x$hostx', '$host$host') {
    my $started = time;
    my ($status, $body) = get_with_host('/api/devices/pairing/qr', $host);
    is($status, 400, "Host: $host on the code QR is a 400");
    like($body, qr/"code":"invalid_host"/, 'invalid_host');
    ok(time - $started < 2, 'answered at once');
}
is($t->get('/health')->{status}, 200, 'the workers still serve');
is($t->get('/api/x', token => $op)->{status}, 200, 'and the gate answers');
my ($status, $body) = get_with_host('/api/devices/pairing/qr', "127.0.0.1:$port");
is($status, 200, 'a real Host builds the URL');
like($body, qr{"pairingUrl":"devicepairing://pair\?code=[A-Z2-9-]{11}&host=127\.0\.0\.1:$port"}, 'with the host inserted once');

# 9. A Host of invalid UTF-8: 400, no alert, no orphan record, no silent OTP rotation.
my $otp = $t->get('/pair/refresh', token => $op)->{json}{otp};
my $codes_before = $t->get('/api/devices/stats', token => $op)->{json}{records}{codeRequests};
($status, $body) = get_with_host('/api/devices/pairing/qr', "\xff");
is($status, 400, 'Host \xff on the code QR is a 400');
($status, $body) = get_with_host('/pair/refresh', "\xff", token => $op);
is($status, 400, 'Host \xff on refresh is a 400');
like($body, qr/"code":"invalid_host"/, 'invalid_host');
is($t->get('/api/devices/stats', token => $op)->{json}{records}{codeRequests}, $codes_before, 'no orphan code request');
unlike($t->read_file('error.log'), qr/bad_alloc/, 'no bad_alloc');

# 2. A device-role token minted itself an owner through refresh.
my $req = $t->post('/api/devices/pairing/request', json => { requesterId => 'phone' })->{json};
$t->post('/api/devices/pairing/approve', token => $op, json => { code => $req->{code} });
my $device = $t->post('/api/devices/pairing/status', json => { requestId => $req->{requestId} })->{json}{token};
like($device, qr/^dp_tok_/, 'a code-paired device (device role)');
my $r = $t->get('/pair/refresh', token => $device);
DPTest::is_problem($r, 403, 'forbidden', 'refresh is owner-only');
ok(!exists $r->{json}{otp}, 'no OTP in the answer');
is($t->post('/pair', json => { otp => $otp })->{status}, 200, 'the OTP did not rotate for the device');

# 10. The request id (a capability) stays out of the access log with POST status.
my $req2 = $t->post('/api/devices/pairing/request', json => {})->{json};
$t->post('/api/devices/pairing/approve', token => $op, json => { code => $req2->{code} });
$r = $t->post('/api/devices/pairing/status', json => { requestId => $req2->{requestId} });
is($r->{json}{status}, 'approved', 'POST status answers');
like($r->{json}{token}, qr/^dp_tok_/, 'and delivers the token');
unlike($t->read_file('access.log'), qr/\Q$req2->{requestId}\E/, 'the request id is not in the access log');

# 4. A name cut inside a UTF-8 character hid the device from the list (a
# User-Agent is only summarised now: "other" here).
my $fresh = $t->get('/pair/refresh', token => $op)->{json}{otp};
my $pair_body = qq({"otp":"$fresh","name":"A) . ("\xc3\xa9" x 11) . qq(-App"});
($status) = $t->raw("POST /pair HTTP/1.1\r\nHost: x\r\nUser-Agent: A" . ("\xc3\xa9" x 11) . "-App\r\n"
    . "Content-Type: application/json\r\nContent-Length: " . length($pair_body) . "\r\nConnection: close\r\n\r\n$pair_body");
is($status, 200, 'paired with a name whose 20-byte cut falls inside a character');
my $stats = $t->get('/api/devices/stats', token => $op)->{json}{records}{devices};
my $list = $t->get('/api/devices', token => $op)->{json}{devices};
is(scalar @$list, $stats, "every device is listed ($stats)");
ok((grep { $_->{name} =~ /^A\x{e9}+$/ } @$list), 'under its name cut on a character boundary');

# 7, 8, 6: attestation checks.
my $att = $t->post('/api/devices/attest', token => $op, json => { data => { amount => 1 } })->{json}{attestation};
$r = $t->post('/api/devices/verify', json => { attestation => $att, expectedDeviceId => 'dev_0000000000000000' });
is_deeply([ @{ $r->{json} }{qw(valid reason)} ], [ JSON::PP::false, 'device_id_mismatch' ], 'expectedDeviceId is honoured');
$r = $t->post('/api/devices/verify', json => { attestation => $att, maxAgeMs => 1000 });
ok($r->{json}{valid}, 'valid once');
$r = $t->post('/api/devices/verify', json => { attestation => $att, maxAgeMs => 60000 });
is($r->{json}{reason}, 'replay', 'a larger maxAgeMs later is still a replay');
$r = $t->post('/api/devices/attest', token => $op, json => '{"data":{"amount":9007199254740993}}');
DPTest::is_problem($r, 400, 'invalid_request', 'an integer beyond 2^53 is refused at attest');

# 12. Two servers that name different token files would share one realm.
my $two = DPTest->new;
$two->write_file('device-keys', '');
$two->config(<<'HTTP');
    device_pairing_zone zone=pairing:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        device_pairing_token_file %%DIR%%/a-token;
        location /pair { device_pairing on; }
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        device_pairing_token_file %%DIR%%/b-token;
        location /pair { device_pairing on; }
    }
HTTP
my ($rc, $out) = $two->test_config;
isnt($rc, 0, 'nginx -t refuses servers that look isolated but share a zone');
like($out, qr/\[emerg\].*different device_pairing_token_file/, 'and says why');
$t->finish;

# 3. Anonymous clients filled the zone: pairing then answered 503 and the
# lockout stopped counting. Flood verify and code requests from many addresses.
my $f = DPTest->new;
$f->standard(zone => 'zone=pairing:128k');
$f->start;
my $fop = $f->operator_token;
my $fotp = $f->otp;
my ($valid, $refused) = (0, 0);
for my $i (1 .. 900) {
    my $a = $f->post('/api/devices/attest', token => $fop, json => { data => { i => $i } })->{json}{attestation};
    my $v = $f->post('/api/devices/verify', json => { attestation => $a }, from => '127.0.1.' . (1 + $i % 50));
    if ($v->{status} == 200 && $v->{json}{valid}) { $valid++ } else { $refused++; last if $refused > 20 }
}
ok($refused > 0, "verify stops at its share ($valid nonces kept)");
my $made = 0;
for my $i (1 .. 400) {
    my $c = $f->post('/api/devices/pairing/request', json => {}, from => '127.0.2.' . (1 + $i % 200));
    last if $c->{status} != 200;
    $made++;
}
ok($made < 400, "code requests stop at their share ($made kept)");
for my $i (1 .. 5) {
    DPTest::is_problem($f->post('/pair', json => { otp => 'nope00' }, from => '127.0.0.7'), 401, 'invalid_code', "guess $i counted");
}
DPTest::is_problem($f->post('/pair', json => { otp => $fotp }, from => '127.0.0.7'), 429, 'rate_limited', 'the lockout still works in a flooded zone');
is($f->post('/pair', json => { otp => $fotp }, from => '127.0.0.8')->{status}, 200, 'and pairing with the right OTP still works');
$f->finish;

# 5. A burned OTP came back after a restart; nonces must survive one.
# The planted journal link of case 11 is met by the writer and, reading the
# journal's tail, by worker 0's follower: both say so at [alert].
my $d = DPTest->new(allow => qr/journal write failed|following the journal: cannot read/);
$d->standard;
$d->start;
my $dop = $d->operator_token;
my $burn = $d->otp;
for my $i (1 .. 9) { $d->post('/pair', json => { otp => 'nope00' }, from => '127.0.3.' . $i) }
sleep 1.5;    # those failures reach the file; the burn and the nonce come after the flush
$d->post('/pair', json => { otp => 'nope00' }, from => '127.0.3.10');
like($d->read_file('error.log'), qr/OTP burned/, 'burned');
my $datt = $d->post('/api/devices/attest', token => $dop, json => { data => {} })->{json}{attestation};
ok($d->post('/api/devices/verify', json => { attestation => $datt })->{json}{valid}, 'an attestation verified');
$d->stop;    # graceful: each worker writes what is dirty
unlike($d->read_file('state'), qr/\Q@{[ pack 'H*', sha256_hex("otp\n$burn") ]}\E/, 'the state file holds no OTP hash');
$d->start;
DPTest::is_problem($d->post('/pair', json => { otp => $burn }, from => '127.0.0.9'), 401, 'invalid_code', 'the burned OTP stays dead after a restart');
isnt($d->otp, $burn, 'a restart prints a fresh OTP');
is($d->post('/pair', json => { otp => $d->otp }, from => '127.0.0.9')->{status}, 200, 'which pairs');
is($d->post('/api/devices/verify', json => { attestation => $datt })->{json}{reason}, 'replay', 'a nonce survives a restart');

# 11. The state writer's files went through a planted symlink. The journal
# is opened O_NOFOLLOW (the snapshot's temp file is O_EXCL|O_NOFOLLOW with an
# unpredictable name): a link planted in its place is refused, not written.
my $victim = $d->write_file('victim', "precious\n");
unlink "$d->{dir}/state.journal";
symlink $victim, "$d->{dir}/state.journal" or die "symlink: $!";
my $otp3 = $d->get('/pair/refresh', token => $dop)->{json}{otp};
is($d->post('/pair', json => { otp => $otp3 })->{status}, 503, 'a pairing whose journal is a planted symlink is refused');
is($d->read_file('victim'), "precious\n", 'the planted symlink was not followed');
unlink "$d->{dir}/state.journal";
is($d->post('/pair', json => { otp => $otp3 })->{status}, 200, 'without it the same OTP pairs');
is((stat "$d->{dir}/state.journal")[2] & 0777, 0600, 'the journal is 0600');
$d->finish;

done_testing;
