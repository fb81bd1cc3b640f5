# The verifiable pairing log (log=on) through a real nginx, checked by
# tools/verify-log, which reads the log with Go's golang.org/x/mod
# sumdb/note and sumdb/tlog: every durable device event is a leaf in commit
# order; checkpoints are C2SP signed notes by the gateway identity; proofs
# are RFC 6962's; the tree survives kill -9, reloads and compactions byte
# for byte; a leaf rewritten or dropped on disk makes the next checkpoint
# inconsistent with one a client kept.
use strict;
use warnings;
use Test::More;
use MIME::Base64;
use JSON::PP;
use DPTest;

DPTest::verifier();

sub verify { my ($t, @args) = @_; $t->verify_log(@args) }

sub leaves {
    my ($t, $token) = @_;
    my @all;
    for (my $start = 0;; $start += 1000) {
        my $r = $t->get("/api/devices/log/entries?start=$start&end=" . ($start + 1000), token => $token);
        last if $r->{status} != 200;    # 400: start beyond the log
        push @all, map { decode_json(decode_base64($_->{leaf})) } @{ $r->{json}{entries} };
    }
    return @all;
}

sub checkpoint { my ($t, $token) = @_; $t->get('/api/devices/log/checkpoint', token => $token)->{content} }

my $t = DPTest->new(workers => 2);
$t->standard(zone => 'zone=pairing:4m state=%%DIR%%/state compact=1k log=on',
             server => 'device_pairing_log_origin gateway.example/pairing;');
$t->start;
my $op = $t->operator_token;
DPTest::is_problem($t->get('/api/devices/log/checkpoint'), 401, 'authentication_required', 'the log needs a credential');

# --- every kind of durable event, in order -----------------------------------
my $owner = $t->pair_device;
my $req = $t->post('/api/devices/pairing/request', json => { requesterId => 'tablet' })->{json};
is($t->post('/api/devices/pairing/approve', token => $owner, json => { code => $req->{code} })->{status}, 200, 'approved');
my $tablet = $t->get("/api/devices/pairing/status/$req->{requestId}")->{json}{token};
my $req2 = $t->post('/api/devices/pairing/request', json => { requesterId => 'stranger' })->{json};
is($t->post('/api/devices/pairing/reject', token => $owner, json => { code => $req2->{code} })->{status}, 200, 'rejected');
my $tablet_id = $t->get('/api/x', token => $tablet)->{content} =~ /id=(dev_\w+)/ ? $1 : die;
is($t->request('PATCH', "/api/devices/$tablet_id", token => $owner, json => { name => 'kitchen' })->{status}, 200, 'renamed');
my $rotated = $t->post('/api/devices/self/rotate', token => $tablet)->{json}{token};
is($t->request('DELETE', "/api/devices/$tablet_id", token => $owner)->{status}, 204, 'revoked');
$t->get('/api/devices/pairing/status/pair_nope');    # reads change nothing

my @events = map { $_->{event} } leaves($t, $op);
is_deeply(\@events, [qw(paired code_approved paired code_rejected renamed rotated revoked)], 'each durable event is a leaf, in commit order')
    or diag explain \@events;
my @leaves = leaves($t, $owner);
is_deeply([ map { $_->{seq} } @leaves ], [ 0 .. $#leaves ], 'a leaf\'s seq is its index');
is($leaves[4]{name}, 'kitchen', 'a rename carries the new name');
is($leaves[2]{device_id}, $tablet_id, 'the paired leaf names the device');
my $all = encode_json(\@leaves);
unlike($all, qr/\Q$owner\E|\Q$tablet\E|\Q$rotated\E|\Q$req->{requestId}\E|\Q$req->{code}\E|127\.0\.0\.1/,
       'no token, request id, code or address in any leaf');


# --- the verifier (Go's sumdb/note and sumdb/tlog) ---------------------------
my $id = $t->get('/api/devices/identity')->{json};
my $state = "$t->{dir}/verifier-state";
my ($ok, $out) = verify($t, "-token $owner -pin $id->{publicKey} -state $state -entries");
ok($ok, 'Go verifies the signed checkpoint, rebuilds the root from the entries and checks inclusion proofs') or diag $out;
like($out, qr/checkpoint: gateway\.example\/pairing, 7 leaves/, 'the checkpoint names the origin and size');
($ok, $out) = verify($t, "-token $owner -pin " . encode_base64('x' x 32, ''));
ok(!$ok && $out =~ /checkpoint signature|hand-overs lead/, 'a checkpoint is refused under another key') or diag $out;

for (1 .. 9) { $t->pair_device }
my $device = $t->post('/api/devices/pairing/request', json => { requesterId => 'phone' })->{json};
$t->post('/api/devices/pairing/approve', token => $owner, json => { code => $device->{code} });
my $phone = $t->get("/api/devices/pairing/status/$device->{requestId}")->{json}{token};
is(scalar(() = leaves($t, $phone)), 18, 'a device (not only an owner) reads the log');
my $size = () = leaves($t, $op);
($ok, $out) = verify($t, "-token $owner -state $state -entries");
ok($ok && $out =~ /consistent with the checkpoint kept \(7 leaves\)/, 'the grown log is consistent with the kept checkpoint')
    or diag $out;

# --- bad ranges ---------------------------------------------------------------
DPTest::is_problem($t->get("/api/devices/log/entries?start=$size&end=" . ($size + 1), token => $op), 400, 'bad_range', 'entries past the end');
DPTest::is_problem($t->get('/api/devices/log/entries?start=3&end=3', token => $op), 400, 'bad_range', 'an empty range');
DPTest::is_problem($t->get('/api/devices/log/entries?start=-1&end=3', token => $op), 400, 'bad_range', 'a negative start');
DPTest::is_problem($t->get("/api/devices/log/proof/inclusion?index=$size&size=$size", token => $op), 400, 'bad_range', 'index == size');
DPTest::is_problem($t->get('/api/devices/log/proof/inclusion?index=0&size=' . ($size + 1), token => $op), 400, 'bad_range', 'size beyond the log');
DPTest::is_problem($t->get('/api/devices/log/proof/consistency?old=0&new=3', token => $op), 400, 'bad_range', 'old 0');
DPTest::is_problem($t->get('/api/devices/log/proof/consistency?old=4&new=3', token => $op), 400, 'bad_range', 'old > new');
is(scalar @{ $t->get('/api/devices/log/entries?start=0&end=5000', token => $op)->{json}{entries} }, $size, 'end is capped at the log\'s size');

# --- durable: kill -9, restart, reload; the journal compacted in between ------
my $before = checkpoint($t, $op);
$t->crash;
$t->start;
is(checkpoint($t, $op), $before, 'kill -9 and a restart keep the tree byte for byte');
$t->reload;
is(checkpoint($t, $op), $before, 'a reload keeps it');
$t->standard(zone => 'zone=pairing:6m state=%%DIR%%/state compact=1k log=on',
             server => 'device_pairing_log_origin gateway.example/pairing;');
$t->reload;
for (1 .. 50) { last if $t->get('/api/devices/stats', token => $op)->{json}{zoneBytes} > 5_000_000; select undef, undef, undef, 0.1 }
is(checkpoint($t, $op), $before, 'a reload that resizes the zone copies the tree');
ok(!-e "$t->{dir}/state.journal.1", 'the journal was compacted');
my $grown = 0;
for (1 .. 30) { $t->pair_device; $grown++ }    # compactions run (compact=1k) while leaves are added
my @after = leaves($t, $op);
is(scalar @after, $size + $grown, 'compactions drop no leaf');
($ok, $out) = verify($t, "-token $op -state $state -entries");
ok($ok, 'and the log is still consistent and whole') or diag $out;

# --- public log ---------------------------------------------------------------
$t->standard(zone => 'zone=pairing:4m state=%%DIR%%/state compact=1k log=on',
             server => 'device_pairing_log_origin gateway.example/pairing; device_pairing_log_public on;');
$t->reload;
is($t->get('/api/devices/log/checkpoint')->{status}, 200, 'device_pairing_log_public on: no credential needed');
($ok, $out) = verify($t, "-state $state -entries");
ok($ok, 'the public log verifies without a token') or diag $out;

# --- tampering on disk is caught ------------------------------------------------
sub rewrite_log {
    my ($t, $edit) = @_;
    my $bytes = $t->read_file('state.log');
    my @records;
    while (length $bytes) {
        my $len = unpack 'V', $bytes;
        push @records, substr($bytes, 4, $len);
        $bytes = substr($bytes, 4 + $len + 12);
    }
    @records = $edit->(@records);
    my $i = 0;
    $t->write_file('state.log', join '', map { pack('V', length $_) . $_ . pack('V', length $_) . pack('Q<', $i++) } @records);
}
$t->stop;
rewrite_log($t, sub { my @r = @_; $r[1] =~ s/"event":"code_approved"/"event":"code_rejected"/; @r });
$t->start;
($ok, $out) = verify($t, "-state $state");
ok(!$ok && $out =~ /not consistent|root .* changed/, 'a leaf rewritten on disk: the verifier refuses the next checkpoint') or diag $out;
$t->stop;
rewrite_log($t, sub { my @r = @_; splice @r, 1, 1; @r });
$t->start;
($ok, $out) = verify($t, "-state $state");
ok(!$ok && $out =~ /not consistent|shrank|changed/, 'a leaf dropped on disk: refused too') or diag $out;
$t->stop;
my $raw = $t->read_file('state.log');
substr($raw, 4 + unpack('V', $raw) + 4, 8) = pack 'Q<', 5;    # the first record says it is leaf 5
$t->write_file('state.log', $raw);
ok(!eval { $t->start; 1 }, 'a record out of place stops the start');
like($t->read_file('error.log'), qr/\[emerg\].*the pairing log .*state\.log.*is not pairing log leaf 0/, '... naming the file and the leaf');
$t->{allow} = qr/is not pairing log leaf 0/;
$t->finish;

done_testing;
