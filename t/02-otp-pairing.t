# Gateway OTP pairing (seed 000): POST /pair, single use, the race, per-address
# lockout, the burn, refresh, the operator token, 501, reload keeping the OTP.
use strict;
use warnings;
use Test::More;
use DPTest;

my $t = DPTest->new->standard;
$t->start;

my $log = $t->read_file('error.log');
my $banner = $t->banner;
like($banner, qr{device pairing: open http://127\.0\.0\.1:\d+/pair}, 'startup banner names the URL');
like($banner, qr/OTP: \d{6} \(expires in 10 minutes, at \S+Z\); at most 10 guesses, P <= 1e-5/, 'OTP, expiry and guessing budget');
like($banner, qr/\x{e2}\x{96}[\x{80}\x{84}\x{88}]/, 'QR drawn with UTF-8 half blocks');
my $otp = $t->otp;
unlike($log, qr/\Q$otp\E|OTP: \d/, 'the OTP never reaches the error log (only where the banner file is)');
like($log, qr/\[warn\].*print the pairing URL, QR and OTP with: cat \S+\.banner/, 'the log says where the banner file is');
my $token_file = $t->read_file('gateway-token');
unlike($log, qr/\Q$token_file\E/, 'the operator token is never logged') if $token_file;
is((stat "$t->{dir}/gateway-token")[2] & 0777, 0600, 'token file created 0600');

# Bad bodies change nothing.
DPTest::is_problem($t->post('/pair', json => {}), 400, 'invalid_request', 'missing otp');
DPTest::is_problem($t->post('/pair', json => { otp => 847291 }), 400, 'invalid_request', 'otp as a number');

# The race: 20 concurrent correct redemptions, exactly one 200.
my %count = %{ DPTest::concurrently(20, sub {
    $t->post('/pair', json => { otp => $otp }, from => '127.0.0.' . (20 + $_[0]))->{status};
}) };
is($count{200}, 1, 'exactly one of 20 concurrent redemptions succeeds');
is($count{401}, 19, 'the others get 401');

# The winner's token is a prefixed 256-bit token, and the OTP is spent.
my $r = $t->post('/pair', json => { otp => $otp });
DPTest::is_problem($r, 401, 'invalid_code', 'a used OTP is dead');
is($r->{json}{error}, 'Invalid or expired code', "seed 000's error string");

# Refresh needs a bearer token; the operator token is one.
my $op = $t->operator_token;
like($op, qr/^dp_op_[A-Za-z0-9_-]{43}$/, 'operator token has 256 random bits');
DPTest::is_problem($t->get('/pair/refresh'), 401, 'authentication_required', 'refresh needs a token');
$r = $t->get('/pair/refresh', token => $op);
is($r->{status}, 200, 'refresh with the operator token');
like($r->{json}{otp}, qr/^\d{6}$/, 'refresh returns the new OTP');
like($r->{json}{expires_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'expires_at is ISO-8601 in whole seconds');
is($r->{json}{pairing_url}, $t->url . "/pair#otp=$r->{json}{otp}", 'pairing_url carries the OTP in the fragment');
like($r->{json}{qr_svg}, qr/^<svg /, 'qr_svg is an SVG');
$t->{expect_otp} = $r->{json}{otp};
is($t->otp, $r->{json}{otp}, 'the new OTP is in the banner file');
unlike($t->read_file('error.log'), qr/\Q$r->{json}{otp}\E|OTP: \d/, 'and never in the error log');
my $old = $r->{json}{otp};
$r = $t->get('/pair/refresh', token => $op);
DPTest::is_problem($t->post('/pair', json => { otp => $old }, from => '127.0.0.50'), 401, 'invalid_code', 'refresh kills the previous OTP at once');
$otp = $r->{json}{otp};

$r = $t->post('/pair', json => { otp => $otp, name => 'Alice phone' }, headers => { 'User-Agent' => 'Mozilla/5.0 (iPhone)' });
is($r->{status}, 200, 'pairing with a fresh OTP');
my $token = $r->{json}{token};
like($token, qr/^dp_tok_[A-Za-z0-9_-]{43}$/, 'device token: prefix + 256 random bits');
is($t->get('/api/x', token => $token)->{status}, 200, 'device token admitted by the gate');
unlike($t->read_file('error.log'), qr/\Q$token\E/, 'no device token in the error log');
unlike($t->read_file('access.log'), qr/\d{6}/ && qr/otp=\d{6}/, 'no OTP in the access log');
my ($dev) = grep { $_->{name} eq 'Alice phone' } @{ $t->get('/api/devices', token => $op)->{json}{devices} };
ok($dev && $dev->{method} eq 'otp' && $dev->{role} eq 'owner' && $dev->{lastAddress} eq '127.0.0.1', 'device record: name, method, role, address');

# Per-address lockout: 5 failures, then 429 with Retry-After, even for the right code.
$otp = $t->get('/pair/refresh', token => $op)->{json}{otp};
for my $i (1 .. 5) {
    DPTest::is_problem($t->post('/pair', json => { otp => '000000' }, from => '127.0.0.2'), 401, 'invalid_code', "failure $i from 127.0.0.2");
}
$r = $t->post('/pair', json => { otp => $otp }, from => '127.0.0.2');
DPTest::is_problem($r, 429, 'rate_limited', '6th attempt from the address is a 429');
is($r->{headers}{'retry-after'}, '60', 'Retry-After: 60');
is($r->{json}{error}, 'Too many attempts', "seed 000's 429 message");
DPTest::is_problem($t->post('/pair', json => { otp => $otp }, from => '127.0.0.2'), 429, 'rate_limited', 'still locked: each attempt restarts the window');
is($t->post('/pair', json => { otp => $otp }, from => '127.0.0.3')->{status}, 200, 'another address is not affected');

# The burn: 10 failures against one OTP from 5 addresses, then even the right code fails.
$otp = $t->get('/pair/refresh', token => $op)->{json}{otp};
for my $i (0 .. 9) {
    $t->post('/pair', json => { otp => sprintf('%06d', ("$otp" + 1 + $i) % 1000000) }, from => '127.0.1.' . (1 + $i % 5));
}
DPTest::is_problem($t->post('/pair', json => { otp => "$otp" }, from => '127.0.2.1'), 401, 'invalid_code', 'burned after 10 failures spread over 5 addresses');
like($t->read_file('error.log'), qr/OTP burned after 10 failed attempts/, 'the burn is logged');
$otp = $t->get('/pair/refresh', token => $op)->{json}{otp};
isnt($otp, undef, 'refresh gives a new OTP after a burn');

# Reload keeps the live OTP (no new banner) and every token.
my $banners = () = $t->read_file('error.log') =~ /the OTP is live; print the pairing URL/g;
$t->reload;
my $after = () = $t->read_file('error.log') =~ /the OTP is live; print the pairing URL/g;
is($after, $banners + 1, 'a reload with a live OTP points at its banner again');
is($t->otp, $otp, 'the same OTP, not a new one');
is($t->post('/pair', json => { otp => $otp }, from => '127.0.2.2')->{status}, 200, 'the OTP survives a reload');
is($t->get('/api/x', token => $token)->{status}, 200, 'tokens survive a reload');
$t->reload;
my $fresh;
for (1 .. 100) { ($fresh) = $t->banner =~ /OTP: (\d{6}) /; last if $fresh && $fresh ne $otp; select undef, undef, undef, 0.02 }
isnt($fresh, $otp, 'a reload without a live OTP writes a new one to the banner file');
unlike($t->read_file('error.log'), qr/OTP: \d/, 'no OTP ever reached the error log');
$t->finish;

# A token file that can be neither read nor created: nginx starts, /pair is 501.
my $u = DPTest->new;
$u->standard(token_file => '/nonexistent-dir/gateway-token');
$u->start;
$r = $u->post('/pair', json => { otp => $u->otp // '123456' });
DPTest::is_problem($r, 501, 'pairing_unavailable', '501 when the token file is unusable');
is($r->{json}{error}, 'Pairing not available', "seed 000's 501 message");
like($u->read_file('error.log'), qr/device_pairing_token_file .*pairing is unavailable/, 'the reason is logged');
$u->finish;

done_testing;
