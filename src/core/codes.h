// Seed 002, pairing codes: a new device requests a 9-letter code, a trusted
// device approves or rejects it, the requester polls its status and collects
// a device-role token; the pending list, the code QR, cleanup.
#pragma once

#include <string>
#include <string_view>

#include "core/call.h"

namespace dp {

std::string normalize_code(std::string_view input);  // "abc-123 xyz" -> "ABC123XYZ"
std::string format_code(const std::string& code, char sep);
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
