
(function () {
  'use strict';
  var KEY = 'device_pairing_token';
  var base = location.pathname.replace(/\/+$/, '');      // .../pair
  var root = base.replace(/\/pair$/, '');                 // where /api lives
  function $(id) { return document.getElementById(id); }
  function show(el, text, cls) { $(el).textContent = text; $(el).className = cls || ''; }
  function token() { return localStorage.getItem(KEY); }
  function call(method, path, body) {
    var headers = {};
    if (token()) headers.Authorization = 'Bearer ' + token();
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return fetch(root + path, { method: method, headers: headers,
                                body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (res) {
        return res.json().catch(function () { return {}; })
          .then(function (json) { return { status: res.status, ok: res.ok, json: json, res: res }; });
      });
  }
  function when(iso) { return iso ? new Date(iso).toLocaleString() : ''; }
  var messages = {
    400: 'The code must be 6 digits.',
    401: 'Invalid or expired code. Ask for a fresh one (GET /pair/refresh) and try again.',
    409: 'This gateway has all the devices it allows. An owner must revoke one first.',
    429: 'Too many attempts. Wait 60 seconds before trying again; each failed attempt restarts the wait.',
    501: 'Pairing is not available on this gateway (its token file could not be read or created).',
    503: 'The gateway is out of room for new devices. Try again later.'
  };

  // --- before pairing ---
  function pair(code) {
    show('status', 'Pairing\u2026');
    var body = { otp: code };
    if ($('name').value.trim()) body.name = $('name').value.trim();
    call('POST', '/pair', body).then(function (r) {
      if (r.ok && r.json.token) {
        localStorage.setItem(KEY, r.json.token);
        show('status', 'Paired. This browser now holds its device token.', 'ok');
        $('form').hidden = true;
        start();
      } else {
        var wait = r.res.headers.get('Retry-After');
        show('status', (messages[r.status] || r.json.detail || ('Pairing failed (' + r.status + ').')) +
             (r.status === 429 && wait ? ' (' + wait + ' s)' : ''), 'err');
      }
    }).catch(function () { show('status', 'The gateway could not be reached.', 'err'); });
  }
  function ask() {
    var name = $('name').value.trim() || 'browser';
    call('POST', '/api/devices/pairing/request', { requesterId: name }).then(function (r) {
      if (!r.ok) return show('status', r.json.detail || ('Request failed (' + r.status + ').'), 'err');
      $('asked').hidden = false;
      $('asked-code').textContent = r.json.code;
      show('status', 'Waiting for an owner to approve\u2026');
      poll(r.json.requestId);
    });
  }
  function poll(requestId) {
    call('POST', '/api/devices/pairing/status', { requestId: requestId }).then(function (r) {
      var s = r.json.status;
      if (r.ok && s === 'approved' && r.json.token) {
        localStorage.setItem(KEY, r.json.token);
        $('asked').hidden = true;
        show('status', 'Paired. An owner approved this device.', 'ok');
        start();
      } else if (s === 'rejected' || s === 'expired' || !r.ok) {
        $('asked').hidden = true;
        show('status', s === 'rejected' ? 'An owner rejected this request.' :
                       s === 'expired' ? 'The code expired. Ask again.' : (r.json.detail || 'The request failed.'), 'err');
      } else {
        setTimeout(function () { poll(requestId); }, 1000);
      }
    });
  }

  // --- after pairing, as an owner ---
  function loadDevices() {
    return call('GET', '/api/devices?limit=1000').then(function (r) {
      if (r.status === 401) return forget('This browser\u2019s token is no longer valid.');
      var body = $('devices').tBodies[0];
      body.textContent = '';
      (r.json.devices || []).forEach(function (d) {
        var row = body.insertRow();
        row.dataset.id = d.id;
        row.dataset.role = d.role;
        [d.name, d.role, d.method, when(d.createdAt), when(d.lastSeenAt), d.lastAddress].forEach(function (text) {
          row.insertCell().textContent = text;
        });
        row.cells[0].className = 'name';
        var actions = row.insertCell();
        var rename = document.createElement('button');
        rename.textContent = 'Rename';
        rename.className = 'rename';
        rename.addEventListener('click', function () { startRename(row, d); });
        var revoke = document.createElement('button');
        revoke.textContent = 'Revoke';
        revoke.className = 'revoke';
        revoke.addEventListener('click', function () {
          if (revoke.dataset.armed) return doRevoke(d);
          revoke.dataset.armed = '1';
          revoke.textContent = 'Confirm revoke of \u201c' + d.name + '\u201d';
        });
        actions.append(rename, revoke);
      });
    });
  }
  function startRename(row, d) {
    var cell = row.cells[0];
    cell.textContent = '';
    var input = document.createElement('input');
    input.value = d.name;
    input.className = 'new-name';
    input.setAttribute('aria-label', 'new name');
    var save = document.createElement('button');
    save.textContent = 'Save';
    save.className = 'save';
    save.addEventListener('click', function () {
      call('PATCH', '/api/devices/' + d.id, { name: input.value }).then(function (r) {
        show('console-status', r.ok ? 'Renamed to \u201c' + r.json.name + '\u201d.' : (r.json.detail || 'Rename failed.'),
             r.ok ? 'ok' : 'err');
        loadDevices();
      });
    });
    cell.append(input, save);
    input.focus();
  }
  function doRevoke(d) {
    call('DELETE', '/api/devices/' + d.id).then(function (r) {
      show('console-status', r.ok ? 'Revoked \u201c' + d.name + '\u201d.' : (r.json.detail || 'Revoke failed.'),
           r.ok ? 'ok' : 'err');
      loadDevices();
    });
  }
  function loadPending() {
    return call('GET', '/api/devices/pairing/pending').then(function (r) {
      var list = $('pending');
      list.textContent = '';
      (r.json.requests || []).forEach(function (q) {
        var item = document.createElement('li');
        item.textContent = who(q) + ' from ' + (q.address || 'an unknown address') + ', asked ' + when(q.createdAt);
        list.append(item);
      });
      if (!list.children.length) list.textContent = 'No pending requests.';
    });
  }
  // A request as an owner should judge it: an OAuth client by its name and
  // the scope it asks for (RFC 8628 5.4), a device by its requester id.
  function who(q) {
    if (q.method !== 'oauth') return '\u201c' + q.requesterId + '\u201d';
    return 'the app \u201c' + q.clientName + '\u201d' + (q.scope ? ' (scope \u201c' + q.scope + '\u201d)' : '');
  }
  var inspected = null;
  function inspect(code) {
    call('POST', '/api/devices/pairing/inspect', { code: code }).then(function (r) {
      if (!r.ok) return show('console-status', r.json.detail || ('No such request (' + r.status + ').'), 'err');
      inspected = code;
      $('confirm-text').textContent = 'Approve ' + who(r.json) + ' asking from ' +
        (r.json.address || 'an unknown address') +
        ' since ' + when(r.json.createdAt) + '? Only approve a device you are holding or can see.';
      $('confirm').hidden = false;
    });
  }
  function decide(approve) {
    var code = inspected;
    $('confirm').hidden = true;
    inspected = null;
    call('POST', '/api/devices/pairing/' + (approve ? 'approve' : 'reject'), { code: code }).then(function (r) {
      show('console-status', r.ok ? (approve ? 'Approved \u201c' : 'Rejected \u201c') + r.json.requesterId + '\u201d.'
                                  : (r.json.detail || 'Failed.'), r.ok ? 'ok' : 'err');
      $('approve-code').value = '';
      loadPending();
      loadDevices();
    });
  }
  function refreshOtp() {
    call('GET', '/pair/refresh').then(function (r) {
      if (!r.ok) return show('console-status', r.json.detail || 'No new code.', 'err');
      $('otp-digits').textContent = r.json.otp;
      $('otp-qr').src = 'data:image/svg+xml;base64,' + btoa(r.json.qr_svg);
      $('otp-link').textContent = r.json.pairing_url;
      $('otp-box').hidden = false;
    });
  }
  function forget(why) {
    localStorage.removeItem(KEY);
    $('console').hidden = true;
    $('pairing').hidden = false;
    $('form').hidden = false;
    show('status', why || 'This browser forgot its token.', why ? 'err' : '');
  }

  function start() {
    if (!token()) return;
    // Only an owner may list pending requests: the answer says which we are.
    call('GET', '/api/devices/pairing/pending').then(function (r) {
      if (r.status === 401) return forget('This browser\u2019s token is no longer valid. Pair again.');
      if (r.status === 403) {
        $('form').hidden = true;
        return show('status', 'This browser is paired as a device. Owners manage devices.', 'ok');
      }
      $('pairing').hidden = true;
      $('console').hidden = false;
      loadDevices();
      loadPending();
    });
  }

  $('form').addEventListener('submit', function (e) { e.preventDefault(); pair($('otp').value.trim()); });
  $('ask').addEventListener('click', ask);
  $('approve-form').addEventListener('submit', function (e) { e.preventDefault(); inspect($('approve-code').value.trim()); });
  $('confirm-approve').addEventListener('click', function () { decide(true); });
  $('confirm-reject').addEventListener('click', function () { decide(false); });
  $('confirm-cancel').addEventListener('click', function () { $('confirm').hidden = true; inspected = null; });
  $('refresh').addEventListener('click', refreshOtp);
  $('reload').addEventListener('click', function () { loadDevices(); loadPending(); });
  $('forget').addEventListener('click', function () { forget(); });
  var m = /(?:^#|&)otp=(\d{6})(?:&|$)/.exec(location.hash);
  // verification_uri_complete (RFC 8628 3.3.1): the user code fills the
  // approval box; approving it still takes an owner's two clicks.
  var userCode = /(?:^#|&)code=([A-Za-z0-9-]{1,16})(?:&|$)/.exec(location.hash);
  if (userCode) {
    history.replaceState(null, '', location.pathname);
    $('approve-code').value = userCode[1];
  }
  if (m) {
    history.replaceState(null, '', location.pathname);  // keep the code out of history
    $('otp').value = m[1];
    pair(m[1]);
  } else if (token()) {
    show('status', 'This browser is already paired. Pairing again issues a new token.', 'ok');
    start();
  }
})();
