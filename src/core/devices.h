// Paired devices: issuing a device token, the list, revocation, zone stats.
#pragma once

#include <string>

#include "core/call.h"

namespace dp {

// "dp_tok_" + base64url of 32 random bytes.
std::string device_token_text(const Bytes& raw);
// Issues a device token (from raw, or fresh random bytes) and its record;
// the store lock is held by the caller. The error is zone_full.
Result<std::string> issue_device(Store& store, Role role, PairMethod method, const std::string& name,
                                 const ClientAddr& addr, uint32_t now_s, const Bytes& raw = random_bytes(32));

// A short device name from a User-Agent: the platform or client it names.
std::string user_agent_summary(const std::string& user_agent);

Response device_list(Call& call);     // GET /api/devices
Response device_revoke(Call& call);   // DELETE /api/devices/{id}
Response zone_stats(Call& call);      // GET /api/devices/stats

}  // namespace dp
