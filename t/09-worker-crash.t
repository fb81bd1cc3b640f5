# Workers killed with -9 in the middle of pairing traffic: the master respawns
# them, the zone never wedges (nginx's master releases a mutex a dead worker
# held, with an alert naming it),
# every token a client received still works, and no half-built record shows.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(time sleep);
use DPTest;

my $key = 'dk_crash_test_key_00000000000001';
my $t = DPTest->new(allow => qr/exited on signal 9|shared memory zone "pairing" was locked by/);
$t->standard(device_keys => 'alice ' . sha256_hex($key) . "\n", http => 'device_pairing_max_pairings 1000000;');
$t->start;
my $op = $t->operator_token;
my $stop = "$t->{dir}/stop-load";

my @kids;
for my $n (1 .. 3) {
    my $pid = fork // die;
    if (!$pid) {
        my $deadline = time + 120;
        while (!-e $stop && time < $deadline) {
            if ($n == 1) {
                my $otp = $t->get('/pair/refresh', token => $op, timeout => 5)->{json}{otp} or next;
                my $r = $t->post('/pair', json => { otp => $otp }, timeout => 5);
                next unless $r->{status} == 200;
                open my $fh, '>>', "$t->{dir}/tokens" or die;
                print $fh "$r->{json}{token}\n";
                close $fh;
            } else {
                $t->post('/api/v1/device-pairing', device_key => $key, timeout => 5);
                $t->post('/api/devices/pairing/request', json => { requesterId => "crash$n" }, timeout => 5);
            }
        }
        POSIX::_exit(0);
    }
    push @kids, $pid;
}

my $kills = 0;
for (1 .. 15) {
    sleep 0.3;
    my @workers = $t->worker_pids;
    next unless @workers;
    kill 'KILL', $workers[rand @workers];
    $kills++;
    my $start = time;
    my $ok = 0;
    while (time - $start < 5) {
        last if $ok = ($t->get('/api/devices/stats', token => $op, timeout => 5)->{status} == 200);
        sleep 0.05;
    }
    ok($ok, "kill -9 of a worker ($kills): the zone answers within 5 s") or last;
}
$t->write_file('stop-load', '');
waitpid $_, 0 for @kids;

my @tokens = split /\n/, $t->read_file('tokens') // '';
ok(@tokens > 0, scalar(@tokens) . ' devices paired during the kills');
is(scalar(grep { $t->get('/api/x', token => $_)->{status} != 200 } @tokens), 0, 'every token a client received works');
my $devices = $t->get('/api/devices', token => $op)->{json}{devices};
is(scalar(grep { $_->{id} !~ /^dev_[0-9a-f]{16}$/ || $_->{createdAt} =~ /^1970/ || $_->{role} !~ /^(owner|device)$/ } @$devices), 0,
   'no half-built device record in the zone');
is($t->get('/health')->{status}, 200, 'still serving');
$t->finish;
done_testing;
