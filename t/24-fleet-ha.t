# Fleet mode on a highly available Redis: a master, two replicas and three
# sentinels on loopback (all password-protected), an ACL user with exactly
# the commands and keys the hosts use, and two nginx hosts with
# redis_sentinel=, redis_auth=, redis_sentinel_auth= and redis_replicas=1.
# Under a client that pairs, revokes and deposits continuously: SENTINEL
# FAILOVER, then kill -9 of the new master, then a sentinel killed and
# another failover. After each: every acknowledged write is on both hosts
# and in Redis, writes resumed by themselves, and a revocation made after
# the switch is seen by the other host. Then: a wrong password and an ACL
# without EVALSHA give a clear error line and 503, never a 2xx; nginx -t
# refuses a password file others may read; untagged keys of an earlier
# version are moved to the tagged names.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use DPTest;

my $REDIS = '/usr/bin/redis-server';
plan skip_all => 'redis-server is not installed (make test installs it)' unless -x $REDIS;

my $alice = 'dk_alice_fleet_ha_key_000000001';
my $keys = "alice " . sha256_hex($alice) . "\n";
my $dir = DPTest->new->dir;
my ($ADMIN, $SENTINEL_PASS, $FLEET_PASS) = ('admin-secret-24', 'sentinel-secret-24', 'fleet-secret-24');
# What a host needs, nothing more (docs/operations.md lists the same): the
# commands its links send and those the commit script runs, on its keys.
my @FLEET_COMMANDS = qw(role script|load evalsha wait get mget scan xread set del incr xadd zadd zrem zcard
                        zremrangebyscore pexpiretime pexpireat time);
sub acl_user {
    my ($name, $pass, @commands) = @_;
    return "user $name on >$pass ~t24:{fleet}:* resetchannels -\@all " . join(' ', map {"+$_"} @commands);
}
my $ACL = acl_user('dpfleet', $FLEET_PASS, @FLEET_COMMANDS) . "\n"
    . acl_user('dpnoeval', $FLEET_PASS, grep { $_ ne 'evalsha' } @FLEET_COMMANDS) . "\n";

sub cli {
    my ($port, @args) = @_;
    my $out = `redis-cli -p $port --no-auth-warning -a $ADMIN --raw @args 2>&1`;
    chomp $out;
    return $out;
}
sub scli {
    my ($port, @args) = @_;
    my $out = `redis-cli -p $port --no-auth-warning -a $SENTINEL_PASS --raw @args 2>&1`;
    chomp $out;
    return $out;
}
sub wait_until {
    my ($cond, $limit) = @_;
    my $start = time;
    while (time - $start < $limit) { return time - $start if $cond->(); sleep 0.05 }
    return undef;
}

# --- Redis: a master and two replicas ---
my (%redis_pid, %redis_port);
sub start_redis_node {
    my ($name, $replica_of) = @_;
    my $port = $redis_port{$name} //= DPTest::free_port();
    mkdir "$dir/$name";
    open my $fh, '>', "$dir/$name/redis.conf" or die;
    print $fh "port $port\nbind 127.0.0.1\ndir $dir/$name\nappendonly yes\nappendfsync everysec\nsave \"\"\n"
        . "daemonize no\nlogfile $dir/$name/redis.log\nrequirepass $ADMIN\nmasterauth $ADMIN\n"
        . "replica-announce-ip 127.0.0.1\nrepl-diskless-sync-delay 0\n$ACL" . ($replica_of ? "replicaof 127.0.0.1 $redis_port{$replica_of}\n" : '');
    close $fh;
    my $pid = fork // die;
    if (!$pid) { exec $REDIS, "$dir/$name/redis.conf"; exit 1 }
    $redis_pid{$name} = $pid;
    wait_until(sub { cli($port, 'PING') eq 'PONG' }, 10) or die "redis $name did not start";
}
start_redis_node('r1');
start_redis_node('r2', 'r1');
start_redis_node('r3', 'r1');
sub online_replicas { my ($port) = @_; my @online = cli($port, 'INFO', 'replication') =~ /state=online/g; scalar @online }
ok(wait_until(sub { online_replicas($redis_port{r1}) == 2 }, 15), 'a master with two replicas, in sync');

# --- three sentinels ---
my (%sentinel_pid, @sentinel_ports);
for my $i (1 .. 3) {
    my $port = DPTest::free_port();
    push @sentinel_ports, $port;
    mkdir "$dir/s$i";
    open my $fh, '>', "$dir/s$i/sentinel.conf" or die;
    print $fh "port $port\nbind 127.0.0.1\ndaemonize no\ndir $dir/s$i\nlogfile $dir/s$i/sentinel.log\n"
        . "sentinel announce-ip 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 $redis_port{r1} 2\n"
        . "sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 10000\n"
        . "sentinel auth-pass mymaster $ADMIN\nrequirepass $SENTINEL_PASS\nsentinel sentinel-pass $SENTINEL_PASS\n";
    close $fh;
    my $pid = fork // die;
    if (!$pid) { exec $REDIS, "$dir/s$i/sentinel.conf", '--sentinel'; exit 1 }
    $sentinel_pid{$i} = $pid;
}
ok(wait_until(sub { scli($sentinel_ports[0], 'SENTINEL', 'master', 'mymaster') =~ /num-other-sentinels\n2\n/
                    && scli($sentinel_ports[0], 'SENTINEL', 'master', 'mymaster') =~ /num-slaves\n2\n/ }, 30),
   'three sentinels that know each other and both replicas');
END { kill 'KILL', values %redis_pid, values %sentinel_pid }

sub master_port {
    my (@ports) = @_;
    for my $p (@ports ? @ports : @sentinel_ports) {
        my ($host, $port) = split /\n/, scli($p, 'SENTINEL', 'get-master-addr-by-name', 'mymaster');
        return $port if $port && $port =~ /^\d+$/;
    }
    return undef;
}
sub name_of_port { my ($p) = @_; (grep { $redis_port{$_} == $p } keys %redis_port)[0] }

# --- two hosts ---
my $auth = "$dir/redis-auth";
my $sentinel_auth = "$dir/sentinel-auth";
for ([$auth, "dpfleet $FLEET_PASS\n"], [$sentinel_auth, "$SENTINEL_PASS\n"]) {
    open my $fh, '>', $_->[0] or die;
    print $fh $_->[1];
    close $fh;
    chmod 0600, $_->[0];
}
my $sentinels = join ',', map {"127.0.0.1:$_"} @sentinel_ports;
sub host {
    my (%opt) = @_;
    my $h = DPTest->new(allow => qr/redis/);
    $h->standard(zone => "zone=pairing:16m redis_sentinel=$sentinels redis_master=mymaster redis_prefix=t24: "
                         . "redis_auth=" . ($opt{auth} // $auth) . " redis_sentinel_auth=$sentinel_auth redis_replicas=1",
        device_keys => $keys,
        server => 'location = /metrics { device_pairing_metrics; }',
        http => "device_pairing_mailbox_ttl 300s; device_pairing_max_pairings 100000; device_pairing_secret_key $dir/secret.key;"
              . " device_pairing_audit_log %%DIR%%/audit.log;");
    $h->start;
    return $h;
}
my $A = host();
my $B = host();
my $otp;
ok(wait_until(sub { $otp = $A->otp || $B->otp }, 10), 'the fleet made its OTP');
my $owner = $A->post('/pair', json => { otp => $otp, name => 'owner' })->{json}{token};
ok($owner, 'an owner paired through the master the sentinels named');
ok(wait_until(sub { $B->get('/api/x', token => $owner)->{status} == 200 }, 5), 'and admitted by the other host');
like(cli($redis_port{r2}, 'GET', "'t24:{fleet}:r:0:" . sha256_hex($owner) . "'") // '', qr/./s, 'on a replica too');

# --- the client: pairs, revokes and deposits, alternating hosts ---
my $ecdh = $A->python(<<'PY');
import base64
from cryptography.hazmat.primitives.asymmetric import ed25519, ec
from cryptography.hazmat.primitives import serialization as s
ed = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
p = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(s.Encoding.X962, s.PublicFormat.UncompressedPoint)
print(base64.b64encode(ed).decode(), base64.b64encode(p).decode())
PY
my ($session_pub, $ecdh_pub) = split ' ', $ecdh;

sub start_client {
    my ($name) = @_;
    my $log = "$dir/$name.log";
    unlink "$dir/stop", $log;
    my $kid = fork // die;
    if (!$kid) {
        open my $o, '>', $log or die;
        $o->autoflush(1);
        my ($n, $last_token, $last_name) = (0, undef, undef);
        until (-e "$dir/stop") {
            my $x = $n++ % 2 ? $A : $B;  # alternate hosts
            my $t0 = time;
            # pair: a new OTP, redeemed on the host that made it (another
            # host sees it once its replica applies the feed, which a
            # failover's rebuild can delay past the client's next request)
            my $fresh = $x->get('/pair/refresh', token => $owner);
            if ($fresh->{status} == 200) {
                my $p = $x->post('/pair', json => { otp => $fresh->{json}{otp}, name => "$name-$n" });
                printf $o "pair %d %.3f %s\n", $p->{status}, $t0, $p->{json}{token} // '-';
                ($last_token, $last_name) = ($p->{json}{token}, "$name-$n") if $p->{status} == 200;
            } else {
                printf $o "refresh %d %.3f -\n", $fresh->{status}, $t0;
            }
            # every third round, the owner revokes the device paired last
            if ($last_token && $n % 3 == 0) {
                my $list = $x->get('/api/devices?limit=1000', token => $owner);
                my ($d) = grep { $_->{name} eq $last_name } @{ $list->{json}{devices} || [] };
                if ($d) {
                    my $r = $x->request('DELETE', "/api/devices/$d->{id}", token => $owner);
                    printf $o "revoke %d %.3f %s\n", $r->{status}, time, $last_token;
                    $last_token = undef;
                }
            }
            # deposit: a mailbox minted and its keys deposited (the poll on
            # the other host is the check's)
            my $m = $x->post('/api/v1/device-pairing', device_key => $alice);
            if ($m->{status} == 201) {
                my $d = $x->request('PUT', "/api/v1/device-pairing/$m->{json}{pairing_id}", token => $m->{json}{write_token},
                                    json => { session_pub => $session_pub, ecdh_pub => $ecdh_pub });
                printf $o "deposit %d %.3f %s\n", $d->{status}, time, $m->{json}{pairing_id};
            } else {
                printf $o "mint %d %.3f -\n", $m->{status}, time;
            }
            sleep 0.02;  # a client, not a flood: a few hundred writes a phase
        }
        close $o;
        POSIX::_exit(0);
    }
    return { kid => $kid, log => $log };
}
sub client_lines {
    my ($c) = @_;
    open my $in, '<', $c->{log} or return ();
    return map { [split] } <$in>;
}
sub stop_client {
    my ($c) = @_;
    open my $s, '>', "$dir/stop" or die;
    close $s;
    waitpid $c->{kid}, 0;
    return client_lines($c);
}
# Every acknowledged write is on both hosts and in Redis: paired tokens open
# both gates unless their revocation was acknowledged (then both refuse),
# deposits are ready on both, and Redis holds the devices.
sub in_step {
    my ($h) = @_;
    my $m = $h->get('/metrics')->{content} // '';
    return $m =~ /^device_pairing_replica_out_of_step 0$/m && $m =~ /^device_pairing_redis_link_up 1$/m;
}
sub check_acknowledged {
    my ($phase, @lines) = @_;
    ok(wait_until(sub { in_step($A) && in_step($B) }, 20), "$phase: both replicas in step again");
    my (%revoked, %unknown, @paired, @deposits, %status);
    for (@lines) {
        my ($what, $code, undef, $id) = @$_;
        $status{"$what $code"}++;
        push @paired, $id if $what eq 'pair' && $code == 200;
        $revoked{$id} = 1 if $what eq 'revoke' && $code == 204;
        $unknown{$id} = 1 if $what eq 'revoke' && $code == 503;  # outcome unknown: either state is right
        push @deposits, $id if $what eq 'deposit' && $code == 204;
    }
    diag("$phase: " . join ', ', map {"$_ x$status{$_}"} sort keys %status);
    my @bad = grep { !/^(pair|revoke|deposit|refresh|mint) (200|201|204|503)$/ } keys %status;
    ok(!@bad, "$phase: every answer was a 2xx or 503 state_unavailable") or diag("@bad");
    ok(@paired >= 3 && @deposits >= 3, "$phase: the client paired and deposited through it");
    my ($lost, $back) = (0, 0);
    for my $h ($A, $B) {
        for my $t (grep { !$unknown{$_} } @paired) {
            my $want = $revoked{$t} ? 401 : 200;
            $lost++ if $h->get('/api/x', token => $t)->{status} != $want;
        }
        for my $id (@deposits) {
            $lost++ if ($h->get("/api/v1/device-pairing/$id", device_key => $alice)->{json}{status} // '') ne 'ready';
        }
    }
    is($lost, 0, "$phase: every acknowledged pairing, revocation and deposit holds on both hosts");
    my $master = master_port();
    my $missing = grep { !$revoked{$_} && !$unknown{$_} && cli($master, 'EXISTS', "'t24:{fleet}:r:0:" . sha256_hex($_) . "'") ne '1' } @paired;
    is($missing, 0, "$phase: and Redis's master holds every acknowledged device");
}
sub master_changes {
    my ($h) = @_;
    return ($h->get('/metrics')->{content} =~ /^device_pairing_redis_master_changes_total (\d+)/m)[0] // 0;
}
# Writes resume by themselves: both hosts saw the sentinels name the new
# master, and a pairing that started after that got its 200.
sub resumed_after {
    my ($c, $changes, $limit) = @_;
    my $start = time;
    my $seen = wait_until(sub { master_changes($A) > $changes && master_changes($B) > $changes }, $limit) // return undef;
    my $switched = time;
    my $ok = wait_until(sub { grep { $_->[0] eq 'pair' && $_->[1] == 200 && $_->[2] > $switched } client_lines($c) },
                        $limit) // return undef;
    return time - $start;
}
my $crossings = 0;
sub revocation_crosses {
    my ($phase) = @_;
    my $name = 'cross-' . ++$crossings;
    my $t;
    wait_until(sub {  # a write may still meet a 503 while the fleet settles (a replica re-attaching)
        my $fresh = $A->get('/pair/refresh', token => $owner)->{json}{otp} // return 0;
        $t = $B->post('/pair', json => { otp => $fresh, name => $name })->{json}{token};
    }, 15);
    ok($t && wait_until(sub { $A->get('/api/x', token => $t)->{status} == 200 }, 5), "$phase: a device paired on B opens A")
        or diag('A: ' . join ' ', grep {/out_of_step|link_up|master_changes|rebuilds/} split /\n/, $A->get('/metrics')->{content});
    my ($d) = grep { $_->{name} eq $name } @{ $A->get('/api/devices?limit=1000', token => $owner)->{json}{devices} || [] };
    diag("$name is not in A's list") unless $d;
    my $revoked;
    wait_until(sub { $revoked = $A->request('DELETE', "/api/devices/$d->{id}", token => $owner)->{status}; $revoked != 503 }, 15);
    is($revoked, 204, "$phase: revoked on A");
    ok(wait_until(sub { $B->get('/api/x', token => $t)->{status} == 401 }, 2), "$phase: and refused by B");
}

# 1. SENTINEL FAILOVER under load.
my $first = master_port();
my $c = start_client('failover');
sleep 1.5;
my $changes = master_changes($A);
is(scli($sentinel_ports[0], 'SENTINEL', 'FAILOVER', 'mymaster'), 'OK', 'SENTINEL FAILOVER');
ok(wait_until(sub { (master_port() // $first) != $first }, 20), 'the sentinels promoted a replica');
my $resumed = resumed_after($c, $changes, 30);
ok(defined $resumed, 'writes resumed by themselves') and diag(sprintf 'both hosts switched and paired again %.1f s after SENTINEL FAILOVER', $resumed);
sleep 1;
check_acknowledged('SENTINEL FAILOVER', stop_client($c));
revocation_crosses('after the failover');
like($A->read_file('audit.log') // '', qr/redis_master_changed/, 'the audit log shows the switch');
like($A->get('/metrics')->{content}, qr/^device_pairing_redis_link_up 1$/m, 'and the link is up again');

# 2. kill -9 of the new master under load.
my $second = master_port();
$c = start_client('kill');
sleep 1.5;
$changes = master_changes($A);
kill 'KILL', $redis_pid{ name_of_port($second) };
waitpid $redis_pid{ name_of_port($second) }, 0;
delete $redis_pid{ name_of_port($second) };
is($A->get('/api/x', token => $owner)->{status}, 200, 'the master gone: the gate admits from the replica zone');
DPTest::is_problem($A->post('/api/v1/device-pairing', device_key => $alice), 503, 'state_unavailable',
                   'and a write answers 503 state_unavailable');
ok(wait_until(sub { my $m = master_port(); $m && $m != $second }, 30), 'the sentinels promoted another replica');
$resumed = resumed_after($c, $changes, 40);
ok(defined $resumed, 'writes resumed by themselves after kill -9 of the master')
    and diag(sprintf 'both hosts switched and paired again %.1f s after kill -9', $resumed);
sleep 1;
check_acknowledged('kill -9 of the master', stop_client($c));
revocation_crosses('after kill -9');

# 3. One sentinel killed, then another failover: the hosts ask the others.
kill 'KILL', $sentinel_pid{1};
waitpid $sentinel_pid{1}, 0;
delete $sentinel_pid{1};
my $third = master_port(@sentinel_ports[1, 2]);
$c = start_client('sentinel');
sleep 1.5;
$changes = master_changes($A);
is(scli($sentinel_ports[1], 'SENTINEL', 'FAILOVER', 'mymaster'), 'OK', 'SENTINEL FAILOVER with one sentinel down');
ok(wait_until(sub { my $m = master_port(@sentinel_ports[1, 2]); $m && $m != $third }, 30), 'a new master');
$resumed = resumed_after($c, $changes, 40);
ok(defined $resumed, 'writes resumed with a sentinel down') and diag(sprintf 'both hosts switched and paired again %.1f s after the failover', $resumed);
sleep 1;
check_acknowledged('a sentinel down', stop_client($c));
revocation_crosses('with a sentinel down');

my @untagged = grep { !/^t24:\{fleet\}:/ } split /\n/, cli(master_port(), '--scan', '--pattern', "'t24:*'");
is(scalar @untagged, 0, 'every key the fleet wrote carries the {fleet} hash tag') or diag("@untagged[0..4]");

# 4. A wrong password and an ACL without EVALSHA: a clear error, 503, no 2xx.
my $wrong = "$dir/wrong-auth";
open my $wf, '>', $wrong or die;
print $wf "dpfleet not-the-password\n";
close $wf;
chmod 0600, $wrong;
my $noeval = "$dir/noeval-auth";
open my $nf, '>', $noeval or die;
print $nf "dpnoeval $FLEET_PASS\n";
close $nf;
chmod 0600, $noeval;
my $C = host(auth => $wrong);
my $D = host(auth => $noeval);
for ([$C, 'a wrong password', qr/refused AUTH.*(WRONGPASS|invalid)/], [$D, 'an ACL without EVALSHA', qr/redis commit: NOPERM/]) {
    my ($h, $what, $line) = @$_;
    my $r = $h->post('/api/v1/device-pairing', device_key => $alice);
    DPTest::is_problem($r, 503, 'state_unavailable', "$what: a write answers 503 state_unavailable");
    ok(wait_until(sub { ($h->read_file('error.log') // '') =~ $line }, 5), "$what: the error log says why");
    unlike($h->read_file('error.log') // '', qr/not-the-password|\Q$FLEET_PASS\E/, "$what: and no password reaches it");
}

# 5. nginx -t refuses a password file others may read.
chmod 0644, $wrong;
my $E = DPTest->new;
$E->standard(zone => "zone=pairing:1m redis_sentinel=$sentinels redis_master=mymaster redis_auth=$wrong");
my ($rc, $out) = $E->test_config;
isnt($rc, 0, 'nginx -t refuses a redis_auth file others may read');
like($out, qr/may be read by others/, 'and says why');

# 6. Keys of an earlier version (no hash tag) are moved once.
my $old_master = master_port();
cli($old_master, 'SET', 't24old:seq', '7');
my $F = DPTest->new(allow => qr/redis/);
$F->standard(zone => "zone=pairing:1m redis_sentinel=$sentinels redis_master=mymaster redis_prefix=t24old: redis_auth=$dir/admin-auth redis_sentinel_auth=$sentinel_auth",
    device_keys => $keys);
open my $af, '>', "$dir/admin-auth" or die;
print $af "$ADMIN\n";
close $af;
chmod 0600, "$dir/admin-auth";
$F->start;
ok(wait_until(sub { ((cli($old_master, 'GET', "'t24old:{fleet}:seq'") =~ /^(\d+)$/)[0] // 0) >= 7 }, 10),
   'an untagged fleet\'s keys move to the tagged names (its sequence goes on from 7)');
is(cli($old_master, 'EXISTS', 't24old:seq'), '0', 'and the untagged ones are gone');

$_->finish for $A, $B, $C, $D, $F;
done_testing();
