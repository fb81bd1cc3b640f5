# The pairing log in fleet mode: two hosts on one redis-server, events made
# on both; the commit script numbers the leaves in the fleet's order, so
# both hosts hold the same tree (the same root for the same size) and sign
# the same checkpoint with the identity they share; tools/verify-log (Go's
# sumdb/note and sumdb/tlog) checks each host and their consistency; a host
# restarted (its replica rebuilt) comes back with the same tree; one whose
# tree Redis no longer holds makes it again.
use strict;
use warnings;
use Test::More;
use MIME::Base64;
use JSON::PP;
use Time::HiRes qw(time sleep);
use DPTest;

my $REDIS = '/usr/bin/redis-server';
plan skip_all => 'redis-server is not installed (make test installs it)' unless -x $REDIS;
DPTest::verifier();

my $rdir = DPTest->new->dir;
my $rport = DPTest::free_port();
my $redis_pid = DPTest::start_redis($rdir, $rport);

sub host {
    my $h = DPTest->new(allow => qr/redis/);
    $h->standard(zone => "zone=pairing:2m redis=127.0.0.1:$rport redis_prefix=t27: log=on",
        server => "device_pairing_identity $rdir/identity.pem; device_pairing_log_origin fleet.example/pairing;",
        http => "device_pairing_secret_key $rdir/secret.key;");
    $h->start;
    return $h;
}
sub checkpoint { $_[0]->get('/api/devices/log/checkpoint', token => $_[1])->{content} }
sub size_of { my ($cp) = @_; ($cp // '') =~ /^[^\n]*\n(\d+)\n/ ? $1 : -1 }
sub wait_for_size {
    my ($h, $token, $n) = @_;
    my $start = time;
    while (time - $start < 10) { return 1 if size_of(checkpoint($h, $token)) == $n; sleep 0.02 }
    return 0;
}
sub verify { my ($h, @args) = @_; $h->verify_log(@args) }
sub leaves {
    my ($h, $token) = @_;
    my $r = $h->get('/api/devices/log/entries?start=0&end=1000', token => $token);
    return $r->{status} == 200 ? [ map { $_->{leaf} } @{ $r->{json}{entries} } ] : [];
}

my $a = host();
my $b = host();
my $op = $a->operator_token;
my $owner = $a->pair_device;
ok(wait_for_size($b, $owner, 1), 'B reads A\'s leaf from the feed');

# Events on both hosts, interleaved.
my $req = $b->post('/api/devices/pairing/request', json => { requesterId => 'tablet' })->{json};
is($b->post('/api/devices/pairing/approve', token => $owner, json => { code => $req->{code} })->{status}, 200, 'approved on B');
my $tablet = $a->get("/api/devices/pairing/status/$req->{requestId}")->{json}{token};
ok($tablet, 'delivered on A');
my $id = $b->get('/api/devices', token => $owner)->{json}{devices};
my ($tablet_id) = map { $_->{id} } grep { $_->{role} eq 'device' } @$id;
is($b->request('PATCH', "/api/devices/$tablet_id", token => $owner, json => { name => 'kitchen' })->{status}, 200, 'renamed on B');
is($a->request('DELETE', "/api/devices/$tablet_id", token => $owner)->{status}, 204, 'revoked on A');
# Both hosts at once: the script orders them.
my $counts = DPTest::concurrently(8, sub {
    my $i = shift;
    my $h = $i % 2 ? $a : $b;
    my $r = $h->post('/api/devices/pairing/request', json => { requesterId => "r$i" })->{json};
    return $h->post('/api/devices/pairing/reject', token => $owner, json => { code => $r->{code} })->{status};
});
is_deeply($counts, { 200 => 8 }, 'eight rejections made on both hosts at once');
my $n = 5 + 8;
ok(wait_for_size($a, $owner, $n) && wait_for_size($b, $owner, $n), "both hosts hold $n leaves");
my $cpa = checkpoint($a, $owner);
is(checkpoint($b, $owner), $cpa, 'the same size, root and signature on both hosts (the identity they share)');
my @la = @{ leaves($a, $owner) };
is_deeply(leaves($b, $owner), \@la, 'the same leaves on both hosts, read from redis');
is_deeply([ map { decode_json(decode_base64($_))->{seq} } @la ], [ 0 .. $n - 1 ], 'numbered 0.. in the fleet\'s order');
is_deeply([ map { decode_json(decode_base64($_))->{event} } @la[0 .. 4] ],
          [qw(paired code_approved paired renamed revoked)], 'each event once, whichever host made it');

my $state = "$a->{dir}/verifier-state";
my ($ok, $out) = verify($a, "-token $owner -state $state -entries");
ok($ok, 'Go verifies host A (signature, entries, inclusion proofs)') or diag $out;
$a->pair_device;
ok(wait_for_size($b, $owner, $n + 1), 'one more leaf');
($ok, $out) = verify($b, "-token $owner -state $state -entries");
ok($ok && $out =~ /consistent with the checkpoint kept \($n leaves\)/, 'host B\'s checkpoint is consistent with the one kept from A')
    or diag $out;

# A restart rebuilds B's replica: the tree comes back the same (from the
# tree's last leaf on, or made again).
$b->stop;
$b->start;
ok(wait_for_size($b, $owner, $n + 1), 'B restarted holds the tree again');
is(checkpoint($b, $owner), checkpoint($a, $owner), '... the same as A\'s');
is($b->post('/pair', json => { otp => $a->otp })->{status}, 200, 'a pairing on B with the fleet\'s OTP');
ok(wait_for_size($a, $owner, $n + 2), 'and B\'s next leaf reaches A');

# Redis lost the log (a FLUSH, a new server): a host's tree no longer
# matches; a reconnect makes it again from what Redis holds.
system("redis-cli -p $rport DEL 't27:{fleet}:log' >/dev/null") == 0 or die;
system("redis-cli -p $rport CLIENT KILL TYPE normal >/dev/null") == 0 or die;    # every host reconnects and rebuilds
ok(wait_for_size($b, $owner, 0), 'a tree Redis no longer holds is made again from it (empty)');
like($b->read_file('error.log'), qr/the pairing log does not hold this host's leaf \d+ as it was/, '... and says so');
$a->finish;
$b->finish;
kill 'KILL', $redis_pid;
done_testing;
