// Table-driven routing of the pairing API on method + URI path.
#pragma once

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
};

enum class RouteAuth { None, Bearer, DeviceKey };

struct RouteMatch {
    enum Outcome { Found, NotFound, MethodNotAllowed } outcome = NotFound;
    Route route = Route::Health;
    std::string param;  // the {id} segment, if the pattern has one
    std::string allow;  // for MethodNotAllowed: "GET, POST"
    bool has_body = false;  // the route reads a JSON request body
    RouteAuth auth = RouteAuth::None;
};

RouteMatch match_route(std::string_view method, std::string_view path);

}  // namespace dp
