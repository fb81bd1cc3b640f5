# The OAuth 2.0 device authorization grant (RFC 8628) with server metadata
# (RFC 8414) and revocation (RFC 7009): every error of the token endpoint in
# its order, the user code's rules, then an unmodified OAuth client
# (openid-client from npm) through discovery, polling, an owner's approval
# in the console, the gated API, revocation, rejection and expiry.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use DPTest;

my $dir = __FILE__ =~ s{[^/]+$}{}r;
my $grant = 'urn:ietf:params:oauth:grant-type:device_code';
my $oauth_locations = <<'LOC';
        location /oauth/ { device_pairing on; }
        location = /.well-known/oauth-authorization-server { device_pairing on; }
        location /scoped/ {
            device_pairing_auth bearer;
            add_header X-Granted-Scope $device_pairing_scope;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
LOC
my $t = DPTest->new->standard(
    http => <<"HTTP",
    device_pairing_audit_log %%DIR%%/audit.log;
    device_pairing_oauth_client cli-tool "Deploy CLI";
    device_pairing_oauth_client tv-app;
    device_pairing_oauth_interval 1s;
    server {
        listen 127.0.0.2:%%PORT%%;
        device_pairing_code_ttl 2s;
        $oauth_locations
        location /pair { device_pairing on; }
    }
HTTP
    server => $oauth_locations . '        location = /metrics { device_pairing_metrics; }');
$t->start;
my $owner = $t->pair_device;

sub form {
    my (%f) = @_;
    return join '&', map { "$_=" . ($f{$_} =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord $1)/ger) } sort keys %f;
}
sub oauth_post {
    my ($path, %f) = @_;
    return $t->post($path, body => form(%f), headers => { 'Content-Type' => 'application/x-www-form-urlencoded' });
}
sub is_oauth_error {
    my ($res, $status, $error, $name) = @_;
    my $ok = $res->{status} == $status && ref $res->{json} eq 'HASH' && ($res->{json}{error} // '') eq $error
        && defined $res->{json}{error_description} && ($res->{headers}{'cache-control'} // '') eq 'no-store';
    ok($ok, $name // "$status $error") or diag "got $res->{status}: $res->{content}";
}
sub authorize { oauth_post('/oauth/device_authorization', client_id => 'cli-tool', @_)->{json} }
sub poll { oauth_post('/oauth/token', grant_type => $grant, client_id => 'cli-tool', @_) }
sub approve {
    my ($code, $token) = @_;
    return $t->post('/api/devices/pairing/approve', token => $token // $owner, json => { code => $code });
}

# --- metadata (RFC 8414) ---
my $m = $t->get('/.well-known/oauth-authorization-server');
is($m->{status}, 200, 'metadata');
my $url = $t->url;
is($m->{json}{issuer}, $url, 'issuer: the public URL');
is($m->{json}{device_authorization_endpoint}, "$url/oauth/device_authorization", 'device authorization endpoint');
is($m->{json}{token_endpoint}, "$url/oauth/token", 'token endpoint');
is($m->{json}{revocation_endpoint}, "$url/oauth/revoke", 'revocation endpoint');
is_deeply($m->{json}{grant_types_supported}, [$grant], 'the device grant only');
is_deeply($m->{json}{token_endpoint_auth_methods_supported}, ['none'], 'public clients');

# --- device authorization (RFC 8628 3.1-3.2) ---
my $da = oauth_post('/oauth/device_authorization', client_id => 'cli-tool', scope => 'sensors:read deploy');
is($da->{status}, 200, 'device authorization');
is($da->{headers}{'cache-control'}, 'no-store', 'not cached');
my $a = $da->{json};
like($a->{user_code}, qr/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/, 'user code: XXXX-XXXX of base 20');
ok(length($a->{device_code}) >= 43, 'device code: at least 256 bits of base64url');
is($a->{verification_uri}, "$url/pair", 'verification_uri: the owner console');
is($a->{verification_uri_complete}, "$url/pair#code=$a->{user_code}", 'complete: the code in the fragment');
is($a->{expires_in}, 600, 'expires_in: device_pairing_code_ttl');
is($a->{interval}, 1, 'interval: device_pairing_oauth_interval');
unlike($t->read_file('state.journal') // '', qr/\Q$a->{device_code}\E/, 'the device code is not stored');

is_oauth_error(oauth_post('/oauth/device_authorization', client_id => 'nobody'), 400, 'invalid_client', 'unknown client');
is_oauth_error(oauth_post('/oauth/device_authorization'), 400, 'invalid_request', 'no client_id');
is_oauth_error(oauth_post('/oauth/device_authorization', client_id => 'cli-tool', scope => "a\"b"), 400, 'invalid_scope',
               'a scope with a quote');
is_oauth_error($t->post('/oauth/device_authorization', json => { client_id => 'cli-tool' }), 400, 'invalid_request',
               'JSON is not a form');
is_oauth_error($t->post('/oauth/device_authorization', body => 'client_id=cli-tool&client_id=tv-app',
                        headers => { 'Content-Type' => 'application/x-www-form-urlencoded' }),
               400, 'invalid_request', 'a parameter twice');

# --- the token endpoint's errors, in order (RFC 8628 3.5, RFC 6749 5.2) ---
is_oauth_error(oauth_post('/oauth/token', client_id => 'cli-tool', device_code => $a->{device_code}), 400,
               'invalid_request', 'no grant_type');
is_oauth_error(oauth_post('/oauth/token', grant_type => 'authorization_code', client_id => 'nobody'), 400,
               'unsupported_grant_type', 'another grant type (before the client)');
is_oauth_error(oauth_post('/oauth/token', grant_type => $grant, client_id => 'nobody', device_code => $a->{device_code}),
               400, 'invalid_client', 'unknown client');
is_oauth_error(poll(), 400, 'invalid_request', 'no device_code');
is_oauth_error(poll(device_code => 'x' x 43), 400, 'invalid_grant', 'unknown device code');
is_oauth_error(oauth_post('/oauth/token', grant_type => $grant, client_id => 'tv-app', device_code => $a->{device_code}),
               400, 'invalid_grant', "another client's device code");
is_oauth_error(poll(device_code => $a->{device_code}), 400, 'authorization_pending', 'pending');
is_oauth_error(poll(device_code => $a->{device_code}), 400, 'slow_down', 'too soon: slow_down');
select undef, undef, undef, 6.2;
is_oauth_error(poll(device_code => $a->{device_code}), 400, 'authorization_pending', 'the interval is now 6 s: pending after it');
sleep 2;
is_oauth_error(poll(device_code => $a->{device_code}), 400, 'slow_down', 'and it stays 6 s: 2 s later is too soon');

# The owner sees the client, the scope and who asks.
my $ins = $t->post('/api/devices/pairing/inspect', token => $owner, json => { code => lc $a->{user_code} =~ s/-/ /r });
is($ins->{status}, 200, 'inspect by user code, typed in lower case with a space');
is($ins->{json}{method}, 'oauth', 'an OAuth request');
is($ins->{json}{clientName}, 'Deploy CLI', "the client's display name");
is($ins->{json}{scope}, 'sensors:read deploy', 'the scope it asks for');
is($ins->{json}{address}, '127.0.0.1', 'from where');
ok($ins->{json}{createdAt}, 'and when');
my $pending = $t->get('/api/devices/pairing/pending', token => $owner)->{json}{requests};
ok((grep { ($_->{clientName} // '') eq 'Deploy CLI' } @$pending), 'it is in the pending list');

is(approve($a->{user_code})->{status}, 200, 'the owner approves by user code');
my $tok = poll(device_code => $a->{device_code});
is($tok->{status}, 200, 'the token');
is($tok->{headers}{'cache-control'}, 'no-store', 'not cached');
is($tok->{json}{token_type}, 'Bearer', 'token_type Bearer');
is($tok->{json}{scope}, 'sensors:read deploy', 'the granted scope');
ok(!exists $tok->{json}{expires_in}, 'no expires_in without a token lifetime');
my $access = $tok->{json}{access_token};
is_oauth_error(poll(device_code => $a->{device_code}), 400, 'invalid_grant', 'a device code is exchanged once');

my $g = $t->get('/scoped/x', token => $access);
is($g->{status}, 200, 'the gate accepts the token');
is($g->{headers}{'x-granted-scope'}, 'sensors:read deploy', '$device_pairing_scope');
my ($dev) = grep { $_->{method} eq 'oauth' } @{ $t->get('/api/devices', token => $owner)->{json}{devices} };
ok($dev, 'the device is listed with method oauth');
is($dev->{name}, 'Deploy CLI', "named after the client");
is($dev->{scope}, 'sensors:read deploy', 'with its scope');
like($dev->{approvedBy} // '', qr/^dev_/, 'and who approved it');

like($t->get('/metrics')->{content}, qr/device_pairing_pairings_total\{method="oauth"\} 1/, 'metrics: method="oauth"');

# Restart: the device landed in the journal before the 200.
$t->stop;
$t->start;
is($t->get('/scoped/x', token => $access)->{status}, 200, 'the token survives a restart');

# Revocation (RFC 7009): 200 either way; the token is dead.
is(oauth_post('/oauth/revoke', token => 'dp_tok_unknown', client_id => 'cli-tool')->{status}, 200, 'unknown token: 200');
is_oauth_error(oauth_post('/oauth/revoke', token => $access, client_id => 'nobody'), 400, 'invalid_client',
               'revoke by an unknown client');
is(oauth_post('/oauth/revoke', token => $access, client_id => 'cli-tool')->{status}, 200, 'revoke');
is($t->get('/scoped/x', token => $access)->{status}, 401, 'the revoked token is refused');

# Rejected: access_denied; a late poll after expiry is expired_token (below).
my $r = authorize();
is($t->post('/api/devices/pairing/reject', token => $owner, json => { code => $r->{user_code} })->{status}, 200,
   'the owner rejects');
is_oauth_error(poll(device_code => $r->{device_code}), 400, 'access_denied', 'rejected: access_denied');

# A user code dies after 10 wrong codes entered in the zone.
my $victim = authorize();
for my $i (1 .. 10) {  # from 10 addresses: each address has its own limit (429) before that
    my $res = $t->post('/api/devices/pairing/approve', token => $owner, json => { code => 'BBBB-BBBB' }, from => "127.0.0.$i");
    diag "wrong code $i: $res->{status}" unless $res->{status} == 404;
}
my $late = approve($victim->{user_code});
is($late->{status}, 404, 'after 10 wrong codes the user code is gone');
is_oauth_error(poll(device_code => $victim->{device_code}), 400, 'expired_token', 'its poll: expired_token');

# Expiry on the 2 s server.
my $short = $t->post("http://127.0.0.2:@{[ $t->port ]}/oauth/device_authorization", body => 'client_id=tv-app',
                     headers => { 'Content-Type' => 'application/x-www-form-urlencoded' })->{json};
is($short->{expires_in}, 2, 'the short server: 2 s');
sleep 3;
is_oauth_error($t->post("http://127.0.0.2:@{[ $t->port ]}/oauth/token",
                        body => form(grant_type => $grant, client_id => 'tv-app', device_code => $short->{device_code}),
                        headers => { 'Content-Type' => 'application/x-www-form-urlencoded' }),
               400, 'expired_token', 'an expired code: expired_token, not invalid_grant');

# The audit log.
my @events = map { decode_json($_) } split /\n/, $t->read_file('audit.log');
my ($paired) = grep { $_->{event} eq 'paired' && ($_->{method} // '') eq 'oauth' } @events;
ok($paired, 'the audit log has the pairing, method oauth');
ok((grep { $_->{event} eq 'revoked' && ($_->{device} // $_->{device_id} // '') eq $dev->{id} } @events),
   'and the revocation') or diag $t->read_file('audit.log');
unlike($t->read_file('audit.log'), qr/\Q$access\E|\Q$a->{device_code}\E/, 'no token or device code in the audit log');
unlike($t->read_file('error.log'), qr/\Q$access\E|\Q$a->{device_code}\E/, 'nor in the error log');

# --- an unmodified client library ---
SKIP: {
    skip 'run `make browser-deps` first', 14 unless -d "${dir}browser/node_modules/openid-client";
    my $out = `node ${dir}browser/oauth-client.js @{[ $t->url ]} http://127.0.0.2:@{[ $t->port ]} $owner cli-tool /scoped/x 2>&1`;
    is($?, 0, 'the OAuth client finished') or diag $out;
    my $f = eval { decode_json($out) } || {};
    is($f->{issuer}, $t->url, 'discovery: the issuer');
    like($f->{prefilled} // '', qr/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/,
         'verification_uri_complete pre-fills the code box');
    ok(!$f->{confirmShownBeforeClick}, 'but approves nothing by itself');
    like($f->{confirmText} // '', qr/Deploy CLI.*sensors:read.*127\.0\.0\.1/, 'the confirmation names the client, the scope, the address');
    ok((grep { $_ eq 'authorization_pending' } @{ $f->{tokenErrors} || [] }), 'the library polled through authorization_pending');
    ok((grep { $_ eq 'slow_down' } @{ $f->{tokenErrors} || [] }), 'and one slow_down')
        or diag explain $f->{tokenErrors};
    is($f->{tokenType}, 'bearer', 'the library got a bearer token');
    ok($f->{accessTokenShape}, 'a device token');
    is($f->{gatedStatus}, 200, 'the gated API with it');
    is($f->{gatedScope}, 'sensors:read', 'with the granted scope for the upstream');
    is($f->{gatedAfterRevoke}, 401, 'revoked by the library: refused');
    is($f->{deniedError}, 'access_denied', 'rejected through the owner API: access_denied');
    is($f->{expiredError}, 'expired_token', 'never approved: expired_token');
}

# --- off without a client; nginx -t names a bad client line ---
my $off = DPTest->new->standard(server => $oauth_locations);
$off->start;
is($off->get('/.well-known/oauth-authorization-server')->{status}, 404, 'no client: the metadata is 404');
is($off->post('/oauth/token', body => "grant_type=$grant")->{status}, 404, 'and the token endpoint');
$off->finish;
my $bad = DPTest->new->standard(http => 'device_pairing_oauth_client "bad id";');
my (undef, $test) = $bad->test_config;
like($test, qr/invalid client id "bad id".*nginx\.conf:\d+/, 'nginx -t names the line') or diag $test;


$t->finish;
done_testing;
