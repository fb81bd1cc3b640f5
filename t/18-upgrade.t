# A binary upgrade (USR2, then QUIT to the old master, as Debian's
# `/etc/init.d/nginx upgrade` does) runs two generations of nginx on one
# state=, each with its own zone. The new generation owns the journal from
# the moment it has read it: what the old generation acknowledged before is
# in the new one's zone; after it, the old generation's writes are refused
# (503), so nothing it answers 2xx can be lost or undone. Then the old
# master quits, the new generation compacts, and a restart brings back
# exactly what was acknowledged.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(sleep time);
use DPTest;

my $t = DPTest->new(workers => 1, allow => qr/newer nginx generation|previous owner/);
$t->standard(zone => 'zone=pairing:1m state=%%DIR%%/state compact=2k');
$t->start;
my $op = $t->operator_token;
my $before = $t->pair_device;
my $victim = $t->pair_device(json => { name => 'victim' });
my $doomed = $t->pair_device(json => { name => 'doomed' });

# One request on a kept-alive connection; returns (status, decoded JSON or undef).
sub over {
    my ($sock, $method, $path, %opt) = @_;
    my $body = $opt{json} ? encode_json($opt{json}) : '';
    my $req = "$method $path HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n"
        . ($opt{token} ? "Authorization: Bearer $opt{token}\r\n" : '')
        . ($body ne '' ? "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n" : '')
        . "\r\n$body";
    print $sock $req;
    my ($head, $line) = ('');
    while (defined($line = <$sock>)) { last if $line eq "\r\n"; $head .= $line }
    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)} or return (0);
    my ($len) = $head =~ /^Content-Length: (\d+)/mi;
    my $content = '';
    if ($head =~ /^Transfer-Encoding: chunked/mi) {
        while (defined(my $size = <$sock>)) {
            $size = hex($size);
            last unless $size;
            read($sock, my $chunk, $size);
            $content .= $chunk;
            <$sock>;    # the chunk's CRLF
        }
        <$sock>;        # the last CRLF
    } elsif ($len) {
        read($sock, $content, $len);
    }
    return ($status, eval { decode_json($content) });
}

# A refresh and a pairing over one new connection (so both reach the same
# generation), tried again while the generation that took it answers 503.
sub pair_somewhere {
    my ($t, $op) = @_;
    for (1 .. 60) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port) or die;
        my (undef, $fresh) = over($s, 'GET', '/pair/refresh', token => $op);
        my ($st, $json) = over($s, 'POST', '/pair', json => { otp => $fresh->{otp} // '' });
        return { status => $st, json => $json } if $st != 503;
        sleep 0.05;
    }
    return { status => 503 };
}

my $old = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port) or die;
my ($status) = over($old, 'GET', '/api/x', token => $before);
is($status, 200, 'a kept-alive connection to the old generation');

# The upgrade: a new master from the same binary, on the same state=.
my $old_master = $t->{pid};
END { kill "QUIT", $old_master if $old_master && kill 0, $old_master }    # a test that dies early leaves no nginx
kill 'USR2', $old_master;
my $new_master;
for (1 .. 200) {
    $new_master = $t->master_pid;
    last if $new_master && $new_master =~ /^\d+$/ && $new_master != $old_master && kill(0, $new_master);
    sleep 0.05;
}
isnt($new_master, $old_master, "USR2 started a new master ($new_master)");
$t->{pid} = $new_master;
for (1 .. 200) { last if () = $t->worker_pids; sleep 0.05 }
ok(scalar(() = $t->worker_pids), 'with its own workers');
like($t->read_file('error.log'), qr/the journal's previous owner \(master $old_master\) still runs/,
     'the new generation registered as the journal\'s owner');

# Writes over the old connection: a pairing and a revocation. Whatever the
# old generation answers 2xx must be in force in the new one.
my ($refresh_status, $fresh) = over($old, 'GET', '/pair/refresh', token => $op);
is($refresh_status, 200, 'the old generation makes a new OTP (never journalled)');
my ($pair_status, $paired) = over($old, 'POST', '/pair', json => { otp => $fresh->{otp} // '' });
my (undef, $list) = over($old, 'GET', '/api/devices', token => $op);
my ($victim_dev) = grep { $_->{name} eq 'victim' } @{ $list->{devices} || [] };
my ($revoke_status) = over($old, 'DELETE', "/api/devices/$victim_dev->{id}", token => $op);
diag("old generation answered: pair $pair_status, revoke $revoke_status; otp " . ($fresh->{otp} // 'none') . ' ' . encode_json($paired // {}));
ok($pair_status == 200 || $pair_status == 503, 'the old generation answers the pairing 200 or 503');
ok($revoke_status == 204 || $revoke_status == 503, 'and the revocation 204 or 503');
is($pair_status, 503, 'after the new generation registered, the old one acknowledges no write') or diag($t->read_file('error.log') =~ s{^.*changing binary}{}sr);
# Whichever saw it first says so: the writer ("... writes are refused") or
# worker 0's follower ("(master N) owns ... refuses writes").
like($t->read_file('error.log'), qr/a newer nginx generation (?:\(master \d+\) )?owns .*state\.journal.*refuse/,
     'and says why in its log');
($status) = over($old, 'GET', '/api/x', token => $before);
is($status, 200, 'its gate still serves');

# A write reaches the new generation (a new connection may land on either
# until the old master quits: the old one answers 503, and the client tries
# again). The old generation follows the journal: its gate refuses what the
# new one revoked and admits what it paired.
sub on_new_generation {
    my ($do) = @_;
    for (1 .. 50) { my $r = $do->(); return $r if $r->{status} != 503 }
    return { status => 503 };
}
my $new_pair = pair_somewhere($t, $op);
is($new_pair->{status}, 200, 'a pairing on the new generation');
($status) = over($old, 'GET', '/api/x', token => $new_pair->{json}{token});
my $deadline = time + 3;
while ($status != 200 && time < $deadline) { sleep 0.1; ($status) = over($old, 'GET', '/api/x', token => $new_pair->{json}{token}) }
is($status, 200, 'the old generation\'s gate admits it (it follows the journal)');
my ($before_dev) = grep { $_->{name} eq 'doomed' } @{ $t->get('/api/devices', token => $op)->{json}{devices} || [] };
is(on_new_generation(sub { $t->request('DELETE', "/api/devices/$before_dev->{id}", token => $op) })->{status}, 204,
   'a revocation on the new generation');
$deadline = time + 3;
($status) = over($old, 'GET', '/api/x', token => $doomed);
while ($status != 401 && time < $deadline) { sleep 0.1; ($status) = over($old, 'GET', '/api/x', token => $doomed) }
is($status, 401, 'the old generation\'s gate refuses the revoked device');
close $old;

# The old master quits; the new generation alone.
kill 'QUIT', $old_master;
for (1 .. 300) { last unless kill 0, $old_master; sleep 0.05 }
ok(!kill(0, $old_master), 'the old master exited');
sub in_force {
    my ($when) = @_;
    is($t->get('/api/x', token => $before)->{status}, 200, "$when: the device paired before the upgrade");
    is($t->get('/api/x', token => $paired->{token} // 'dp_tok_none')->{status}, $pair_status == 200 ? 200 : 401,
       "$when: the old generation's pairing is in force exactly if it was acknowledged");
    is($t->get('/api/x', token => $victim)->{status}, $revoke_status == 204 ? 401 : 200,
       "$when: its revocation likewise");
}
in_force('the new generation');

# Churn past compact=2k: the journal is set aside and a snapshot written.
# (The banner file holds the old generation's last OTP: ask the new one.)
$t->{expect_otp} = $t->get('/pair/refresh', token => $op)->{json}{otp};
my @churn = map { $t->pair_device } 1 .. 30;
for (1 .. 100) { last if -s "$t->{dir}/state"; sleep 0.05 }
ok(-s "$t->{dir}/state", 'the new generation compacted into a snapshot');
$t->stop;
$t->start;
in_force('after a restart');
is(scalar(grep { $t->get('/api/x', token => $_)->{status} == 200 } @churn), 30, 'and every device paired after the upgrade');
$t->finish;

# A rolled-back upgrade: the new master quits and the old generation goes
# on. It followed what the new one acknowledged, takes the journal back
# once the new master is gone, and takes writes again; a restart agrees.
{
    my $b = DPTest->new(workers => 1, allow => qr/newer nginx generation|previous owner/);
    $b->standard;
    $b->start;
    my $bop = $b->operator_token;
    my $revoked = $b->pair_device(json => { name => 'revoked-on-new' });
    my $old_pid = $b->{pid};
    kill 'USR2', $old_pid;
    my $new_pid;
    for (1 .. 200) { $new_pid = $b->master_pid; last if $new_pid && $new_pid =~ /^\d+$/ && $new_pid != $old_pid; sleep 0.05 }
    $b->{pid} = $new_pid;
    for (1 .. 200) { last if () = $b->worker_pids; sleep 0.05 }
    my $retry = sub { my ($do) = @_; for (1 .. 60) { my $r = $do->(); return $r if $r->{status} != 503; sleep 0.05 } return { status => 503 } };
    my $on_new = pair_somewhere($b, $bop);
    is($on_new->{status}, 200, 'rollback: a pairing acknowledged by the new generation');
    my ($dev) = grep { $_->{name} eq 'revoked-on-new' } @{ $b->get('/api/devices', token => $bop)->{json}{devices} || [] };
    my $rev = $retry->(sub { $b->request('DELETE', "/api/devices/$dev->{id}", token => $bop) });
    is($rev->{status}, 204, 'rollback: a revocation acknowledged by the new generation');
    kill 'QUIT', $new_pid;
    for (1 .. 300) { last unless kill 0, $new_pid; sleep 0.05 }
    ok(!kill(0, $new_pid), 'the new master quit: the upgrade is rolled back');
    $b->{pid} = $old_pid;
    my $after = pair_somewhere($b, $bop);
    is($after->{status}, 200, 'the old generation takes writes again');
    like($b->read_file('error.log'), qr/this generation owns .* again and takes writes/, 'having taken the journal back');
    is($b->get('/api/x', token => $on_new->{json}{token})->{status}, 200, 'the new generation\'s pairing is in force without a restart');
    is($b->get('/api/x', token => $revoked)->{status}, 401, 'and its revocation');
    $b->stop;
    $b->start;
    is($b->get('/api/x', token => $on_new->{json}{token})->{status}, 200, 'after a restart: the pairing');
    is($b->get('/api/x', token => $revoked)->{status}, 401, 'the revocation');
    is($b->get('/api/x', token => $after->{json}{token})->{status}, 200, 'and the pairing made after the rollback');
    $b->finish;
}
done_testing;
