// Seed 002, pairing codes: a new device requests a 9-letter code, a trusted
// device approves or rejects it, the requester polls its status and collects
// a device-role token; the pending list, the code QR, cleanup.
#pragma once

#include <string>
#include <string_view>

#include "core/call.h"

namespace dp {

// A typed code: letters and digits upper-cased, everything else (spaces,
// dashes, dots) dropped: "abc-123 xyz" -> "ABC123XYZ", "bcdf.ghjk" -> "BCDFGHJK".
std::string normalize_code(std::string_view input);
std::string format_code(const std::string& code, char sep);  // seed 002's ABC-123-XYZ
std::string format_user_code(const std::string& code);       // RFC 8628's BCDF-GHJK

// An OAuth user code dies after this many wrong codes entered in the zone
// (any address) since it was made, as the OTP burns.
constexpr uint32_t kUserCodeDiesAfter = 10;
constexpr size_t kUserCodeLength = 8;

// A code request (seed 002) or an OAuth device authorization (RFC 8628):
// who asks and what it carries.
struct CodeRequestSpec {
    bool oauth;
    std::string requester;  // seed 002: requesterId; OAuth: the client_id
    std::string meta;       // seed 002: compact JSON; OAuth: the scope
};
struct NewCodeRequest {
    std::string id;    // the request id, or the OAuth device code
    std::string code;  // the code a person types, unformatted
    int64_t expires_ms;
};
// Makes the request under the per-address budget and the zone's quota for
// anonymous records.
Result<NewCodeRequest> create_code_request(Call& call, const CodeRequestSpec& spec);
// Where an OAuth device code's request is found (only its hash is kept).
Digest device_code_key(const Settings& settings, std::string_view device_code);
// Past its code's life, or (OAuth) killed by wrong codes entered since.
bool code_request_dead(Store& store, const CodeRequestRecord* r, uint32_t now_s);
// The app URL template with $code and $host replaced in one pass (inserted
// text is never scanned again) and percent-encoded.
std::string expand_app_url(std::string_view tmpl, const std::string& code, const std::string& host);

Response code_request(Call& call);  // POST /api/devices/pairing/request
Response code_approve(Call& call);  // POST /api/devices/pairing/approve
Response code_reject(Call& call);   // POST /api/devices/pairing/reject
// POST /api/devices/pairing/inspect {"code"}: who asks with this code, from
// where, before an owner decides (a wrong code counts as a failed guess).
Response code_inspect(Call& call);
Response code_status(Call& call);   // GET /api/devices/pairing/status/{requestId} (compatibility)
// POST /api/devices/pairing/status {"requestId"}: the capability stays out of
// the URL and so out of access logs.
Response code_status_post(Call& call);
Response code_pending(Call& call);  // GET /api/devices/pairing/pending
Response code_qr(Call& call);       // GET /api/devices/pairing/qr
Response code_cleanup(Call& call);  // POST /api/devices/pairing/cleanup

}  // namespace dp
