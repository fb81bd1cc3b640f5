#include "core/router.h"

namespace dp {

namespace {

struct RouteSpec {
    const char* method;
    const char* pattern;  // "{}" stands for one id segment
    Route route;
    bool has_body;
    RouteAuth auth;
};

constexpr RouteAuth kNone = RouteAuth::None, kBearer = RouteAuth::Bearer, kKey = RouteAuth::DeviceKey;

// Literal patterns come before parameterised ones that could also match.
const RouteSpec kRoutes[] = {
    {"GET", "/health", Route::Health, false, kNone},
    {"POST", "/pair", Route::PairOtp, true, kNone},
    {"GET", "/pair", Route::PairPage, false, kNone},
    {"GET", "/pair/refresh", Route::PairRefresh, false, kBearer},
    {"POST", "/api/v1/device-pairing", Route::MailboxMint, false, kKey},
    {"PUT", "/api/v1/device-pairing/{}", Route::MailboxDeposit, true, kNone},
    {"GET", "/api/v1/device-pairing/{}", Route::MailboxPoll, false, kKey},
    {"DELETE", "/api/v1/device-pairing/{}", Route::MailboxCancel, false, kKey},
    {"GET", "/api/devices/identity", Route::Identity, false, kNone},
    {"POST", "/api/devices/attest", Route::Attest, true, kBearer},
    {"POST", "/api/devices/verify", Route::Verify, true, kNone},
    {"POST", "/api/devices/pairing/request", Route::CodeRequest, true, kNone},
    {"POST", "/api/devices/pairing/approve", Route::CodeApprove, true, kBearer},
    {"POST", "/api/devices/pairing/reject", Route::CodeReject, true, kBearer},
    {"GET", "/api/devices/pairing/status/{}", Route::CodeStatus, false, kNone},
    {"GET", "/api/devices/pairing/pending", Route::CodePending, false, kBearer},
    {"GET", "/api/devices/pairing/qr", Route::CodeQr, false, kNone},
    {"POST", "/api/devices/pairing/cleanup", Route::CodeCleanup, false, kBearer},
    {"GET", "/api/devices/stats", Route::Stats, false, kBearer},
    {"GET", "/api/devices", Route::DeviceList, false, kBearer},
    {"DELETE", "/api/devices/{}", Route::DeviceRevoke, false, kBearer},
};

bool id_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

bool match_pattern(std::string_view pattern, std::string_view path, std::string* param) {
    size_t hole = pattern.find("{}");
    if (hole == std::string_view::npos) return pattern == path;
    if (path.size() <= hole || path.substr(0, hole) != pattern.substr(0, hole)) return false;
    std::string_view rest = path.substr(hole);
    if (rest.size() > 128) return false;
    for (char c : rest)
        if (!id_char(c)) return false;
    *param = std::string(rest);
    return true;
}

}  // namespace

RouteMatch match_route(std::string_view method, std::string_view path) {
    RouteMatch m;
    for (const RouteSpec& spec : kRoutes) {
        std::string param;
        if (!match_pattern(spec.pattern, path, &param)) continue;
        if (method == spec.method) {
            m.outcome = RouteMatch::Found;
            m.route = spec.route;
            m.param = std::move(param);
            m.has_body = spec.has_body;
            m.auth = spec.auth;
            return m;
        }
        if (m.allow.find(spec.method) == std::string::npos) {
            if (!m.allow.empty()) m.allow += ", ";
            m.allow += spec.method;
        }
    }
    m.outcome = m.allow.empty() ? RouteMatch::NotFound : RouteMatch::MethodNotAllowed;
    return m;
}

}  // namespace dp
