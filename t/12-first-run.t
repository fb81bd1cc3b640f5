# First run as an operator would: the banner file, a start-up QR that points
# at the listen address and port (decoded by zbar from the terminal drawing,
# in both colour schemes), a fresh OTP per start, and seed 002's curl lines
# exactly as its documentation writes them (curl's own default content type).
use strict;
use warnings;
use Test::More;
use JSON::PP;
use DPTest;

# Renders the terminal QR of a banner as a PGM picture: each character is
# two modules stacked; the glyph is the terminal's text colour.
sub decode_terminal_qr {
    my ($t, $banner, $glyph_is_dark) = @_;
    my @rows = grep { /^[ \x{2580}\x{2584}\x{2588}]+$/ && /\S/ } split /\n/, $banner;
    return '' unless @rows;
    my ($glyph, $bg) = $glyph_is_dark ? (0, 255) : (255, 0);
    my $scale = 6;
    my @pixels;
    for my $row (@rows) {
        my (@top, @bottom);
        for my $ch (split //, $row) {
            push @top, ($ch eq "\x{2588}" || $ch eq "\x{2580}") ? $glyph : $bg;
            push @bottom, ($ch eq "\x{2588}" || $ch eq "\x{2584}") ? $glyph : $bg;
        }
        push @pixels, \@top, \@bottom;
    }
    my $w = @{ $pixels[0] } * $scale;
    my $h = @pixels * $scale;
    my $pgm = "P5\n$w $h\n255\n";
    for my $line (@pixels) {
        my $scaled = join '', map { chr($_) x $scale } @$line;
        $pgm .= $scaled x $scale;
    }
    my $file = $t->write_file('qr.pgm', $pgm);
    my $out = `zbarimg --raw -q $file 2>/dev/null`;
    chomp $out;
    return $out;
}

sub banner_text {
    my ($t) = @_;
    my $text = $t->read_file('state.banner') // '';
    utf8::decode($text);
    return $text;
}

for my $scheme ('light-on-dark', 'dark-on-light') {
    my $t = DPTest->new;
    $t->standard(no_url => 1, http => "device_pairing_qr_colors $scheme;");
    $t->start;
    my $port = $t->port;
    my $banner = banner_text($t);
    my ($otp) = $banner =~ /OTP: (\d{6}) /;
    ok($otp, "$scheme: the banner file holds the OTP");
    is((stat "$t->{dir}/state.banner")[2] & 0777, 0600, 'and is 0600');
    is(decode_terminal_qr($t, $banner, $scheme eq 'dark-on-light'), "http://127.0.0.1:$port/pair#otp=$otp",
        "$scheme: zbar decodes the terminal QR to the listen address and port");
    like($t->read_file('error.log'), qr/\[warn\].*print the pairing URL, QR and OTP with: cat \S+state\.banner/,
        'the error log says where to look');
    my @warn_lines = grep { /\[warn\].*cat / } split /\n/, $t->read_file('error.log');
    unlike("@warn_lines", qr/$otp/, 'without the OTP');

    if ($scheme eq 'light-on-dark') {
        # A refresh rewrites the banner; a reload shows the live OTP again.
        my $op = $t->operator_token;
        my $new = $t->get('/pair/refresh', token => $op)->{json}{otp};
        # Rewritten in the thread pool, right after the answer.
        for (1 .. 100) { last if banner_text($t) =~ /OTP: $new /; select undef, undef, undef, 0.02 }
        like(banner_text($t), qr/OTP: $new /, 'a refresh rewrites the banner file');
        $t->reload;
        like($t->read_file('error.log'), qr/\[warn\].*the OTP is live; print the pairing URL, QR and OTP with: cat \S+state\.banner/,
             'a reload points at the live OTP\'s banner again');
        like(banner_text($t), qr/OTP: $new /, 'which still holds it');
        unlike($t->read_file('error.log'), qr/OTP: \d/, 'no OTP reached the error log');
        # A restart makes a fresh one; the old one is dead.
        $t->stop;
        $t->start;
        my ($fresh) = banner_text($t) =~ /OTP: (\d{6}) /;
        isnt($fresh, $new, 'a restart prints a fresh OTP');
        DPTest::is_problem($t->post('/pair', json => { otp => $new }), 401, 'invalid_code', 'the old one is dead');
        is($t->post('/pair', json => { otp => $fresh })->{status}, 200, 'the fresh one pairs');

        # nginx -t says when the start-up URL is a guess.
        my $w = DPTest->new;
        $w->standard(no_url => 1);
        $w->config($w->{http} =~ s/listen 127\.0\.0\.1:(\d+);/listen $1;/r);
        my ($rc, $out) = $w->test_config;
        is($rc, 0, 'nginx -t passes with a wildcard listen');
        like($out, qr/\[warn\].*wildcard address; the start-up QR guesses.*set device_pairing_url/, 'and warns that the QR URL is a guess');

        # Seed 002's curl lines, as written (curl -d sends form-urlencoded).
        my $base = $t->url;
        my $curl = sub { my $out = `curl -s -w '\\n%{http_code}' @_`; my ($body, $code) = $out =~ /^(.*)\n(\d+)$/s; return ($code, $body) };
        my ($code, $body) = $curl->("$base/api/devices/identity");
        is($code, 200, 'seed: GET /api/devices/identity');
        ($code, $body) = $curl->("-X POST $base/api/devices/pairing/request -d '{\"requesterId\": \"mobile-app-id\", \"meta\": {\"platform\": \"ios\"}}'");
        is($code, 200, 'seed: POST /api/devices/pairing/request with curl -d (no Content-Type)');
        my $req = decode_json($body);
        like($req->{expiresAt}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'expiresAt in whole seconds, as the seed shows');
        # The seed shows approve and attest without a credential; this gateway
        # requires the bearer token there (SPEC), so the lines gain -H.
        ($code, $body) = $curl->("-X POST $base/api/devices/pairing/approve -H 'Authorization: Bearer $op' -d '{\"code\": \"$req->{code}\", \"approvedBy\": \"usr_01\"}'");
        is($code, 200, 'seed: POST /api/devices/pairing/approve with curl -d');
        ($code, $body) = $curl->("$base/api/devices/pairing/status/$req->{requestId}");
        is($code, 200, 'seed: GET /api/devices/pairing/status/:requestId');
        like(decode_json($body)->{token}, qr/^dp_tok_/, 'with the token');
        ($code, $body) = $curl->("-X POST $base/api/devices/attest -H 'Authorization: Bearer $op' -d '{\"data\": {\"purpose\": \"pairing\"}}'");
        is($code, 200, 'seed: POST /api/devices/attest with curl -d');
        my $att = JSON::PP->new->canonical->encode(decode_json($body)->{attestation});
        ($code, $body) = $curl->("-X POST $base/api/devices/verify -d '{\"attestation\": $att, \"maxAgeMs\": 60000}'");
        is($code, 200, 'seed: POST /api/devices/verify with curl -d');
        ok(decode_json($body)->{valid}, 'valid');
        ($code, $body) = $curl->("$base/api/devices/pairing/qr");
        is($code, 200, 'seed: GET /api/devices/pairing/qr');
        ($code, $body) = $curl->("-X POST $base/api/devices/pairing/cleanup -H 'Authorization: Bearer $op'");
        is($code, 200, 'seed: POST /api/devices/pairing/cleanup');
    }
    $t->finish;
}

done_testing;
