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
like($t->read_file('error.log'), qr/a newer nginx generation owns .*state\.journal.*refused/, 'and says why in its log');
($status) = over($old, 'GET', '/api/x', token => $before);
is($status, 200, 'its gate still serves');
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
done_testing;
