// The OAuth 2.0 Device Authorization Grant (RFC 8628) on top of seed 002's
// pairing-code machine: a public client asks for a device code and a user
// code, an owner approves the user code in the console (or through the
// owner API), and the client polls the token endpoint until it gets a
// device token the gate accepts. With server metadata (RFC 8414) and token
// revocation (RFC 7009). Off (404) unless device_pairing_oauth_client names
// a client.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/call.h"

namespace dp {

constexpr const char* kDeviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code";
constexpr int64_t kPollLeewayMs = 200;  // a poll this much early is still on time (timers, networks)
constexpr uint32_t kSlowDownS = 5;      // RFC 8628 3.5: what slow_down adds to the interval

// application/x-www-form-urlencoded into names and values ('+' is a space,
// %XX decoded). None when it is malformed or names a parameter twice
// (RFC 6749 3.1); why says which.
std::optional<std::map<std::string, std::string>> parse_form(std::string_view body, std::string* why);
// A scope as RFC 6749 3.3 allows it: tokens of %x21 / %x23-5B / %x5D-7E
// separated by single spaces, at most kMaxScopeLen bytes.
bool valid_scope(std::string_view scope);
// The interval a device code is polled at: the configured one, plus 5 s for
// each slow_down it got.
uint32_t poll_interval_s(const Settings& settings, const CodeRequestRecord* r);
// An RFC 6749 5.2 error answer: {"error", "error_description"}.
Response oauth_error(int status, const char* error, const std::string& description);

Response oauth_metadata(Call& call);              // GET /.well-known/oauth-authorization-server
Response oauth_device_authorization(Call& call);  // POST /oauth/device_authorization
Response oauth_token(Call& call);                 // POST /oauth/token
Response oauth_revoke(Call& call);                // POST /oauth/revoke

}  // namespace dp
