# Reload under load: while clients call a gated location and pair devices,
# DP_SOAK_RELOADS (default 100) reloads give no non-2xx from the gate, no
# [alert], and lose no device; old workers drain.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use DPTest;

my $reloads = $ENV{DP_SOAK_RELOADS} || 100;
my $t = DPTest->new;
$t->standard;
$t->start;
my $op = $t->operator_token;
my $token = $t->pair_device;
my $stop = "$t->{dir}/stop-load";

sub worker {
    my ($name, $body) = @_;
    my $pid = fork // die;
    return $pid if $pid;
    my %count;
    my $deadline = time + 600;
    while (!-e $stop && time < $deadline) { $body->(\%count) }
    $t->write_file("result-$name", join "\n", map { "$_ $count{$_}" } sort keys %count);
    exit 0;
}

my @kids = map {
    my $n = $_;
    worker("gate$n", sub { $_[0]{ $t->get('/api/soak', token => $token)->{status} }++ });
} 1 .. 2;
push @kids, worker('pair', sub {
    my $otp = $t->get('/pair/refresh', token => $op)->{json}{otp} or return $_[0]{refresh_failed}++;
    my $r = $t->post('/pair', json => { otp => $otp });
    if ($r->{status} == 200) {
        open my $fh, '>>', "$t->{dir}/soak-tokens" or die;
        print $fh "$r->{json}{token}\n";
        close $fh;
    }
    $_[0]{ $r->{status} }++;
});

my $start = time;
$t->reload for 1 .. $reloads;
my $elapsed = time - $start;
$t->write_file('stop-load', '');
waitpid $_, 0 for @kids;

my %gate;
for my $n (1, 2) {
    for (split /\n/, $t->read_file("result-gate$n") // '') { my ($s, $c) = split; $gate{$s} += $c }
}
my $total = 0;
$total += $_ for values %gate;
ok($total > $reloads, "the gate served $total requests during $reloads reloads in " . sprintf('%.1f', $elapsed) . 's');
is_deeply([ grep { $_ != 200 } keys %gate ], [], 'no non-2xx from the gate') or diag explain \%gate;

my @tokens = split /\n/, $t->read_file('soak-tokens') // '';
ok(@tokens > 0, scalar(@tokens) . ' devices paired during the reloads');
is(scalar(grep { $t->get('/api/check', token => $_)->{status} != 200 } @tokens), 0, 'no paired device was lost');
my @workers = $t->worker_pids;
is(scalar @workers, 2, 'old workers drained: only the current two remain');
$t->finish;
done_testing;
