# The owner's page in headless chromium (playwright-core): a full owner
# session across two browser contexts, under the page's strict
# Content-Security-Policy; screenshots land in build/test-artifacts/.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use File::Path qw(make_path);
use DPTest;

my $dir = __FILE__ =~ s{[^/]+$}{}r;
plan skip_all => 'run `make browser-deps` first' unless -d "${dir}browser/node_modules/playwright-core";
plan skip_all => 'no /usr/bin/chromium' unless -x '/usr/bin/chromium';

my $artifacts = $ENV{DP_ARTIFACTS} // "${dir}../build/test-artifacts/owner-page";
make_path($artifacts);
unlink glob "$artifacts/*.png";

my $t = DPTest->new->standard(http => 'device_pairing_audit_log %%DIR%%/audit.log;');
$t->start;

my $r = $t->get('/pair');
my $csp = $r->{headers}{'content-security-policy'} // '';
like($csp, qr/default-src 'none'/, 'CSP: nothing by default');
like($csp, qr/script-src 'sha256-[A-Za-z0-9+\/=]+'(;|$)/, 'CSP: only the page\'s own script, by hash');
like($csp, qr/style-src 'sha256-[A-Za-z0-9+\/=]+'(;|$)/, 'CSP: only the page\'s own style, by hash');
like($csp, qr/connect-src 'self'/, 'CSP: fetches to this origin only');
like($csp, qr/frame-ancestors 'none'/, 'CSP: never framed');
unlike($r->{content}, qr{<(?:script|link|img)[^>]+(?:src|href)=}i, 'self-contained: no external assets');
unlike($r->{content}, qr{\son[a-z]+=|\sstyle=}i, 'no inline handlers or style attributes (the CSP would block them)');

my $otp = $t->otp;
my $out = `node ${dir}browser/owner-console.js @{[ $t->url ]} $otp /api/whoami $artifacts 2>&1`;
is($?, 0, 'the browser session finished') or diag $out;
my $f = eval { decode_json($out) } || {};
is($f->{ownerRows}, 1, 'the owner sees its own device after pairing');
like($f->{code} // '', qr/^[A-Z0-9]{3}-[A-Z0-9]{3}-[A-Z0-9]{3}$/, 'the second browser shows a pairing code');
like($f->{pendingText} // '', qr/Phone in hall.*127\.0\.0\.1/, 'the pending list shows who asks and from where');
like($f->{confirmText} // '', qr/Approve .Phone in hall. asking from 127\.0\.0\.1/, 'the confirmation names the requester and its address');
like($f->{phoneStatus} // '', qr/paired as a device/, 'the approval pairs the second browser, as a device');
ok($f->{phoneTokenShape}, 'its token is in its localStorage');
is($f->{phoneGatedBefore}, 200, 'and opens a gated location');
is($f->{rowsAfterApprove}, 2, 'the owner sees two devices');
is($f->{renamed}, 'Hall phone', 'rename shows the new name');
like($f->{revokeConfirmLabel} // '', qr/Confirm revoke/, 'revoke asks for a second click');
is($f->{rowsAfterRevoke}, 1, 'the revoked device leaves the list');
is($f->{phoneGatedAfter}, 401, "the revoked browser's next call fails");
like($f->{phoneAfterReload} // '', qr/no longer valid/, 'its page says so');
is($f->{phoneTokenKept}, undef, 'and drops the dead token');
like($f->{newOtp} // '', qr/^\d{6}$/, 'a fresh OTP is shown');
ok($f->{qrLoaded}, 'with its QR image (a data: URL the CSP allows)');
is_deeply($f->{cspViolations}, [], 'no Content-Security-Policy violations');
for my $png (qw(1-owner-console 2-phone-asks 3-owner-confirms 4-owner-renamed 5-owner-new-otp)) {
    ok(-s "$artifacts/$png.png", "screenshot $png.png");
}
my @events = map { decode_json($_)->{event} } split /\n/, $t->read_file('audit.log');
is_deeply([ grep { /^(paired|code_approved|renamed|revoked)$/ } @events ],
          [qw(paired code_approved paired renamed revoked)], 'the session is in the audit log, in order');

$t->finish;
done_testing;
