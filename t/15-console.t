# The operator's console: Prometheus metrics (read by Debian's
# python3-prometheus-client parser), the audit log (file, reopen, syslog),
# token lifetimes and rotation, rename, revoke-all-but-self, the device cap.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use IO::Socket::INET;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep);
use DPTest;

my $alice = 'dk_alice_desktop_key_000000000001';
my $t = DPTest->new;
my $metrics_location = 'location = /metrics { device_pairing_metrics; allow 127.0.0.1; deny all; }';
sub configure {
    my ($http) = @_;
    $t->standard(device_keys => "alice " . sha256_hex($alice) . "\n", http => $http, server => $metrics_location);
}
configure('device_pairing_audit_log %%DIR%%/audit.log; device_pairing_max_devices 3;');
$t->start;

# The exposition as {"name{label=value}" => number}, parsed by the client library.
sub metrics {
    my $res = $t->get('/metrics');
    die "metrics: $res->{status}" unless $res->{status} == 200;
    $t->write_file('metrics.txt', $res->{content});
    my $out = $t->python(<<'PY', "$t->{dir}/metrics.txt");
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        labels = ','.join('%s=%s' % kv for kv in sorted(s.labels.items()))
        out[s.name + ('{' + labels + '}' if labels else '')] = s.value
print(json.dumps(out))
PY
    return decode_json($out);
}

sub audit_events {
    my ($file) = @_;
    return [ map { decode_json($_) } grep { length } split /\n/, ($t->read_file($file // 'audit.log') // '') ];
}

my $res = $t->get('/metrics');
is($res->{status}, 200, 'metrics: 200');
is($res->{headers}{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8', 'the 0.0.4 text format');
like($res->{content}, qr/^# HELP device_pairing_pairings_total .+\n# TYPE device_pairing_pairings_total counter$/m,
     'HELP and TYPE lines');
my $m0 = metrics();
is($m0->{'device_pairing_pairings_total{method=otp}'}, 0, 'no pairings yet');
is($m0->{'device_pairing_devices{role=owner}'}, 0, 'no owners yet');
ok($m0->{'device_pairing_zone_free_bytes'} > 0 && $m0->{'device_pairing_zone_used_bytes'} > 0, 'zone bytes used and free');
is($t->request('POST', '/metrics')->{status}, 405, 'metrics: GET and HEAD only');
is($t->request('HEAD', '/metrics')->{status}, 200, 'metrics: HEAD');

# Pairing and failures.
DPTest::is_problem($t->post('/pair', json => { otp => '000000' }, from => '127.0.0.2'), 401, 'invalid_code', 'a wrong OTP');
my $owner = $t->pair_device(json => { name => 'Laptop' });
my $m = metrics();
is($m->{'device_pairing_pairings_total{method=otp}'}, 1, 'pairings{otp} counts the pairing');
is($m->{'device_pairing_otp_failures_total'}, 1, 'otp failures count the wrong OTP');
is($m->{'device_pairing_devices{role=owner}'}, 1, 'devices{owner} = 1');
ok($m->{'device_pairing_oldest_last_seen_timestamp_seconds'} > time - 60, 'oldest last-seen is recent');

# Gate decisions.
is($t->get('/api/x', token => $owner)->{status}, 200, 'gate accepts');
is($t->get('/api/x')->{status}, 401, 'gate: missing');
is($t->get('/api/x', token => 'dp_tok_unknown')->{status}, 401, 'gate: invalid');
$m = metrics();
is($m->{'device_pairing_gate_decisions_total{result=accepted}'}, 1, 'gate decisions: accepted');
is($m->{'device_pairing_gate_decisions_total{result=missing}'}, 1, 'gate decisions: missing');
is($m->{'device_pairing_gate_decisions_total{result=invalid}'}, 1, 'gate decisions: invalid');

# A pairing code approved by the owner.
my $req = $t->post('/api/devices/pairing/request', json => { requesterId => 'phone-1' })->{json};
is(metrics()->{'device_pairing_pending_codes'}, 1, 'one pending code');
is($t->post('/api/devices/pairing/approve', token => $owner, json => { code => $req->{code} })->{status}, 200, 'approved');
my $phone = $t->post('/api/devices/pairing/status', json => { requestId => $req->{requestId} })->{json}{token};
like($phone, qr/^dp_tok_/, 'the phone gets its token');
$m = metrics();
is($m->{'device_pairing_pending_codes'}, 0, 'no pending code left');
is($m->{'device_pairing_codes_total{event=requested}'}, 1, 'codes{requested}');
is($m->{'device_pairing_codes_total{event=approved}'}, 1, 'codes{approved}');
is($m->{'device_pairing_pairings_total{method=code}'}, 1, 'pairings{code}');
is($m->{'device_pairing_devices{role=device}'}, 1, 'devices{device} = 1');

# Rename: owners any device, a device itself only; bad input changes nothing.
my $list = $t->get('/api/devices', token => $owner)->{json}{devices};
my ($phone_id) = map { $_->{id} } grep { $_->{role} eq 'device' } @$list;
my ($owner_id) = map { $_->{id} } grep { $_->{role} eq 'owner' } @$list;
is($list->[0]{expiresAt}, undef, 'no lifetime: expiresAt is null');
$res = $t->request('PATCH', "/api/devices/$phone_id", token => $owner, json => { name => 'Kitchen tablet' });
is($res->{status}, 200, 'the owner renames the phone');
is($res->{json}{name}, 'Kitchen tablet', 'the new name is answered');
DPTest::is_problem($t->request('PATCH', "/api/devices/$owner_id", token => $phone, json => { name => 'x' }), 403, 'forbidden',
                   'a device cannot rename another');
DPTest::is_problem($t->request('PATCH', "/api/devices/$phone_id", token => $phone, json => { name => '' }), 400, 'invalid_request',
                   'an empty name is refused');
DPTest::is_problem($t->request('PATCH', '/api/devices/dev_0000000000000000', token => $owner, json => { name => 'x' }), 404,
                   'device_not_found', 'rename of an unknown device');
my ($named) = grep { $_->{id} eq $phone_id } @{ $t->get('/api/devices', token => $owner)->{json}{devices} };
is($named->{name}, 'Kitchen tablet', 'the list shows the new name');

# Rotation: the new token works at once, the old one is refused at once.
$res = $t->post('/api/devices/self/rotate', token => $phone);
is($res->{status}, 200, 'the phone rotates its token');
my $rotated = $res->{json}{token};
like($rotated, qr/^dp_tok_/, 'a new token');
is($res->{json}{id}, $phone_id, 'the same device');
is($t->get('/api/x', token => $rotated)->{status}, 200, 'the new token opens the gate');
$res = $t->get('/api/x', token => $phone);
is($res->{status}, 401, 'the old token is refused');
like($res->{headers}{'www-authenticate'}, qr/error="invalid_token"/, 'with an RFC 6750 invalid_token challenge');
# Its answer lost, the phone retries with the old token: the same new token,
# nothing else changes; the old token opens nothing else.
my $retry = $t->post('/api/devices/self/rotate', token => $phone);
is($retry->{status}, 200, 'a retried rotation within the grace answers again');
is($retry->{json}{token}, $rotated, 'with the same new token');
is($t->get('/api/x', token => $rotated)->{status}, 200, 'which still opens the gate');
DPTest::is_problem($t->get('/api/devices', token => $phone), 401, 'token_revoked', 'the old token opens nothing else');
DPTest::is_problem($t->post('/api/devices/self/rotate', token => $t->operator_token), 400, 'invalid_request',
                   'the operator token does not rotate');
$phone = $rotated;
($named) = grep { $_->{id} eq $phone_id } @{ $t->get('/api/devices', token => $owner)->{json}{devices} };
is($named->{name}, 'Kitchen tablet', 'rotation keeps the name');
is(scalar(@{ $t->get('/api/devices', token => $owner)->{json}{devices} }), 2, 'and the count of devices');

# The cap: a third device fits, a fourth is refused with the number.
my $third = $t->pair_device(json => { name => 'Third' });
$res = $t->post('/pair', json => { otp => $t->otp });
DPTest::is_problem($res, 409, 'device_limit', 'beyond device_pairing_max_devices: 409');
like($res->{json}{detail}, qr/\b3\b/, 'the detail names the cap');
is(scalar(@{ $t->get('/api/devices', token => $owner)->{json}{devices} }), 3, 'nothing was added');
is($t->post('/pair', json => { otp => $t->otp })->{status}, 409, 'the OTP was not spent by the refusal');
is(metrics()->{'device_pairing_device_limit_total'}, 2, 'device_limit counts the refusals');

# Revoke every other device.
DPTest::is_problem($t->request('DELETE', '/api/devices', token => $owner), 400, 'invalid_request', 'all_but_self=1 is required');
DPTest::is_problem($t->request('DELETE', '/api/devices?all_but_self=1', token => $phone), 403, 'forbidden', 'owners only');
$res = $t->request('DELETE', '/api/devices?all_but_self=1', token => $owner);
is($res->{status}, 200, 'revoke all but self');
is($res->{json}{revoked}, 2, 'two revoked');
my $left = $t->get('/api/devices', token => $owner)->{json}{devices};
is_deeply([ map { $_->{id} } @$left ], [$owner_id], 'only the caller is left');
DPTest::is_problem($t->get('/api/x', token => $phone), 401, 'token_revoked', 'a revoked token: token_revoked');
$m = metrics();
is($m->{'device_pairing_revocations_total'}, 2, 'revocations');
is($m->{'device_pairing_gate_decisions_total{result=revoked}'}, 2, 'gate decisions: revoked (old rotated token, revoked phone)');
is($m->{'device_pairing_token_rotations_total'}, 1, 'rotations');
is($m->{'device_pairing_renames_total'}, 1, 'renames');
is($m->{'device_pairing_devices{role=device}'}, 0, 'devices{device} back to 0');

# Mailboxes: one completed with real keys, one cancelled.
my ($session_pub, $ecdh_pub) = split ' ', $t->python(<<'PY');
import base64
from cryptography.hazmat.primitives.asymmetric import ed25519, ec
from cryptography.hazmat.primitives import serialization as s
ed = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
p = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(s.Encoding.X962, s.PublicFormat.UncompressedPoint)
print(base64.b64encode(ed).decode(), base64.b64encode(p).decode())
PY
my $mint = $t->post('/api/v1/device-pairing', device_key => $alice)->{json};
is($t->request('PUT', "/api/v1/device-pairing/$mint->{pairing_id}", token => $mint->{write_token},
               json => { session_pub => $session_pub, ecdh_pub => $ecdh_pub })->{status}, 204, 'a deposit');
my $mint2 = $t->post('/api/v1/device-pairing', device_key => $alice)->{json};
is($t->request('DELETE', "/api/v1/device-pairing/$mint2->{pairing_id}", device_key => $alice)->{status}, 204, 'cancelled');
$m = metrics();
is($m->{'device_pairing_mailboxes_total{event=minted}'}, 2, 'mailboxes{minted}');
is($m->{'device_pairing_mailboxes_total{event=completed}'}, 1, 'mailboxes{completed}');
is($m->{'device_pairing_mailboxes_total{event=cancelled}'}, 1, 'mailboxes{cancelled}');
is($m->{'device_pairing_mailboxes'}, 1, 'one mailbox held (the completed one, until it is read or expires)');

# A rejected code.
my $unwanted = $t->post('/api/devices/pairing/request', json => { requesterId => 'stranger' })->{json};
is($t->post('/api/devices/pairing/reject', token => $owner, json => { code => $unwanted->{code} })->{status}, 200, 'rejected');
is(metrics()->{'device_pairing_codes_total{event=rejected}'}, 1, 'codes{rejected}');

# Lockout and burn, from other addresses.
$t->post('/pair', json => { otp => '000000' }, from => '127.0.0.3') for 1 .. 5;
is(metrics()->{'device_pairing_lockouts_total'}, 1, 'five failures from one address: one lockout');
for my $i (4 .. 7) { $t->post('/pair', json => { otp => '000000' }, from => "127.0.0.$i") for 1 .. 2 }
is(metrics()->{'device_pairing_otp_burns_total'}, 1, 'ten failures burn the OTP');

# Counters survive a reload (they live in the zone).
my $before = metrics();
$t->reload;
my $after = metrics();
is($after->{'device_pairing_pairings_total{method=otp}'}, $before->{'device_pairing_pairings_total{method=otp}'},
   'counters survive a reload');

# A client the vocabulary does not know is "other" in the audit
# log: a summary from a fixed vocabulary, never the header's bytes.
my $evil_otp = $t->get('/pair/refresh', token => $owner)->{json}{otp};
is($t->post('/pair', json => { otp => $evil_otp }, from => '127.0.0.9',
            headers => { 'User-Agent' => "evilbot/1.0 (x)" })->{status}, 200, 'paired by an unknown client');

# The audit log.
my @events = @{ audit_events() };
my ($evil) = grep { $_->{event} eq 'paired' && ($_->{address} // '') eq '127.0.0.9' } @events;
is($evil->{user_agent}, 'other', 'an unknown client is "other" in the audit log');
my %seen;
$seen{ $_->{event} }++ for @events;
is($events[0]{event}, 'identity_created', 'the first line: the identity key was created');
for my $e (qw(paired code_approved code_rejected renamed rotated revoked mailbox_completed mailbox_cancelled lockout otp_burned)) {
    ok($seen{$e}, "audit: $e");
}
my ($first_pair) = grep { $_->{event} eq 'paired' } @events;
is($first_pair->{device_id}, $owner_id, 'paired: device id');
is($first_pair->{role}, 'owner', 'paired: role');
is($first_pair->{method}, 'otp', 'paired: method');
is($first_pair->{address}, '127.0.0.1', 'paired: client address');
like($first_pair->{time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, 'paired: RFC 3339 time');
ok(defined $first_pair->{user_agent}, 'paired: a User-Agent summary');
my ($approval) = grep { $_->{event} eq 'code_approved' } @events;
is($approval->{actor}, $owner_id, 'code_approved: the approving owner is the actor');
is($approval->{detail}, 'phone-1', 'code_approved: who asked');
my @revoked = grep { $_->{event} eq 'revoked' } @events;
is(scalar(@revoked), 2, 'one revoked line per device');
is($revoked[0]{actor}, $owner_id, 'revoked: the owner is the actor');
my ($renamed) = grep { $_->{event} eq 'renamed' } @events;
is($renamed->{detail}, 'Kitchen tablet', 'renamed: the new name');
my $raw = $t->read_file('audit.log');
unlike($raw, qr/dp_tok_|dp_wt_|$req->{code}|$alice|\Q$mint->{write_token}\E/, 'no token, code, write token or device key in the audit log');

# nginx -s reopen: a rotated file is reopened.
rename "$t->{dir}/audit.log", "$t->{dir}/audit.log.1" or die;
kill 'USR1', $t->master_pid;
sleep 0.5;
$res = $t->request('PATCH', "/api/devices/$owner_id", token => $owner, json => { name => 'Laptop 2' });
is($res->{status}, 200, 'rename after reopen');
my $new = audit_events();
is(scalar(@$new), 1, 'the new audit.log has the new event');
is($new->[0]{event}, 'renamed', 'and it is the rename');

my $op = $t->operator_token;  # device tokens expire below; the operator's never does
# Lifetimes: a lifetime of 3 s and an idle timeout of 4 s, each alone;
# the audit log goes to syslog (a UDP listener here).
my $syslog = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => 0) or die "udp: $!";
my $syslog_port = $syslog->sockport;
configure("device_pairing_audit_log syslog:server=127.0.0.1:$syslog_port,tag=dp_audit; device_pairing_token_lifetime 3s;");
$t->reload;
$t->get('/pair/refresh', token => $op);
my $short = $t->pair_device(json => { name => 'Short' });
my ($short_dev) = grep { $_->{name} eq 'Short' } @{ $t->get('/api/devices', token => $op)->{json}{devices} };
ok(defined $short_dev->{expiresAt}, 'a lifetime shows in the device list');
is($t->get('/api/x', token => $short)->{status}, 200, 'within its lifetime');
sleep 3.2;
$res = $t->get('/api/x', token => $short);
DPTest::is_problem($res, 401, 'token_expired', 'past its lifetime: 401 token_expired');
like($res->{headers}{'www-authenticate'}, qr/error="invalid_token"/, 'with error="invalid_token"');
DPTest::is_problem($t->get('/api/x', token => $short), 401, 'token_expired', 'and again');
ok(!grep({ $_->{name} eq 'Short' } @{ $t->get('/api/devices', token => $op)->{json}{devices} }), 'gone from the list');
is(metrics()->{'device_pairing_gate_decisions_total{result=expired}'}, 2, 'gate decisions: expired');
my @syslog;
$syslog->blocking(0);
for (1 .. 20) {
    while (defined(my $from = $syslog->recv(my $dgram, 65536))) { last unless length $dgram; push @syslog, $dgram }
    last if grep { /"event":"expired"/ } @syslog;
    sleep 0.1;
}
my ($expired_line) = grep { /"event":"expired"/ } @syslog;
ok($expired_line, 'the expiry reached syslog');
like($expired_line // '', qr/dp_audit: \{.*"device_id":"$short_dev->{id}"/, 'tagged, one JSON object, the device id');

configure('device_pairing_token_idle_timeout 4s;');
$t->reload;
$t->get('/pair/refresh', token => $op);
my $idle = $t->pair_device(json => { name => 'Idle' });
for (1 .. 5) {
    sleep 1.1;
    is($t->get('/api/x', token => $idle)->{status}, 200, "used every second: still valid ($_)");
}
sleep 5.2;
DPTest::is_problem($t->get('/api/x', token => $idle), 401, 'token_expired', 'idle past the timeout: token_expired');

$t->finish;
done_testing;
