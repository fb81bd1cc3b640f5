#include "core/audit.h"

#include "core/call.h"
#include "core/devices.h"

namespace dp {

std::string audit_line(const AuditEvent& e, int64_t now_ms, const ClientAddr& addr, std::string_view user_agent) {
    auto text_or_null = [](const std::string& s) {
        return s.empty() ? json_null() : json_string(sanitize_utf8(s, 256).c_str());
    };
    Json line(json_object());
    json_object_set_new(line.get(), "time", json_string(iso8601(now_ms).c_str()));
    json_object_set_new(line.get(), "event", text_or_null(e.event));
    json_object_set_new(line.get(), "device_id", text_or_null(e.device_id));
    json_object_set_new(line.get(), "role", text_or_null(e.role));
    json_object_set_new(line.get(), "method", text_or_null(e.method));
    json_object_set_new(line.get(), "actor", text_or_null(e.actor));
    json_object_set_new(line.get(), "address", text_or_null(addr.len ? addr_text(addr) : std::string()));
    json_object_set_new(line.get(), "user_agent", text_or_null(user_agent_summary(std::string(user_agent))));
    json_object_set_new(line.get(), "detail", text_or_null(e.detail));
    char* text = json_dumps(line.get(), JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) throw std::bad_alloc();
    std::string out(text);
    free(text);
    return out + "\n";
}

}  // namespace dp
