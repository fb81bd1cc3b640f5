# Fleet mode (redis=): two nginx hosts and a real redis-server (AOF on,
# appendfsync always) on loopback. Pair on A, the gate on B; revoke on A,
# 401 on B; the cross-host races; the OTP burn across hosts; a deposit on B
# wakes a poll parked on A; kill -9 of Redis: writes 503, the gate serves
# from the replica, then everything acknowledged is back; a late host
# catches up.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use DPTest;

my $REDIS = '/usr/bin/redis-server';
plan skip_all => 'redis-server is not installed (make test installs it)' unless -x $REDIS;

my $alice = 'dk_alice_fleet_key_0000000000001';
my $keys = "alice " . sha256_hex($alice) . "\n";

# --- redis ---
my $rdir = DPTest->new->dir;
my $rport = DPTest::free_port();
my $redis_pid;
sub start_redis { $redis_pid = DPTest::start_redis($rdir, $rport) }
sub kill_redis {
    kill 'KILL', $redis_pid;
    waitpid $redis_pid, 0;
}
start_redis();

sub host {
    my (%opt) = @_;
    my $h = DPTest->new(allow => qr/redis/);
    # Every host holds the same secret key file (OTPs and codes are MACs under it).
    $h->standard(zone => "zone=pairing:1m redis=127.0.0.1:$rport redis_prefix=t17:", device_keys => $keys,
        server => 'location = /metrics { device_pairing_metrics; }',
        http => ($opt{http} // '') . " device_pairing_mailbox_ttl 30s; device_pairing_max_pairings 100000; device_pairing_secret_key $rdir/secret.key;");
    $h->start;
    return $h;
}
# The fleet's OTP: shown by whichever host made it.
sub fleet_otp {
    for (1 .. 100) {
        for my $h (@_) { my $o = $h->otp; return $o if $o }
        sleep 0.05;
    }
    return undef;
}
sub wait_until {
    my ($cond, $limit) = @_;
    my $start = time;
    while (time - $start < $limit) { return time - $start if $cond->(); sleep 0.002 }
    return undef;
}


# Load in a child: mints on one host and the gate on the other, as fast as
# it goes, until the file "stop" appears; each answer is one line of the log.
sub start_load {
    my ($writer, $gate, $token, $name) = @_;
    my $log = "$rdir/$name";
    unlink "$rdir/stop", $log;
    my $kid = fork // die;
    if (!$kid) {
        open my $o, '>', $log or die;
        $o->autoflush(1);
        until (-e "$rdir/stop") {
            my $m = $writer->post('/api/v1/device-pairing', device_key => $alice);
            print $o "mint $m->{status} " . ($m->{json}{pairing_id} // '-') . "\n";
            print $o "# $m->{json}{detail}\n" if $m->{status} >= 500;
            print $o "gate " . $gate->get('/api/x', token => $token)->{status} . "\n";
        }
        close $o;
        POSIX::_exit(0);
    }
    return sub {
        open my $s, '>', "$rdir/stop" or die;
        close $s;
        waitpid $kid, 0;
        open my $in, '<', $log or die;
        my (%status, @acknowledged);
        while (<$in>) {
            if (/^# (.*)/) { $status{"detail: $1"}++; next }
            my ($what, $code, $id) = split;
            $status{"$what $code"}++;
            push @acknowledged, $id if $what eq 'mint' && $code == 201;
        }
        return (\%status, \@acknowledged);
    };
}
sub visible_on {
    my ($h, @ids) = @_;
    return scalar grep { $h->get("/api/v1/device-pairing/$_", device_key => $alice)->{status} == 200 } @ids;
}

my $A = host();
my $B = host();
my $otp = fleet_otp($A, $B);
ok($otp, 'one host made the fleet\'s OTP and shows it');
my @banners = grep { $_->banner =~ /OTP: \d{6}/ } $A, $B;
is(scalar @banners, 1, 'exactly one host made it');

# Reading Redis gives nothing to test OTP or code guesses against: both are
# HMACs under the hosts' secret key, not SHA-256 of the digits.
{
    my $stored = `redis-cli -p $rport --raw GET t17:{fleet}:otp`;
    ok(length($stored) >= 32, 'Redis holds the fleet\'s OTP state');
    isnt(substr($stored, 0, 32), Digest::SHA::sha256("otp\0$otp"), 'as a keyed MAC: the unkeyed hash of the live OTP is not there');
    my @found = grep { Digest::SHA::sha256("otp\0" . sprintf('%06d', $_)) eq substr($stored, 0, 32) } 0 .. 999999;
    is(scalar @found, 0, 'no six-digit guess matches it offline');
    my $req = $A->post('/api/devices/pairing/request', json => {})->{json};
    (my $norm = uc $req->{code}) =~ s/[^A-Z0-9]//g;
    my $dump = join '', map { `redis-cli -p $rport --raw GET $_` } split /\n/, `redis-cli -p $rport --scan --pattern 't17:{fleet}:r:3:*'`;
    ok(length $dump, 'Redis holds the code request');
    is(index($dump, Digest::SHA::sha256("code\0$norm")), -1, 'and no unkeyed hash of its code');
}

# Pair on A, use on B.
my $res = $A->post('/pair', json => { otp => $otp, name => 'fleet phone' });
is($res->{status}, 200, 'paired on A');
my $token = $res->{json}{token};
my $t_b = wait_until(sub { $B->get('/api/x', token => $token)->{status} == 200 }, 2);
ok(defined $t_b, 'the token opens B\'s gate') and diag(sprintf 'visible on B after %.1f ms', $t_b * 1000);
is($B->post('/pair', json => { otp => $otp })->{status}, 401, 'the spent OTP is spent on B too');

# Revoke on A: 401 on B within 100 ms.
my $list = $A->get('/api/devices', token => $token);
my ($dev) = grep { $_->{name} eq 'fleet phone' } @{ $list->{json}{devices} || [] };
ok($dev, 'the device is listed on A');
my $new_otp_res = $A->get('/pair/refresh', token => $token);
is($new_otp_res->{status}, 200, 'a new OTP from A');
my $owner2 = $B->post('/pair', json => { otp => $new_otp_res->{json}{otp} });
is($owner2->{status}, 200, 'the new OTP pairs on B');
my $victim = $B->post('/pair', json => { otp => $B->get('/pair/refresh', token => $owner2->{json}{token})->{json}{otp}, name => 'victim' })->{json}{token};
ok(wait_until(sub { $A->get('/api/x', token => $victim)->{status} == 200 }, 2), 'a second device, paired on B, opens A');
my $vlist = $B->get('/api/devices', token => $victim)->{json}{devices};
my ($vdev) = grep { $_->{name} eq 'victim' } @{ $vlist || [] };
my $start = time;
is($A->request('DELETE', "/api/devices/$vdev->{id}", token => $token)->{status}, 204, 'revoked on A');
my $lag = wait_until(sub { $B->get('/api/x', token => $victim)->{status} == 401 }, 2);
ok(defined $lag && $lag < 0.1, sprintf('401 on B within 100 ms (%.1f ms)', ($lag // 9) * 1000));

# 20 redemptions of one OTP over two hosts: one token.
my $race_otp = $A->get('/pair/refresh', token => $token)->{json}{otp};
sleep 0.05;
my %count = %{ DPTest::concurrently(20, sub {
    my $h = $_[0] % 2 ? $A : $B;
    $h->post('/pair', json => { otp => $race_otp }, from => '127.0.0.' . (10 + $_[0]))->{status};
}) };
is($count{200}, 1, 'one of 20 redemptions over two hosts pairs') or diag(explain \%count);

# 40 concurrent valid PUTs over two hosts: one 204.
my $keyset = $A->python(<<'PY');
import base64
from cryptography.hazmat.primitives.asymmetric import ed25519, ec
from cryptography.hazmat.primitives import serialization as s
b = lambda x: base64.b64encode(x).decode()
p = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(s.Encoding.X962, s.PublicFormat.UncompressedPoint)
print(b(p), *[b(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)) for _ in range(41)])
PY
my ($ecdh, $session, @racers) = split ' ', $keyset;
my $m = $A->post('/api/v1/device-pairing', device_key => $alice);
is($m->{status}, 201, 'minted on A');
my ($pid_, $wt) = @{ $m->{json} }{qw(pairing_id write_token)};
ok(wait_until(sub { $B->get("/api/v1/device-pairing/$pid_", device_key => $alice)->{status} == 200 }, 2), 'B sees the pairing');
%count = %{ DPTest::concurrently(40, sub {
    my $h = $_[0] % 2 ? $A : $B;
    $h->request('PUT', "/api/v1/device-pairing/$pid_", token => $wt, json => { session_pub => $racers[$_[0] - 1], ecdh_pub => $ecdh })->{status};
}) };
is($count{204}, 1, 'one of 40 concurrent deposits over two hosts gets 204') or diag(explain \%count);

# A deposit on B wakes a poll parked on A.
$m = $A->post('/api/v1/device-pairing', device_key => $alice);
my ($pid2, $wt2) = @{ $m->{json} }{qw(pairing_id write_token)};
ok(wait_until(sub { $B->get("/api/v1/device-pairing/$pid2", device_key => $alice)->{status} == 200 }, 2), 'B sees the second pairing');
pipe my $rd, my $wr or die;
my $kid = fork // die;
if (!$kid) {
    close $rd;
    my $r = $A->get("/api/v1/device-pairing/$pid2?wait=10", device_key => $alice);
    printf $wr "%s %.4f", ($r->{json}{status} // "http-$r->{status}"), time;
    close $wr;    # flush: _exit skips Perl's buffers
    POSIX::_exit(0);
}
close $wr;
sleep 0.5;
my $put_at = time;
is($B->request('PUT', "/api/v1/device-pairing/$pid2", token => $wt2, json => { session_pub => $session, ecdh_pub => $ecdh })->{status}, 204, 'deposit on B');
my ($status, $answered_at) = split ' ', scalar readline $rd;
waitpid $kid, 0;
is($status, 'ready', 'the poll parked on A answers ready') or diag("poll answered: $status");
ok($answered_at - $put_at < 0.25, sprintf('soon after the deposit (%.1f ms)', ($answered_at - $put_at) * 1000));

# Group commit: 40 mints that reach A at once share EVALSHAs (each worker
# sends what arrived while its last batch was in flight), and each one is
# acknowledged and visible on B on its own.
{
    my $evalsha_calls = sub {
        my $stats = `redis-cli -p $rport INFO commandstats`;
        return $stats =~ /cmdstat_evalsha:calls=(\d+)/ ? $1 : 0;
    };
    my $before = $evalsha_calls->();
    my @socks = map { IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $A->port) or die "connect: $!" } 1 .. 40;
    my $mint = "POST /api/v1/device-pairing HTTP/1.1\r\nHost: t\r\nX-DEVICE-KEY: $alice\r\n"
        . "Content-Length: 0\r\nConnection: close\r\n\r\n";
    syswrite $_, $mint for @socks;
    my (%codes, @ids);
    for my $s (@socks) {
        local $/;
        my $answer = <$s> // '';
        $codes{ $answer =~ m{^HTTP/1\.1 (\d+)} ? $1 : 'none' }++;
        push @ids, $1 if $answer =~ /"pairing_id":"([^"]+)"/;
    }
    my $calls = $evalsha_calls->() - $before;
    is($codes{201}, 40, '40 mints sent at once to A: each acknowledged') or diag(explain \%codes);
    ok($calls > 0 && $calls <= 20, "they were committed in batches: $calls EVALSHAs for 40 mints");
    ok(wait_until(sub { visible_on($B, @ids) == @ids }, 3), 'and every one is on B');
}

# A host applies the feed's entries made under its own name too: its replica
# may have taken an older image of a record since it changed it (another
# host's entry read after a conflict), and only its own entry puts the
# change back. Here a device revoked on A is put back in Redis by an entry
# carrying A's name: A admits it again, as B does.
{
    my $cli = "redis-cli -p $rport";
    my %had = map { $_ => 1 } split /\n/, `$cli --scan --pattern 't17:{fleet}:r:0:*'`;
    my $echo = $A->post('/pair', json => { otp => $A->get('/pair/refresh', token => $token)->{json}{otp}, name => 'echo' })->{json}{token};
    ok(wait_until(sub { $B->get('/api/x', token => $echo)->{status} == 200 }, 2), 'a device paired on A opens B');
    my ($key) = grep { !$had{$_} } split /\n/, `$cli --scan --pattern 't17:{fleet}:r:0:*'`;
    my $image = `$cli --raw GET $key`;
    chop $image;    # redis-cli's newline
    my ($origin) = `$cli --no-raw XREVRANGE t17:{fleet}:feed + - COUNT 1` =~ /"o"\s+\d+\)\s+"([0-9a-f]{16})"/;
    ok($key && length $image && $origin, "the device's record and A's name in the feed ($origin)");
    my ($echo_dev) = grep { $_->{name} eq 'echo' } @{ $A->get('/api/devices', token => $token)->{json}{devices} || [] };
    is($A->request('DELETE', "/api/devices/$echo_dev->{id}", token => $token)->{status}, 204, 'revoked on A');
    ok(wait_until(sub { $B->get('/api/x', token => $echo)->{status} == 401 }, 2), 'refused on B');
    $A->write_file('image', $image);
    my $image_file = $A->dir . '/image';
    system("$cli -x SET $key < $image_file >/dev/null") == 0 or die;
    chomp(my $seq = `$cli INCR t17:{fleet}:seq`);
    system("$cli -x XADD t17:{fleet}:feed $seq-1 o $origin $key < $image_file >/dev/null") == 0 or die;
    ok(wait_until(sub { $B->get('/api/x', token => $echo)->{status} == 200 }, 2), 'B applies the entry');
    ok(wait_until(sub { $A->get('/api/x', token => $echo)->{status} == 200 }, 2), 'and so does A, whose name it carries');

    # A record in Redis is data, not a trusted struct: a device image whose
    # kind byte says "mailbox", or whose name length runs past its field, is
    # refused with a line naming its key; no worker crashes, nothing of the
    # worker's memory reaches an answer, and the replica is rebuilt once
    # Redis holds a good record again.
    for my $case ([ 2, chr(2), 'a kind byte that says mailbox' ], [ 50, chr(255), 'a name length of 255' ]) {
        my ($offset, $byte, $what) = @$case;
        my $lie = $image;
        substr($lie, $offset, 1) = $byte;
        $A->write_file('image', $lie);
        system("$cli -x SET $key < $image_file >/dev/null") == 0 or die;
        chomp(my $lseq = `$cli INCR t17:{fleet}:seq`);
        system("$cli -x XADD t17:{fleet}:feed $lseq-1 o $origin $key < $image_file >/dev/null") == 0 or die;
        my ($rebuilds) = $A->get('/metrics')->{content} =~ /^device_pairing_replica_rebuilds_total (\d+)$/m;
        ok(wait_until(sub { $A->read_file('error.log') =~ /redis .*: key "\Q$key\E" is refused: / }, 3), "$what: refused with its key in the log");
        like($A->get('/metrics')->{content}, qr/^device_pairing_replica_out_of_step 1$/m, "$what: the replica is out of step in the metrics");
        ok(wait_until(sub { ($A->get('/metrics')->{content} =~ /^device_pairing_replica_rebuilds_total (\d+)$/m)[0] > $rebuilds }, 3),
           "$what: and a rebuild is counted");
        my $list = $A->get('/api/devices', token => $token);
        is($list->{status}, 200, "$what: the device list still answers");
        ok(!grep({ length($_->{name} // '') > 20 } @{ $list->{json}{devices} || [] }), "$what: no name longer than its field");
        $A->write_file('image', $image);
        system("$cli -x SET $key < $image_file >/dev/null") == 0 or die;
        chomp(my $gseq = `$cli INCR t17:{fleet}:seq`);
        system("$cli -x XADD t17:{fleet}:feed $gseq-1 o $origin $key < $image_file >/dev/null") == 0 or die;
        ok(wait_until(sub { $A->post('/api/v1/device-pairing', device_key => $alice)->{status} == 201 }, 5),
           "$what: A takes writes again once Redis holds a good record (the replica was rebuilt)");
        is($A->get('/api/x', token => $echo)->{status}, 200, "$what: and admits the device");
        like($A->get('/metrics')->{content}, qr/^device_pairing_replica_out_of_step 0$/m, "$what: in step again in the metrics");
    }
    unlike($A->read_file('error.log') . $B->read_file('error.log'), qr/exited on signal/, 'no worker crashed');
}

# A reload of either host under load: no request fails, and every mint
# acknowledged meanwhile is visible on the other host.
my $stop_load = start_load($A, $B, $token, 'reload-load');
sleep 0.5;
$A->reload;
sleep 0.5;
$B->reload;
sleep 0.5;
my ($seen, $acked) = $stop_load->();
my @failed = grep { !/^(mint 201|gate 200|detail: .*)$/ } keys %$seen;
ok(!@failed, sprintf('reloads of A and B under load: %d mints, %d gate checks, none failed',
    $seen->{'mint 201'} // 0, $seen->{'gate 200'} // 0)) or diag(explain $seen);
ok(@$acked > 20, 'the load ran through the reloads');
ok(wait_until(sub { visible_on($B, @$acked) == @$acked }, 3), 'every mint acknowledged during the reloads is on B');

# The burn counts failures from every host.
my $burn_otp = $A->get('/pair/refresh', token => $token)->{json}{otp};
my $wrong = $burn_otp eq '000000' ? '111111' : '000000';
for my $i (1 .. 10) {
    my $h = $i % 2 ? $A : $B;
    $h->post('/pair', json => { otp => $wrong }, from => "127.0.1.$i");
}
is($B->post('/pair', json => { otp => $burn_otp }, from => '127.0.2.1')->{status}, 401, 'ten failures over two hosts burn the OTP');

# kill -9 of Redis under load: writes 503, the gate serves from the replica,
# and nothing acknowledged is lost once Redis is back from its AOF.
$stop_load = start_load($A, $B, $token, 'kill-load');
sleep 0.5;
kill_redis();
sleep 0.5;
DPTest::is_problem($A->post('/api/v1/device-pairing', device_key => $alice), 503, 'state_unavailable', 'a write with Redis down: 503');
is($B->get('/api/x', token => $token)->{status}, 200, 'the gate serves from the replica');
start_redis();
my $back = wait_until(sub { $A->post('/api/v1/device-pairing', device_key => $alice)->{status} == 201 }, 10);
ok(defined $back, 'writes work again after Redis restarts from its AOF');
sleep 0.3;
($seen, $acked) = $stop_load->();
@failed = grep { !/^(mint 201|mint 503|gate 200|detail: .*)$/ } keys %$seen;
ok(!@failed && $seen->{'mint 503'}, sprintf('under load: %d mints acknowledged, %d refused (503), the gate never failed',
    $seen->{'mint 201'} // 0, $seen->{'mint 503'} // 0)) or diag(explain $seen);
is(visible_on($B, @$acked), scalar @$acked, 'every mint acknowledged before, during or after the crash is there');
is($B->get('/api/x', token => $token)->{status}, 200, 'the device acknowledged before the crash is still there');
is($B->get('/api/x', token => $victim)->{status}, 401, 'and the revocation too');

# The per-account cap of live pairings holds over the fleet: two hosts with
# a cap of 4 and 12 concurrent mints spread over both: exactly 4 mailboxes.
{
    my $bob = 'dk_bob_fleet_key_000000000000001';
    my @capped = map {
        my $h = DPTest->new(allow => qr/redis/);
        $h->standard(zone => "zone=pairing:1m redis=127.0.0.1:$rport redis_prefix=cap:",
            device_keys => "bob " . sha256_hex($bob) . "\n", http => 'device_pairing_max_pairings 4;');
        $h->start;
        $h;
    } 1 .. 2;
    sleep 0.3;
    my %minted = %{ DPTest::concurrently(12, sub {
        $capped[$_[0] % 2]->post('/api/v1/device-pairing', device_key => $bob)->{status};
    }) };
    is($minted{201}, 4, 'a cap of 4 over two hosts: 4 of 12 concurrent mints get a mailbox')
        or diag(explain \%minted);
    is(($minted{201} // 0) + ($minted{429} // 0), 12, 'the others are told 429 too_many_pairings');
    $_->finish for @capped;
}

# Last seen travels with the fleet: a device used on E every second is not
# idle on F (idle timeout 6 s), and F's judgement does not expire it on E.
{
    my ($E, $F) = map { host(http => 'device_pairing_token_idle_timeout 6s;') } 1 .. 2;
    # New hosts rebuild their replicas first (writes answer 503 meanwhile;
    # slow under ASan with every record the earlier tests left in Redis).
    my $busy;
    ok(wait_until(sub {
        my $e_otp = $E->get('/pair/refresh', token => $E->operator_token)->{json}{otp} or return 0;
        $busy = $E->post('/pair', json => { otp => $e_otp, name => 'busy' })->{json}{token};
        return defined $busy;
    }, 20), 'paired on E once its replica is in step');
    ok(wait_until(sub { $F->get('/api/x', token => $busy)->{status} == 200 }, 20), 'admitted on F');
    for (1 .. 8) { sleep 1; $E->get('/api/x', token => $busy) }
    is($F->get('/api/x', token => $busy)->{status}, 200, 'used on E for 8 s: not idle on F');
    is($E->get('/api/x', token => $busy)->{status}, 200, 'and still valid on E');
    $_->finish for $E, $F;
}

# A host started after the others catches up.
my $C = host();
ok(wait_until(sub { $C->get('/api/x', token => $token)->{status} == 200 }, 5), 'a late host admits the token');
is($C->get('/api/x', token => $victim)->{status}, 401, 'and refuses the revoked one');

# Fail closed at once with device_pairing_redis_stale 0.
my $D = host(http => 'device_pairing_redis_stale 0;');
ok(wait_until(sub { $D->get('/api/x', token => $token)->{status} == 200 }, 5), 'D in step');
kill_redis();
ok(wait_until(sub { $D->get('/api/x', token => $token)->{status} == 503 }, 5), 'stale 0: the gate answers 503 once Redis is gone');
is($A->get('/api/x', token => $token)->{status}, 200, 'the default (60 s) keeps serving');
start_redis();
ok(wait_until(sub { $D->get('/api/x', token => $token)->{status} == 200 }, 10), 'and D serves again once back in step');

$_->finish for $A, $B, $C, $D;
kill_redis();
done_testing;
