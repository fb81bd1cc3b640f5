// One API request as a capability's handler sees it, and what the handlers
// of every capability share: body parsing, time, keys, common problems.
#pragma once

#include <string>

#include "core/auth.h"
#include "core/http.h"
#include "core/json.h"
#include "core/settings.h"
#include "core/store.h"

namespace dp {

struct Call {
    Store& store;
    const Settings& settings;
    const Request& req;
    ClientAddr addr;
    Principal who;  // set when the route requires a credential
    std::string param;  // the route's {id} segment

    uint32_t now_s() const { return (uint32_t)(req.now_ms / 1000); }
};

inline uint32_t to_s(int64_t ms) { return (uint32_t)(ms / 1000); }
inline Digest key_of(std::string_view label, std::string_view value) { return sha256_labeled(label, value); }
// The stored form of a guessable secret (an OTP, a pairing code): a MAC
// under the zone's secret key, so that reading the zone, the state file or
// Redis does not let anyone test guesses offline.
inline Digest guessable_key(const Settings& settings, std::string_view label, std::string_view value) {
    return hmac_labeled(settings.secret_key, label, value);
}

// 32 bytes XOR a key derived from a secret only the client holds (a request
// id, an old token): stored so that a retry within a grace gets the same
// token back, useless to anyone who reads the zone. Its own inverse.
Bytes seal_with(std::string_view label, std::string_view secret, const uint8_t* bytes);
// How long a retried delivery (a lost answer) gets the same token.
constexpr uint32_t kRetryGraceS = 60;

// The audit event of an address locked out of guessing a secret ("otp", "code").
inline AuditEvent lockout_event(const char* secret) { return AuditEvent{"lockout", "", "", secret, "", ""}; }

Response bad_request(const std::string& detail);
Response zone_full();
// 503 quota_exceeded: what anonymous clients may keep in the zone is used up.
Response quota_full(const char* what);
Response forbidden(const char* detail);
// 503 state_unavailable, Retry-After: 1: the change could not be made durable
// (and was undone), or this worker's zone was retired by a resize.
Response unavailable(const char* detail);

// A Content-Type's media type: without parameters, in lower case.
std::string media_type(const std::string& content_type);
// False for media types that cannot carry JSON text (multipart, binary).
bool media_type_can_hold_json(const std::string& content_type);
// The body as one JSON object, whatever text type it came as (415 for a
// binary one); an empty body counts as {} when allowed.
Result<Json> body_object(const Request& req, bool empty_ok = false);

// "Authorization: Bearer <token>": the token, or empty (malformed set when
// the header is present but not a bearer credential).
// The token of "Bearer TOKEN" (a view into authorization), or empty.
// With dpop_scheme, "DPoP <token>" (RFC 9449 7.1) is accepted too and said.
std::string_view bearer_token(std::string_view authorization, bool* malformed, bool* dpop_scheme = nullptr);

// The public base URL: device_pairing_url, or scheme://Host of the request;
// a Host that is not a valid host[:port] is a 400 and builds nothing.
Result<std::string> base_url(const Settings& settings, const Request& req);
// The host[:port] of that URL, for the app URL's $host.
Result<std::string> public_host(const Settings& settings, const Request& req);

std::string addr_text(const ClientAddr& a);
// An address in 16 bytes (IPv4 as IPv4-mapped IPv6; all zero: unknown), and back.
void addr_to16(const ClientAddr& a, uint8_t out[16]);
ClientAddr addr_from16(const uint8_t in[16]);
std::string device_id_text(const uint8_t id[8]);

}  // namespace dp
