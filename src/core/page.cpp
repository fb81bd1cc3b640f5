// GET /pair: the browser pairing page. Self-contained (no external assets):
// six-digit entry, or automatic pairing when opened from the QR URL
// (/pair#otp=NNNNNN; a fragment never reaches the server's access log).
#include "core/otp.h"

namespace dp {

const char kPairPageHtml[] = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Pair this device</title>
<style>
 body{font:16px/1.5 system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#222}
 h1{font-size:1.4rem}
 input{font:2rem monospace;letter-spacing:.4em;width:9ch;padding:.2em .4em}
 button{font-size:1rem;padding:.5em 1.2em;margin-left:.5em}
 #status{margin-top:1.2rem;min-height:1.5em}
 .ok{color:#176b1c}.err{color:#a11}
</style>
</head>
<body>
<h1>Pair this device</h1>
<p>Enter the 6-digit code shown in the gateway's terminal.</p>
<form id="form" autocomplete="off">
 <input id="otp" name="otp" inputmode="numeric" pattern="[0-9]{6}" maxlength="6" required aria-label="pairing code">
 <button id="pair" type="submit">Pair</button>
</form>
<p id="status" role="status"></p>
<script>
(function () {
  var KEY = 'device_pairing_token';
  var form = document.getElementById('form'), input = document.getElementById('otp');
  var status = document.getElementById('status');
  function show(text, cls) { status.textContent = text; status.className = cls || ''; }
  var messages = {
    400: 'The code must be 6 digits.',
    401: 'Invalid or expired code. Ask for a fresh one (GET /pair/refresh) and try again.',
    429: 'Too many attempts. Wait 60 seconds before trying again; each failed attempt restarts the wait.',
    501: 'Pairing is not available on this gateway (its token file could not be read or created).',
    503: 'The gateway is out of room for new devices. Try again later.'
  };
  function pair(code) {
    show('Pairing\u2026');
    fetch(location.pathname.replace(/\/+$/, ''), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ otp: code })
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (res.ok && body.token) {
          localStorage.setItem(KEY, body.token);
          show('Paired. This browser now holds its device token.', 'ok');
          form.hidden = true;
        } else {
          var wait = res.headers.get('Retry-After');
          show((messages[res.status] || body.detail || ('Pairing failed (' + res.status + ').')) +
               (res.status === 429 && wait ? ' (' + wait + ' s)' : ''), 'err');
        }
      });
    }).catch(function () { show('The gateway could not be reached.', 'err'); });
  }
  form.addEventListener('submit', function (e) { e.preventDefault(); pair(input.value.trim()); });
  var m = /(?:^#|&)otp=(\d{6})(?:&|$)/.exec(location.hash);
  if (m) {
    history.replaceState(null, '', location.pathname);  // keep the code out of history
    input.value = m[1];
    pair(m[1]);
  } else if (localStorage.getItem(KEY)) {
    show('This browser is already paired. Pairing again issues a new token.', 'ok');
  }
})();
</script>
</body>
</html>
)HTML";

}  // namespace dp
