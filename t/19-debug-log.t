# error_log ... debug: an operator learns why the gate refused a request and
# what the routes and the journal did, never a secret.
use strict;
use warnings;
use Test::More;
use DPTest;

my $t = DPTest->new;
$t->standard;
my $conf = $t->read_file('nginx.conf');
$conf =~ s/^error_log (\S+) notice;/error_log $1 debug;/m or die 'no error_log line';
$t->write_file('nginx.conf', $conf);
$t->start;
my $token = $t->pair_device;
is($t->get('/api/x')->{status}, 401, 'no token: refused');
is($t->get('/api/x', token => 'dp_tok_not-a-real-token')->{status}, 401, 'an unknown token: refused');
my ($me) = @{ $t->get('/api/devices', token => $token)->{json}{devices} || [] };
my $victim = $t->pair_device;
my ($v) = grep { $_->{id} ne $me->{id} } @{ $t->get('/api/devices', token => $token)->{json}{devices} || [] };
$t->request('DELETE', "/api/devices/$v->{id}", token => $token);
is($t->get('/api/x', token => $victim)->{status}, 401, 'a revoked token: refused');
is($t->get('/api/x', token => $token)->{status}, 200, 'a good token: accepted');
my $log = $t->read_file('error.log');
like($log, qr/\[debug\].*device_pairing gate: refused: no bearer token, answered 401/, 'the debug log says a token was missing');
like($log, qr/\[debug\].*device_pairing gate: refused: unknown or malformed token/, 'that one was unknown');
like($log, qr/\[debug\].*device_pairing gate: refused: the token was revoked/, 'that one was revoked');
like($log, qr/\[debug\].*device_pairing gate: accepted device_token "dev_[0-9a-f]{16}" \(owner\)/, 'and whom it accepted');
like($log, qr/\[debug\].*device_pairing route POST \/pair: answered 200/, 'the routes\' outcomes');
like($log, qr/\[debug\].*device_pairing journal: append synced/, 'the journal writer');
# (nginx's own debug lines print the request headers; the module's never
# print a credential.)
my $ours = join "\n", grep { /device_pairing/ } split /\n/, $log;
unlike($ours, qr/\Q$token\E|dp_tok_not-a-real-token|OTP: \d/, 'no token or OTP in the module\'s lines');
$t->finish;
done_testing;
