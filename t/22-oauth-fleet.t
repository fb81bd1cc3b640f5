# The OAuth device grant and DPoP in fleet mode: three nginx hosts and a
# real redis-server. A device code requested on A is approved on B and
# polled on C; the token works on every host's gate; a second exchange
# anywhere is invalid_grant; slow_down's longer interval holds on every
# host. A DPoP-bound token (bound on A) is checked on every host, and with
# server nonces a proof replayed to another host fails: nonces are
# host-bound (the replay cache is per host).
use strict;
use warnings;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use File::Basename qw(dirname);
use DPTest;

plan skip_all => 'redis-server is not installed (make test installs it)' unless -x '/usr/bin/redis-server';

my $rdir = DPTest->new->dir;
my $rport = DPTest::free_port();
my $redis_pid = DPTest::start_redis($rdir, $rport);
my $grant = 'urn:ietf:params:oauth:grant-type:device_code';

sub host {
    my $h = DPTest->new(allow => qr/redis/);
    $h->standard(zone => "zone=pairing:1m redis=127.0.0.1:$rport redis_prefix=t22:",
        server => "location /oauth/ { device_pairing on; }\n"
                . "        location = /metrics { device_pairing_metrics; }\n"
                . "        device_pairing_url http://127.0.0.1:%%PORT%%;\n"
                . "        device_pairing_dpop_nonce on;",
        no_url => 1,
        http => "device_pairing_secret_key $rdir/secret.key; device_pairing_oauth_client cli \"Fleet CLI\";"
              . " device_pairing_oauth_interval 1s;");
    $h->start;
    return $h;
}
my ($A, $B, $C) = (host(), host(), host());

sub form_post {
    my ($h, $path, $body) = @_;
    return $h->post($path, body => $body, headers => { 'Content-Type' => 'application/x-www-form-urlencoded' });
}
sub poll { form_post($_[0], '/oauth/token', "grant_type=$grant&client_id=cli&device_code=$_[1]") }
sub error_of { $_[0]{json}{error} // "status $_[0]{status}" }
sub wait_for {
    my ($cond) = @_;
    for (1 .. 200) { my $v = $cond->(); return $v if $v; sleep 0.02 }
    return undef;
}

# The fleet's OTP pairs an owner (whichever host made it shows it).
my $otp = wait_for(sub { $A->otp || $B->otp || $C->otp });
my $owner = $A->post('/pair', json => { otp => $otp })->{json}{token};
ok($owner, 'an owner paired on A');

my $da = form_post($A, '/oauth/device_authorization', 'client_id=cli&scope=fleet')->{json};
ok($da->{device_code}, 'a device code from A');
# C learns of it when its replica applies A's feed entry (a moment later).
ok(wait_for(sub { error_of(poll($C, $da->{device_code})) eq 'authorization_pending' }), 'C knows it: pending');
is(error_of(poll($C, $da->{device_code})), 'slow_down', 'C: too soon');
sleep 2;
is(error_of(poll($B, $da->{device_code})), 'authorization_pending',
   'B has no poll mark of its own: pending (pacing is per host)');
my $slow = poll($B, $da->{device_code});
is(error_of($slow), 'slow_down', 'then too soon on B too');
like($slow->{json}{error_description}, qr/every 11 seconds/, "B grew the interval C had grown: 1 + 5 + 5");
my $inspect = $B->post('/api/devices/pairing/inspect', token => $owner, json => { code => $da->{user_code} });
is($inspect->{json}{clientName}, 'Fleet CLI', 'B shows the client to the owner');
is($B->post('/api/devices/pairing/approve', token => $owner, json => { code => $da->{user_code} })->{status}, 200,
   'approved on B');
# An approved code is exchanged at once, however soon (pacing is for the pending).
my $tok = wait_for(sub { my $r = poll($C, $da->{device_code}); $r->{status} == 200 ? $r : undef });
ok($tok, 'the token from C');
my $access = $tok->{json}{access_token};
for my $h ($A, $B, $C) {
    my $ok = wait_for(sub { $h->get('/api/x', token => $access)->{status} == 200 });
    ok($ok, 'the gate accepts it on ' . ($h == $A ? 'A' : $h == $B ? 'B' : 'C'));
}
is(error_of(poll($A, $da->{device_code})), 'invalid_grant', 'a second exchange on A: invalid_grant');
is(error_of(poll($B, $da->{device_code})), 'invalid_grant', 'and on B');
my $devices = $A->get('/api/devices', token => $owner)->{json}{devices};
is(scalar(grep { $_->{method} eq 'oauth' && $_->{name} eq 'Fleet CLI' && $_->{scope} eq 'fleet' } @$devices), 1,
   'one OAuth device in the fleet');

# Revoked on A through RFC 7009: refused on C.
is(form_post($A, '/oauth/revoke', "client_id=cli&token=$access")->{status}, 200, 'revoked on A');
ok(wait_for(sub { $C->get('/api/x', token => $access)->{status} == 401 }), 'refused on C');

# --- DPoP across hosts ---
my $tool = dirname(__FILE__) . '/lib/dpop_proof.py';
sub proof {
    my ($h, $method, $path, %o) = @_;
    my $out = `/usr/bin/python3 $tool $rdir/dpop.key ES256 $method '@{[ $h->url ]}$path' @{[ map { "'$_=$o{$_}'" } sort keys %o ]}`;
    chomp $out;
    return $out;
}
sub nonce_of {
    my ($h) = @_;  # a refused proof brings this host's nonce
    return $h->post('/pair', json => { otp => '000000' }, headers => { DPoP => proof($h, 'POST', '/pair') })
        ->{headers}{'dpop-nonce'};
}
$otp = $A->get('/pair/refresh', token => $owner)->{json}{otp};
my $na = nonce_of($A);
ok($na, "A's nonce");
my $paired = $A->post('/pair', json => { otp => $otp }, headers => { DPoP => proof($A, 'POST', '/pair', nonce => $na) });
is($paired->{status}, 200, 'paired on A with a proof and its nonce') or diag $paired->{content};
my $bound = $paired->{json}{token};
my $ok_a = proof($A, 'GET', '/api/x', token => $bound, nonce => $na);
is($A->get('/api/x', headers => { Authorization => "DPoP $bound", DPoP => $ok_a })->{status}, 200, 'A accepts its proof');
# The same proof (its htu rewritten for B is a new proof; sent as is, B's URL differs) and a
# proof for B carrying A's nonce: both refused by B.
my $for_b = proof($B, 'GET', '/api/x', token => $bound, nonce => $na);
my $rb = wait_for(sub { my $r = $B->get('/api/x', headers => { Authorization => "DPoP $bound", DPoP => $for_b });
                        $r->{status} != 503 ? $r : undef });
is($rb->{status}, 401, "B refuses a proof with A's nonce");
like($rb->{headers}{'www-authenticate'} // '', qr/use_dpop_nonce/, 'use_dpop_nonce');
my $nb = $rb->{headers}{'dpop-nonce'};
is($B->get('/api/x', headers => { Authorization => "DPoP $bound", DPoP => proof($B, 'GET', '/api/x', token => $bound, nonce => $nb) })
     ->{status}, 200, "B accepts the bound token with a proof bearing B's nonce");
is($B->get('/api/x', token => $bound)->{status}, 401, 'and refuses it as Bearer: the binding reached B');

$_->finish for $A, $B, $C;
kill 'KILL', $redis_pid;
waitpid $redis_pid, 0;
done_testing;
