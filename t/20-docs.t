# docs/directives.md against the module: every directive in the command
# table has its section with Syntax, Default and Context, in the contexts
# the table allows, and nothing is documented that the module does not
# have; every device_pairing_zone parameter and every variable is there.
use strict;
use warnings;
use Test::More;
use File::Spec;

my $repo = File::Spec->rel2abs(__FILE__ =~ s{t/20-docs\.t$}{}r || '.');
sub slurp { my $p = "$repo/$_[0]"; open my $fh, '<', $p or die "$p: $!"; local $/; <$fh> }
my $module = slurp('src/ngx/module.cpp');
my $access = slurp('src/ngx/access.cpp');
my $docs = slurp('docs/directives.md');

my %contexts = (MAIN => 'http', SRV => 'server', LOC => 'location');
my %table;
while ($module =~ /\{ngx_string\("(device_pairing\w*)"\),\s*([A-Z0-9_|\s]+?),/g) {
    my ($name, $flags) = ($1, $2);
    $table{$name} = join ', ', map { $contexts{$_} } grep { $flags =~ /NGX_HTTP_${_}_CONF\b/ } qw(MAIN SRV LOC);
}
ok(keys %table >= 20, scalar(keys %table) . ' directives in the command table');

my %documented;
while ($docs =~ /^### `(device_pairing\w*)`\n(.*?)(?=^### |^## |\z)/msg) {
    my ($name, $body) = ($1, $2);
    $documented{$name} = 1;
    like($body, qr/^\s+Syntax:\s+\Q$name\E\b/m, "$name: Syntax");
    like($body, qr/^\s+Default:\s+\S/m, "$name: Default");
    my ($context) = $body =~ /^\s+Context:\s+(.*)$/m;
    is($context, $table{$name}, "$name: Context as the command table allows") if exists $table{$name};
    ok(length($body) > 120, "$name: described");
}
ok($documented{$_}, "$_ is documented") for sort keys %table;
ok($table{$_}, "$_ (documented) exists in the module") for sort keys %documented;

my ($zone) = $docs =~ /^### `device_pairing_zone`\n(.*?)(?=^### )/ms;
my ($zone_code) = $module =~ /char\* zone_directive\([^;{]*\{(.*?)\n\}\n/s;
ok($zone_code, 'the zone directive\'s parser');
my %params = map { $_ => 1 } ($zone_code // '') =~ /"(\w+)="/g;
ok(keys %params >= 5, 'device_pairing_zone parameters: ' . join(' ', sort keys %params));
like($zone, qr/\Q$_\E=/, "device_pairing_zone: $_= documented") for sort keys %params;

my @variables = $access =~ /ngx_string\("(device_pairing_\w+)"\)/g;
ok(@variables >= 5, scalar(@variables) . ' variables');
like($docs, qr/^`\$\Q$_\E`$/m, "\$$_ documented") for @variables;
done_testing;
