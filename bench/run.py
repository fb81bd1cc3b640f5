#!/usr/bin/python3
"""make bench: the gate and the pairing routes against bare nginx and the
alternatives, in one run.

Primary figure: nginx worker CPU time per request (utime+stime from
/proc/PID/stat), with nginx pinned to CPU 0 (worker_processes 1,
worker_cpu_affinity) and wrk pinned to CPU 1. Configurations are
interleaved (A B C ... A B C ...) and medians of BENCH_ROUNDS rounds are
reported beside req/s and p99. Each gate case is paired with a floor run
(bare nginx, same request headers) next to it in time; the cost over the
floor is the median of those paired differences. Writes bench/results.md.
"""
import atexit, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.environ.get('DP_MODULE', f'{ROOT}/build/nginx/objs/ngx_http_device_pairing_module.so')
NGINX = '/usr/sbin/nginx'
SECONDS = int(os.environ.get('BENCH_SECONDS', '4'))
ROUNDS = int(os.environ.get('BENCH_ROUNDS', '3'))
CONNS = 32
TICK = os.sysconf('SC_CLK_TCK')
TOKEN = 'dp_tok_bench_0'  # device 0 of the generated state files
WORK = tempfile.mkdtemp(prefix='dp-bench-')
# Whatever a run started is stopped when it ends, a failed run too (a run that
# died in its memory section once left a dozen nginx and a Redis running,
# and the next run measured beside them).
STARTED = []
atexit.register(lambda: [p.stop() for p in reversed(STARTED)])
LUA_MODULES = ['/usr/lib/nginx/modules/ndk_http_module.so', '/usr/lib/nginx/modules/ngx_http_lua_module.so']


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Nginx:
    def __init__(self, name, http, workers=1, pinned=True, modules=()):
        self.name, self.dir, self.port, self.pinned = name, f'{WORK}/{name}', free_port(), pinned
        os.makedirs(self.dir)
        http = http.replace('%PORT%', str(self.port)).replace('%DIR%', self.dir)
        loads = ''.join(f'load_module {m};\n' for m in list(modules) + [MODULE])
        affinity = 'worker_cpu_affinity 01;' if pinned else ''
        with open(f'{self.dir}/nginx.conf', 'w') as f:
            f.write(f"""{loads}user root;
worker_processes {workers};
{affinity}
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body;
{http}
}}
""")

    def start(self):
        cmd = [NGINX, '-p', self.dir + '/', '-c', f'{self.dir}/nginx.conf', '-e', f'{self.dir}/error.log']
        subprocess.run((['taskset', '-c', '0'] if self.pinned else []) + cmd, check=True)
        STARTED.append(self)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f'{self.name} did not start: ' + open(f'{self.dir}/error.log').read())

    def workers(self):
        master = int(open(f'{self.dir}/nginx.pid').read())
        pids = []
        for pid in os.listdir('/proc'):
            if pid.isdigit():
                try:
                    stat = open(f'/proc/{pid}/stat').read()
                except OSError:
                    continue
                if int(stat.rsplit(')', 1)[1].split()[1]) == master:
                    pids.append(int(pid))
        return pids

    def cpu_ticks(self):
        total = 0
        for pid in self.workers():
            fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        return total

    def main_thread_ns(self):
        """CPU time of the workers' main threads (the event loops), in ns, from schedstat."""
        return sum(int(open(f'/proc/{pid}/task/{pid}/schedstat').read().split()[0]) for pid in self.workers())

    def rss_kb(self):
        """Private (anonymous) and shared-memory RSS of the workers, in KiB."""
        anon = shmem = 0
        for pid in self.workers():
            for line in open(f'/proc/{pid}/status'):
                if line.startswith('RssAnon:'):
                    anon += int(line.split()[1])
                elif line.startswith('RssShmem:'):
                    shmem += int(line.split()[1])
        return anon, shmem

    def stop(self):
        try:
            os.kill(int(open(f'{self.dir}/nginx.pid').read()), signal.SIGQUIT)
        except OSError:
            pass

    def get_json(self, path, token):
        req = urllib.request.Request(f'http://127.0.0.1:{self.port}{path}', headers={'Authorization': f'Bearer {token}'})
        return json.load(urllib.request.urlopen(req, timeout=30))


def wrk(url, headers=(), threads=1, conns=CONNS, script=None, cpu='1', rate=None):
    """requests, requests/s, p99 µs and refusals of one wrk run; with rate,
    at that offered rate (requests/s over all threads) through paced.lua."""
    cmd = ['wrk', f'-t{threads}', f'-c{conns}', f'-d{SECONDS}s', '--latency']
    env = None
    if rate:
        env = {**os.environ, 'DP_BENCH_RATE': str(rate / threads), 'DP_BENCH_INNER': script or ''}
        script = f'{ROOT}/bench/paced.lua'
    for h in headers:
        cmd += ['-H', h]
    if script:
        cmd += ['-s', script]
    cmd = (['taskset', '-c', cpu] if cpu else []) + cmd + [url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    requests = int(re.search(r'(\d+) requests in', out).group(1))
    rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
    p99 = re.search(r'99%\s+([\d.]+)(us|ms|s)\b', out)
    p99_us = float(p99.group(1)) * {'us': 1, 'ms': 1000, 's': 1e6}[p99.group(2)] if p99 else float('nan')
    non2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    return requests, rps, p99_us, int(non2xx.group(1)) if non2xx else 0


def state_file(n, tag=''):
    path = f'{WORK}/state-{n}{tag}'  # one per server: each nginx has its own journal
    subprocess.run([f'{ROOT}/build/make_state', str(n), path], check=True)
    return path


def gate_conf(state, zone_size, extra=''):
    return f"""
    device_pairing_zone zone=pairing:{zone_size} state={state};
    {extra}
    device_pairing_token_file %DIR%/operator-token;
    server {{
        listen 127.0.0.1:%PORT% backlog=4096;
        location /t {{ device_pairing_auth bearer; empty_gif; }}
        location /open {{ empty_gif; }}
        location /api/devices {{ device_pairing on; }}
        location /pair {{ device_pairing on; }}
    }}"""


def timed(method, url, headers=None, body=None):
    """(seconds, status, json) of one request."""
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            data, status = res.read(), res.status
    except urllib.error.HTTPError as e:
        data, status = e.read(), e.code
    took = time.perf_counter() - t0
    try:
        doc = json.loads(data) if data else None
    except ValueError:
        doc = None
    return took, status, doc


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def state_engine_rows(s):
    """#12's figures on the 1 000 000-device server (state= on, one worker)."""
    base = f'http://127.0.0.1:{s.port}'
    op = {'Authorization': 'Bearer ' + open(f'{s.dir}/operator-token').read().strip()}
    json_h = {'Content-Type': 'application/json'}

    post_ticks = [0]

    def pair():
        _, _, doc = timed('GET', base + '/pair/refresh', op)
        before = s.main_thread_ns()
        got = timed('POST', base + '/pair', json_h, json.dumps({'otp': doc['otp']}).encode())
        post_ticks[0] += s.main_thread_ns() - before
        return got

    # The client side of this section runs on CPU 1 with wrk, so that it does
    # not preempt the worker pinned to CPU 0 (which showed as ms of latency).
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})
    rows = []
    pairs = [pair() for _ in range(1000)]
    cpu_ms = post_ticks[0] / 1e6 / len(pairs)  # the event loop's CPU while each POST was in flight (connection included)
    assert all(p[1] == 200 for p in pairs), [p[1] for p in pairs if p[1] != 200][:3]
    rows.append(('POST /pair latency, p99 of 1000 pairings', f'{pct([p[0] for p in pairs], 99) * 1000:.2f} ms'))
    rows.append(('worker event-loop CPU per durable pairing (one POST /pair on a new connection; append and fsync run in a thread)', f'{cpu_ms:.3f} ms'))

    # Gated requests while ~100 pairings/s run beside them.
    import threading
    stop = threading.Event()
    paired = []
    def pairing_load():
        # The driver shares CPU 1 with wrk: whatever CPU it takes there shows
        # up in wrk's latency samples (urllib's few hundred µs per request
        # did, niced or not; SCHED_IDLE starved it to 2 pairings/s). So it is a
        # raw keep-alive socket with prebuilt requests, paced at 100/s.
        link = RawClient(s.port)
        refresh = ('GET /pair/refresh HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: '
                   + op['Authorization'] + '\r\n\r\n').encode()
        due = time.perf_counter()
        while not stop.is_set():
            _, doc = link.call(refresh)
            body = b'{"otp":"' + re.search(rb'"otp": ?"(\d+)"', doc).group(1) + b'"}'
            status, _ = link.call(b'POST /pair HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n'
                                  b'Content-Length: ' + str(len(body)).encode() + b'\r\n\r\n' + body)
            paired.append((time.perf_counter(), status))
            due += 0.01
            time.sleep(max(0.0, due - time.perf_counter()))
    th = threading.Thread(target=pairing_load)
    th.start()
    time.sleep(0.2)  # pairing before wrk starts
    cmd = ['taskset', '-c', '1', 'wrk', '-t1', '-c8', '-d4s', '--latency', '-H', f'Authorization: Bearer {TOKEN}', base + '/t']
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    t1 = time.perf_counter()
    stop.set()
    th.join()
    during = [status for at, status in paired if t0 <= at <= t1]
    assert all(status == 200 for status in during), during
    def ms(text):
        m = re.match(r'([\d.]+)(us|ms|s)$', text)
        return float(m.group(1)) * {'us': 0.001, 'ms': 1, 's': 1000}[m.group(2)]
    # The distribution's own line: a "+/- Stdev" column such as 75.99% also ends in 99%.
    p99 = ms(re.search(r'^\s+99%\s+(\S+)', out, re.M).group(1))
    worst = ms(re.search(r'Latency\s+\S+\s+\S+\s+(\S+)', out).group(1))
    rows.append((f'gated requests while pairings run ({len(during) / (t1 - t0):.0f} pairings/s): p99 / max latency', f'{p99:.2f} ms / {worst:.2f} ms'))

    listed = [timed('GET', base + '/api/devices?limit=100', op) for _ in range(50)]
    rows.append(('GET /api/devices?limit=100, median of 50', f'{statistics.median(l[0] for l in listed) * 1000:.2f} ms'))
    ids = [d['id'] for d in listed[0][2]['devices'][:50]]
    revokes = [timed('DELETE', f'{base}/api/devices/{i}', op) for i in ids]
    rows.append(('DELETE /api/devices/{id}, median of 50 (fsync included)', f'{statistics.median(r[0] for r in revokes) * 1000:.2f} ms'))

    os.sched_setaffinity(0, affinity)
    s.stop()
    on_disk = sum(os.path.getsize(f'{s.state}{ext}') for ext in ('', '.journal', '.journal.1') if os.path.exists(f'{s.state}{ext}'))
    t0 = time.time()
    s.start()
    while timed('GET', base + '/t', {'Authorization': f'Bearer {TOKEN}'})[1] != 200:
        time.sleep(0.01)
    rows.append(('restart with 1 000 000 devices (start to first 200)', f'{time.time() - t0:.2f} s'))
    rows.append(('state on disk per device (snapshot + journal)', f'{on_disk / 1000000:.0f} B'))
    return rows


def start_redis(name='redis', extra='', sentinel=False):
    """A redis-server on loopback with AOF (appendfsync everysec), for the
    fleet rows; extra: more configuration (replicaof, sentinel monitor...)."""
    port, rdir = free_port(), f'{WORK}/{name}'
    os.makedirs(rdir)
    with open(f'{rdir}/redis.conf', 'w') as f:
        f.write(f'port {port}\nbind 127.0.0.1\ndir {rdir}\ndaemonize no\nlogfile {rdir}/redis.log\n'
                + ('' if sentinel else 'appendonly yes\nappendfsync everysec\nsave ""\nreplica-announce-ip 127.0.0.1\n')
                + extra.replace('%PORT%', str(port)))
    proc = subprocess.Popen(['/usr/bin/redis-server', f'{rdir}/redis.conf'] + (['--sentinel'] if sentinel else []))
    proc.stop = proc.terminate
    STARTED.append(proc)
    for _ in range(100):
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError('redis-server did not start')


def routes_conf(zone_extra=''):
    """The pairing routes and a gated /t, 2 workers' worth of zone."""
    return f"""
    device_pairing_zone zone=pairing:256m {zone_extra};
    device_pairing_device_keys %DIR%/keys;
    device_pairing_token_file %DIR%/operator-token;
    device_pairing_mailbox_ttl 30s;
    device_pairing_max_pairings 100000000;
    server {{
        listen 127.0.0.1:%PORT% backlog=4096;
        location /t {{ device_pairing_auth bearer; empty_gif; }}
        location /open {{ empty_gif; }}
        location /pair {{ device_pairing on; }}
        location /api/v1/device-pairing {{ device_pairing on; }}
        location /api/devices {{ device_pairing on; }}
    }}"""


def grant_conf(zone, extra):
    """The OAuth device grant's routes and a gated /t, client addresses from
    X-Forwarded-For (the bench makes many clients from one address)."""
    return f"""
    device_pairing_zone zone=pairing:{zone};
    device_pairing_token_file %DIR%/operator-token;
    device_pairing_oauth_client bench "Bench";
    {extra}
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    server {{
        listen 127.0.0.1:%PORT% backlog=4096;
        location /t {{ device_pairing_auth bearer; empty_gif; }}
        location /oauth/ {{ device_pairing on; }}
        location /api/devices {{ device_pairing on; }}
    }}"""


OAUTH_CONF = grant_conf('1024m', 'device_pairing_oauth_interval 5s;')


def oauth_rows():
    """The OAuth device grant on 2 workers (unpinned): device authorizations/s,
    pending polls/s, and the gate's p99 alone and while 1 000 clients poll at
    their interval (5 s) beside it."""
    import http.client, threading
    s = Nginx('oauth', OAUTH_CONF, workers=2, pinned=False).start()
    operator = open(f'{s.dir}/operator-token').read().strip()
    form = {'Content-Type': 'application/x-www-form-urlencoded'}
    rows = []
    n, rps, p99, bad = wrk(f'http://127.0.0.1:{s.port}/', threads=2, conns=CONNS,
                           script=f'{ROOT}/bench/oauth_authorize.lua', cpu=None)
    rows.append((f'device authorizations/s (POST /oauth/device_authorization, 2 workers, {CONNS} connections)',
                 f'{rps:,.0f} (p99 {p99:,.0f} µs, {bad} refused)'))

    # 20 000 pending device codes (more than the 4 096 poll marks: a poll
    # finds no mark of its code's last poll, so it is pending, not slow_down).
    conn = http.client.HTTPConnection('127.0.0.1', s.port, timeout=30)
    codes = []
    for i in range(20000):
        conn.request('POST', '/oauth/device_authorization', 'client_id=bench',
                     {**form, 'X-Forwarded-For': f'172.16.{i // 250}.{i % 250 + 1}'})
        codes.append(json.loads(conn.getresponse().read())['device_code'])
    with open(f'{s.dir}/codes', 'w') as f:
        f.write('\n'.join(codes) + '\n')
    os.environ['DP_BENCH_CODES'] = f'{s.dir}/codes'
    poll = f'{ROOT}/bench/oauth_poll.lua'
    n, rps, p99, bad = wrk(f'http://127.0.0.1:{s.port}/', threads=2, conns=CONNS, script=poll, cpu=None)
    rows.append((f'pending polls/s (POST /oauth/token, authorization_pending, 2 workers, {CONNS} connections)',
                 f'{rps:,.0f} (p99 {p99:,.0f} µs at saturation)'))
    # The target's load: 20 000 polls/s offered, paced (bench/paced.lua).
    paced = [wrk(f'http://127.0.0.1:{s.port}/', threads=2, conns=64, script=poll, cpu=None, rate=20000)
             for _ in range(ROUNDS)]
    rows.append(('pending polls at 20 000/s offered (paced, 2 workers, 64 connections): p99, median of rounds',
                 f'{statistics.median(r[2] for r in paced):,.0f} µs ({statistics.median(r[1] for r in paced):,.0f} polls/s done)'))

    # A device token by the grant itself, for the gate.
    conn.request('POST', '/oauth/device_authorization', 'client_id=bench', {**form, 'X-Forwarded-For': '192.0.2.1'})
    da = json.loads(conn.getresponse().read())
    conn.request('POST', '/api/devices/pairing/approve', json.dumps({'code': da['user_code']}),
                 {'Authorization': f'Bearer {operator}', 'Content-Type': 'application/json'})
    conn.getresponse().read()
    conn.request('POST', '/oauth/token', f'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code'
                 f'&client_id=bench&device_code={da["device_code"]}', form)
    token = json.loads(conn.getresponse().read())['access_token']

    def pollers():
        """1 000 clients, each polling once per interval (5 s): 200 polls/s,
        by a wrk of 1 000 connections paced at that rate (a C client: the
        crowd costs the machine what the polls cost, not a Python loop)."""
        env = {**os.environ, 'DP_BENCH_RATE': '200', 'DP_BENCH_INNER': poll}
        return subprocess.Popen(['wrk', '-t1', '-c1000', f'-d{SECONDS + 3}s', '-s', f'{ROOT}/bench/paced.lua',
                                 f'http://127.0.0.1:{s.port}/'], env=env, stdout=subprocess.PIPE, text=True)

    gate = (f'http://127.0.0.1:{s.port}/t', [f'Authorization: Bearer {token}'])
    alone, beside, poll_rates = [], [], []
    for _ in range(max(ROUNDS, 5)):  # p99 on 2 shared cores is noisy: more rounds, interleaved
        alone.append(wrk(*gate, cpu=None)[2])
        crowd = pollers()
        time.sleep(1.5)  # its 1 000 connections open and settle
        beside.append(wrk(*gate, cpu=None)[2])
        out = crowd.communicate()[0]
        poll_rates.append(float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1)))
    a, b = statistics.median(alone), statistics.median(beside)
    rows.append(('gate p99 alone (wrk -t1 -c32 on /t, 2 workers)', f'{a:,.0f} µs'))
    rows.append((f'gate p99 while 1 000 clients poll at their interval ({statistics.median(poll_rates):,.0f} polls/s)',
                 f'{b:,.0f} µs ({(b - a) / a * 100:+.0f} %)'))
    s.stop()
    return rows


DPOP_CONF = grant_conf('256m', 'device_pairing_dpop_window 3600s;')


class DpopClient:
    """A client's key and its proofs (RFC 9449), made with python3-cryptography."""
    def __init__(self, alg):
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519
        from cryptography.hazmat.primitives import serialization as ser
        self.alg = alg
        if alg == 'ES256':
            self.key = ec.generate_private_key(ec.SECP256R1())
            raw = self.key.public_key().public_bytes(ser.Encoding.X962, ser.PublicFormat.UncompressedPoint)
            self.jwk = {'kty': 'EC', 'crv': 'P-256', 'x': b64u(raw[1:33]), 'y': b64u(raw[33:])}
        else:
            self.key = ed25519.Ed25519PrivateKey.generate()
            raw = self.key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
            self.jwk = {'kty': 'OKP', 'crv': 'Ed25519', 'x': b64u(raw)}
        self.header = b64u(json.dumps({'typ': 'dpop+jwt', 'alg': alg, 'jwk': self.jwk}).encode())

    def proof(self, method, url, token=None, jti=None):
        import hashlib, uuid
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        claims = {'jti': jti or uuid.uuid4().hex, 'htm': method, 'htu': url, 'iat': int(time.time())}
        if token:
            claims['ath'] = b64u(hashlib.sha256(token.encode()).digest())
        signing_input = self.header + '.' + b64u(json.dumps(claims).encode())
        if self.alg == 'ES256':
            r, s_ = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, 'big') + s_.to_bytes(32, 'big')
        else:
            sig = self.key.sign(signing_input.encode())
        return signing_input + '.' + b64u(sig)


def b64u(raw):
    import base64
    return base64.urlsafe_b64encode(raw).rstrip(b'=').decode()


def bound_token(s, dpop_client, address):
    """A device token bound to the client's key, by the OAuth device grant."""
    import http.client
    conn = http.client.HTTPConnection('127.0.0.1', s.port, timeout=30)
    form = {'Content-Type': 'application/x-www-form-urlencoded', 'X-Forwarded-For': address}
    conn.request('POST', '/oauth/device_authorization', 'client_id=bench', form)
    da = json.loads(conn.getresponse().read())
    operator = open(f'{s.dir}/operator-token').read().strip()
    conn.request('POST', '/api/devices/pairing/approve', json.dumps({'code': da['user_code']}),
                 {'Authorization': f'Bearer {operator}', 'Content-Type': 'application/json'})
    conn.getresponse().read()
    headers = dict(form)
    if dpop_client:
        headers['DPoP'] = dpop_client.proof('POST', f'http://127.0.0.1:{s.port}/oauth/token')
    conn.request('POST', '/oauth/token', 'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code'
                 f'&client_id=bench&device_code={da["device_code"]}', headers)
    answer = json.loads(conn.getresponse().read())
    assert answer.get('token_type') == ('DPoP' if dpop_client else 'Bearer'), answer
    return answer['access_token']


def openssl_verify_us(seconds=1):
    """One signature verification per algorithm, in µs, from openssl speed on this machine now
    (on core 0, the pinned worker's)."""
    out = subprocess.run(['taskset', '-c', '0', 'openssl', 'speed', '-seconds', str(seconds), 'ecdsap256', 'ed25519'],
                         capture_output=True, text=True).stdout
    es = re.search(r'256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+\S+\s+([\d.]+)', out)
    ed = re.search(r'253 bits EdDSA \(Ed25519\)\s+\S+\s+\S+\s+\S+\s+([\d.]+)', out)
    return {'ES256': 1e6 / float(es.group(1)), 'EdDSA': 1e6 / float(ed.group(1))}


def dpop_rows():
    """DPoP-bound tokens at the gate: nginx CPU µs per request on one pinned
    worker (a bearer token, then a bound one with a fresh ES256 or EdDSA
    proof per request) against the floor and one signature verification;
    requests/s of a bound-token gate on 2 workers; zone bytes per binding
    and per cached proof."""
    rows = []
    floor = Nginx('dpop_floor', 'server { listen 127.0.0.1:%PORT% backlog=4096; location /t { empty_gif; } }').start()
    one = Nginx('dpop_1w', DPOP_CONF).start()
    operator = open(f'{one.dir}/operator-token').read().strip()

    def cpu_us(server, url, headers=(), script=None, env=None):
        if env:
            os.environ.update(env)
        t0, w0 = server.cpu_ticks(), floor.cpu_ticks()
        n, rps, p99, bad = wrk(url, headers, script=script)
        return (server.cpu_ticks() - t0) / TICK * 1e6 / max(n, 1), rps, p99, bad

    f_cpu, f_rps, _, _ = cpu_us(floor, f'http://127.0.0.1:{floor.port}/t')
    bearer = bound_token(one, None, '192.0.2.1')
    b_cpu, _, _, _ = cpu_us(one, f'http://127.0.0.1:{one.port}/t', [f'Authorization: Bearer {bearer}'])
    rows.append(('floor (empty_gif), 1 pinned worker', f'{f_cpu:.1f} µs'))
    rows.append(('gate, a bearer token (no DPoP)', f'{b_cpu:.1f} µs ({b_cpu - f_cpu:+.1f} over the floor)'))
    # Rounds, as the gate's table: a floor run with the same headers, the
    # gate, and openssl's verification just before and just after the gate
    # (their mean: this shared machine's speed drifts by 10-30 % over
    # minutes); the median of the rounds' ratios is reported.
    count = int(SECONDS * 16000)
    for alg in ('ES256', 'EdDSA'):
        c = DpopClient(alg)
        token = bound_token(one, c, f'192.0.2.{2 if alg == "ES256" else 3}')
        overs, verifies, gates, floors, rates, refused = [], [], [], [], [], 0
        used0 = one.get_json('/api/devices/stats', operator)
        for r in range(max(ROUNDS, 7)):  # a ratio of two noisy figures: more rounds
            path = f'{one.dir}/proofs-{alg}-{r}'  # each round its own proofs: a proof is accepted once
            with open(path, 'w') as fh:
                fh.write('\n'.join(c.proof('GET', f'http://127.0.0.1:{one.port}/t', token) for _ in range(count)) + '\n')
            env = {'DP_BENCH_PROOFS': path, 'DP_BENCH_TOKEN': token, 'DP_BENCH_THREADS': '1'}
            # The floor with the same request (its DPoP and Authorization headers): nginx parses them either way.
            same_floor = cpu_us(floor, f'http://127.0.0.1:{floor.port}/t', script=f'{ROOT}/bench/dpop_gate.lua', env=env)[0]
            before = openssl_verify_us(2)[alg]
            g_cpu, g_rps, _, bad = cpu_us(one, f'http://127.0.0.1:{one.port}/t', script=f'{ROOT}/bench/dpop_gate.lua', env=env)
            verifies.append((before + openssl_verify_us(2)[alg]) / 2)
            overs.append(g_cpu - same_floor)
            gates.append(g_cpu)
            floors.append(same_floor)
            rates.append(g_rps)
            refused += bad
        used1 = one.get_json('/api/devices/stats', operator)
        over, verify_us = statistics.median(overs), statistics.median(verifies)
        ratio = statistics.median(o / v for o, v in zip(overs, verifies))
        rows.append((f'gate, a DPoP-bound token with a fresh {alg} proof per request',
                     f'{statistics.median(gates):.1f} µs ({over:+.1f} over the floor with the same headers '
                     f'({statistics.median(floors):.1f} µs) = {ratio:.2f} × one {alg} verification of {verify_us:.1f} µs; '
                     f'{statistics.median(rates):,.0f} req/s, {refused} refused)'))
        proofs = used1['records']['dpopProofs'] - used0['records']['dpopProofs']
        if alg == 'ES256' and proofs > 0:
            per_jti = ((used1['zoneBytes'] - used1['zoneFreeBytes']) - (used0['zoneBytes'] - used0['zoneFreeBytes'])) / proofs
            rows.append(('zone bytes per cached proof (jti), slab pages used', f'{per_jti:.0f}'))

    # Zone bytes per binding: 200 devices bound, against 200 not.
    def used():
        st = one.get_json('/api/devices/stats', operator)
        return st['zoneBytes'] - st['zoneFreeBytes']
    u0 = used()
    for i in range(200):
        bound_token(one, None, f'198.51.100.{i % 250 + 1}')
    u1 = used()
    c = DpopClient('ES256')
    for i in range(200):
        bound_token(one, c, f'203.0.113.{i % 250 + 1}')
    u2 = used()
    rows.append(('zone bytes per bound device over an unbound one (the binding record)', f'{((u2 - u1) - (u1 - u0)) / 200:.0f}'))

    two = Nginx('dpop_2w', DPOP_CONF, workers=2, pinned=False).start()
    c = DpopClient('ES256')
    token = bound_token(two, c, '192.0.2.9')
    with open(f'{two.dir}/proofs', 'w') as fh:
        fh.write('\n'.join(c.proof('GET', f'http://127.0.0.1:{two.port}/t', token) for _ in range(int(SECONDS * 30000))) + '\n')
    os.environ.update(DP_BENCH_PROOFS=f'{two.dir}/proofs', DP_BENCH_TOKEN=token, DP_BENCH_THREADS='2')
    n, rps, p99, bad = wrk(f'http://127.0.0.1:{two.port}/', threads=2, conns=CONNS, script=f'{ROOT}/bench/dpop_gate.lua', cpu=None)
    rows.append(('bound-token gate, ES256 proofs, 2 workers (unpinned), requests/s', f'{rps:,.0f} (p99 {p99:,.0f} µs, {bad} refused)'))
    for srv in (floor, one, two):
        srv.stop()
    return rows


def log_conf(zone, log):
    """A zone with state= (and the pairing log when log is 'on'), the pairing routes and the log's, public."""
    return f"""
    device_pairing_zone zone=pairing:{zone} state=%DIR%/state log={log};
    device_pairing_token_file %DIR%/operator-token;
    device_pairing_identity %DIR%/identity.pem;
    device_pairing_log_origin bench.example/pairing;
    device_pairing_log_public on;
    device_pairing_max_pairings 100000000;
    server {{
        listen 127.0.0.1:%PORT% backlog=4096;
        location /pair {{ device_pairing on; }}
        location /api/devices {{ device_pairing on; }}
    }}"""


def log_rows():
    """The verifiable pairing log (issue #28): a pairing's latency with the
    log on against off (state= both, rounds interleaved); at 1 000 000 leaves
    the start, zone and disk bytes per leaf, and proofs, an entries page and
    checkpoints through nginx (one pinned worker)."""
    import http.client, random, struct
    rows = []

    def pair_latencies(s, n):
        op = open(f'{s.dir}/operator-token').read().strip()
        conn = http.client.HTTPConnection('127.0.0.1', s.port)
        lat = []
        for _ in range(n):
            conn.request('GET', '/pair/refresh', headers={'Authorization': f'Bearer {op}'})
            otp = json.loads(conn.getresponse().read())['otp']
            t = time.perf_counter()
            conn.request('POST', '/pair', body=json.dumps({'otp': otp}), headers={'Content-Type': 'application/json'})
            r = conn.getresponse()
            r.read()
            lat.append((time.perf_counter() - t) * 1e6)
            assert r.status == 200, r.status
        lat.sort()
        return lat[len(lat) // 2], lat[int(len(lat) * 0.99)]

    on = Nginx('log_on', log_conf('64m', 'on')).start()
    off = Nginx('log_off', log_conf('64m', 'off')).start()
    p50s = {'on': [], 'off': []}
    p99s = {'on': [], 'off': []}
    for _ in range(max(ROUNDS, 3)):
        for name, s in (('off', off), ('on', on)):
            p50, p99 = pair_latencies(s, 1000)
            p50s[name].append(p50)
            p99s[name].append(p99)
    med = {k: (statistics.median(p50s[k]), statistics.median(p99s[k])) for k in p50s}
    rows.append(('POST /pair (a pairing, fdatasync before the answer), log=off: p50 / p99',
                 f'{med["off"][0]:,.0f} / {med["off"][1]:,.0f} µs'))
    rows.append(('the same with log=on (the leaf in the same journal write, then PATH.log): p50 / p99',
                 f'{med["on"][0]:,.0f} / {med["on"][1]:,.0f} µs ({med["on"][1] - med["off"][1]:+,.0f} µs at p99)'))
    on.stop()
    off.stop()

    # A million leaves: PATH.log written here as the module writes it.
    big = Nginx('log_1m', log_conf('64m', 'on'))
    n = 1_000_000
    with open(f'{big.dir}/state.log', 'wb') as fh:
        for i in range(n):
            leaf = json.dumps({'device_id': f'dev_{i:016x}', 'event': 'paired', 'method': 'otp', 'role': 'device',
                               'seq': i, 'time': '2026-12-06T10:00:00Z'}, separators=(',', ':'), sort_keys=True).encode()
            fh.write(struct.pack('<I', len(leaf)) + leaf + struct.pack('<IQ', len(leaf), i))
    disk = os.path.getsize(f'{big.dir}/state.log')
    t = time.time()
    big.start()
    started = time.time() - t
    empty = Nginx('log_empty', log_conf('64m', 'on')).start()
    op = open(f'{big.dir}/operator-token').read().strip()
    used = lambda s, tok: (lambda st: st['zoneBytes'] - st['zoneFreeBytes'])(s.get_json('/api/devices/stats', tok))
    per_leaf = (used(big, op) - used(empty, open(f'{empty.dir}/operator-token').read().strip())) / n
    empty.stop()
    rows.append(('nginx start with 1 000 000 leaves (PATH.log read, every hash made)', f'{started:.1f} s'))
    rows.append(('zone bytes per leaf (slab pages used, 1 000 000 leaves vs none)', f'{per_leaf:.1f}'))
    rows.append(('disk bytes per leaf (PATH.log; leaves of ~130 bytes)', f'{disk / n:.0f}'))

    conn = http.client.HTTPConnection('127.0.0.1', big.port)
    def latencies(paths):
        lat = []
        for p in paths:
            t0 = time.perf_counter()
            conn.request('GET', p)
            r = conn.getresponse()
            r.read()
            assert r.status == 200, (p, r.status)
            lat.append((time.perf_counter() - t0) * 1e6)
        lat.sort()
        return lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
    rnd = random.Random(7)
    for label, paths in (
            ('inclusion proof at 1 000 000 leaves (random leaf)',
             [f'/api/devices/log/proof/inclusion?index={rnd.randrange(n)}&size={n}' for _ in range(2000)]),
            ('consistency proof at 1 000 000 leaves (random older size)',
             [f'/api/devices/log/proof/consistency?old={rnd.randrange(1, n)}&new={n}' for _ in range(2000)]),
            ('entries, a page of 1 000 leaves (read in the thread pool)',
             [f'/api/devices/log/entries?start={rnd.randrange(n - 1000)}&end=1000000' for _ in range(200)])):
        p50, p99 = latencies(paths)
        rows.append((f'{label}: p50 / p99 through nginx', f'{p50:,.0f} / {p99:,.0f} µs'))
    t0 = big.cpu_ticks()
    count, rps, p99, bad = wrk(f'http://127.0.0.1:{big.port}/api/devices/log/proof/inclusion?index=777777&size={n}')
    rows.append(('inclusion proofs at 1 000 000 leaves, 1 pinned worker', f'{rps:,.0f}/s, {(big.cpu_ticks() - t0) / TICK * 1e6 / max(count, 1):.1f} µs CPU each'))
    t0 = big.cpu_ticks()
    count, rps, p99, bad = wrk(f'http://127.0.0.1:{big.port}/api/devices/log/checkpoint')
    rows.append(('checkpoints signed (Ed25519, the root of 1 000 000 leaves), 1 pinned worker',
                 f'{rps:,.0f}/s, {(big.cpu_ticks() - t0) / TICK * 1e6 / max(count, 1):.1f} µs CPU each'))
    big.stop()
    return rows


def fleet_conf(redis_port, prefix='bench:'):
    return routes_conf(f'redis=127.0.0.1:{redis_port} redis_prefix={prefix}')


class Client:
    """One keep-alive HTTP/1.1 connection (http.client), for latency probes."""
    def __init__(self, port):
        import http.client
        self.conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)

    def call(self, method, path, headers=None, body=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        res = self.conn.getresponse()
        data = res.read()
        return res.status, (json.loads(data) if data and data[:1] == b'{' else None)


class RawClient:
    """A keep-alive socket that sends prebuilt request bytes and reads each
    answer by its Content-Length: a few tens of µs of client CPU a request."""
    def __init__(self, port):
        self.sock = socket.create_connection(('127.0.0.1', port))
        self.buf = b''

    def call(self, request):
        self.sock.sendall(request)
        while b'\r\n\r\n' not in self.buf:
            self.buf += self.sock.recv(65536)
        head, _, rest = self.buf.partition(b'\r\n\r\n')
        length = int(re.search(rb'Content-Length: (\d+)', head).group(1)) if b'Content-Length' in head else 0
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buf = rest[length:]
        return int(head[9:12]), rest[:length]


def fleet_pair(host, op_token, name='bench'):
    """A device paired through host (OTP from /pair/refresh): its token."""
    c = Client(host.port)
    _, doc = c.call('GET', '/pair/refresh', {'Authorization': f'Bearer {op_token}'})
    status, doc = c.call('POST', '/pair', {'Content-Type': 'application/json'},
                         json.dumps({'otp': doc['otp'], 'name': name}).encode())
    assert status == 200, status
    return doc['token']


def flows_on(hosts):
    """The relay flow (mint + deposit + poll) on every host at once, one wrk
    each (1 thread, 32 connections): wrk's figures by host name."""
    import threading
    results = {}
    def run(h):
        results[h.name] = wrk(f'http://127.0.0.1:{h.port}/', threads=1, conns=32, script=f'{ROOT}/bench/flow.lua', cpu=None)
    threads = [threading.Thread(target=run, args=(h,)) for h in hosts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def fleet_rows(redis_port, bench_key, env_keys):
    """#16's figures: two hosts (2 workers each) and one Redis on this machine."""
    import threading
    hosts = [Nginx(name, fleet_conf(redis_port), workers=2, pinned=False) for name in ('fleet_a', 'fleet_b')]
    key_line = 'bench ' + subprocess.run(['sha256sum'], input=bench_key, capture_output=True, text=True).stdout.split()[0] + '\n'
    for h in hosts:
        with open(f'{h.dir}/keys', 'w') as f:
            f.write(key_line)
        h.start()
    a, b = hosts
    time.sleep(1)  # both replicas in step
    op = open(f'{a.dir}/operator-token').read().strip()
    owner = {'Authorization': f'Bearer {op}'}
    rows = []

    # Revoke on A -> 401 on B.
    lags = []
    ca, cb = Client(a.port), Client(b.port)
    for i in range(100):
        name = f'revoke-probe-{i}'
        token = fleet_pair(a, op, name)
        while cb.call('GET', '/t', {'Authorization': f'Bearer {token}'})[0] != 200:
            pass
        _, listing = ca.call('GET', '/api/devices?limit=1000', owner)
        device_id = next(d['id'] for d in listing['devices'] if d['name'] == name)
        t0 = time.perf_counter()
        assert ca.call('DELETE', f'/api/devices/{device_id}', owner)[0] == 204
        while cb.call('GET', '/t', {'Authorization': f'Bearer {token}'})[0] != 401:
            pass
        lags.append(time.perf_counter() - t0)
    rows.append(('revoke on A -> 401 on B (DELETE sent to 401 seen), p99 of 100', f'{pct(lags, 99) * 1000:.2f} ms'))

    # Deposit on B -> the poll parked on A answers.
    dk = {'X-DEVICE-KEY': bench_key}
    body = json.dumps({'session_pub': env_keys[0], 'ecdh_pub': env_keys[1]}).encode()
    lags = []
    for _ in range(100):
        _, minted = ca.call('POST', '/api/v1/device-pairing', dk)
        pid = minted['pairing_id']
        while cb.call('GET', f'/api/v1/device-pairing/{pid}', dk)[0] != 200:
            pass
        answered = {}
        def poll():
            status, doc = Client(a.port).call('GET', f'/api/v1/device-pairing/{pid}?wait=10', dk)
            answered['at'], answered['status'] = time.perf_counter(), doc and doc.get('status')
        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.03)  # parked
        t0 = time.perf_counter()
        status, _ = cb.call('PUT', f'/api/v1/device-pairing/{pid}',
                            {'Authorization': f'Bearer {minted["write_token"]}', 'Content-Type': 'application/json'}, body)
        th.join()
        assert status == 204 and answered['status'] == 'ready', (status, answered)
        lags.append(answered['at'] - t0)
    rows.append(('deposit on B -> the poll parked on A answers (PUT sent to poll answered), p99 of 100', f'{pct(lags, 99) * 1000:.2f} ms'))

    # The relay flow on both hosts at once, 2 workers each, every write a Redis commit.
    def evalsha_calls():
        stats = subprocess.run(['redis-cli', '-p', str(redis_port), 'INFO', 'commandstats'],
                               capture_output=True, text=True, check=True).stdout
        return int(re.search(r'cmdstat_evalsha:calls=(\d+)', stats).group(1))
    calls_before = evalsha_calls()
    results = flows_on(hosts)
    total = sum(r[1] for r in results.values())
    worst_p99 = max(r[2] for r in results.values())
    bad = sum(r[3] for r in results.values())
    commits = sum(r[0] for r in results.values()) * 2 / 3  # a mint and a deposit in every flow
    per_call = commits / max(1, evalsha_calls() - calls_before)
    rows.append(('mint + deposit + poll on both hosts at once (2 workers each, one wrk per host)',
                 f'{total / 3:,.0f} flows/s ({total:,.0f} req/s), p99 {worst_p99 / 1000:.1f} ms, non-2xx {bad}, '
                 f'{per_call:.1f} commits an EVALSHA'))
    for h in hosts:
        h.stop()
    return rows


def redis_cli(port, *args):
    return subprocess.run(['redis-cli', '-p', str(port), '--raw', *args], capture_output=True, text=True).stdout.strip()


def fleet_ha_rows(bench_key, plain_flows):
    """Fleet mode on Sentinel with redis_replicas=1: flows/s against the
    single-Redis fleet row of this run, and the write outage (first 503 to
    first 2xx again) of a SENTINEL FAILOVER and of kill -9 of the master,
    with two replicas and with one; down-after-milliseconds 1000."""
    import threading
    rows = []

    def cluster(replicas, tag):
        # repl-diskless-sync-delay 0: a promoted master feeds its replicas at
        # once (Redis 7 waits 5 s by default for more to join; docs/operations.md).
        master, mport = start_redis(f'ha{tag}-m', 'repl-diskless-sync-delay 0\n')
        nodes = {mport: master}
        for i in range(replicas):
            r, rport = start_redis(f'ha{tag}-r{i}', f'replicaof 127.0.0.1 {mport}\nrepl-diskless-sync-delay 0\n')
            nodes[rport] = r
        sentinels = []
        for i in range(3):
            sp, sport = start_redis(f'ha{tag}-s{i}', f'sentinel announce-ip 127.0.0.1\nsentinel monitor bench 127.0.0.1 {mport} 2\n'
                                    'sentinel down-after-milliseconds bench 1000\nsentinel failover-timeout bench 10000\n',
                                    sentinel=True)
            sentinels.append(sport)
        deadline = time.time() + 30
        while time.time() < deadline and redis_cli(mport, 'INFO', 'replication').count('state=online') < replicas:
            time.sleep(0.1)
        while time.time() < deadline and f'num-other-sentinels\n2' not in redis_cli(sentinels[0], 'SENTINEL', 'master', 'bench'):
            time.sleep(0.1)
        return nodes, sentinels

    def master_of(sentinels):
        for sp in sentinels:
            out = redis_cli(sp, 'SENTINEL', 'get-master-addr-by-name', 'bench').split()
            if len(out) == 2:
                return int(out[1])
        return None

    def hosts_for(sentinels, tag, replicas=1):
        zone = (f'redis_sentinel={",".join(f"127.0.0.1:{p}" for p in sentinels)} redis_master=bench redis_prefix=ha{tag}: '
                f'redis_replicas={replicas} redis_replicas_timeout=' + os.environ.get('HA_WAIT', '1s'))
        hosts = [Nginx(f'ha{tag}_{n}_{replicas}', routes_conf(zone), workers=2, pinned=False) for n in ('a', 'b')]
        key_line = 'bench ' + subprocess.run(['sha256sum'], input=bench_key, capture_output=True, text=True).stdout.split()[0] + '\n'
        for h in hosts:
            with open(f'{h.dir}/keys', 'w') as f:
                f.write(key_line)
            h.start()
        time.sleep(1.5)
        return hosts

    def outage(host, event):
        """Mints on one host every ~5 ms; the event at 1 s; seconds from
        the first refused write after it to the first 2xx after that."""
        log, stop = [], threading.Event()
        def client():
            c = Client(host.port)
            while not stop.is_set():
                t = time.time()
                try:
                    status = c.call('POST', '/api/v1/device-pairing', {'X-DEVICE-KEY': bench_key})[0]
                except Exception:
                    status, c = 0, Client(host.port)
                log.append((t, status))
                time.sleep(0.005)
        th = threading.Thread(target=client)
        th.start()
        time.sleep(1)
        old = master_of(sentinels)
        t_event = time.time()
        event()
        deadline = t_event + 60
        first_bad = first_good = replica_online = None
        while time.time() < deadline:
            time.sleep(0.05)
            new = master_of(sentinels)
            if not replica_online and new and new != old and 'state=online' in redis_cli(new, 'INFO', 'replication'):
                replica_online = time.time() - t_event
            first_bad = next((t for t, st in log if t >= t_event and st != 201), None)
            if first_bad:
                first_good = next((t for t, st in log if t > first_bad and st == 201), None)
                if first_good:
                    break
        stop.set()
        th.join()
        redis_own = (f' (Redis itself: the new master had a replica online {replica_online:.1f} s after the event)'
                     if replica_online else '')
        if not first_bad:
            return 'no write refused' + redis_own
        return (f'{first_good - first_bad:.1f} s' if first_good else 'not back within 60 s') + redis_own

    for replicas in (2, 1):
        nodes, sentinels = cluster(replicas, replicas)
        if replicas == 2:
            # The same Redis deployment (master, two replicas, sentinels) without WAIT, then with it.
            def flows(hosts):
                results = flows_on(hosts)
                return (sum(r[1] for r in results.values()) / 3, max(r[2] for r in results.values()),
                        sum(r[3] for r in results.values()))
            # Both sets of hosts up at once, measured in turn (interleaved
            # rounds; medians): this many processes on 2 cores swing a lot.
            plain = hosts_for(sentinels, 'nowait', replicas=0)
        hosts = hosts_for(sentinels, replicas)
        a, b = hosts
        if replicas == 2:
            rounds = [(flows(plain), flows(hosts)) for _ in range(max(ROUNDS, 3))]
            for h in plain:
                h.stop()
            no_wait = tuple(statistics.median(r[0][i] for r in rounds) for i in range(3))
            with_wait = tuple(statistics.median(r[1][i] for r in rounds) for i in range(3))
            rows.append(('mint + deposit + poll on both hosts, Sentinel + 2 replicas, no WAIT (redis_replicas=0)',
                         f'{no_wait[0]:,.0f} flows/s, p99 {no_wait[1] / 1000:.1f} ms, non-2xx {no_wait[2]} '
                         f'({no_wait[0] / plain_flows * 100:.0f} % of the single-Redis row: two replicas and three '
                         'sentinels share these 2 cores)'))
            ratio = statistics.median(w[0] / n[0] for n, w in rounds)
            rows.append((f'the same with redis_replicas=1 (WAIT for both replicas, one WAIT a batch); median of {len(rounds)} interleaved rounds',
                         f'{with_wait[0]:,.0f} flows/s ({ratio * 100:.0f} % of no WAIT), '
                         f'p99 {with_wait[1] / 1000:.1f} ms, non-2xx {with_wait[2]}'))
        rows.append((f'write outage, SENTINEL FAILOVER, {replicas} replica{"s" if replicas > 1 else ""}',
                     outage(a, lambda: redis_cli(sentinels[0], 'SENTINEL', 'FAILOVER', 'bench'))))
        time.sleep(3)
        if replicas == 2:
            def kill_master():
                port = master_of(sentinels)
                nodes[port].kill()
            rows.append(('write outage, kill -9 of the master, 2 replicas', outage(a, kill_master)))
        for h in hosts:
            h.stop()
        for p in list(nodes.values()):
            if p.poll() is None:
                p.terminate()
    return rows


def main():
    subprocess.run(['make', '-s', '-C', ROOT, 'build', f'{ROOT}/build/make_state'], check=True)
    cpu_model = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
    nginx_version = subprocess.run([NGINX, '-v'], capture_output=True, text=True).stderr.strip()
    lua_ok = all(os.path.exists(m) for m in LUA_MODULES)
    token_sha = subprocess.run(['sha256sum'], input=TOKEN, capture_output=True, text=True).stdout.split()[0]

    print(f'bench: generating state files in {WORK}', flush=True)
    redis, redis_port = start_redis()
    servers = {
        'floor': Nginx('floor', """
    server { listen 127.0.0.1:%PORT% backlog=4096; location /t { empty_gif; } }"""),
        'gate_1': Nginx('gate_1', gate_conf(state_file(1), '1m')),
        'gate_100k': Nginx('gate_100k', gate_conf(state_file(100000), '32m')),
        'gate_1m': Nginx('gate_1m', gate_conf(state_file(1000000), '256m')),
        # Lifetimes on: the expiry is judged from the record the gate reads
        # anyway; no write per request (last-seen stays coalesced).
        'gate_1m_lifetimes': Nginx('gate_1m_lifetimes', gate_conf(
            state_file(1000000, '-lifetimes'), '256m',
            'device_pairing_token_lifetime 180d; device_pairing_token_idle_timeout 30d;')),
        # Two workers on both cores (wrk shares them): gate reads must not serialise the workers.
        'floor_2w': Nginx('floor_2w', """
    server { listen 127.0.0.1:%PORT% backlog=4096; location /t { empty_gif; } }""", workers=2, pinned=False),
        'gate_100k_2w': Nginx('gate_100k_2w', gate_conf(state_file(100000, '-2w'), '32m'), workers=2, pinned=False),
        # Fleet mode: the gate reads the local replica; Redis only on writes.
        'gate_fleet': Nginx('gate_fleet', fleet_conf(redis_port, prefix='gate:')),
        'auth_request_internal': Nginx('auth_request_internal', f"""
    server {{
        listen 127.0.0.1:%PORT% backlog=4096;
        location /t {{ auth_request /auth; empty_gif; }}
        location = /auth {{
            internal;
            if ($http_authorization != "Bearer {TOKEN}") {{ return 401; }}
            return 204;
        }}
    }}"""),
        'auth_request_backend': Nginx('auth_request_backend', f"""
    upstream auth_backend {{ server 127.0.0.1:%BACKEND%; keepalive 32; }}
    server {{
        listen 127.0.0.1:%PORT% backlog=4096;
        location /t {{ auth_request /auth; empty_gif; }}
        location = /auth {{
            internal;
            proxy_pass http://auth_backend/check;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
    }}
    server {{
        listen 127.0.0.1:%BACKEND%;
        location = /check {{
            if ($http_authorization != "Bearer {TOKEN}") {{ return 401; }}
            return 204;
        }}
    }}""".replace('%BACKEND%', str(free_port()))),
    }
    if lua_ok:
        servers['lua_sha256'] = Nginx('lua_sha256', f"""
    init_by_lua_block {{
        ffi = require "ffi"
        ffi.cdef[[unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);]]
        crypto = ffi.load("crypto")
        digest = ffi.new("unsigned char[32]")
        expected = ("{token_sha}"):gsub("..", function(c) return string.char(tonumber(c, 16)) end)
    }}
    server {{
        listen 127.0.0.1:%PORT% backlog=4096;
        location /t {{
            access_by_lua_block {{
                local h = ngx.var.http_authorization
                if not h or h:sub(1, 7) ~= "Bearer " then return ngx.exit(401) end
                local tok = h:sub(8)
                crypto.SHA256(tok, #tok, digest)
                if ffi.string(digest, 32) ~= expected then return ngx.exit(401) end
            }}
            empty_gif;
        }}
    }}""", modules=LUA_MODULES)
    with open(f'{servers["gate_fleet"].dir}/keys', 'w') as f:
        f.write('bench ' + '0' * 64 + '\n')
    for s in servers.values():
        s.start()
    time.sleep(1)  # the fleet replica in step
    fleet_token = fleet_pair(servers['gate_fleet'], open(f'{servers["gate_fleet"].dir}/operator-token').read().strip())

    auth = f'Authorization: Bearer {TOKEN}'
    cases = [
        ('floor', 'floor: empty_gif, no auth', []),  # measured beside every other case
        ('gate_1', 'gate accepts, 1 device', [auth]),
        ('gate_100k', 'gate accepts, 100 000 devices', [auth]),
        ('gate_1m', 'gate accepts, 1 000 000 devices', [auth]),
        ('gate_1m_lifetimes', 'gate accepts, 1 000 000 devices, lifetime + idle timeout on', [auth]),
        ('gate_100k_2w', 'gate accepts, 100 000 devices, 2 workers (vs a 2-worker floor)', [auth]),
        ('gate_fleet', 'gate accepts, fleet mode (redis=), 1 device', [f'Authorization: Bearer {fleet_token}']),
        ('gate_100k', 'gate rejects: no header', []),
        ('gate_100k', 'gate rejects: wrong token', ['Authorization: Bearer dp_tok_wrong_token_0000000000000000000000000']),
        ('auth_request_internal', 'auth_request, internal location', [auth]),
        ('auth_request_backend', 'auth_request, backend over keepalive', [auth]),
    ]
    if lua_ok:
        cases.append(('lua_sha256', 'Lua access_by_lua SHA-256 (FFI)', [auth]))

    # Each case runs beside a floor run with the same request headers (what
    # nginx itself spends parsing an Authorization header is not the gate's),
    # in alternating order, so host drift between rounds cancels out of the
    # difference: "over the floor" is the median of these paired differences.
    def measure(s, headers, path='/t'):
        before = s.cpu_ticks()
        n, rps, p99, bad = wrk(f'http://127.0.0.1:{s.port}{path}', headers)
        return (s.cpu_ticks() - before) / TICK * 1e6 / max(n, 1), rps, p99, bad

    # A gate case also runs its own ungated location (/open, same worker,
    # same zone, same headers): that difference has no second nginx in it,
    # whose memory layout can differ from the floor's by a few tenths of a µs.
    results = {label: [] for _, label, _ in cases}
    for rnd in range(ROUNDS):
        for name, label, headers in cases:
            if name == 'floor':
                continue
            floor_name = 'floor_2w' if name.endswith('_2w') else 'floor'
            runs = [('floor', servers[floor_name], '/t'), ('case', servers[name], '/t')]
            if name.startswith('gate_'):
                runs.append(('open', servers[name], '/open'))
            order = runs[rnd % len(runs):] + runs[:rnd % len(runs)]
            got = {which: measure(s, headers, path) for which, s, path in order}
            cpu_us, rps, p99, bad = got['case']
            same_worker = cpu_us - got['open'][0] if 'open' in got else float('nan')
            results[label].append((cpu_us, rps, p99, bad, cpu_us - got['floor'][0], same_worker))
            if floor_name == 'floor':
                results['floor: empty_gif, no auth'].append(got['floor'][:4] + (0.0, float('nan')))
            print(f'round {rnd + 1} {label:42s} {cpu_us:6.2f} us/req (floor {got["floor"][0]:6.2f}'
                  + (f', ungated {got["open"][0]:6.2f}' if 'open' in got else '') + ') '
                  f'{rps:9.0f} req/s p99 {p99:7.0f} us non-2xx {bad}', flush=True)

    rows = []
    for _, label, _ in cases:
        rows.append((label, statistics.median(r[0] for r in results[label]),
                     statistics.median(r[4] for r in results[label]),
                     statistics.median(r[5] for r in results[label]),
                     statistics.median(r[1] for r in results[label]),
                     statistics.median(r[2] for r in results[label]), results[label][-1][3] > 0))

    gate1m_anon, gate1m_shm = servers['gate_1m'].rss_kb()  # before the restart below
    servers['gate_1m'].state = f'{WORK}/state-1000000'
    engine_rows = state_engine_rows(servers['gate_1m'])
    for label, value in engine_rows:
        print(f'state engine {label:70s} {value}', flush=True)

    # Pairing routes on 2 workers (not pinned): wrk Lua scripts drive each.
    routes = Nginx('routes', routes_conf(), workers=2, pinned=False)
    bench_key = 'dk_bench_key_0000000000000000000000'
    with open(f'{routes.dir}/keys', 'w') as f:
        f.write('bench ' + subprocess.run(['sha256sum'], input=bench_key, capture_output=True, text=True).stdout.split()[0] + '\n')
    routes.start()
    keys = subprocess.run(['/usr/bin/python3', '-c', """
import base64
from cryptography.hazmat.primitives.asymmetric import ed25519, ec
from cryptography.hazmat.primitives import serialization as s
print(base64.b64encode(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)).decode(),
      base64.b64encode(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(s.Encoding.X962, s.PublicFormat.UncompressedPoint)).decode())
"""], capture_output=True, text=True, check=True).stdout.split()
    os.environ.update(DP_BENCH_KEY=bench_key, DP_BENCH_SESSION=keys[0], DP_BENCH_ECDH=keys[1])
    route_rows = []
    base = f'http://127.0.0.1:{routes.port}'
    for label, script in [('mint (POST /api/v1/device-pairing)', 'mint.lua'),
                          ('mint + deposit + poll, as a flow', 'flow.lua'),
                          ('POST /pair failure path (wrong OTP)', 'pair_fail.lua')]:
        env_script = f'{ROOT}/bench/{script}'
        n, rps, p99, bad = wrk(base + '/', threads=2, conns=64, script=env_script, cpu=None)
        route_rows.append((label, rps, p99))
        print(f'route {label:42s} {rps:9.0f} req/s p99 {p99:7.0f} us', flush=True)

    dpop = dpop_rows()
    print('bench: the pairing log', flush=True)
    pairing_log = log_rows()
    for label, value in dpop:
        print(f'dpop {label:70s} {value}', flush=True)

    oauth = oauth_rows()
    for label, value in oauth:
        print(f'oauth {label:70s} {value}', flush=True)

    fleet = fleet_rows(redis_port, bench_key, keys)
    plain_flows = float(re.search(r'([\d,]+) flows/s', fleet[-1][1]).group(1).replace(',', ''))
    fleet += fleet_ha_rows(bench_key, plain_flows)
    for label, value in fleet:
        print(f'fleet {label:70s} {value}', flush=True)
    redis.terminate()
    redis.wait()

    # Memory: zone bytes per device and per pending mailbox from the zone's counters.
    def used(s):
        st = s.get_json('/api/devices/stats', open(f'{s.dir}/operator-token').read().strip())
        return st['zoneBytes'] - st['zoneFreeBytes'], st['records']
    used_1, _ = used(servers['gate_1'])
    used_100k, rec100k = used(servers['gate_100k'])
    per_device = (used_100k - used_1) / (rec100k['devices'] - 1)
    probe_key = {'Authorization': 'Bearer ' + open(f'{routes.dir}/operator-token').read().strip()}
    def routes_used():
        req = urllib.request.Request(f'{base}/api/devices/stats', headers=probe_key)
        st = json.load(urllib.request.urlopen(req, timeout=30))
        return st['zoneBytes'] - st['zoneFreeBytes'], st['records']['mailboxes']
    before, mb_before = routes_used()
    for _ in range(5000):
        urllib.request.urlopen(urllib.request.Request(f'{base}/api/v1/device-pairing', method='POST',
                                                      headers={'X-DEVICE-KEY': bench_key}), timeout=30)
    after, mb_after = routes_used()
    per_mailbox = (after - before) / max(mb_after - mb_before, 1)
    floor_anon, _ = servers['floor'].rss_kb()
    gate_anon, gate_shm = servers['gate_1'].rss_kb()

    for s in list(servers.values()) + [routes]:
        s.stop()

    md = [f'# make bench results', '',
          f'- date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}',
          f'- CPU: {cpu_model}, {os.cpu_count()} cores; nginx pinned to CPU 0, wrk to CPU 1',
          f'- {nginx_version}; wrk -t1 -c{CONNS} -d{SECONDS}s; median of {ROUNDS} rounds; "over the floor" is the median of paired differences '
          'against a floor run with the same request headers, taken right before or after it; "over its own ungated location" '
          'is the same against the same worker\'s /open (empty_gif without the gate, same zone, same headers)', '',
          '| configuration | nginx CPU µs/request | over the floor | over its own ungated location | req/s | p99 µs |',
          '|---|---:|---:|---:|---:|---:|']
    for label, cpu, delta, same_worker, rps, p99, rejected in rows:
        own = '' if same_worker != same_worker else f'{same_worker:+.2f}'  # NaN: not a gate case
        md.append(f'| {label}{" (401s)" if rejected else ""} | {cpu:.2f} | {delta:+.2f} | {own} | {rps:,.0f} | {p99:,.0f} |')
    md += ['', '| pairing route (2 workers, unpinned) | req/s | p99 µs |', '|---|---:|---:|']
    md += [f'| {label} | {rps:,.0f}{f" ({rps / 3:,.0f} flows/s)" if "flow" in label else ""} | {p99:,.0f} |'
           for label, rps, p99 in route_rows]
    md += ['', '| state engine, 1 000 000 devices, state= on, one worker | value |', '|---|---:|']
    md += [f'| {label} | {value} |' for label, value in engine_rows]
    md += ['', '| DPoP-bound tokens (RFC 9449) | value |', '|---|---:|']
    md += [f'| {label} | {value} |' for label, value in dpop]
    md += ['', '| verifiable pairing log (log=on) | value |', '|---|---:|']
    md += [f'| {label} | {value} |' for label, value in pairing_log]
    md += ['', '| OAuth device grant (RFC 8628) | value |', '|---|---:|']
    md += [f'| {label} | {value} |' for label, value in oauth]
    md += ['', 'A latency target is read at a fixed offered rate (wrk paced by bench/paced.lua): at saturation a '
           'p99 is mostly wrk\'s connections over the throughput (Little\'s law), so it is shown there only beside the rate.']
    md += ['', '| fleet mode: two hosts (2 workers each, unpinned) and one redis-server (AOF, appendfsync everysec) on this machine | value |', '|---|---:|']
    md += [f'| {label} | {value} |' for label, value in fleet]
    md += ['', '| memory | value |', '|---|---:|',
           f'| zone bytes per device (slab pages used, 100 000 vs 1 device) | {per_device:.0f} |',
           f'| zone bytes per pending mailbox (slab pages used, 5 000 more) | {per_mailbox:.0f} |',
           f'| worker private RSS (RssAnon), bare nginx | {floor_anon} KiB |',
           f'| worker private RSS (RssAnon), module + zone, 1 device | {gate_anon} KiB ({gate_anon - floor_anon:+d} KiB) |',
           f'| worker private RSS (RssAnon), 1 000 000 devices | {gate1m_anon} KiB ({gate1m_anon - floor_anon:+d} KiB); zone pages touched (RssShmem) {gate1m_shm} KiB |']
    text = '\n'.join(md) + '\n'
    with open(f'{ROOT}/bench/results.md', 'w') as f:
        f.write(text)
    print('\n' + text)
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == '__main__':
    main()
