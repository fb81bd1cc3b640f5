#include "core/auth.h"

#include <algorithm>
#include <cstring>

#include "core/call.h"

namespace dp {

namespace {

constexpr uint32_t kLastSeenEveryS = 60;  // coalescing of last-seen writes

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

Principal authenticate_bearer(Store* store, const Settings& settings, std::string_view authorization,
                              const ClientAddr& addr, uint32_t now_s) {
    Principal p;
    bool malformed;
    std::string_view token = bearer_token(authorization, &malformed);
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
        strcpy(p.device_name, "operator");
        return p;
    }
    p.status = Principal::Invalid;
    if (!store) return p;
    StoreReadLock lock(*store);  // every worker's gate reads at once; only writers wait
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
    memcpy(p.device_name, d->name, std::min<size_t>(d->name_len, sizeof(p.device_name) - 1));
    if (now_s - d->last_seen_s >= kLastSeenEveryS) {
        DeviceRecord* seen = as<DeviceRecord>(store->touch(&d->h));
        seen->last_seen_s = now_s;
        if (addr.len) {
            seen->addr_len = addr.len;
            memcpy(seen->addr, addr.bytes, addr.len);
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

const Response& unauthorized(const Principal& p, bool device_key) {
    // Built once: the gate answers these on its reject path.
    static const Response answers[2][2] = {
        {build_unauthorized(false, false), build_unauthorized(false, true)},
        {build_unauthorized(true, false), build_unauthorized(true, true)},
    };
    return answers[p.status == Principal::Missing][device_key];
}

}  // namespace dp
