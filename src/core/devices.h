// Paired devices: issuing a device token, the list, revocation, zone stats.
#pragma once

#include <optional>
#include <string>

#include "core/call.h"

namespace dp {

// "dp_tok_" + base64url of 32 random bytes.
std::string device_token_text(const Bytes& raw);
struct IssuedDevice {
    std::string token;
    std::string id;  // "dev_" + hex
    std::optional<Digest> dpop_jkt;  // the key its token is bound to (RFC 9449), if any
};
// Issues a device token (from raw, or fresh random bytes) and its record;
// the store lock is held by the caller. Errors: 409 device_limit when
// settings.max_devices are paired, zone_full.
Result<IssuedDevice> issue_device(Store& store, const Settings& settings, Role role, PairMethod method,
                                  const std::string& name, const ClientAddr& addr, uint32_t now_s,
                                  const Bytes& raw = random_bytes(32),
                                  const std::optional<Digest>& dpop_jkt = std::nullopt);
// A token issued now ends its life here (0: device_pairing_token_lifetime off).
uint32_t token_end_of_life(const Settings& settings, uint32_t issued_s);
// The audit event of a pairing, counted for the metrics.
AuditEvent paired_event(Store& store, const IssuedDevice& device, Role role, PairMethod method);
const char* pair_method_name(PairMethod method);

// A User-Agent as a word from a fixed vocabulary (the platform or client it
// names, "other" for any other, "" for none): a default device name and the
// audit log's user_agent, never the client's own bytes.
std::string user_agent_summary(const std::string& user_agent);

Response device_list(Call& call);     // GET /api/devices
Response device_revoke(Call& call);   // DELETE /api/devices/{id}
Response device_revoke_others(Call& call);  // DELETE /api/devices?all_but_self=1
Response device_rename(Call& call);   // PATCH /api/devices/{id}
Response device_rotate(Call& call);   // POST /api/devices/self/rotate
// The approver a principal is (the operator token, or a device), as kept
// on a code request and then on the device it becomes, and as text.
Approver approver_of(const Principal& who);
std::string approver_text(const Approver& approver);
// Keeps who approved a device that paired by code (false: no room).
// An OAuth device keeps its client_id and granted scope there too.
bool record_approval(Store& store, const std::string& device_id, const Approver& approver, uint32_t now_s,
                     std::string_view client_id = {}, std::string_view scope = {});
// The OAuth scope granted to a device ("" for none), for $device_pairing_scope.
std::string granted_scope(Store& store, const std::string& device_id);

// A rotation retried with the old token within the grace: the same new
// token, nothing changed. None: refuse as any revoked token.
std::optional<Response> rotation_retry(Call& call);
Response zone_stats(Call& call);      // GET /api/devices/stats

}  // namespace dp
