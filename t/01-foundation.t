# Foundation: routing, problem+json for bad input, the gate's 401, nginx -t
# on bad zone definitions, and a zone record surviving a reload.
use strict;
use warnings;
use Test::More;
use DPTest;

my $t = DPTest->new->standard;
$t->start;

my $r = $t->get('/health');
is($r->{status}, 200, 'GET /health');
is_deeply($r->{json}, { status => 'ok' }, '/health body');
is($r->{headers}{'content-type'}, 'application/json', 'JSON content type');
is($r->{headers}{'cache-control'}, 'no-store', 'Cache-Control: no-store');

DPTest::is_problem($t->get('/api/devices/nope/more'), 404, 'not_found', 'unknown route is a 404 problem');
DPTest::is_problem($t->get('/pair/unknown'), 404, 'not_found', 'unknown sub-route is a 404 problem');

$r = $t->request('DELETE', '/health');
DPTest::is_problem($r, 405, 'method_not_allowed', 'wrong method');
is($r->{headers}{allow}, 'GET, HEAD', 'Allow lists the methods of the route');
$r = $t->request('PATCH', '/pair');
is($r->{headers}{allow}, 'POST, GET, HEAD', 'Allow on /pair');

$r = $t->post('/pair', body => 'otp=123456', headers => { 'Content-Type' => 'application/x-www-form-urlencoded' });
DPTest::is_problem($r, 400, 'invalid_request', 'a form body that is not JSON is a 400');
my ($raw_status, $raw_body) = $t->raw("POST /pair HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"otp\":\"1\"}");
is($raw_status, 401, 'JSON without a content type is read as JSON');
like($raw_body, qr/"code":"invalid_code"/, 'and judged');
$r = $t->post('/pair', body => '{"otp":"1"}', headers => { 'Content-Type' => 'text/plain;charset=UTF-8' });
DPTest::is_problem($r, 401, 'invalid_code', 'JSON sent as text/plain (a browser fetch with a string body) is read');
$r = $t->post('/pair', body => '{"otp":"1"}', headers => { 'Content-Type' => 'multipart/form-data; boundary=x' });
DPTest::is_problem($r, 415, 'unsupported_media_type', 'a multipart body is a 415');
$r = $t->post('/pair', json => '{"otp": "12', );
DPTest::is_problem($r, 400, 'invalid_request', 'truncated JSON is a 400');
$r = $t->post('/pair', json => '{"otp":"1","otp":"2"}');
DPTest::is_problem($r, 400, 'invalid_request', 'duplicate keys are a 400');
$r = $t->post('/pair', json => '[1,2]');
DPTest::is_problem($r, 400, 'invalid_request', 'a JSON array is a 400');
$r = $t->post('/pair', json => ('[' x 40) . (']' x 40));
DPTest::is_problem($r, 400, 'invalid_request', 'deep nesting is a 400');
$r = $t->post('/pair', json => '{"pad":"' . ('x' x 20000) . '"}');
DPTest::is_problem($r, 413, 'body_too_large', 'oversize body is a 413');
$r = $t->post('/pair', json => '{"otp":"1"}', headers => { 'Content-Type' => 'application/merge-patch+json' });
DPTest::is_problem($r, 401, 'invalid_code', 'a +json media type is accepted as JSON');

# A chunked body goes through nginx's body reader in pieces (and to a temp file when large).
{
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port) or die;
    my $chunk1 = '{"otp":';
    my $chunk2 = '"000000"}';
    print $sock "POST /pair HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        . sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", length $chunk1, $chunk1, length $chunk2, $chunk2);
    local $/;
    my $resp = <$sock>;
    like($resp, qr{^HTTP/1.1 401.*"code":"invalid_code"}s, 'chunked body is read and parsed');
}

# Bodies that nginx buffers to a temp file are read from the file.
{
    my $f = DPTest->new;
    $f->standard(server => 'client_body_in_file_only clean;');
    $f->start;
    DPTest::is_problem($f->post('/pair', json => { otp => 'nope' }), 401, 'invalid_code', 'a body in a temp file is parsed');
    my $big = { data => { blob => 'y' x 3000 } };
    my $res = $f->post('/api/devices/attest', token => $f->operator_token, json => $big);
    is($res->{json}{attestation}{attestation}{data}{blob}, 'y' x 3000, 'a 3 KB body from a temp file arrives whole');
    $f->finish;
}

# The gate: no credential, a malformed one, a wrong one.
$r = $t->get('/api/things');
DPTest::is_problem($r, 401, 'authentication_required', 'gated location without a token');
is($r->{headers}{'www-authenticate'}, 'Bearer realm="device-pairing"', 'RFC 6750 challenge');
$r = $t->get('/api/things', token => 'dp_tok_wrong');
DPTest::is_problem($r, 401, 'invalid_token', 'gated location with a wrong token');
like($r->{headers}{'www-authenticate'}, qr/error="invalid_token"/, 'error="invalid_token"');
$r = $t->get('/keyed/x');
like($r->{headers}{'www-authenticate'} // '', qr/^DeviceKey/, 'device_key gate challenges for a key');

# A record written before a reload is read after it.
my $token = $t->pair_device;
is($t->get('/api/things', token => $token)->{status}, 200, 'device token admitted');
$t->reload;
is($t->get('/api/things', token => $token)->{status}, 200, 'device token still admitted after reload');
is($t->get('/health')->{status}, 200, 'serving after reload');

# nginx -t on bad definitions names the problem.
for my $case (
    [ 'zone=pairing:abc', qr/invalid zone size "zone=pairing:abc"/ ],
    [ 'zone=pairing:1k',  qr/zone "zone=pairing:1k" is too small/ ],
    [ 'zone=pairing',     qr/invalid zone "zone=pairing"/ ],
    [ 'zone=pairing:1m bogus=1', qr/invalid parameter "bogus=1"/ ],
) {
    my $bad = DPTest->new;
    $bad->standard(zone => $case->[0]);
    my ($status, $out) = $bad->test_config;
    isnt($status, 0, "nginx -t rejects $case->[0]");
    like($out, $case->[1], 'with a message naming the value');
}
{
    my $bad = DPTest->new;
    $bad->standard(http => 'device_pairing_zone zone=other:1m;');
    my ($status, $out) = $bad->test_config;
    like($out, qr/"device_pairing_zone" directive is duplicate/, 'a second zone is rejected');
    my $ok = DPTest->new;
    $ok->standard;
    ($status, $out) = $ok->test_config;
    is($status, 0, 'nginx -t accepts the standard configuration') or diag $out;
    unlike($out, qr/OTP:/, 'nginx -t does not mint or print an OTP');
}

$t->finish;
done_testing;
