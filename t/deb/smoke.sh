#!/usr/bin/env bash
# The Debian package through Debian's own nginx: install it, pair through the
# stock /etc/nginx/nginx.conf plus one site file, remove it again.
# Usage: smoke.sh PACKAGE.deb   (as root; a system nginx must not be running)
set -euo pipefail
deb=$1
port=${DP_DEB_PORT:-39481}
site=/etc/nginx/sites-enabled/device-pairing-smoke
state=/var/lib/nginx/device-pairing/smoke.state
pass=0 fail=0
check() { if eval "$2"; then echo "ok - $1"; pass=$((pass + 1)); else echo "not ok - $1"; fail=$((fail + 1)); fi; }
cleanup() {
    [ -f /run/nginx.pid ] && nginx -s quit 2>/dev/null && sleep 1 || true
    rm -f "$site" "$state" "$state".* /var/lib/nginx/device-pairing/smoke.token*
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq libnginx-mod-http-device-pairing >/dev/null 2>&1 || true
}
trap cleanup EXIT
if pgrep -x nginx >/dev/null && [ -f /run/nginx.pid ]; then echo "a system nginx is running; stop it first" >&2; exit 1; fi

DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
check "Depends names the nginx ABI" "dpkg -s libnginx-mod-http-device-pairing | grep -q 'nginx-abi-1.22.1-7'"
check "the module is in /usr/lib/nginx/modules" "[ -f /usr/lib/nginx/modules/ngx_http_device_pairing_module.so ]"
check "and enabled through modules-enabled" "[ -L /etc/nginx/modules-enabled/50-mod-http-device-pairing.conf ]"
check "its state directory belongs to the workers' user (0700)" \
    "[ \"\$(stat -c '%U %a' /var/lib/nginx/device-pairing)\" = 'www-data 700' ]"

cat > "$site" <<SITE
device_pairing_zone zone=smoke:1m state=$state;
device_pairing_token_file /var/lib/nginx/device-pairing/smoke.token;
server {
    listen 127.0.0.1:$port;
    location /pair    { device_pairing on; }
    location = /health { device_pairing on; }
    location /api/    { device_pairing_auth bearer; empty_gif; }
}
SITE
check "nginx -t accepts the stock configuration with the site" "nginx -t -q"
# A terminal starts nginx: the banner shows there.
script -qec nginx /tmp/dp-smoke-terminal >/dev/null
sleep 0.5
check "the terminal that started nginx shows the OTP" "grep -q 'OTP: [0-9]\{6\} ' /tmp/dp-smoke-terminal"
check "and the QR" "grep -q '▄' /tmp/dp-smoke-terminal"
check "the banner file is root-only (0600)" "[ \"\$(stat -c %a $state.banner)\" = 600 ]"
otp=$(grep -o 'OTP: [0-9]\{6\}' "$state.banner" | grep -o '[0-9]*')
check "the banner file holds the OTP" "[ -n \"$otp\" ]"
check "the pairing URL carries the listen port" "grep -q 'http://127.0.0.1:$port/pair' $state.banner"
check "the OTP never reaches the stock error log" \
    "! grep -q \"$otp\" /var/log/nginx/error.log"
check "GET /health through Debian's nginx" "curl -sf http://127.0.0.1:$port/health | grep -q ok"
token=$(curl -s -X POST http://127.0.0.1:$port/pair -d "{\"otp\":\"$otp\"}" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
check "POST /pair with the banner's OTP gives a token" "[ -n \"$token\" ]"
check "the token opens a gated location" "[ \"\$(curl -s -o /dev/null -w %{http_code} -H 'Authorization: Bearer $token' http://127.0.0.1:$port/api/x)\" = 200 ]"
check "without it: 401" "[ \"\$(curl -s -o /dev/null -w %{http_code} http://127.0.0.1:$port/api/x)\" = 401 ]"
check "the pairing is in the journal, written by the workers" "[ -s $state.journal ] && [ \"\$(stat -c %U $state.journal)\" = www-data ]"
nginx -s quit; sleep 1
rm -f /tmp/dp-smoke-terminal
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq libnginx-mod-http-device-pairing >/dev/null
check "purge removes the module" "[ ! -e /usr/lib/nginx/modules/ngx_http_device_pairing_module.so ]"
check "and its modules-enabled link" "[ ! -e /etc/nginx/modules-enabled/50-mod-http-device-pairing.conf ]"
check "and its state directory" "[ ! -e /var/lib/nginx/device-pairing ]"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
