# Durability: state= keeps devices and pending pairings (not the OTP) across
# stop/start and kill -9; a zone resize on reload keeps everything; a failed
# journal write answers 503 and changes nothing; a torn journal tail is
# dropped, a corrupt one refused; a corrupt state file stops startup; a full
# zone answers 503 and nginx keeps serving.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep);
use DPTest;

my $key = 'dk_durability_key_000000000000001';
my $keys = "alice " . sha256_hex($key) . "\n";
my $t = DPTest->new(allow => qr/journal write failed/);
$t->standard(device_keys => $keys);
$t->start;
my $op = $t->operator_token;

my $token = $t->pair_device(refresh => 0);
my $otp = $t->get('/pair/refresh', token => $op)->{json}{otp};
my $mint = $t->post('/api/v1/device-pairing', device_key => $key)->{json};
my $code = $t->post('/api/devices/pairing/request', json => { requesterId => 'phone' })->{json};
sleep 0.3;    # answered at once, written with the next journal batch

$t->stop;
ok(-s "$t->{dir}/state.journal", 'journal written');
is((stat "$t->{dir}/state.journal")[2] & 0777, 0600, 'the journal is 0600');
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
my $victim = $t->pair_device(json => { name => 'victim' });
my ($victim_id) = map { $_->{id} } grep { $_->{name} eq 'victim' } @{ $t->get('/api/devices', token => $op)->{json}{devices} };
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

# A failed journal write: 503, and the change is undone (state unchanged).
my $stats = sub { $t->get('/api/devices/stats', token => $op)->{json}{records}{devices} };
my $devices_before = $stats->();
my $otp3 = $t->get('/pair/refresh', token => $op)->{json}{otp};
unlink "$t->{dir}/state.journal";
mkdir "$t->{dir}/state.journal" or die "mkdir: $!";    # the journal cannot be opened: the append fails
my $failed = $t->post('/pair', json => { otp => $otp3 });
DPTest::is_problem($failed, 503, 'state_unavailable', 'a pairing whose journal write fails answers 503');
is($failed->{headers}{'retry-after'}, '1', 'with Retry-After');
ok(!defined $failed->{json}{token}, 'and hands out no token');
is($stats->(), $devices_before, 'the device does not exist');
like($t->read_file('error.log'), qr/\[alert\].*journal write failed.*undone/, 'the failure is an alert');
rmdir "$t->{dir}/state.journal";
my $retry = $t->post('/pair', json => { otp => $otp3 });
is($retry->{status}, 200, 'the OTP the failed pairing spent was given back: the retry pairs');
$t->crash;
$t->start;
is($t->get('/api/x', token => $retry->{json}{token})->{status}, 200, 'and the retried device survives kill -9');
my $good_state = $t->read_file('state') // '';
$t->finish;

# The journal on disk: a torn tail is dropped with a notice; a corrupt entry
# before good ones stops nginx -t and the start, naming the file and offset.
my $j = DPTest->new(allow => qr/corrupt journal entry/);
$j->standard;
$j->start;
my @tokens = map { $j->pair_device } 1 .. 3;
$j->stop;
my $journal = $j->read_file('state.journal');
ok(length $journal > 0, 'pairings are in the journal');
$j->write_file('state.journal', $journal . substr($journal, 0, 40));    # a half entry, as a crash mid-append leaves
$j->start;
like($j->read_file('error.log'), qr/\[notice\].*journal ".*state\.journal": an incomplete last entry at offset @{[ length $journal ]}/,
     'a torn tail is dropped with a notice naming the offset');
is($j->get('/api/x', token => $_)->{status}, 200, 'the entries before it load') for @tokens;
is(-s "$j->{dir}/state.journal", length $journal, 'the torn bytes are cut off, so later appends follow good entries');
my $t4 = $j->pair_device;
$j->stop;
my $bad = $j->read_file('state.journal');
substr($bad, 20, 1) = chr(ord(substr($bad, 20, 1)) ^ 1);    # inside the first entry
$j->write_file('state.journal', $bad);
my ($jstatus, $jout) = $j->test_config;
isnt($jstatus, 0, 'nginx -t fails on a corrupt journal entry in the middle');
like($jout, qr/\[emerg\].*journal ".*state\.journal": corrupt journal entry at offset 0/, 'naming the file and the offset');
ok(!$j->start(may_fail => 1), 'nginx does not start on it');

# A length field that points past the end of the file is not a torn tail
# when good entries follow it: the header is checksummed too.
my $long = $journal;
substr($long, 4, 4) = pack('V', 0x7fffffff);    # the first entry's length
$j->write_file('state.journal', $long);
($jstatus, $jout) = $j->test_config;
isnt($jstatus, 0, 'nginx -t fails on a first entry whose length runs past the end');
like($jout, qr/\[emerg\].*journal ".*state\.journal": corrupt journal entry at offset 0 \(valid entries follow at offset \d+\)/,
     'naming the offset of the damage and of the entries after it');

# A worker killed inside its write() leaves part of an entry; the next
# append (by any worker) cuts it off first, so the later, acknowledged
# entries survive the next start.
$j->write_file('state.journal', $journal);
$j->start;
$j->write_file('state.journal', $journal . substr($journal, 0, 50));    # what a killed writer left
my $after_crash = $j->pair_device;
like($j->read_file('error.log'), qr/\[warn\].*50 bytes of an entry left by a writer that died mid-append were cut off/,
     'the writer cuts the dead writer\'s partial entry before it appends, with a warning');
$j->stop;
my ($status2, $out2) = $j->test_config;
is($status2, 0, 'the journal is whole after the repair') or diag $out2;
$j->start;
is($j->get('/api/x', token => $after_crash)->{status}, 200, 'the device paired after the crash survives a restart');
is($j->get('/api/x', token => $_)->{status}, 200, 'and so do the ones before it') for @tokens;
$j->finish;

# A reload that moves state= (or adds it) writes the zone's whole state at
# the new path before any worker journals there: a restart after it loses
# nothing paired before the reload. A path that already holds state is
# refused (the reload fails, the old configuration keeps running);
# removing state= warns.
for my $case ([ 'zone=pairing:1m state=%%DIR%%/state', 'moved' ], [ 'zone=pairing:1m', 'added' ]) {
    my ($zone, $what) = @$case;
    my $m = DPTest->new(allow => qr/already holds a state file/);
    $m->standard(zone => $zone);
    $m->start;
    my $before = $m->pair_device;
    $m->standard(zone => 'zone=pairing:1m state=%%DIR%%/moved');
    $m->reload;
    like($m->read_file('error.log'), qr/\[notice\].*state=\S+\/moved now holds the zone's 1 devices/, "$what: the reload writes the state at the new path");
    my $after = $m->pair_device;
    $m->stop;
    $m->start;
    is($m->get('/api/x', token => $before)->{status}, 200, "$what state=: a device paired before the reload survives a restart");
    is($m->get('/api/x', token => $after)->{status}, 200, "$what state=: and one paired after it");
    if ($what eq 'moved') {
        # Back to the old path, which still holds files: refused.
        $m->standard(zone => 'zone=pairing:1m state=%%DIR%%/state');
        my $old_pid = join ',', sort $m->worker_pids;
        kill 'HUP', $m->{pid};
        my $refused;
        for (1 .. 100) { last if ($refused) = $m->read_file('error.log') =~ /(\[emerg\].*already holds a state file.*)/; sleep 0.05 }
        like($refused // '', qr/device_pairing_zone "pairing": state=\S+\/state already holds a state file or journal/, 'a path that already holds state is refused, naming the directive');
        sleep 0.3;
        is(join(',', sort $m->worker_pids), $old_pid, 'the old configuration keeps running');
        is($m->get('/api/x', token => $after)->{status}, 200, 'and admits its devices');
        $m->pair_device;
        $m->standard(zone => 'zone=pairing:1m');
        $m->reload;
        like($m->read_file('error.log'), qr/\[warn\].*state= was removed: the zone's devices are kept in memory only/, 'removing state= warns');
    }
    $m->finish;
}

# Last use is durable enough for the idle timeout: a device in use is never
# expired by a restart or a kill -9 (last seen moves in steps of 1/8 of the
# timeout, each a journalled write).
{
    my $i = DPTest->new;
    $i->standard(http => 'device_pairing_token_idle_timeout 6s;');
    $i->start;
    my $busy = $i->pair_device;
    for (1 .. 8) { sleep 1; $i->get('/api/x', token => $busy) }
    is($i->get('/api/x', token => $busy)->{status}, 200, 'a device used every second for 8 s is valid (idle timeout 6 s)');
    $i->stop;
    $i->start;
    is($i->get('/api/x', token => $busy)->{status}, 200, 'and stays valid after a restart');
    for (1 .. 3) { sleep 1; $i->get('/api/x', token => $busy) }
    $i->crash;
    $i->start;
    is($i->get('/api/x', token => $busy)->{status}, 200, 'and after a kill -9');
    $i->finish;
}

# A corrupt or unreadable state file stops nginx -t and startup with a clear message.
my $c = DPTest->new;
$c->standard(zone => 'zone=pairing:1m state=%%DIR%%/state compact=1k');
$c->start;
$c->pair_device for 1 .. 12;    # past compact=1k: a snapshot is written
for (1 .. 100) { last if -s "$c->{dir}/state"; sleep 0.05 }
$c->stop;
$good_state = $c->read_file('state');
ok(length($good_state // '') > 200, 'compaction wrote a snapshot');
unlink "$c->{dir}/state.journal";
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
$f->standard(zone => 'zone=pairing:64k', device_keys => $keys, http => 'device_pairing_max_pairings 100000; device_pairing_mailbox_ttl 2s;');
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
