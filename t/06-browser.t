# The browser pairing page in headless chromium (playwright-core): a wrong
# code shows the 401 message, the QR URL pairs automatically, the token lands
# in localStorage and opens a gated location.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use DPTest;

my $dir = __FILE__ =~ s{[^/]+$}{}r;
plan skip_all => 'run `make browser-deps` first' unless -d "${dir}browser/node_modules/playwright-core";
plan skip_all => 'no /usr/bin/chromium' unless -x '/usr/bin/chromium';

my $t = DPTest->new->standard;
$t->start;

my $r = $t->get('/pair');
is($r->{status}, 200, 'GET /pair');
like($r->{headers}{'content-type'}, qr{^text/html}, 'an HTML page');
unlike($r->{content}, qr{<(?:script|link|img)[^>]+(?:src|href)=}i, 'self-contained: no external assets');

my $otp = $t->otp;
my $out = `node ${dir}browser/pair-page.js @{[ $t->url ]} $otp /api/whoami $t->{dir}/paired.png 2>&1`;
is($?, 0, 'the browser run finished') or diag $out;
my $facts = eval { decode_json($out) } || {};
like($facts->{wrongCodeMessage} // '', qr/Invalid or expired code/, 'a wrong code shows the 401 message');
like($facts->{pairedMessage} // '', qr/^Paired/, 'opening the QR URL pairs automatically');
unlike($facts->{urlAfter} // '#otp', qr/otp=/, 'the code is removed from the address bar');
like($facts->{token} // '', qr/^dp_tok_[A-Za-z0-9_-]{43}$/, 'the token is in localStorage');
is($facts->{gated}{status}, 200, 'the stored token opens a gated location');
like($facts->{gated}{body} // '', qr/method=device_token/, 'as a device token');
unlike($t->read_file('access.log'), qr/\Q$otp\E/, 'the OTP never reached the access log');

$t->finish;
done_testing;
