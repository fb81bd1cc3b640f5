// Who a request is: the bearer and device-key checks the gate and the API
// share, the roles, and the 401 answers (RFC 6750 challenge included).
#pragma once

#include <string>
#include <string_view>

#include "core/http.h"
#include "core/settings.h"
#include "core/store.h"

namespace dp {

struct Principal {
    enum Status { Missing, Invalid, Ok } status = Missing;
    // Why an Invalid token is refused, when the zone still knows it.
    enum Reason : uint8_t { Unknown, Revoked, Expired } reason = Unknown;
    bool expired_now = false;  // this check found the token past its lifetime and retired it
    bool seen_written = false; // this check moved the device's last seen (a write for the journal)
    enum Method { OperatorToken, DeviceToken, DeviceKeyAuth } method = DeviceToken;
    Role role = Role::Device;
    char device_id[24] = {};     // "dev_<16 hex>", "operator", or empty
    char device_name[24] = {};   // the paired device's name (valid UTF-8), "operator", or empty
    const std::string* account = nullptr;  // device key's account
    // DPoP (RFC 9449): the credential came as "DPoP <token>"; the token is
    // bound (to bound_jkt); a proof by that key was checked (jkt, base64url,
    // for $device_pairing_dpop_jkt); or why the token's use was refused.
    bool dpop_scheme = false;
    bool bound = false;
    Digest bound_jkt{};
    bool dpop_checked = false;
    char jkt[44] = {};
    uint8_t dpop_failure = 0;  // a DpopFailure

    const char* method_name() const;
    const char* role_name() const;  // "owner", "device", or "account" for a device key
    bool owner() const { return status == Ok && role == Role::Owner; }
};

// Checks "Authorization: Bearer <token>" against the operator token and the
// device records (when there is a store); refreshes last-seen at most once a
// minute. A device token past settings' idle timeout or lifetime is retired
// on the spot (its record becomes a Revoked one: gone from the list and the
// count) and refused with reason Expired.
// With a request, a DPoP-bound token is checked against its proof (and a
// DPoP credential with a token that is not bound is refused): see
// check_token_use. Without one, a bound token is refused.
Principal authenticate_bearer(Store* store, const Settings& settings, std::string_view authorization,
                              const ClientAddr& addr, uint32_t now_s, const Request* req = nullptr);
Principal authenticate_device_key(const Settings& settings, std::string_view key);

// Problem answers for a failed credential check (RFC 6750 header included).
const Response& unauthorized(const Principal& p, bool device_key);

// The audit event of a token found past its lifetime (expired_now).
AuditEvent expired_event(const Principal& p);

// When a device's token stops being accepted (0: never): the earlier of its
// lifetime's end and its idle timeout's.
uint32_t token_expiry(const DeviceRecord* d, const Settings& settings);
bool token_expired(const DeviceRecord* d, const Settings& settings, uint32_t now_s);

// Takes a device's token out of use (the caller holds the StoreLock): the
// record goes, a Revoked record with the same key says why for a while.
// Where a device's approver is kept: by its id text ("dev_..."), which a
// rotation keeps.
inline Digest approval_key(std::string_view device_id) { return sha256_labeled("approval", device_id); }

// Retires a device (its approval leaves with it, but for a rotation, which
// keeps the device).
// note: fills what else the left-over record keeps (a rotation's seal).
void retire_device(Store& store, const RecordHeader* device, RevokedFlags why, uint32_t now_s,
                   const std::function<void(RevokedRecord*)>& note = nullptr);

}  // namespace dp
