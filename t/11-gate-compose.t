# The gate composes like nginx's own auth modules: error_page, satisfy,
# auth_delay, internal redirects, named locations, subrequests (SSI and
# auth_request), HEAD, gzip, and credentials kept from the upstream.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use IO::Uncompress::Gunzip qw(gunzip);
use Time::HiRes qw(time);
use DPTest;

my $key = 'dk_compose_key_0123456789abcdef';
my $t = DPTest->new;
$t->write_file('device-keys', "alice " . sha256_hex($key) . "\n");
mkdir "$t->{dir}/html";
$t->write_file('html/page.shtml', "before<!--# include virtual=\"/api/secret\" -->after\n");
$t->write_file('html/index.html', "static\n");
$t->config(<<'HTTP');
    log_format gate '$request_uri id=$device_pairing_device_id role=$device_pairing_role name=$device_pairing_device_name';
    access_log %%DIR%%/gate.log gate;
    gzip on;
    gzip_min_length 20;
    device_pairing_zone zone=pairing:1m;
    device_pairing_token_file %%DIR%%/gateway-token;
    device_pairing_device_keys %%DIR%%/device-keys;
    device_pairing_identity %%DIR%%/identity.pem;
    server {
        listen 127.0.0.1:%%PORT%%;
        device_pairing_url http://127.0.0.1:%%PORT%%;
        root %%DIR%%/html;
        location /pair          { device_pairing on; }
        location /api/devices   { device_pairing on; }
        location = /health      { device_pairing on; }
        set $upstream http://127.0.0.1:%%PORT2%%;

        location /api/ {
            device_pairing_auth bearer;
            proxy_set_header X-Id $device_pairing_device_id;
            proxy_set_header X-Role $device_pairing_role;
            proxy_set_header X-Name $device_pairing_device_name;
            proxy_pass $upstream;
        }
        location /passing/ {
            device_pairing_auth any;
            device_pairing_pass_credentials on;
            proxy_pass $upstream;
        }
        location /login-protected/ {
            device_pairing_auth bearer;
            error_page 401 = @login;
            proxy_pass $upstream;
        }
        location @login { return 200 "login page\n"; }

        location /local-or-token/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            device_pairing_auth bearer;
            proxy_pass $upstream;
        }
        location /token-only/ {
            satisfy any;
            deny all;
            device_pairing_auth bearer;
            proxy_pass $upstream;
        }
        location /slow-reject/ {
            device_pairing_auth bearer;
            auth_delay 300ms;
            proxy_pass $upstream;
        }
        location /files/ {
            device_pairing_auth bearer;
            try_files /nonexistent @fallback;
        }
        location @fallback {
            proxy_set_header X-Id $device_pairing_device_id;
            proxy_pass $upstream;
        }
        location /ssi/ {
            ssi on;
            default_type text/html;
            alias %%DIR%%/html/;
        }
        location /checked/ {
            auth_request /_check;
            auth_request_set $checked_id $device_pairing_device_id;
            auth_request_set $checked_role $device_pairing_role;
            proxy_set_header X-Id $checked_id;
            proxy_set_header X-Role $checked_role;
            proxy_pass $upstream;
        }
        location = /_check {
            internal;
            device_pairing_check bearer;
        }
        location /checked-fallback/ {
            auth_request /_check;
            error_page 401 = @proxied_login;
            proxy_pass $upstream;
        }
        location /checked-passing/ {
            auth_request /_check_passing;
            proxy_pass $upstream;
        }
        location = /_check_passing {
            internal;
            device_pairing_check any;
            device_pairing_pass_credentials on;
        }
        location /proxied-login/ {
            device_pairing_auth any;
            error_page 401 = @proxied_login;
            proxy_pass $upstream;
        }
        location @proxied_login { proxy_pass $upstream; }
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            return 200 "uri=$uri id=$http_x_id role=$http_x_role name=$http_x_name auth=$http_authorization key=$http_x_device_key\n";
        }
    }
HTTP
$t->start;
my $op = $t->operator_token;
my $otp = $t->otp;
my $pair = $t->post('/pair', json => { otp => $otp, name => 'Kitchen tablet' });
my $token = $pair->{json}{token};
like($token, qr/^dp_tok_/, 'paired a device');

# Without an error_page the client still gets the module's problem+json.
my $r = $t->get('/api/x');
DPTest::is_problem($r, 401, 'authentication_required', 'a plain 401 carries the problem+json body');
is($r->{headers}{'www-authenticate'}, 'Bearer realm="device-pairing"', 'and the RFC 6750 challenge');
$r = $t->get('/api/x', token => 'dp_tok_wrong');
like($r->{headers}{'www-authenticate'}, qr/error="invalid_token"/, 'error="invalid_token" for a wrong token');

# The upstream sees the verdict, and no credential by default.
$r = $t->get('/api/x', token => $token);
like($r->{content}, qr/^uri=\/api\/x id=dev_[0-9a-f]{16} role=owner name=Kitchen tablet auth= key=\n/, 'variables reach the upstream, the token does not');
$r = $t->get('/passing/x', token => $token);
like($r->{content}, qr/auth=Bearer \Q$token\E/, 'device_pairing_pass_credentials on forwards it');
$r = $t->get('/passing/x', device_key => $key);
like($r->{content}, qr/key=\Q$key\E/, 'and the device key');

# error_page 401 = @login reaches @login.
$r = $t->get('/login-protected/x');
is($r->{status}, 200, 'error_page 401 = @login answers');
is($r->{content}, "login page\n", 'from @login');
like($t->get('/login-protected/x', token => $token)->{content}, qr/^uri=/, 'with a token the upstream answers');

# satisfy any: allow 127.0.0.1 lets a local request through without a token;
# deny all + a token works; deny all without one is refused.
is($t->get('/local-or-token/x')->{status}, 200, 'satisfy any: allow without a token');
is($t->get('/token-only/x', token => $token)->{status}, 200, 'satisfy any: deny all, but the token');
is($t->get('/token-only/x')->{status}, 401, 'satisfy any: neither');

# auth_delay applies to the gate's rejections.
my $started = time;
is($t->get('/slow-reject/x')->{status}, 401, 'rejected');
ok(time - $started >= 0.29, sprintf('after auth_delay (%.3f s)', time - $started));
$started = time;
$t->get('/slow-reject/x', token => $token);
ok(time - $started < 0.25, 'an accepted request is not delayed');

# try_files to a named location keeps the verdict: in the upstream and the log.
$r = $t->get('/files/x', token => $token);
like($r->{content}, qr/^uri=\/files\/x id=dev_[0-9a-f]{16} /, 'the verdict survives try_files to @fallback');
my ($id) = $r->{content} =~ /id=(dev_[0-9a-f]{16})/;
is($t->get('/files/x')->{status}, 401, 'and the gate still applies there');

# SSI include of a gated location: refused without credentials.
$r = $t->get('/ssi/page.shtml');
is($r->{status}, 200, 'the SSI page answers');
like($r->{content}, qr/^before.*after$/s, 'SSI ran');
unlike($r->{content}, qr/<!--#|uri=\/api\/secret/, 'but the gated include is refused without credentials');
like($t->get('/ssi/page.shtml', token => $token)->{content}, qr/uri=\/api\/secret id=dev_/, 'and served with them');

# auth_request to device_pairing_check grants and denies, and sets the variables.
$r = $t->get('/checked/x', token => $token);
is($r->{status}, 200, 'auth_request + device_pairing_check grants');
like($r->{content}, qr/id=\Q$id\E role=owner/, 'with the variables from the check');
$r = $t->get('/checked/x');
is($r->{status}, 401, 'and denies');
is($r->{headers}{'www-authenticate'}, 'Bearer realm="device-pairing"', 'with the challenge');
is($t->get('/checked/x', token => 'dp_tok_nope')->{status}, 401, 'a wrong token is denied');

# Credentials stay at the gate wherever the module decided: behind
# auth_request + device_pairing_check, and on error_page fallbacks into a
# proxy_pass, granted or refused.
like($t->get('/checked/x', token => $token)->{content}, qr/ auth= key=\n$/, 'auth_request: the upstream gets no Authorization');
like($t->get('/checked/x', token => $token, device_key => $key)->{content}, qr/ auth= key=\n$/, 'nor X-DEVICE-KEY');
$r = $t->get('/checked-fallback/x', token => 'dp_tok_refused');
is($r->{status}, 200, 'a refused check falls back to the proxied @login');
like($r->{content}, qr/ auth= key=\n$/, 'which does not get the refused credential');
$r = $t->get('/proxied-login/x', token => 'dp_tok_refused', device_key => 'dk_wrong');
like($r->{content}, qr/^uri=\/proxied-login\/x .* auth= key=\n$/, 'the gate\'s own error_page fallback neither');
like($t->get('/checked-passing/x', token => $token)->{content}, qr/auth=Bearer \Q$token\E/,
     'device_pairing_pass_credentials on in the check\'s location forwards it');

# A pairing route after a proxied, gated request on the same keep-alive
# connection runs once: a stray write event used to run it again, and the
# second run answered the client 401 for a pairing the first had made.
{
    my $fresh = $t->get('/pair/refresh', token => $op)->{json}{otp};
    my $port = $t->port;
    my $out = `curl -s -H 'Authorization: Bearer $token' http://127.0.0.1:$port/api/x --next -s -H 'Content-Type: application/json' -d '{"otp":"$fresh","name":"kept-alive"}' http://127.0.0.1:$port/pair`;
    like($out, qr/^uri=.*\n\{"token":"dp_tok_/s, 'POST /pair after a gated request on the same connection answers 200 with the token');
    my @named = grep { $_->{name} eq 'kept-alive' } @{ $t->get('/api/devices', token => $op)->{json}{devices} || [] };
    is(scalar @named, 1, 'one device paired');
}

# HEAD on every GET route: headers, no body.
my $code = $t->post('/api/devices/pairing/request', json => {})->{json};
for my $path ('/health', '/pair', '/api/devices/identity', '/api/devices', '/api/devices/stats',
              '/api/devices/pairing/pending', "/api/devices/pairing/status/$code->{requestId}") {
    $r = $t->request('HEAD', $path, token => $op);
    ok($r->{status} == 200 && ($r->{content} // '') eq '', "HEAD $path: 200, no body") or diag("$r->{status} $r->{content}");
}
is($t->request('HEAD', '/pair/refresh', token => $op)->{status}, 200, 'HEAD /pair/refresh');

# The pairing page compresses under gzip on.
$r = $t->get('/pair', headers => { 'Accept-Encoding' => 'gzip' });
is($r->{headers}{'content-encoding'}, 'gzip', 'the /pair page is gzip-encoded');
my $html;
gunzip(\$r->{content} => \$html);
like($html, qr/<title>Pair this device<\/title>/, 'and decodes to the page');
is($r->{headers}{'content-type'}, 'text/html; charset=utf-8', 'with its charset');

# The access log of the final location has the verdict.
$t->stop;
my $log = $t->read_file('gate.log');
like($log, qr{^/files/x id=\Q$id\E role=owner name=Kitchen tablet$}m, 'the access log shows the verdict after try_files');
$t->finish;
done_testing;
