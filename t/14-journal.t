# The state engine through a real nginx: kill -9 during journal appends loses
# no answered pairing; a zone resize retires the old zone (its workers refuse
# writes and end their long polls at once, their exit writes nothing); 1000
# mixed operations with compactions in between come back exactly after a
# restart.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use POSIX ();
use DPTest;

my $key = 'dk_journal_key_00000000000000001';
my $keys = "alice " . sha256_hex($key) . "\n";

# --- kill -9 while pairings are being appended -------------------------------
my $t = DPTest->new(workers => 2);
$t->standard(device_keys => $keys);
$t->start;
my $op = $t->operator_token;
my $owner = $t->pair_device;
my $log = "$t->{dir}/answered";
my $kid = fork // die;
if (!$kid) {
    open my $out, '>>', $log or die;
    $out->autoflush(1);
    for (1 .. 100000) {
        my $otp = $t->get('/pair/refresh', token => $owner)->{json}{otp} // next;
        my $r = $t->post('/pair', json => { otp => $otp });
        print $out "$r->{json}{token}\n" if $r->{status} == 200;
    }
    POSIX::_exit(0);
}
sleep 1.5;
$t->crash;
kill 'KILL', $kid;
waitpid $kid, 0;
my @answered = split /\n/, $t->read_file('answered');
ok(@answered > 10, scalar(@answered) . ' pairings answered 200 before kill -9');
$t->start;
my @lost = grep { $t->get('/api/x', token => $_)->{status} != 200 } @answered;
is(scalar @lost, 0, 'every pairing answered 200 survives kill -9 during the appends');
$t->finish;

# --- a resize retires the old zone ---------------------------------------------
my $r = DPTest->new(allow => qr/x^/);
$r->standard(device_keys => $keys);
$r->start;
my $rop = $r->operator_token;
my $before_resize = $r->pair_device;
my $mint = $r->post('/api/v1/device-pairing', device_key => $key)->{json};

# A long poll parked in an old worker, and a write half-sent to one (its
# headers are in, its body comes after the resize).
my $otp = $r->get('/pair/refresh', token => $rop)->{json}{otp};
my $body = "{\"otp\":\"$otp\"}";
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $r->port) or die;
print $sock "POST /pair HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
    . length($body) . "\r\nConnection: close\r\n\r\n";
my $poll_kid = fork // die;
if (!$poll_kid) {
    my $t0 = time;
    my $res = $r->get("/api/v1/device-pairing/$mint->{pairing_id}?wait=20", device_key => $key);
    open my $o, '>', "$r->{dir}/poll" or die;
    printf $o "%d %.2f %s\n", $res->{status}, time - $t0, $res->{json}{code} // '';
    close $o;
    POSIX::_exit(0);
}
sleep 0.5;
$r->standard(device_keys => $keys, zone => 'zone=pairing:2m state=%%DIR%%/state');
kill 'HUP', $r->master_pid;
for (1 .. 200) { last if ($r->read_file('error.log') // '') =~ /resized/; sleep 0.05 }
sleep 0.5;    # the new workers start
waitpid $poll_kid, 0;
my ($pstatus, $ptime, $pcode) = split ' ', $r->read_file('poll') // '';
is($pstatus, 503, 'a long poll parked in an old worker ends at once with a retryable 503');
is($pcode, 'state_unavailable', 'state_unavailable');
ok(($ptime // 99) < 3, "after @{[ $ptime // '?' ]}s, not at its 20 s deadline");
print $sock $body;
my $answer = do { local $/; <$sock> };
like($answer, qr{^HTTP/1\.1 503 }, 'a write an old worker reads after the resize is refused (503), not made and lost');
close $sock;
my $after_resize = $r->post('/pair', json => { otp => $r->get('/pair/refresh', token => $rop)->{json}{otp} });
is($after_resize->{status}, 200, 'a pairing on a new worker');
$r->reload;    # every old worker is gone
$r->stop;
$r->start;
is($r->get('/api/x', token => $after_resize->{json}{token})->{status}, 200,
   'a device paired on a new worker survives the old workers\' exit and a restart');
is($r->get('/api/x', token => $before_resize)->{status}, 200, 'and so does the one paired before the resize');
like($r->read_file('error.log'), qr/resized, \d+ devices kept/, 'the resize was logged');
$r->finish;

# --- 1000 mixed operations, compactions, a restart: the same state ------------
my $m = DPTest->new(workers => 2);
$m->standard(device_keys => $keys, zone => 'zone=pairing:4m state=%%DIR%%/state compact=16k',
             http => 'device_pairing_max_pairings 100000;');
$m->start;
my $mop = $m->operator_token;
my $mowner = $m->pair_device;
my (@devices, @mailboxes);
srand 42;
for my $i (1 .. 1000) {
    my $what = int rand 4;
    if ($what == 0) {
        my $o = $m->get('/pair/refresh', token => $mowner)->{json}{otp};
        my $p = $m->post('/pair', json => { otp => $o, name => "d$i" });
        push @devices, $p->{json}{token} if $p->{status} == 200;
    } elsif ($what == 1) {
        my $mb = $m->post('/api/v1/device-pairing', device_key => $key);
        push @mailboxes, $mb->{json}{pairing_id} if $mb->{status} == 201;
    } elsif ($what == 2 && @mailboxes) {
        $m->request('DELETE', "/api/v1/device-pairing/" . splice(@mailboxes, int rand @mailboxes, 1), device_key => $key);
    } elsif ($what == 3 && @devices) {
        # any device paired in this loop (named d<i>), never the owner that refreshes the OTP
        my @mine = grep { $_->{name} =~ /^d\d+$/ } @{ $m->get('/api/devices?limit=1000', token => $mop)->{json}{devices} };
        $m->request('DELETE', "/api/devices/$mine[int rand @mine]{id}", token => $mop) if @mine;
    }
}
my $snapshot_of = sub {
    my ($s) = @_;
    my ($cursor, @ids) = ('');
    for (1 .. 100) {
        my $page = $s->get("/api/devices?limit=37" . ($cursor ? "&cursor=$cursor" : ''), token => $mop)->{json};
        push @ids, map { "$_->{id} $_->{name} $_->{role} $_->{createdAt}" } @{ $page->{devices} };
        $cursor = $page->{next_cursor} or last;
    }
    my $rec = $s->get('/api/devices/stats', token => $mop)->{json}{records};
    return join("\n", @ids) . "\n" . join(',', map { "$_=$rec->{$_}" } sort grep { $_ ne 'limiters' } keys %$rec);
};
my $expected = $snapshot_of->($m);
ok(-s "$m->{dir}/state", 'compaction wrote a snapshot while the operations ran');
$m->stop;
$m->start;
is($snapshot_of->($m), $expected, 'after a restart: the same device pages (by cursor) and the same counters');
$m->finish;

done_testing;
