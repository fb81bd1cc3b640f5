// The audit log's line: one JSON object per event (see AuditEvent).
#pragma once

#include <string>
#include <string_view>

#include "core/http.h"

namespace dp {

// {"time": RFC 3339, "event", "device_id", "role", "method", "actor",
// "address", "user_agent" (a summary, not the header), "detail"}; absent
// fields are null. Ends with a newline.
std::string audit_line(const AuditEvent& event, int64_t now_ms, const ClientAddr& addr, std::string_view user_agent);

}  // namespace dp
