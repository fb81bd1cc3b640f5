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
    enum Method { OperatorToken, DeviceToken, DeviceKeyAuth } method = DeviceToken;
    Role role = Role::Device;
    char device_id[24] = {};     // "dev_<16 hex>", "operator", or empty
    char device_name[24] = {};   // the paired device's name (valid UTF-8), "operator", or empty
    const std::string* account = nullptr;  // device key's account

    const char* method_name() const;
    const char* role_name() const;  // "owner", "device", or "account" for a device key
    bool owner() const { return status == Ok && role == Role::Owner; }
};

// Checks "Authorization: Bearer <token>" against the operator token and the
// device records (when there is a store); refreshes last-seen at most once a minute.
Principal authenticate_bearer(Store* store, const Settings& settings, std::string_view authorization,
                              const ClientAddr& addr, uint32_t now_s);
Principal authenticate_device_key(const Settings& settings, std::string_view key);

// Problem answers for a failed credential check (RFC 6750 header included).
const Response& unauthorized(const Principal& p, bool device_key);

}  // namespace dp
