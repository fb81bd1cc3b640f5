#include "core/auth.h"

#include "core/pairing_log.h"

#include <algorithm>
#include <cstring>

#include "core/call.h"
#include "core/dpop.h"

namespace dp {

namespace {

// Last-seen writes are coalesced to once a minute, or to half an idle
// timeout shorter than two minutes, so the timeout is judged on a fresh enough value.
// Last seen is kept to a step: 1/8 of the idle timeout (at least a second),
// an hour without one. Each step it moves is a durable write (journal,
// fleet), so a restart, a kill -9 or another host judge idleness on the
// same value; between steps nothing is written.
uint32_t last_seen_step(const Settings& settings) {
    return settings.token_idle_timeout_s ? std::max<uint32_t>(1, settings.token_idle_timeout_s / 8) : 3600;
}

namespace {

uint32_t seen_mark(const Settings& settings, uint32_t now_s) { return now_s - now_s % last_seen_step(settings); }

}  // namespace

void fill_device(Principal& p, const DeviceRecord* d) {
    p.method = Principal::DeviceToken;
    p.role = d->role;
    static const char digits[] = "0123456789abcdef";
    memcpy(p.device_id, "dev_", 4);
    for (int i = 0; i < 8; i++) {
        p.device_id[4 + 2 * i] = digits[d->id[i] >> 4];
        p.device_id[5 + 2 * i] = digits[d->id[i] & 15];
    }
    memcpy(p.device_name, d->name, std::min<size_t>(d->name_len, sizeof(p.device_name) - 1));
}

// Under the write lock: the device's last seen moves to this step's mark
// (and its last address with it). False when another worker was first.
bool write_last_seen(Store& store, const Digest& key, const ClientAddr& addr, uint32_t mark) {
    auto* d = as<DeviceRecord>(store.find(Kind::Device, key));
    if (!d || d->last_seen_s >= mark) return false;
    DeviceRecord* seen = update_record(store, d);
    seen->last_seen_s = mark;
    if (addr.len) {
        seen->addr_len = addr.len;
        memcpy(seen->addr, addr.bytes, addr.len);
    }
    return true;
}

Response build_unauthorized(bool missing, bool device_key, Principal::Reason reason = Principal::Unknown) {
    const char* scheme = device_key ? "DeviceKey" : "Bearer";
    Response r;
    std::string challenge = std::string(scheme) + " realm=\"device-pairing\"";
    if (reason == Principal::Expired) {
        r = problem(401, "token_expired", "Token expired",
                    "the token passed its lifetime or idle timeout; pair this device again");
        challenge += ", error=\"invalid_token\", error_description=\"token expired\"";
    } else if (reason == Principal::Revoked) {
        r = problem(401, "token_revoked", "Token revoked", "the token was revoked; pair this device again");
        challenge += ", error=\"invalid_token\", error_description=\"token revoked\"";
    } else if (missing) {
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

const char* Principal::role_name() const {
    if (method == DeviceKeyAuth) return "account";
    return role == Role::Owner ? "owner" : "device";
}

const char* Principal::method_name() const {
    switch (method) {
        case OperatorToken: return "operator_token";
        case DeviceToken: return "device_token";
        case DeviceKeyAuth: return "device_key";
    }
    return "";
}

namespace {

// The DPoP side of a token's use (RFC 9449 7): refused with the reason kept
// for the answer, or accepted with the proof's facts; counted when DPoP was
// involved at all.
Principal with_dpop(Principal p, Store& store, const Settings& settings, const Request* req, uint32_t now_s) {
    if (p.status != Principal::Ok || (!p.bound && !p.dpop_scheme && (!req || req->dpop_mode != DpopMode::Required)))
        return p;
    static const Request none;
    const DpopFailure f = check_token_use(store, req ? *req : none, settings, p, now_s);
    count_dpop(store, f);
    if (f != DpopFailure::None) {
        p.status = Principal::Invalid;
        p.dpop_failure = (uint8_t)f;
    }
    return p;
}

}  // namespace

Principal authenticate_bearer(Store* store, const Settings& settings, std::string_view authorization,
                              const ClientAddr& addr, uint32_t now_s, const Request* req) {
    Principal p;
    bool malformed;
    std::string_view token = bearer_token(authorization, &malformed, &p.dpop_scheme);
    if (token.empty()) {
        p.status = malformed ? Principal::Invalid : Principal::Missing;
        return p;
    }
    Digest hash = sha256(token);
    if (settings.operator_token_hash && ct_equal(hash, *settings.operator_token_hash)) {
        p.status = p.dpop_scheme ? Principal::Invalid : Principal::Ok;  // the token file's token is never bound
        p.dpop_failure = p.dpop_scheme ? (uint8_t)DpopFailure::Unbound : 0;
        p.method = Principal::OperatorToken;
        p.role = Role::Owner;
        strcpy(p.device_id, "operator");
        strcpy(p.device_name, "operator");
        return p;
    }
    p.status = Principal::Invalid;
    if (!store) return p;
    bool step_seen = false;
    {
        StoreReadLock lock(*store);  // every worker's gate reads at once; only writers wait
        auto* d = as<DeviceRecord>(store->find(Kind::Device, hash));
        if (d && ct_equal(d->h.key, hash.data(), 32)) {
            fill_device(p, d);
            if (auto jkt = device_binding(*store, d)) {
                p.bound = true;
                p.bound_jkt = *jkt;
            }
            if (!token_expired(d, settings, now_s)) {
                p.status = Principal::Ok;
                step_seen = d->last_seen_s < seen_mark(settings, now_s);  // a new step: written below
            }
        } else {
            auto* gone = store->find(Kind::Revoked, hash);
            if (gone && ct_equal(gone->key, hash.data(), 32) && record_live(gone, now_s))
                p.reason = gone->flags & kRevokedExpired ? Principal::Expired : Principal::Revoked;
            return p;
        }
    }
    // A bound token's proof (a signature check) outside any lock.
    p = with_dpop(p, *store, settings, req, now_s);
    if (p.status == Principal::Ok && !step_seen) return p;
    if (p.status != Principal::Ok && p.dpop_failure) return p;
    StoreLock lock(*store);
    if (p.status == Principal::Ok) {
        p.seen_written = write_last_seen(*store, hash, addr, seen_mark(settings, now_s));
        return p;
    }
    // Expired: retired under the write lock, once (another worker may have
    // been first).
    p.reason = Principal::Expired;
    auto* d = as<DeviceRecord>(store->find(Kind::Device, hash));
    if (d && token_expired(d, settings, now_s)) {
        log_event(*store, expired_event(p), (int64_t)now_s * 1000);
        retire_device(*store, &d->h, kRevokedExpired, now_s);
        p.expired_now = true;
    }
    return p;
}

AuditEvent expired_event(const Principal& p) {
    return AuditEvent{"expired", p.device_id, p.role_name(), "", "", ""};
}

uint32_t token_expiry(const DeviceRecord* d, const Settings& settings) {
    uint32_t expiry = d->h.expires_s;
    if (settings.token_idle_timeout_s) {
        // Last seen is a step's mark, up to a step before the last use: the
        // step is added so that no device used within the timeout expires.
        uint32_t idle = d->last_seen_s + settings.token_idle_timeout_s + last_seen_step(settings);
        expiry = expiry ? std::min(expiry, idle) : idle;
    }
    return expiry;
}

bool token_expired(const DeviceRecord* d, const Settings& settings, uint32_t now_s) {
    const uint32_t expiry = token_expiry(d, settings);
    return expiry != 0 && now_s >= expiry;
}

void retire_device(Store& store, const RecordHeader* device, RevokedFlags why, uint32_t now_s,
                   const std::function<void(RevokedRecord*)>& note) {
    Digest key;
    memcpy(key.data(), device->key, 32);
    if (why != kRevokedRotated) {
        const std::string id = device_id_text(as<DeviceRecord>(device)->id);
        if (const RecordHeader* approval = store.find(Kind::Approval, approval_key(id))) store.remove(approval);
        if (const RecordHeader* binding = store.find(Kind::Binding, binding_key(id))) store.remove(binding);
    }
    store.remove(device);
    // Without room for it the token is still gone; it is just refused as unknown.
    insert_record<RevokedRecord>(store, Kind::Revoked, key, now_s, [&](RevokedRecord* r) {
        r->h.flags = why;
        r->h.expires_s = now_s + kRevokedKeptS;
        if (note) note(r);
    });
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

const Response& unauthorized(const Principal& p, bool device_key) {
    if (!device_key && p.dpop_failure) {
        static const std::vector<Response> dpop = [] {
            std::vector<Response> all;
            for (size_t f = 0; f < (size_t)DpopFailure::Count; f++) all.push_back(dpop_unauthorized((DpopFailure)f));
            return all;
        }();
        return dpop[p.dpop_failure < dpop.size() ? p.dpop_failure : 0];
    }
    // Built once: the gate answers these on its reject path.
    static const Response answers[2][2] = {
        {build_unauthorized(false, false), build_unauthorized(false, true)},
        {build_unauthorized(true, false), build_unauthorized(true, true)},
    };
    static const Response revoked = build_unauthorized(false, false, Principal::Revoked),
                          expired = build_unauthorized(false, false, Principal::Expired);
    if (!device_key && p.reason == Principal::Revoked) return revoked;
    if (!device_key && p.reason == Principal::Expired) return expired;
    return answers[p.status == Principal::Missing][device_key];
}

}  // namespace dp
