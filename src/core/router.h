// Table-driven routing on method + URI path: "{}" in a pattern stands for
// one id segment. The pairing API's own table lives in api.cpp.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dp {

enum class Route {
    Health,
    PairOtp,
    PairPage,
    PairRefresh,
    MailboxMint,
    MailboxDeposit,
    MailboxPoll,
    MailboxCancel,
    Identity,
    Attest,
    Verify,
    CodeRequest,
    CodeApprove,
    CodeReject,
    CodeStatus,
    CodePending,
    CodeQr,
    CodeCleanup,
    DeviceList,
    Stats,
    DeviceRevoke,
    DeviceRevokeOthers,
    DeviceRename,
    DeviceRotate,
    CodeInspect,
    OAuthMetadata,
    OAuthDeviceAuthorization,
    OAuthToken,
    OAuthRevoke,
    LogCheckpoint,
    IdentityRotate,
    LogEntries,
    LogInclusion,
    LogConsistency,
};

// LogReader: a bearer credential of either role, or none when the pairing
// log is public (device_pairing_log_public on).
enum class RouteAuth { None, Bearer, DeviceKey, LogReader };

struct Call;
struct Response;
using Handler = Response (*)(Call&);

struct RouteSpec {
    const char* method;
    const char* pattern;
    Route route;
    bool has_body;     // the route reads a JSON request body
    RouteAuth auth;    // the credential the route requires before its handler runs
    bool owner_only;   // the device role gets 403
    Handler handler;
};

struct RouteMatch {
    enum Outcome { Found, NotFound, MethodNotAllowed } outcome = NotFound;
    const RouteSpec* spec = nullptr;  // the matched route (Found only)
    std::string param;  // the {id} segment, if the pattern has one
    std::string allow;  // for MethodNotAllowed: "GET, POST"
};

RouteMatch match_route(const RouteSpec* table, size_t count, std::string_view method, std::string_view path);

}  // namespace dp
