package DPTest;
# A small harness for ngx_http_device_pairing_module integration tests:
# starts Debian's nginx with the built module in a temp prefix on free
# 127.0.0.1 ports, talks HTTP to it, and at teardown fails on [alert],
# [crit], [emerg] or sanitizer lines in the error log.
#
# Environment: DP_MODULE (the .so), DP_ASAN=1 (LD_PRELOAD libasan),
# DP_VALGRIND=1 (nginx under memcheck), DP_KEEP=1 (keep the temp prefix).
use strict;
use warnings;
use File::Spec;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(sleep time);

our $NGINX = $ENV{DP_NGINX} || '/usr/sbin/nginx';
my $JSON = JSON::PP->new->utf8->canonical;

sub operator_token {
    my ($self) = @_;
    my $t = $self->read_file('gateway-token') // return undef;
    $t =~ s/\s+//g;
    return $t;
}

# Every test directory made, so that whatever nginx runs from one is stopped
# when the test file exits, however it exits (a die, a failed BAIL_OUT, a
# binary upgrade's second master).
our @STARTED_DIRS;
END {
    my $status = $?;
    for (@STARTED_DIRS) {
        my ($dir, $owner) = @$_;
        next if $owner != $$;    # a forked load generator exiting leaves the test's nginx alone
        my @pids;
        for my $cmdline (glob '/proc/[0-9]*/cmdline') {
            open my $fh, '<', $cmdline or next;
            my $line = <$fh> // next;
            push @pids, $cmdline =~ m{^/proc/(\d+)/} if $line =~ /nginx/ && index($line, "$dir/") >= 0;
        }
        next unless @pids;
        kill 'QUIT', @pids;
        for (1 .. 50) { last unless grep { kill 0, $_ } @pids; select undef, undef, undef, 0.05 }
        kill 'KILL', @pids;
    }
    $? = $status;
}

sub new {
    my ($class, %opt) = @_;
    my $module = File::Spec->rel2abs($ENV{DP_MODULE} // (__FILE__ =~ s{t/lib/DPTest\.pm$}{}r) . 'build/nginx/objs/ngx_http_device_pairing_module.so');
    -f $module or BAIL_OUT("no module at $module: run `make build` (or set DP_MODULE)");
    my $self = bless {
        dir     => tempdir('dp-test-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{DP_KEEP}),
        module  => $module,
        workers => 2,
        allow   => undef,    # regexp of log lines that may carry [alert] etc.
        %opt,
    }, $class;
    $self->{token_file} = "$self->{dir}/gateway-token";
    push @STARTED_DIRS, [ $self->{dir}, $$ ];
    $self->{port} = free_port();
    $self->{port2} = free_port();
    return $self;
}

sub dir   { $_[0]{dir} }
sub port  { $_[0]{port} }
sub port2 { $_[0]{port2} }
sub url   { "http://127.0.0.1:$_[0]{port}" }

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, ReuseAddr => 1)
        or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub write_file {
    my ($self, $name, $content, $mode) = @_;
    my $path = $name =~ m{^/} ? $name : "$self->{dir}/$name";
    open my $fh, '>', $path or die "$path: $!";
    print $fh $content;
    close $fh;
    chmod $mode, $path if defined $mode;
    return $path;
}

sub read_file {
    my ($self, $name) = @_;
    my $path = $name =~ m{^/} ? $name : "$self->{dir}/$name";
    open my $fh, '<', $path or return undef;
    local $/;
    return scalar <$fh>;
}

# The http{} body; %%PORT%%, %%PORT2%% and %%DIR%% are replaced.
sub config {
    my ($self, $http) = @_;
    $http =~ s/%%PORT%%/$self->{port}/g;
    $http =~ s/%%PORT2%%/$self->{port2}/g;
    $http =~ s/%%DIR%%/$self->{dir}/g;
    $self->{http} = $http;
    my $d = $self->{dir};
    $self->write_file('nginx.conf', <<"CONF");
load_module $self->{module};
user root;
# A binary upgrade (USR2) starts the new master with only these: the
# sanitizer runs' runtime and options must reach it.
env LD_PRELOAD;
env ASAN_OPTIONS;
env UBSAN_OPTIONS;
worker_processes $self->{workers};
pid $d/nginx.pid;
error_log $d/error.log notice;
events { worker_connections 1024; }
http {
    access_log $d/access.log;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
$http
}
CONF
    return $self;
}

# The configuration most tests share: every pairing route, a gated
# upstream per auth mode, and an echo upstream that shows what the gate set.
sub standard {
    my ($self, %opt) = @_;
    my $zone = $opt{zone} // 'zone=pairing:1m state=%%DIR%%/state';
    $self->write_file('device-keys', $opt{device_keys} // '') unless -e "$self->{dir}/device-keys";
    return $self->config(<<"HTTP");
    device_pairing_zone $zone;
    device_pairing_token_file @{[ $opt{token_file} // '%%DIR%%/gateway-token' ]};
    device_pairing_device_keys %%DIR%%/device-keys;
    device_pairing_identity %%DIR%%/identity.pem;
    @{[ $opt{http} // '' ]}
    server {
        listen 127.0.0.1:%%PORT%%;
        @{[ $opt{no_url} ? '' : 'device_pairing_url http://127.0.0.1:%%PORT%%;' ]}
        @{[ $opt{server} // '' ]}
        location /pair                  { device_pairing on; }
        location /api/v1/device-pairing { device_pairing on; }
        location /api/devices           { device_pairing on; }
        location = /health              { device_pairing on; }
        location /api/ {
            device_pairing_auth bearer;
            proxy_set_header X-Device-Id \$device_pairing_device_id;
            proxy_set_header X-Device-Account \$device_pairing_account;
            proxy_set_header X-Auth-Method \$device_pairing_auth_method;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location /keyed/ {
            device_pairing_auth device_key;
            proxy_set_header X-Device-Account \$device_pairing_account;
            proxy_set_header X-Auth-Method \$device_pairing_auth_method;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location /either/ {
            device_pairing_auth any;
            proxy_set_header X-Auth-Method \$device_pairing_auth_method;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            return 200 "id=\$http_x_device_id account=\$http_x_device_account method=\$http_x_auth_method\\n";
        }
    }
HTTP
}

sub command {
    my ($self, @args) = @_;
    my @cmd = ($NGINX, '-p', "$self->{dir}/", '-c', "$self->{dir}/nginx.conf", '-e', "$self->{dir}/error.log", @args);
    unshift @cmd, 'valgrind', '--tool=memcheck', '--error-exitcode=42', '--quiet',
        "--log-file=$self->{dir}/valgrind.%p.log", '--suppressions=' . suppressions()
        if $ENV{DP_VALGRIND} && !@args;
    return @cmd;
}

sub suppressions {
    my $f = __FILE__;
    $f =~ s{[^/]+$}{valgrind.supp};
    return File::Spec->rel2abs($f);
}

sub env_prefix {
    my ($self) = @_;
    my @env;
    # UBSan writes its reports next to the error log, where finish() looks.
    push @env, "UBSAN_OPTIONS=print_stacktrace=1:log_path=$self->{dir}/ubsan" if $ENV{DP_UBSAN};
    if ($ENV{DP_ASAN}) {
        my $lib = `gcc -print-file-name=libasan.so`;
        chomp $lib;
        push @env, "LD_PRELOAD=$lib", 'ASAN_OPTIONS=detect_leaks=0';
    }
    return @env;
}

# nginx -t: returns (exit status, output).
sub test_config {
    my ($self) = @_;
    my $cmd = join ' ', $self->env_prefix, map { "'$_'" } $self->command('-t');
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

sub start {
    my ($self, %opt) = @_;
    unlink "$self->{dir}/nginx.pid";
    my $cmd = join ' ', $self->env_prefix, map { "'$_'" } $self->command;
    my $out = `$cmd 2>&1`;
    if ($? != 0) {
        return 0 if $opt{may_fail};
        die "nginx failed to start: $out\n" . ($self->read_file('error.log') // '');
    }
    my $deadline = time + ($ENV{DP_VALGRIND} ? 60 : 10);
    while (time < $deadline) {
        if (-s "$self->{dir}/nginx.pid" && IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}")) {
            $self->{pid} = $self->master_pid;
            sleep 0.05;
            return 1;
        }
        sleep 0.05;
    }
    die "nginx did not come up:\n" . ($self->read_file('error.log') // '');
}

sub master_pid {
    my ($self) = @_;
    my $pid = $self->read_file('nginx.pid') // return undef;
    chomp $pid;
    return $pid;
}

sub worker_pids {
    my ($self) = @_;
    my $master = $self->{pid} or return ();
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        my ($pid, $ppid) = $line =~ /^(\d+) \(.*?\) \S+ (\d+)/ or next;
        push @pids, $pid if $ppid == $master && $line =~ /\(nginx\)|\(memcheck/;
    }
    return sort @pids;
}

# HUP, then wait until every old worker has gone and new ones serve.
sub reload {
    my ($self) = @_;
    my %old = map { $_ => 1 } $self->worker_pids;
    kill 'HUP', $self->{pid};
    my $deadline = time + ($ENV{DP_VALGRIND} ? 60 : 15);
    while (time < $deadline) {
        my @now = $self->worker_pids;
        return 1 if @now && !grep { $old{$_} } @now;
        sleep 0.05;
    }
    die "reload did not finish";
}

sub stop {
    my ($self, $signal) = @_;
    my $pid = $self->{pid} or return;
    kill $signal || 'QUIT', $pid;
    my $deadline = time + ($ENV{DP_VALGRIND} ? 60 : 15);
    while (time < $deadline && kill 0, $pid) { sleep 0.05 }
    delete $self->{pid};
}

# kill -9 of the master and every worker: no exit handler runs.
sub crash {
    my ($self) = @_;
    # The master first, so that it cannot reap (and log) its workers' deaths.
    my @workers = $self->worker_pids;
    kill 'KILL', $self->{pid};
    for (1 .. 200) { last unless kill 0, $self->{pid}; sleep 0.01 }
    kill 'KILL', @workers;
    for (1 .. 200) { last unless grep { kill 0, $_ } @workers; sleep 0.02 }
    delete $self->{pid};
    unlink "$self->{dir}/nginx.pid";
}

# request(METHOD, PATH, headers => {...}, json => {...} | body => '...', from => '127.0.0.2')
sub request {
    my ($self, $method, $path, %opt) = @_;
    my %headers = %{ $opt{headers} || {} };
    my $content = $opt{body};
    if (exists $opt{json}) {
        $content = ref $opt{json} ? $JSON->encode($opt{json}) : $opt{json};
        $headers{'Content-Type'} //= 'application/json';
    }
    $headers{Authorization} = "Bearer $opt{token}" if defined $opt{token};
    $headers{'X-DEVICE-KEY'} = $opt{device_key} if defined $opt{device_key};
    my $http = HTTP::Tiny->new(timeout => $opt{timeout} || 40, keep_alive => 0,
        ($opt{from} ? (local_address => $opt{from}) : ()));
    my $url = $path =~ m{^http} ? $path : $self->url . $path;
    my $res = $http->request($method, $url, { headers => \%headers, (defined $content ? (content => $content) : ()) });
    my $type = $res->{headers}{'content-type'} // '';
    $res->{json} = eval { decode_json($res->{content}) } if $type =~ /json/;
    # A new OTP reaches the banner file a moment after the answer: otp() waits for it.
    $self->{expect_otp} = $res->{json}{otp} if $path =~ m{^/pair/refresh} && $res->{status} == 200 && ref $res->{json};
    return $res;
}

sub get  { my ($s, $p, %o) = @_; $s->request('GET', $p, %o) }
sub post { my ($s, $p, %o) = @_; $s->request('POST', $p, %o) }

# Runs $code->($i) for i = 1..$n in $n processes at once; returns a hash
# of the statuses they returned, counted.
sub concurrently {
    my ($n, $code) = @_;
    my @kids;
    for my $i (1 .. $n) {
        pipe my $rd, my $wr or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $rd;
            print $wr $code->($i);
            close $wr;    # flush: _exit skips Perl's buffers
            POSIX::_exit(0);
        }
        close $wr;
        push @kids, [ $pid, $rd ];
    }
    my %count;
    for (@kids) {
        my $status = readline $_->[1];
        waitpid $_->[0], 0;
        $count{ $status // 'none' }++;
    }
    return \%count;
}

# The newest OTP printed to the error log.
# The live OTP, from the banner file (never from a log: the OTP reaches no
# log line). A worker writes the file in its thread pool, so a refresh's OTP
# may land a moment after the answer: wait for the one pair_device expects.
sub otp {
    my ($self) = @_;
    my $want = delete $self->{expect_otp};
    for (1 .. 100) {
        my ($code) = $self->banner =~ /OTP: (\d{6}) /;
        return $code if $code && (!$want || $code eq $want);
        select undef, undef, undef, 0.02;
    }
    my ($code) = $self->banner =~ /OTP: (\d{6}) /;
    return $code;
}

# The newest banner file in the test's directory (next to the state file, or
# to the token file).
sub banner {
    my ($self) = @_;
    my ($newest) = sort { -M $a <=> -M $b } glob("$self->{dir}/*.banner $self->{dir}/*/*/*.banner");
    return $newest ? $self->read_file($newest) // '' : '';
}

sub pair_device {
    my ($self, %opt) = @_;
    my $res = $self->post('/pair', json => { otp => $self->otp, %{ $opt{json} || {} } });
    die "pairing failed: $res->{status} $res->{content}" unless $res->{status} == 200;
    my $token = $res->{json}{token};
    # the next device needs a new OTP
    if ($opt{refresh} // 1) {
        my $fresh = $self->get('/pair/refresh', token => $token);
        $self->{expect_otp} = $fresh->{json}{otp} if $fresh->{status} == 200;
    }
    return $token;
}

# Sends raw bytes (a request nginx would not let HTTP::Tiny build, such as
# an odd Host); returns (status, body).
sub raw {
    my ($self, $text, %opt) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}", Timeout => $opt{timeout} || 5)
        or die "connect: $!";
    $sock->timeout($opt{timeout} || 5);
    print $sock $text;
    local $/;
    my $resp = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm($opt{timeout} || 5);
        my $r = <$sock>;
        alarm 0;
        $r;
    } // '';
    my ($status) = $resp =~ m{^HTTP/1\.\d (\d+)};
    my ($body) = $resp =~ m{\r\n\r\n(.*)}s;
    return ($status // 0, $body // '');
}

# Checks a problem+json answer: status, code, the RFC 9457 members.
sub is_problem {
    my ($res, $status, $code, $name) = @_;
    my $ok = $res->{status} == $status
        && ($res->{headers}{'content-type'} // '') eq 'application/problem+json'
        && ref $res->{json} eq 'HASH'
        && ($res->{json}{code} // '') eq $code
        && ($res->{json}{status} // 0) == $status
        && defined $res->{json}{title} && defined $res->{json}{detail} && defined $res->{json}{type}
        && ($res->{headers}{'cache-control'} // '') eq 'no-store';
    Test::More::ok($ok, $name // "$status $code") or Test::More::diag("got $res->{status}: $res->{content}");
    return $ok;
}

# tools/verify-log (Go's sumdb/note and sumdb/tlog), built by make: its
# path, and a run against this nginx: (true when it says ok, its output).
sub verifier {
    my $path = $ENV{DP_VERIFY_LOG} // (__FILE__ =~ s{t/lib/DPTest\.pm$}{}r) . 'build/verify-log';
    -x $path or Test::More::BAIL_OUT("no verifier at $path: make build/verify-log");
    return $path;
}
sub verify_log {
    my ($self, @args) = @_;
    my $out = `@{[ verifier() ]} -url @{[ $self->url ]} @args 2>&1`;
    return ($? == 0, $out);
}

# Runs a Python snippet with Debian's python3 (python3-cryptography).
sub python {
    my ($self, $code, @args) = @_;
    my $file = $self->write_file('snippet.py', $code);
    open my $fh, '-|', '/usr/bin/python3', $file, @args or die "python3: $!";
    local $/;
    my $out = <$fh>;
    close $fh;
    die "python failed: $out" if $?;
    return $out;
}

# Stops nginx and checks the logs: no alert/crit/emerg, no sanitizer report,
# a clean valgrind.
sub finish {
    my ($self) = @_;
    $self->stop;
    my $log = $self->read_file('error.log') // '';
    my $allow = $self->{allow};
    my @bad = grep { /\[(alert|crit|emerg)\]|Sanitizer|runtime error/ && !($allow && /$allow/) } split /\n/, $log;
    Test::More::ok(!@bad, 'no alert, crit, emerg or sanitizer lines in the error log')
        or Test::More::diag(join "\n", @bad[0 .. ($#bad < 20 ? $#bad : 20)]);
    my @ubsan = grep { -s $_ } glob "$self->{dir}/ubsan*";
    Test::More::ok(!@ubsan, 'no UndefinedBehaviorSanitizer report') or Test::More::diag(join "\n", map { $self->read_file($_) } @ubsan)
        if $ENV{DP_UBSAN};
    if ($ENV{DP_VALGRIND}) {
        my @reports = grep { -s $_ } glob "$self->{dir}/valgrind.*.log";
        Test::More::ok(!@reports, 'valgrind memcheck found nothing')
            or Test::More::diag(join "\n", map { $self->read_file($_) } @reports);
    }
}

# A real redis-server on loopback for fleet tests (AOF on, appendfsync
# always), in $dir on $port; returns its pid once it accepts connections.
sub start_redis {
    my ($dir, $port) = @_;
    open my $fh, '>', "$dir/redis.conf" or die;
    print $fh "port $port\nbind 127.0.0.1\ndir $dir\nappendonly yes\nappendfsync always\nsave \"\"\n"
        . "daemonize no\nlogfile $dir/redis.log\n";
    close $fh;
    my $pid = fork // die;
    if (!$pid) { exec '/usr/bin/redis-server', "$dir/redis.conf"; exit 1 }
    for (1 .. 100) {
        return $pid if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 1);
        select undef, undef, undef, 0.05;
    }
    die "redis-server did not start";
}

1;
