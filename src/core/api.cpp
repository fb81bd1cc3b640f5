#include "core/api.h"

#include <cctype>

#include "core/codes.h"
#include "core/devices.h"
#include "core/dpop.h"
#include "core/identity.h"
#include "core/mailbox.h"
#include "core/oauth.h"
#include "core/otp.h"
#include "core/pairing_log.h"

namespace dp {

namespace {

constexpr RouteAuth kNone = RouteAuth::None, kBearer = RouteAuth::Bearer, kKey = RouteAuth::DeviceKey,
                    kLog = RouteAuth::LogReader;
constexpr bool kBody = true, kNoBody = false, kOwner = true, kAnyRole = false;

// Literal patterns come before parameterised ones that could also match.
const RouteSpec kRoutes[] = {
    {"GET", "/health", Route::Health, kNoBody, kNone, kAnyRole, health},
    {"POST", "/pair", Route::PairOtp, kBody, kNone, kAnyRole, pair_otp},
    {"GET", "/pair", Route::PairPage, kNoBody, kNone, kAnyRole, pair_page},
    // Owner-only: the new OTP mints owners, so a device must not see it.
    {"GET", "/pair/refresh", Route::PairRefresh, kNoBody, kBearer, kOwner, pair_refresh},
    {"POST", "/api/v1/device-pairing", Route::MailboxMint, kNoBody, kKey, kAnyRole, mailbox_mint},
    // The write token is checked by the handler: it belongs to the mailbox.
    {"PUT", "/api/v1/device-pairing/{}", Route::MailboxDeposit, kBody, kNone, kAnyRole, mailbox_deposit},
    {"GET", "/api/v1/device-pairing/{}", Route::MailboxPoll, kNoBody, kKey, kAnyRole, mailbox_poll},
    {"DELETE", "/api/v1/device-pairing/{}", Route::MailboxCancel, kNoBody, kKey, kAnyRole, mailbox_cancel},
    {"GET", "/api/devices/identity", Route::Identity, kNoBody, kNone, kAnyRole, identity},
    {"POST", "/api/devices/identity/rotate", Route::IdentityRotate, kNoBody, kBearer, kOwner, identity_rotate},
    {"POST", "/api/devices/attest", Route::Attest, kBody, kBearer, kAnyRole, attest},
    {"POST", "/api/devices/verify", Route::Verify, kBody, kNone, kAnyRole, verify},
    {"POST", "/api/devices/pairing/request", Route::CodeRequest, kBody, kNone, kAnyRole, code_request},
    {"POST", "/api/devices/pairing/approve", Route::CodeApprove, kBody, kBearer, kAnyRole, code_approve},
    {"POST", "/api/devices/pairing/reject", Route::CodeReject, kBody, kBearer, kAnyRole, code_reject},
    {"POST", "/api/devices/pairing/inspect", Route::CodeInspect, kBody, kBearer, kOwner, code_inspect},
    // The request id is the capability: POST keeps it out of the URL (and the
    // access log); the GET form stays for seed 002's clients.
    {"POST", "/api/devices/pairing/status", Route::CodeStatus, kBody, kNone, kAnyRole, code_status_post},
    {"GET", "/api/devices/pairing/status/{}", Route::CodeStatus, kNoBody, kNone, kAnyRole, code_status},
    {"GET", "/api/devices/pairing/pending", Route::CodePending, kNoBody, kBearer, kOwner, code_pending},
    {"GET", "/api/devices/pairing/qr", Route::CodeQr, kNoBody, kNone, kAnyRole, code_qr},
    {"POST", "/api/devices/pairing/cleanup", Route::CodeCleanup, kNoBody, kBearer, kAnyRole, code_cleanup},
    {"GET", "/api/devices/stats", Route::Stats, kNoBody, kBearer, kOwner, zone_stats},
    {"GET", "/api/devices", Route::DeviceList, kNoBody, kBearer, kAnyRole, device_list},
    {"DELETE", "/api/devices", Route::DeviceRevokeOthers, kNoBody, kBearer, kOwner, device_revoke_others},
    {"POST", "/api/devices/self/rotate", Route::DeviceRotate, kNoBody, kBearer, kAnyRole, device_rotate},
    // Owners revoke any device, a device itself (checked by the handler).
    // RFC 8628, 8414, 7009: public clients; the device code and the token are the credentials.
    {"GET", "/.well-known/oauth-authorization-server", Route::OAuthMetadata, kNoBody, kNone, kAnyRole, oauth_metadata},
    {"POST", "/oauth/device_authorization", Route::OAuthDeviceAuthorization, kBody, kNone, kAnyRole,
     oauth_device_authorization},
    {"POST", "/oauth/token", Route::OAuthToken, kBody, kNone, kAnyRole, oauth_token},
    {"POST", "/oauth/revoke", Route::OAuthRevoke, kBody, kNone, kAnyRole, oauth_revoke},
    {"GET", "/api/devices/log/checkpoint", Route::LogCheckpoint, kNoBody, kLog, kAnyRole, log_checkpoint},
    {"GET", "/api/devices/log/entries", Route::LogEntries, kNoBody, kLog, kAnyRole, log_entries},
    {"GET", "/api/devices/log/proof/inclusion", Route::LogInclusion, kNoBody, kLog, kAnyRole, log_inclusion_proof},
    {"GET", "/api/devices/log/proof/consistency", Route::LogConsistency, kNoBody, kLog, kAnyRole,
     log_consistency_proof},
    {"DELETE", "/api/devices/{}", Route::DeviceRevoke, kNoBody, kBearer, kAnyRole, device_revoke},
    {"PATCH", "/api/devices/{}", Route::DeviceRename, kBody, kBearer, kAnyRole, device_rename},
};

}  // namespace

RouteMatch api_route(std::string_view method, std::string_view path) {
    return match_route(kRoutes, sizeof(kRoutes) / sizeof(kRoutes[0]), method, path);
}

Response body_too_large(size_t limit) {
    return problem(413, "body_too_large", "Request body too large",
                   "the body must be at most " + std::to_string(limit) + " bytes");
}

std::optional<Response> api_precheck(const RouteMatch& route, const Request& head, const Settings& settings) {
    if (route.outcome == RouteMatch::NotFound)
        return problem(404, "not_found", "Not found", "no pairing API route at this path");
    if (route.outcome == RouteMatch::MethodNotAllowed) {
        Response r = problem(405, "method_not_allowed", "Method not allowed", "this route accepts " + route.allow);
        r.header("Allow", route.allow);
        return r;
    }
    // The media type is judged by the handler, after the credentials.
    if (route.spec->has_body && head.content_length > (int64_t)settings.max_body) return body_too_large(settings.max_body);
    return std::nullopt;
}

Response api_handle(Store& store, const Settings& settings, const RouteMatch& route, const Request& req,
                    const ClientAddr& addr) {
    Call call{store, settings, req, addr, Principal(), route.param};
    const RouteSpec& spec = *route.spec;
    if (spec.auth == RouteAuth::Bearer || (spec.auth == RouteAuth::LogReader && !settings.log_public)) {
        call.who = authenticate_bearer(&store, settings, req.authorization, addr, call.now_s(), &req);
        if (call.who.status != Principal::Ok) {
            if (spec.route == Route::DeviceRotate && call.who.reason == Principal::Revoked)
                if (std::optional<Response> again = rotation_retry(call)) return *std::move(again);
            if (call.who.dpop_failure) return dpop_refusal((DpopFailure)call.who.dpop_failure, req, settings, false);
            Response refused = unauthorized(call.who, false);
            if (call.who.expired_now) refused.audit.push_back(expired_event(call.who));
            return refused;
        }
    } else if (spec.auth == RouteAuth::DeviceKey) {
        call.who = authenticate_device_key(settings, req.device_key);
        if (call.who.status != Principal::Ok) return unauthorized(call.who, true);
    }
    if (spec.owner_only && !call.who.owner()) return forbidden("this route needs the owner role");
    return spec.handler(call);
}

}  // namespace dp
