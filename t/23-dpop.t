# DPoP-bound tokens (RFC 9449) through a real nginx: proofs made by an npm
# client library (openid-client) for issuance and the gate, ES256 and EdDSA,
# with and without server nonces; then every refusal of RFC 9449 4.3 with
# proofs crafted by jwcrypto (t/lib/dpop_proof.py), the binding on rotation,
# the replay cache across workers, the variables, metrics and audit log, and
# nginx's auth contract (error_page) for a refused proof.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use File::Basename qw(dirname);
use DPTest;

my $dir = __FILE__ =~ s{[^/]+$}{}r;
my $proof_tool = dirname(__FILE__) . '/lib/dpop_proof.py';
my $locations = <<'LOC';
        location /oauth/ { device_pairing on; }
        location = /.well-known/oauth-authorization-server { device_pairing on; }
        location /dpop/ {
            device_pairing_auth bearer;
            add_header X-Dpop-Jkt $device_pairing_dpop_jkt always;
            add_header X-Dpop $device_pairing_dpop always;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location /dpop-page/ {
            device_pairing_auth bearer;
            error_page 401 = @refused;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location @refused { return 418 "refused\n"; }
        location /strict/ {
            device_pairing_auth bearer;
            device_pairing_dpop required;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
LOC
my %conf = (
    http => <<"HTTP",
    device_pairing_audit_log %%DIR%%/audit.log;
    device_pairing_oauth_client dpop-cli "DPoP CLI";
    device_pairing_oauth_interval 1s;
    server {
        listen 127.0.0.2:%%PORT%%;
        device_pairing_url http://127.0.0.2:%%PORT%%;
        device_pairing_dpop_nonce on;
        location /api/devices { device_pairing on; }
        $locations
    }
HTTP
    server => $locations . '        location = /metrics { device_pairing_metrics; }');
my $t = DPTest->new(workers => 2)->standard(%conf);
$t->start;
my $owner = $t->pair_device;
my $url = $t->url;

sub proof {
    my ($key, $alg, $method, $htu, %o) = @_;
    my $out = `/usr/bin/python3 $proof_tool $t->{dir}/$key $alg $method '$htu' @{[ map { "'$_=$o{$_}'" } sort keys %o ]}`;
    chomp $out;
    return $out;
}
sub with_proof {
    my ($method, $path, $token, $proofs, %o) = @_;
    return $t->request($method, $path, headers => { Authorization => "DPoP $token", DPoP => $proofs }, %o);
}
sub refused {
    my ($res, $error, $name) = @_;
    my $challenge = $res->{headers}{'www-authenticate'} // '';
    ok($res->{status} == 401 && $challenge =~ /^DPoP error="\Q$error\E", algs="ES256 EdDSA Ed25519"$/, $name)
        or diag "got $res->{status} [$challenge] $res->{content}";
}

# --- an npm client library: issuance and use, ES256 and EdDSA, nonces ---
SKIP: {
    skip 'run `make browser-deps` first', 16 unless -d "${dir}browser/node_modules/openid-client";
    my $out = `node ${dir}browser/dpop-client.js $url http://127.0.0.2:@{[ $t->port ]} $owner dpop-cli /dpop/x 2>&1`;
    is($?, 0, 'the DPoP client finished') or diag $out;
    my $f = eval { decode_json($out) } || {};
    is_deeply($f->{ES256}{algs}, [qw(ES256 EdDSA Ed25519)], 'metadata: dpop_signing_alg_values_supported');
    for my $case (qw(ES256 EdDSA nonce)) {
        my $c = $f->{$case} || {};
        is($c->{tokenType}, 'dpop', "$case: the token endpoint answers token_type DPoP");
        is($c->{gated}, 200, "$case: the gate accepts the library's proof");
        is($c->{jktHeader}, $c->{jkt}, "$case: \$device_pairing_dpop_jkt is the key's RFC 7638 thumbprint");
        is($c->{gatedAgain}, 200, "$case: and the next proof");
        is($c->{asBearer}, 401, "$case: the bound token as Bearer is refused");
    }
}

# --- crafted proofs: bind by POST /pair, then each refusal ---
my $otp = $t->otp;
my $pair = $t->post('/pair', json => { otp => $otp }, headers => { DPoP => proof('k1', 'ES256', 'POST', "$url/pair") });
is($pair->{status}, 200, 'POST /pair with a proof');
my $token = $pair->{json}{token};
$t->{expect_otp} = $t->get('/pair/refresh', token => $owner)->{json}{otp};
my ($dev) = grep { $_->{dpopBound} } @{ $t->get('/api/devices', token => $owner)->{json}{devices} };
ok($dev, 'the device list shows the binding');
my $jkt = `/usr/bin/python3 $proof_tool $t->{dir}/k1 ES256 GET x thumbprint=1`;
chomp $jkt;
sub good { proof('k1', 'ES256', 'GET', "$url/dpop/x", token => $token, @_) }

my $ok = with_proof('GET', '/dpop/x', $token, good());
is($ok->{status}, 200, 'a good proof: accepted');
is($ok->{headers}{'x-dpop-jkt'}, $jkt, '$device_pairing_dpop_jkt');
is($ok->{headers}{'x-dpop'}, '1', '$device_pairing_dpop');
is(with_proof('GET', '/dpop/x?a=1', $token, good())->{status}, 200, 'the query is not part of htu');
my $replayed = good();
is(with_proof('GET', '/dpop/x', $token, $replayed)->{status}, 200, 'a proof once');
my %seen;
for (1 .. 6) {  # two workers: the replay reaches the other one too
    my $r = with_proof('GET', '/dpop/x', $token, $replayed);
    $seen{$r->{status}}++;
}
is_deeply(\%seen, { 401 => 6 }, 'replayed: refused by every worker');
refused(with_proof('GET', '/dpop/x', $token, $replayed), 'invalid_dpop_proof', 'replay: invalid_dpop_proof');
refused(with_proof('GET', '/dpop/x', $token, proof('k1', 'ES256', 'POST', "$url/dpop/x", token => $token)),
        'invalid_dpop_proof', 'wrong htm');
refused(with_proof('GET', '/dpop/x', $token, good() =~ s/^/x/r), 'invalid_dpop_proof', 'a broken JWT');
refused(with_proof('GET', '/dpop/x', $token, proof('k1', 'ES256', 'GET', "$url/dpop/y", token => $token)),
        'invalid_dpop_proof', 'wrong htu: another path');
refused(with_proof('GET', '/dpop/x', $token, proof('k1', 'ES256', 'GET', "http://other.example/dpop/x", token => $token)),
        'invalid_dpop_proof', 'wrong htu: another host');
refused(with_proof('GET', '/dpop/x', $token, proof('k1', 'ES256', 'GET', "$url/dpop/x")), 'invalid_dpop_proof', 'no ath');
refused(with_proof('GET', '/dpop/x', $token, good(ath => 'AAAA')), 'invalid_dpop_proof', 'wrong ath');
refused(with_proof('GET', '/dpop/x', $token, good(iat => -120)), 'invalid_dpop_proof', 'iat too old');
refused(with_proof('GET', '/dpop/x', $token, good(iat => 120)), 'invalid_dpop_proof', 'iat in the future');
refused(with_proof('GET', '/dpop/x', $token, good(private => 1)), 'invalid_dpop_proof', 'a private jwk');
refused(with_proof('GET', '/dpop/x', $token, good(alg => 'none')), 'invalid_dpop_proof', 'alg none');
refused(with_proof('GET', '/dpop/x', $token, good(alg => 'HS256')), 'invalid_dpop_proof', 'alg HS256');
refused(with_proof('GET', '/dpop/x', $token, good(typ => 'JWT')), 'invalid_dpop_proof', 'typ JWT');
refused(with_proof('GET', '/dpop/x', $token, [good(), good()]), 'invalid_dpop_proof', 'two DPoP headers');
refused(with_proof('GET', '/dpop/x', $token, proof('k2', 'EdDSA', 'GET', "$url/dpop/x", token => $token)),
        'invalid_dpop_proof', 'a proof by another key');
refused($t->get('/dpop/x', token => $token, headers => { DPoP => good() }), 'invalid_token', 'the bound token as Bearer');
refused($t->get('/dpop/x', headers => { Authorization => "DPoP $token" }), 'invalid_token', 'no proof at all');
refused($t->get('/api/devices', headers => { Authorization => "Bearer $token" }), 'invalid_token',
        'a bearer route refuses the bound token as Bearer too');
is($t->request('GET', '/api/devices', headers => { Authorization => "DPoP $token",
                                                   DPoP => proof('k1', 'ES256', 'GET', "$url/api/devices", token => $token) })
     ->{status}, 200, 'and accepts it with its proof');
is($t->get('/dpop-page/x', headers => { Authorization => "Bearer $token" })->{status}, 418,
   'error_page still answers a refusal');

# required: an unbound token is refused there, a bound one passes.
my $plain = $t->pair_device;
is($t->get('/dpop/x', token => $plain)->{status}, 200, 'an unbound token: Bearer as before');
refused($t->get('/strict/x', token => $plain), 'invalid_token', 'device_pairing_dpop required: an unbound token is refused');
is(with_proof('GET', '/strict/x', $token, proof('k1', 'ES256', 'GET', "$url/strict/x", token => $token))->{status}, 200,
   'and a bound one with its proof passes');

# Rotation with a proof binds the new token (here: an unbound device binds).
my $rot = $t->request('POST', '/api/devices/self/rotate',
                      headers => { Authorization => "Bearer $plain", DPoP => proof('k3', 'EdDSA', 'POST', "$url/api/devices/self/rotate") });
is($rot->{status}, 200, 'rotation with a proof');
my $rotated = $rot->{json}{token};
is(with_proof('GET', '/dpop/x', $rotated, proof('k3', 'EdDSA', 'GET', "$url/dpop/x", token => $rotated))->{status}, 200,
   'the rotated token is bound to that key');
refused($t->get('/dpop/x', token => $rotated), 'invalid_token', 'and refused as Bearer');

# Nonces: this host's only.
my $nurl = "http://127.0.0.2:@{[ $t->port ]}";
my $first = with_proof('GET', "$nurl/dpop/x", $token, proof('k1', 'ES256', 'GET', "$nurl/dpop/x", token => $token));
refused($first, 'use_dpop_nonce', 'nonce required: use_dpop_nonce');
my $nonce = $first->{headers}{'dpop-nonce'};
ok($nonce, 'with a DPoP-Nonce header');
is(with_proof('GET', "$nurl/dpop/x", $token, proof('k1', 'ES256', 'GET', "$nurl/dpop/x", token => $token, nonce => $nonce))
     ->{status}, 200, 'the proof with the nonce: accepted');
refused(with_proof('GET', "$nurl/dpop/x", $token,
                   proof('k1', 'ES256', 'GET', "$nurl/dpop/x", token => $token, nonce => substr($nonce, 0, -4) . (substr($nonce, -4) eq 'AAAA' ? 'BBBB' : 'AAAA'))),
        'use_dpop_nonce', 'a forged nonce');

# A reload that resizes the zone copies the replay cache (it is in no state
# file): the proof seen before is refused after it, by either worker.
my $op = $t->operator_token;
$t->standard(%conf, zone => 'zone=pairing:2m state=%%DIR%%/state');
$t->reload;
for (1 .. 50) { last if $t->get('/api/devices/stats', token => $op)->{json}{zoneBytes} > 1_500_000; select undef, undef, undef, 0.1 }
ok($t->get('/api/devices/stats', token => $op)->{json}{zoneBytes} > 1_500_000, 'the zone was resized');
%seen = ();
$seen{ with_proof('GET', '/dpop/x', $token, $replayed)->{status} }++ for 1 .. 4;
is_deeply(\%seen, { 401 => 4 }, 'a proof seen before the resize is refused after it');
is(with_proof('GET', '/dpop/x', $token, good())->{status}, 200, 'a fresh proof still passes');

# Metrics, audit log.
my $metrics = $t->get('/metrics')->{content};
like($metrics, qr/device_pairing_dpop_checks_total\{result="accepted"\} [1-9]/, 'metrics: accepted');
like($metrics, qr/device_pairing_dpop_checks_total\{result="replay"\} [1-9]/, 'metrics: replay');
like($metrics, qr/device_pairing_dpop_checks_total\{result="key"\} [1-9]/, 'metrics: another key');
my @paired = grep { $_->{event} eq 'paired' && ($_->{detail} // '') =~ /dpop jkt=\Q$jkt\E/ } map { decode_json($_) }
    split /\n/, $t->read_file('audit.log');
is(scalar @paired, 1, "the audit log records the device's binding");
unlike($t->read_file('error.log'), qr/\Q$token\E/, 'no token in the error log');

$t->finish;
done_testing;
