# conf.example as `make run` uses it: the README tour's protected API answers
# through the stand-in upstream with what the gate told it.
use strict;
use warnings;
use Test::More;
use File::Spec;
use DPTest;

my $t = DPTest->new;
my $repo = File::Spec->rel2abs(__FILE__ =~ s{t/13-conf-example\.t$}{}r || '.');
my $conf = do { local $/; open my $fh, '<', "$repo/conf.example" or die; <$fh> };
my ($api, $upstream) = ($t->port, $t->port2);
$conf =~ s{^load_module \S+;}{load_module $t->{module};}m;
$conf =~ s{error_log stderr notice;}{error_log $t->{dir}/error.log notice;};
$conf =~ s{127\.0\.0\.1:3001}{127.0.0.1:$api}g;
$conf =~ s{127\.0\.0\.1:8000}{127.0.0.1:$upstream}g;
$conf =~ s{^pid \S+;}{pid $t->{dir}/nginx.pid;}m;
$conf =~ s{^(worker_processes)}{user root;\n$1}m;
mkdir "$t->{dir}/build";
mkdir "$t->{dir}/build/run";
$t->write_file('build/run/device-keys', '');
$t->write_file('nginx.conf', $conf);
$t->start;
my $token = $t->post('/pair', json => { otp => $t->otp }, headers => { 'User-Agent' => 'Mozilla/5.0 (iPhone)' })->{json}{token};
like($token, qr/^dp_tok_/, 'paired with the printed OTP');
my $r = $t->get('/api/hello', token => $token);
is($r->{status}, 200, 'the protected API answers');
like($r->{content}, qr/^hello iPhone \(dev_[0-9a-f]{16}, owner, device_token\)$/, 'with what the gate told it');
is($t->get('/api/hello')->{status}, 401, 'and refuses without a token');
ok(-s "$t->{dir}/build/run/device-pairing.state.banner", 'make banner has a file to print');
$t->finish;
done_testing;
