#include "core/service.h"

#include <algorithm>
#include <cstring>

#include "core/json.h"
#include "core/qr.h"

namespace dp {

namespace {

constexpr uint32_t kLimitFailures = 5;         // failures per address before 429
constexpr int64_t kLimitWindowMs = 60000;      // quiet time that lifts a lockout
constexpr uint32_t kOtpBurnAfter = 10;         // failures that burn one OTP
constexpr uint32_t kLastSeenEveryS = 60;       // coalescing of last-seen writes
constexpr int64_t kFutureSkewMs = 30000;       // attestation clock skew allowed
constexpr int64_t kMaxAgeLimitMs = 86400000;   // largest maxAgeMs accepted
constexpr int64_t kDefaultMaxAgeMs = 300000;
constexpr uint32_t kMaxWaitS = 30;
constexpr uint32_t kExpiredVisibleS = 600;     // an expired code request answers "expired" this long
const char kCodeAlphabet[] = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";  // no 0/O, 1/I/L
constexpr size_t kCodeLength = 9;

const char kInvalidCode[] = "Invalid or expired code";
const char kTooMany[] = "Too many attempts";
const char kUnavailable[] = "Pairing not available";

uint32_t to_s(int64_t ms) { return (uint32_t)(ms / 1000); }

Digest key_of(std::string_view label, std::string_view value) { return sha256_labeled(label, value); }

bool live(const RecordHeader* h, uint32_t now_s) { return h->expires_s == 0 || h->expires_s > now_s; }

Response bad_request(const std::string& detail) {
    return problem(400, "invalid_request", "Invalid request", detail);
}

Response zone_full() {
    return problem(503, "zone_full", "Pairing state is full",
                   "the shared-memory zone has no room left; try again later");
}

Response forbidden(const char* detail) { return problem(403, "forbidden", "Forbidden", detail); }

// Parses the body as a JSON object; an empty body counts as {} when allowed.
Json body_object(const Request& req, Response* error, bool empty_ok = false) {
    if (req.body.empty() && empty_ok) return Json(json_object());
    std::string why;
    Json root = parse_json_object(req.body, &why);
    if (!root) *error = bad_request(why);
    return root;
}

std::string addr_text(const ClientAddr& a) {
    char buf[64] = "";
    if (a.len == 4) {
        snprintf(buf, sizeof(buf), "%u.%u.%u.%u", a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3]);
    } else if (a.len == 16) {
        std::string s;
        for (int i = 0; i < 16; i += 2) {
            char part[8];
            snprintf(part, sizeof(part), "%s%x", i ? ":" : "", a.bytes[i] << 8 | a.bytes[i + 1]);
            s += part;
        }
        return s;
    }
    return buf;
}

// Per-address counter of failed guesses at a secret (OTP or pairing code).
class Limiter {
   public:
    Limiter(Store& store, std::string_view label, const ClientAddr& addr)
        : store_(store), key_(key_of(label, std::string_view((const char*)addr.bytes, addr.len))) {}

    // Seconds to wait, or 0. A locked-out attempt counts as a failure and so
    // restarts the quiet window (seed 000: "each failed attempt resets the window").
    int retry_after(int64_t now_ms) {
        auto* rec = as<LimiterRecord>(store_.find(Kind::Limiter, key_));
        if (!rec || rec->failures < kLimitFailures || now_ms - rec->last_failure_ms >= kLimitWindowMs)
            return 0;
        touch(rec, now_ms);
        return (int)(kLimitWindowMs / 1000);
    }

    void failed(int64_t now_ms) {
        auto* rec = as<LimiterRecord>(store_.find(Kind::Limiter, key_));
        if (!rec) rec = insert_record<LimiterRecord>(store_, Kind::Limiter, key_, to_s(now_ms), [](LimiterRecord*) {});
        if (!rec) return;  // zone full: the per-secret budget still bounds guessing
        if (now_ms - rec->last_failure_ms >= kLimitWindowMs) rec->failures = 0;
        rec->failures++;
        touch(rec, now_ms);
    }

    void succeeded() {
        if (RecordHeader* rec = store_.find(Kind::Limiter, key_)) store_.remove(rec);
    }

   private:
    static void touch(LimiterRecord* rec, int64_t now_ms) {
        rec->last_failure_ms = now_ms;
        rec->h.expires_s = to_s(now_ms + kLimitWindowMs) + 1;
    }
    Store& store_;
    Digest key_;
};

Response rate_limited(int retry_after, const char* legacy) {
    Response r = problem(429, "rate_limited", "Too many attempts",
                         "too many failed attempts from this address; wait " +
                             std::to_string(retry_after) + " seconds without retrying",
                         legacy);
    r.header("Retry-After", std::to_string(retry_after));
    return r;
}

std::string bearer_token(std::string_view authorization, bool* malformed) {
    *malformed = false;
    if (authorization.empty()) return {};
    if (authorization.size() < 8 || strncasecmp(authorization.data(), "Bearer ", 7) != 0) {
        *malformed = true;
        return {};
    }
    std::string_view token = authorization.substr(7);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
    if (token.empty()) *malformed = true;
    return std::string(token);
}

// Standard base64 of an exact length; the problem code says what was wrong.
std::optional<Bytes> decode_key(const json_t* body, const char* field, size_t length, Response* error) {
    auto text = json_string_member(body, field);
    if (!text) {
        *error = bad_request(std::string("\"") + field + "\" must be a string");
        return std::nullopt;
    }
    auto raw = base64_decode_strict(*text);
    if (!raw) {
        *error = problem(400, "invalid_key_encoding", "Invalid key encoding",
                         std::string(field) + " is not standard base64 (+/ alphabet, = padding, no whitespace)");
        return std::nullopt;
    }
    if (raw->size() != length) {
        *error = problem(400, "invalid_key_length", "Invalid key length",
                         std::string(field) + " must decode to exactly " + std::to_string(length) +
                             " bytes, not " + std::to_string(raw->size()));
        return std::nullopt;
    }
    return raw;
}

void copy_name(DeviceRecord* d, const std::string& name) {
    // Truncate on a UTF-8 character boundary.
    size_t n = std::min(name.size(), sizeof(d->name));
    while (n > 0 && n < name.size() && ((uint8_t)name[n] & 0xc0) == 0x80) n--;
    memcpy(d->name, name.data(), n);
    d->name_len = (uint8_t)n;
}

std::string user_agent_summary(const std::string& ua) {
    static const char* const known[] = {"iPhone", "iPad", "Android", "Firefox", "Edg", "Chrome",
                                        "Safari", "curl", "Wget", "okhttp", "python"};
    for (const char* k : known)
        if (ua.find(k) != std::string::npos) return k == std::string("Edg") ? "Edge" : k;
    return ua.substr(0, ua.find_first_of(" /(")).substr(0, 20);
}

}  // namespace

const char* Principal::method_name() const {
    switch (method) {
        case OperatorToken: return "operator_token";
        case DeviceToken: return "device_token";
        case DeviceKeyAuth: return "device_key";
    }
    return "";
}

std::string device_id_text(const uint8_t id[8]) {
    return "dev_" + hex_encode(std::string_view((const char*)id, 8));
}

Principal authenticate_bearer(Store* store, const Settings& settings, std::string_view authorization,
                              const ClientAddr& addr, uint32_t now_s) {
    Principal p;
    bool malformed;
    std::string token = bearer_token(authorization, &malformed);
    if (token.empty()) {
        p.status = malformed ? Principal::Invalid : Principal::Missing;
        return p;
    }
    Digest hash = sha256(token);
    if (settings.operator_token_hash && ct_equal(hash, *settings.operator_token_hash)) {
        p.status = Principal::Ok;
        p.method = Principal::OperatorToken;
        p.role = Role::Owner;
        strcpy(p.device_id, "operator");
        return p;
    }
    p.status = Principal::Invalid;
    if (!store) return p;
    StoreLock lock(*store);
    auto* d = as<DeviceRecord>(store->find(Kind::Device, hash));
    if (!d || !ct_equal(d->h.key, hash.data(), 32)) return p;
    p.status = Principal::Ok;
    p.method = Principal::DeviceToken;
    p.role = d->role;
    static const char digits[] = "0123456789abcdef";
    memcpy(p.device_id, "dev_", 4);
    for (int i = 0; i < 8; i++) {
        p.device_id[4 + 2 * i] = digits[d->id[i] >> 4];
        p.device_id[5 + 2 * i] = digits[d->id[i] & 15];
    }
    if (now_s - d->last_seen_s >= kLastSeenEveryS) {
        d->last_seen_s = now_s;
        if (addr.len) {
            d->addr_len = addr.len;
            memcpy(d->addr, addr.bytes, addr.len);
        }
    }
    return p;
}

Principal authenticate_device_key(const Settings& settings, std::string_view key) {
    Principal p;
    p.method = Principal::DeviceKeyAuth;
    if (key.empty()) return p;
    p.status = Principal::Invalid;
    Digest hash = sha256(key);
    for (const DeviceKey& k : settings.device_keys) {
        if (ct_equal(hash, k.hash) && p.status != Principal::Ok) {
            p.status = Principal::Ok;
            p.account = &k.account;
        }
    }
    return p;
}

namespace {

Response build_unauthorized(bool missing, bool device_key) {
    const char* scheme = device_key ? "DeviceKey" : "Bearer";
    Response r;
    std::string challenge = std::string(scheme) + " realm=\"device-pairing\"";
    if (missing) {
        r = problem(401, "authentication_required", "Authentication required",
                    device_key ? "send the device key in X-DEVICE-KEY"
                               : "send a device token as \"Authorization: Bearer <token>\"");
    } else if (device_key) {
        r = problem(401, "invalid_device_key", "Invalid device key", "the device key is not known");
        challenge += ", error=\"invalid_token\"";
    } else {
        r = problem(401, "invalid_token", "Invalid token", "the token is unknown or revoked");
        challenge += ", error=\"invalid_token\"";
    }
    r.header("WWW-Authenticate", challenge);
    return r;
}

}  // namespace

const Response& unauthorized(const Principal& p, bool device_key) {
    // Built once: the gate answers these on its reject path.
    static const Response answers[2][2] = {
        {build_unauthorized(false, false), build_unauthorized(false, true)},
        {build_unauthorized(true, false), build_unauthorized(true, true)},
    };
    return answers[p.status == Principal::Missing][device_key];
}

std::string normalize_code(std::string_view input) {
    std::string out;
    for (char c : input) {
        if (c == '-' || c == ' ') continue;
        out += (char)toupper((unsigned char)c);
    }
    return out;
}

std::string format_code(const std::string& code, char sep) {
    return code.substr(0, 3) + sep + code.substr(3, 3) + sep + code.substr(6);
}

// ---------------------------------------------------------------- dispatch

Response Service::handle(const RouteMatch& route, const Request& req, const ClientAddr& addr) {
    Principal who;
    if (route.auth == RouteAuth::Bearer) {
        who = authenticate_bearer(&store_, settings_, req.authorization, addr, to_s(req.now_ms));
        if (who.status != Principal::Ok) return unauthorized(who, false);
    } else if (route.auth == RouteAuth::DeviceKey) {
        who = authenticate_device_key(settings_, req.device_key);
        if (who.status != Principal::Ok) return unauthorized(who, true);
    }

    switch (route.route) {
        case Route::Health: return health();
        case Route::PairOtp: return pair_otp(req, addr);
        case Route::PairPage: {
            Response r;
            r.content_type = "text/html; charset=utf-8";
            r.body = kPairPageHtml;
            return r;
        }
        case Route::PairRefresh: return pair_refresh(req);
        case Route::MailboxMint: return mailbox_mint(req, *who.account);
        case Route::MailboxDeposit: return mailbox_deposit(req, route.param);
        case Route::MailboxPoll: return mailbox_poll(req, route.param, *who.account);
        case Route::MailboxCancel: return mailbox_cancel(req, route.param, *who.account);
        case Route::Identity: return identity();
        case Route::Attest: return attest(req);
        case Route::Verify: return verify(req);
        case Route::CodeRequest: return code_request(req);
        case Route::CodeApprove: return code_decide(req, true, addr);
        case Route::CodeReject: return code_decide(req, false, addr);
        case Route::CodeStatus: return code_status(req, route.param, addr);
        case Route::CodePending:
            if (who.role != Role::Owner) return forbidden("listing pending requests needs the owner role");
            return code_pending(req);
        case Route::CodeQr: return code_qr(req);
        case Route::CodeCleanup: return code_cleanup(req);
        case Route::DeviceList: return device_list();
        case Route::Stats:
            if (who.role != Role::Owner) return forbidden("zone statistics need the owner role");
            return stats();
        case Route::DeviceRevoke: return device_revoke(who, route.param);
    }
    return problem(500, "internal_error", "Internal error", "unhandled route");
}

Response Service::health() { return json_response(200, json_pack("{s:s}", "status", "ok")); }

std::string Service::base_url(const Request& req) const {
    std::string url = settings_.public_url.empty() ? req.scheme + "://" + req.host : settings_.public_url;
    while (!url.empty() && url.back() == '/') url.pop_back();
    return url;
}

// ---------------------------------------------------------------- OTP (seed 000)

bool Service::otp_live(int64_t now_ms) {
    StoreLock lock(store_);
    const OtpState& otp = store_.shared().otp;
    return otp.expires_ms > now_ms && !otp.burned;
}

std::string Service::new_otp(int64_t now_ms) {
    char digits[8];
    snprintf(digits, sizeof(digits), "%06u", random_below(1000000));
    Digest hash = key_of("otp", digits);
    StoreLock lock(store_);
    OtpState& otp = store_.shared().otp;
    memcpy(otp.hash, hash.data(), 32);
    otp.expires_ms = now_ms + settings_.otp_ttl_ms;
    otp.failures = 0;
    otp.burned = 0;
    otp.generation++;
    store_.shared().dirty++;
    return digits;
}

std::vector<std::string> Service::otp_banner(const std::string& base, const std::string& otp,
                                             int64_t now_ms) const {
    std::string url = base + "/pair#otp=" + otp;
    std::vector<std::string> lines;
    lines.push_back("device pairing: open " + base + "/pair on the device, or scan:");
    for (std::string& row : qr_terminal_lines(url)) lines.push_back(std::move(row));
    lines.push_back("OTP: " + otp + " (expires in " + std::to_string(settings_.otp_ttl_ms / 60000) +
                    " minutes, at " + iso8601_ms(now_ms + settings_.otp_ttl_ms) +
                    "); at most 10 guesses, P <= 1e-5");
    return lines;
}

Response Service::pair_otp(const Request& req, const ClientAddr& addr) {
    if (settings_.operator_token_unavailable)
        return problem(501, "pairing_unavailable", kUnavailable,
                       "the gateway token file could not be read or created", kUnavailable);
    Response error;
    Json body = body_object(req, &error);
    if (!body) return error;
    auto code = json_string_member(body.get(), "otp");
    if (!code) return bad_request("\"otp\" must be a string of 6 digits");
    std::string name = json_string_member(body.get(), "name").value_or(user_agent_summary(req.user_agent));

    const int64_t now = req.now_ms;
    Digest presented = key_of("otp", *code);
    StoreLock lock(store_);
    Limiter limiter(store_, "otp-limit", addr);
    if (int wait = limiter.retry_after(now)) return rate_limited(wait, kTooMany);

    OtpState& otp = store_.shared().otp;
    const bool otp_live = otp.expires_ms > now && !otp.burned;
    if (otp_live && ct_equal(otp.hash, presented.data(), 32)) {
        auto token = issue_device_locked(Role::Owner, PairMethod::Otp, name, addr, to_s(now));
        if (!token) return zone_full();
        otp.expires_ms = 0;  // single use
        limiter.succeeded();
        Response r = json_response(200, json_pack("{s:s}", "token", token->c_str()));
        r.durable = true;
        return r;
    }
    limiter.failed(now);
    if (otp_live && ++otp.failures >= kOtpBurnAfter) {
        otp.burned = 1;
        Response r = problem(401, "invalid_code", kInvalidCode, "the code is wrong or expired", kInvalidCode);
        r.notices.push_back("device pairing: OTP burned after " + std::to_string(kOtpBurnAfter) +
                            " failed attempts; GET /pair/refresh or reload nginx for a new one");
        return r;
    }
    store_.shared().dirty++;
    return problem(401, "invalid_code", kInvalidCode, "the code is wrong or expired", kInvalidCode);
}

Response Service::pair_refresh(const Request& req) {
    std::string otp = new_otp(req.now_ms);
    std::string url = base_url(req);
    std::string pairing_url = url + "/pair#otp=" + otp;
    Response r = json_response(
        200, json_pack("{s:s, s:s, s:s, s:s}", "otp", otp.c_str(), "expires_at",
                       iso8601_ms(req.now_ms + settings_.otp_ttl_ms).c_str(), "pairing_url",
                       pairing_url.c_str(), "qr_svg", qr_svg(pairing_url).c_str()));
    r.notices = otp_banner(url, otp, req.now_ms);
    return r;
}

std::optional<std::string> Service::issue_device_locked(Role role, PairMethod method,
                                                        const std::string& name,
                                                        const ClientAddr& addr, uint32_t now_s) {
    std::string token = random_token("dp_tok_", 32);
    Bytes id = random_bytes(8);
    auto* d = insert_record<DeviceRecord>(store_, Kind::Device, sha256(token), now_s, [&](DeviceRecord* d) {
        d->last_seen_s = now_s;
        d->role = role;
        d->method = method;
        memcpy(d->id, id.data(), 8);
        d->addr_len = addr.len;
        memcpy(d->addr, addr.bytes, sizeof(d->addr));
        copy_name(d, name);
    });
    if (!d) return std::nullopt;
    store_.shared().devices++;
    store_.shared().dirty++;
    return token;
}

// ---------------------------------------------------------------- mailbox (seed 001)

MailboxRecord* Service::find_mailbox_locked(const std::string& id, const std::string* account,
                                            uint32_t now_s) {
    auto* m = as<MailboxRecord>(store_.find(Kind::Mailbox, key_of("mailbox", id)));
    if (!m || !live(&m->h, now_s)) return nullptr;
    if (account) {
        Digest owner = key_of("account", *account);
        if (!ct_equal(m->account_hash, owner.data(), sizeof(m->account_hash))) return nullptr;
    }
    return m;
}

namespace {

Response pairing_not_found() {
    return problem(404, "pairing_not_found", "Pairing not found",
                   "no such pairing for this account; mint a new one");
}

Response invalid_write_token(const char* detail) {
    Response r = problem(401, "invalid_write_token", "Invalid write token", detail);
    r.header("WWW-Authenticate", "Bearer realm=\"device-pairing\", error=\"invalid_token\"");
    return r;
}

}  // namespace

Response Service::mailbox_mint(const Request& req, const std::string& account) {
    const uint32_t now = to_s(req.now_ms);
    Digest owner = key_of("account", account);
    std::string id = random_token("", 16);
    std::string write_token = random_token("dp_wt_", 32);
    Digest token_hash = sha256(write_token);

    StoreLock lock(store_);
    sweep_expired(store_, now);  // expired mailboxes must not count against the cap
    uint32_t live_count = live_mailboxes(store_, owner.data());
    if (live_count >= settings_.max_pairings_per_account)
        return problem(429, "too_many_pairings", "Too many pairings",
                       "this account already has " + std::to_string(live_count) +
                           " live pairings; cancel one or let it expire");
    auto* m = insert_record<MailboxRecord>(store_, Kind::Mailbox, key_of("mailbox", id), now, [&](MailboxRecord* m) {
        m->h.expires_s = now + settings_.mailbox_ttl_s;
        memcpy(m->write_token_hash, token_hash.data(), 32);
        memcpy(m->account_hash, owner.data(), sizeof(m->account_hash));
    });
    if (!m) return zone_full();
    if (!count_mailbox(store_, m, now)) {
        store_.remove(&m->h);
        return zone_full();
    }
    store_.shared().dirty++;
    return json_response(201, json_pack("{s:s, s:s, s:i}", "pairing_id", id.c_str(), "write_token",
                                        write_token.c_str(), "expires_in_secs",
                                        (json_int_t)settings_.mailbox_ttl_s));
}

Response Service::mailbox_deposit(const Request& req, const std::string& id) {
    const uint32_t now = to_s(req.now_ms);
    bool malformed;
    std::string token = bearer_token(req.authorization, &malformed);
    Digest presented = sha256(token);

    StoreLock lock(store_);
    auto* m = as<MailboxRecord>(store_.find(Kind::Mailbox, key_of("mailbox", id)));
    if (!m) return pairing_not_found();
    const bool token_matches = !token.empty() && ct_equal(m->write_token_hash, presented.data(), 32);
    if (m->h.flags & kMailboxReady) {
        if (token_matches)
            return problem(409, "pairing_already_completed", "Pairing already completed",
                           "this pairing already holds keys; poll it to read them");
        return invalid_write_token("the write token is wrong or already spent");
    }
    if (!live(&m->h, now)) return pairing_not_found();
    if (token.empty()) return invalid_write_token("send the write token as \"Authorization: Bearer <token>\"");
    if (!token_matches) return invalid_write_token("the write token is wrong, expired or spent");

    Response error;
    Json body = body_object(req, &error);
    if (!body) return error;
    auto session_pub = decode_key(body.get(), "session_pub", 32, &error);
    if (!session_pub) return error;
    auto ecdh_pub = decode_key(body.get(), "ecdh_pub", 65, &error);
    if (!ecdh_pub) return error;
    if (!ed25519_public_key_ok(*session_pub))
        return problem(400, "invalid_key", "Invalid key",
                       "session_pub is not a usable Ed25519 public key (non-canonical or small order)");
    if (!p256_public_key_ok(*ecdh_pub))
        return problem(400, "invalid_key", "Invalid key",
                       "ecdh_pub is not an uncompressed point on P-256");

    memcpy(m->session_pub, session_pub->data(), 32);
    memcpy(m->ecdh_pub, ecdh_pub->data(), 65);
    m->h.flags |= kMailboxReady;
    m->h.expires_s = std::max(m->h.expires_s, now + settings_.mailbox_ttl_s);  // time to read
    store_.shared().dirty++;
    return no_content();
}

Response Service::mailbox_poll(const Request& req, const std::string& id, const std::string& account) {
    std::string wait_arg = req.query_arg("wait");
    uint32_t wait = 0;
    if (!wait_arg.empty()) {
        if (wait_arg.size() > 2 || wait_arg.find_first_not_of("0123456789") != std::string::npos ||
            (wait = (uint32_t)std::stoul(wait_arg)) > kMaxWaitS)
            return bad_request("wait must be a whole number of seconds from 0 to 30");
    }
    StoreLock lock(store_);
    MailboxRecord* m = find_mailbox_locked(id, &account, to_s(req.now_ms));
    if (!m) return pairing_not_found();
    if (!(m->h.flags & kMailboxReady)) {
        Response r = json_response(200, json_pack("{s:s}", "status", "pending"));
        if (wait) r.poll_until_ms = req.now_ms + wait * 1000LL;
        return r;
    }
    return json_response(200, json_pack("{s:s, s:s, s:s}", "status", "ready", "session_pub",
                                        base64_encode(std::string_view((char*)m->session_pub, 32)).c_str(),
                                        "ecdh_pub",
                                        base64_encode(std::string_view((char*)m->ecdh_pub, 65)).c_str()));
}

Response Service::mailbox_cancel(const Request& req, const std::string& id, const std::string& account) {
    StoreLock lock(store_);
    MailboxRecord* m = find_mailbox_locked(id, &account, to_s(req.now_ms));
    if (!m) return pairing_not_found();
    remove_record(store_, &m->h);
    store_.shared().dirty++;
    return no_content();
}

// ---------------------------------------------------------------- identity (seed 002)

namespace {

Response identity_unavailable() {
    return problem(501, "identity_unavailable", "No device identity",
                   "device_pairing_identity is not configured for this server");
}

}  // namespace

Response Service::identity() {
    if (!settings_.identity) return identity_unavailable();
    const Ed25519Identity& id = *settings_.identity;
    return json_response(200, json_pack("{s:s, s:s, s:s}", "deviceId", id.device_id().c_str(),
                                        "publicKey", base64_encode(id.public_raw()).c_str(),
                                        "fingerprint", id.fingerprint().c_str()));
}

Response Service::attest(const Request& req) {
    if (!settings_.identity) return identity_unavailable();
    Response error;
    Json body = body_object(req, &error);
    if (!body) return error;
    json_t* data = json_object_get(body.get(), "data");
    if (!json_is_object(data)) return bad_request("\"data\" must be a JSON object");
    if (json_canonical(data).size() > settings_.max_attest_data)
        return problem(413, "data_too_large", "Attestation data too large",
                       "\"data\" must be at most " + std::to_string(settings_.max_attest_data) +
                           " bytes of canonical JSON");
    const Ed25519Identity& id = *settings_.identity;
    std::string public_key = base64_encode(id.public_raw());
    std::string nonce = base64url_encode(random_bytes(16));
    std::string timestamp = iso8601_ms(req.now_ms);
    Json signed_part(json_pack("{s:O, s:s, s:s, s:s, s:s}", "data", data, "deviceId",
                               id.device_id().c_str(), "nonce", nonce.c_str(), "publicKey",
                               public_key.c_str(), "timestamp", timestamp.c_str()));
    std::string signature = base64_encode(id.sign(json_canonical(signed_part.get())));
    return json_response(
        200, json_pack("{s:{s:s, s:s, s:{s:s, s:s, s:O, s:s}}}", "attestation", "deviceId",
                       id.device_id().c_str(), "publicKey", public_key.c_str(), "attestation",
                       "timestamp", timestamp.c_str(), "nonce", nonce.c_str(), "data", data,
                       "signature", signature.c_str()));
}

Response Service::verify(const Request& req) {
    Response error;
    Json body = body_object(req, &error);
    if (!body) return error;
    const json_t* outer = json_object_get(body.get(), "attestation");
    const json_t* inner = json_object_get(outer, "attestation");
    auto device_id = json_string_member(outer, "deviceId");
    auto public_key = json_string_member(outer, "publicKey");
    auto timestamp = json_string_member(inner, "timestamp");
    auto nonce = json_string_member(inner, "nonce");
    auto signature = json_string_member(inner, "signature");
    json_t* data = json_object_get(inner, "data");
    if (!json_is_object(outer) || !json_is_object(inner) || !device_id || !public_key ||
        !timestamp || !nonce || !signature || !json_is_object(data))
        return problem(400, "invalid_attestation", "Malformed attestation",
                       "expected {attestation:{deviceId, publicKey, attestation:{timestamp, nonce, "
                       "data, signature}}}");
    int64_t max_age = kDefaultMaxAgeMs;
    if (const json_t* m = json_object_get(body.get(), "maxAgeMs")) {
        if (!json_is_integer(m) || json_integer_value(m) <= 0 || json_integer_value(m) > kMaxAgeLimitMs)
            return bad_request("maxAgeMs must be a whole number of milliseconds from 1 to 86400000");
        max_age = json_integer_value(m);
    }
    auto key = base64_decode_strict(*public_key);
    auto sig = base64_decode_strict(*signature);
    auto when = parse_iso8601_ms(*timestamp);
    if (!key || key->size() != 32 || !sig || sig->size() != 64 || !when || nonce->empty() ||
        nonce->size() > 128)
        return problem(400, "invalid_attestation", "Malformed attestation",
                       "publicKey must be 32 bytes and signature 64 bytes of standard base64, "
                       "timestamp ISO-8601 UTC, nonce 1-128 characters");

    auto verdict = [](bool valid, const char* reason) {
        return json_response(200, json_pack("{s:b, s:s?}", "valid", valid, "reason", reason));
    };
    if (ed25519_device_id(*key) != *device_id) return verdict(false, "device_id_mismatch");
    Json signed_part(json_pack("{s:O, s:s, s:s, s:s, s:s}", "data", data, "deviceId",
                               device_id->c_str(), "nonce", nonce->c_str(), "publicKey",
                               public_key->c_str(), "timestamp", timestamp->c_str()));
    if (!ed25519_public_key_ok(*key) || !ed25519_verify(*key, json_canonical(signed_part.get()), *sig))
        return verdict(false, "invalid_signature");
    if (*when > req.now_ms + kFutureSkewMs) return verdict(false, "future_timestamp");
    if (req.now_ms - *when > max_age) return verdict(false, "expired");

    StoreLock lock(store_);
    Digest nonce_key = key_of("nonce", *device_id + "\n" + *nonce);
    RecordHeader* seen = store_.find(Kind::Nonce, nonce_key);
    if (seen && live(seen, to_s(req.now_ms))) return verdict(false, "replay");
    const uint32_t nonce_expires = to_s(*when + max_age + kFutureSkewMs) + 1;
    if (seen) {
        seen->expires_s = nonce_expires;  // seen long ago: its window starts again
    } else if (!insert_record<NonceRecord>(store_, Kind::Nonce, nonce_key, to_s(req.now_ms),
                                           [&](NonceRecord* n) { n->h.expires_s = nonce_expires; })) {
        return zone_full();
    }
    return verdict(true, nullptr);
}

// ---------------------------------------------------------------- pairing codes (seed 002)

std::optional<Service::NewRequest> Service::create_code_request(const std::string& requester,
                                                                const std::string& meta,
                                                                int64_t now_ms) {
    NewRequest out;
    out.request_id = random_token("pair_", 16);
    for (size_t i = 0; i < kCodeLength; i++) out.code += kCodeAlphabet[random_below(sizeof(kCodeAlphabet) - 1)];
    out.expires_ms = now_ms + settings_.code_ttl_s * 1000LL;
    Digest code_hash = key_of("code", out.code);
    const uint32_t now = to_s(now_ms);

    StoreLock lock(store_);
    auto* r = insert_record<CodeRequestRecord>(
        store_, Kind::CodeRequest, key_of("request", out.request_id), now, [&](CodeRequestRecord* r) {
            r->code_expires_s = to_s(out.expires_ms);
            r->h.expires_s = r->code_expires_s + kExpiredVisibleS;  // "expired" stays visible a while
            memcpy(r->code_hash, code_hash.data(), 32);
            r->requester_len = (uint8_t)std::min(requester.size(), sizeof(r->requester));
            memcpy(r->requester, requester.data(), r->requester_len);
            r->meta_len = (uint16_t)meta.size();
            memcpy(r->meta, meta.data(), meta.size());
        });
    if (!r) return std::nullopt;
    store_.shared().dirty++;
    return out;
}

Response Service::code_request(const Request& req) {
    Response error;
    Json body = body_object(req, &error, true);
    if (!body) return error;
    const json_t* requester = json_object_get(body.get(), "requesterId");
    if (requester && (!json_is_string(requester) || json_string_length(requester) > 64))
        return bad_request("\"requesterId\" must be a string of at most 64 bytes");
    const json_t* meta = json_object_get(body.get(), "meta");
    std::string meta_text = meta ? json_compact(meta) : "{}";
    if (meta && !json_is_object(meta)) return bad_request("\"meta\" must be a JSON object");
    if (meta_text.size() > sizeof(CodeRequestRecord::meta))
        return problem(413, "meta_too_large", "Meta too large", "\"meta\" must be at most 256 bytes of JSON");
    auto created = create_code_request(requester ? json_string_value(requester) : "", meta_text, req.now_ms);
    if (!created) return zone_full();
    return json_response(200, json_pack("{s:s, s:s, s:s, s:s}", "requestId", created->request_id.c_str(),
                                        "code", format_code(created->code, '-').c_str(), "formatted",
                                        format_code(created->code, ' ').c_str(), "expiresAt",
                                        iso8601_ms(created->expires_ms).c_str()));
}

Response Service::code_decide(const Request& req, bool approve, const ClientAddr& addr) {
    Response error;
    Json body = body_object(req, &error);
    if (!body) return error;
    auto code = json_string_member(body.get(), "code");
    if (!code) return bad_request("\"code\" must be a string like ABC-123-XYZ");
    Digest code_hash = key_of("code", normalize_code(*code));
    const uint32_t now = to_s(req.now_ms);

    StoreLock lock(store_);
    Limiter limiter(store_, "code-limit", addr);
    if (int wait = limiter.retry_after(req.now_ms)) return rate_limited(wait, nullptr);
    CodeRequestRecord* found = nullptr;
    store_.for_each(Kind::CodeRequest, [&](RecordHeader* h) {
        auto* r = as<CodeRequestRecord>(h);
        if (ct_equal(r->code_hash, code_hash.data(), 32) && r->code_expires_s > now) found = r;
    });
    if (!found) {
        limiter.failed(req.now_ms);
        return problem(404, "code_not_found", "Unknown code", "no pending request has this code, or it expired");
    }
    if (found->status != CodeStatus::Pending)
        return problem(409, "request_not_pending", "Request already decided",
                       "this request was already approved or rejected");
    found->status = approve ? CodeStatus::Approved : CodeStatus::Rejected;
    found->approved_at_ms = req.now_ms;
    store_.shared().dirty++;
    return json_response(200, json_pack("{s:s, s:s, s:s}", "status", approve ? "approved" : "rejected",
                                        "requesterId",
                                        std::string(found->requester, found->requester_len).c_str(),
                                        approve ? "approvedAt" : "rejectedAt",
                                        iso8601_ms(req.now_ms).c_str()));
}

Response Service::code_status(const Request& req, const std::string& id, const ClientAddr& addr) {
    const uint32_t now = to_s(req.now_ms);
    StoreLock lock(store_);
    auto* r = as<CodeRequestRecord>(store_.find(Kind::CodeRequest, key_of("request", id)));
    if (!r || !live(&r->h, now))
        return problem(404, "request_not_found", "Request not found", "no such pairing request");
    switch (r->status) {
        case CodeStatus::Pending:
            return json_response(200, json_pack("{s:s}", "status", r->code_expires_s > now ? "pending" : "expired"));
        case CodeStatus::Rejected:
            return json_response(200, json_pack("{s:s}", "status", "rejected"));
        case CodeStatus::Delivered:
            return json_response(200, json_pack("{s:s, s:s}", "status", "approved", "approvedAt",
                                                iso8601_ms(r->approved_at_ms).c_str()));
        case CodeStatus::Approved: break;
    }
    auto token = issue_device_locked(Role::Device, PairMethod::Code,
                                     std::string(r->requester, r->requester_len), addr, now);
    if (!token) return zone_full();
    r->status = CodeStatus::Delivered;  // the token is handed out exactly once
    Response resp = json_response(200, json_pack("{s:s, s:s, s:s}", "status", "approved", "token",
                                                 token->c_str(), "approvedAt",
                                                 iso8601_ms(r->approved_at_ms).c_str()));
    resp.durable = true;
    return resp;
}

Response Service::code_pending(const Request& req) {
    const uint32_t now = to_s(req.now_ms);
    Json list(json_array());
    StoreLock lock(store_);
    store_.for_each(Kind::CodeRequest, [&](RecordHeader* h) {
        auto* r = as<CodeRequestRecord>(h);
        if (r->status != CodeStatus::Pending || r->code_expires_s <= now) return;
        json_error_t err;
        json_t* meta = json_loadb(r->meta, r->meta_len, 0, &err);
        json_array_append_new(
            list.get(), json_pack("{s:s, s:s#, s:o, s:s, s:s}", "ref",
                                  hex_encode(std::string_view((char*)r->h.key, 4)).c_str(), "requesterId",
                                  r->requester, (int)r->requester_len, "meta", meta ? meta : json_object(),
                                  "createdAt", iso8601_ms(r->h.created_s * 1000LL).c_str(), "expiresAt",
                                  iso8601_ms(r->code_expires_s * 1000LL).c_str()));
    });
    return json_response(200, json_pack("{s:O}", "requests", list.get()));
}

Response Service::code_qr(const Request& req) {
    auto created = create_code_request("qr", "{}", req.now_ms);
    if (!created) return zone_full();
    std::string url = settings_.app_url;
    auto replace = [&](const std::string& var, const std::string& value) {
        for (size_t pos; (pos = url.find(var)) != std::string::npos;) url.replace(pos, var.size(), value);
    };
    std::string host = req.host;
    if (!settings_.public_url.empty()) {
        host = settings_.public_url.substr(settings_.public_url.find("://") == std::string::npos
                                               ? 0 : settings_.public_url.find("://") + 3);
        host = host.substr(0, host.find('/'));
    }
    replace("$code", format_code(created->code, '-'));
    replace("$host", host);
    return json_response(200, json_pack("{s:s, s:s, s:s, s:s}", "qrSvg", qr_svg(url).c_str(), "pairingUrl",
                                        url.c_str(), "requestId", created->request_id.c_str(),
                                        "expiresAt", iso8601_ms(created->expires_ms).c_str()));
}

Response Service::code_cleanup(const Request& req) {
    const uint32_t now = to_s(req.now_ms);
    json_int_t removed = 0;
    StoreLock lock(store_);
    store_.for_each(Kind::CodeRequest, [&](RecordHeader* h) {
        if (as<CodeRequestRecord>(h)->code_expires_s <= now) {
            remove_record(store_, h);
            removed++;
        }
    });
    if (removed) store_.shared().dirty++;
    return json_response(200, json_pack("{s:I}", "removed", removed));
}

// ---------------------------------------------------------------- devices

Response Service::device_list() {
    struct Row {
        uint32_t created;
        json_t* json;
    };
    std::vector<Row> rows;
    {
        StoreLock lock(store_);
        store_.for_each(Kind::Device, [&](RecordHeader* h) {
            auto* d = as<DeviceRecord>(h);
            ClientAddr a;
            a.len = d->addr_len;
            memcpy(a.bytes, d->addr, sizeof(a.bytes));
            const char* method = d->method == PairMethod::Otp ? "otp" : d->method == PairMethod::Code ? "code" : "imported";
            rows.push_back({h->created_s,
                            json_pack("{s:s, s:s#, s:s, s:s, s:s, s:s, s:s}", "id", device_id_text(d->id).c_str(),
                                      "name", d->name, (int)d->name_len, "role",
                                      d->role == Role::Owner ? "owner" : "device", "method", method,
                                      "createdAt", iso8601_ms(h->created_s * 1000LL).c_str(), "lastSeenAt",
                                      iso8601_ms(d->last_seen_s * 1000LL).c_str(), "lastAddress",
                                      addr_text(a).c_str())});
        });
    }
    std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.created < b.created; });
    Json list(json_array());
    for (Row& r : rows) json_array_append_new(list.get(), r.json);
    return json_response(200, json_pack("{s:O}", "devices", list.get()));
}

// Record counts and the zone's slab usage, for operators and `make bench`.
Response Service::stats() {
    json_t* kinds = json_object();
    static const char* const names[kKindCount] = {"devices", "limiters", "mailboxes", "codeRequests", "nonces",
                                                  "accountCounters"};
    StoreLock lock(store_);
    for (size_t k = 0; k < kKindCount; k++) {
        json_int_t n = 0;
        if ((Kind)k == Kind::Device)
            n = (json_int_t)store_.shared().devices;  // a counter: no walk over a million devices
        else
            store_.for_each((Kind)k, [&](RecordHeader*) { n++; });
        json_object_set_new(kinds, names[k], json_integer(n));
    }
    return json_response(200, json_pack("{s:o, s:I, s:I}", "records", kinds, "zoneBytes",
                                        (json_int_t)store_.total_bytes(), "zoneFreeBytes",
                                        (json_int_t)store_.free_bytes()));
}

Response Service::device_revoke(const Principal& who, const std::string& id) {
    if (who.role != Role::Owner && id != who.device_id)
        return forbidden("only an owner may revoke another device");
    Response not_found = problem(404, "device_not_found", "Device not found", "no paired device has this id");
    auto raw = id.size() == 20 && id.compare(0, 4, "dev_") == 0 ? hex_decode(id.substr(4)) : std::nullopt;
    if (!raw) return not_found;
    StoreLock lock(store_);
    RecordHeader* target = nullptr;
    store_.for_each(Kind::Device, [&](RecordHeader* h) {
        if (memcmp(as<DeviceRecord>(h)->id, raw->data(), 8) == 0) target = h;
    });
    if (!target) return not_found;
    remove_record(store_, target);
    store_.shared().dirty++;
    Response r = no_content();
    r.durable = true;
    return r;
}

}  // namespace dp
