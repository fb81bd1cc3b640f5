#include "core/devices.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace dp {

namespace {

// Names come from clients (a body or a User-Agent): stored as valid UTF-8,
// cut on a character boundary, without control characters.
void copy_name(DeviceRecord* d, const std::string& name) {
    std::string clean = sanitize_utf8(name, sizeof(d->name));
    memcpy(d->name, clean.data(), clean.size());
    d->name_len = (uint8_t)clean.size();
}

const char* method_name(PairMethod m) {
    return m == PairMethod::Otp ? "otp" : m == PairMethod::Code ? "code" : "imported";
}

}  // namespace

std::string user_agent_summary(const std::string& ua) {
    static const char* const known[] = {"iPhone", "iPad", "Android", "Firefox", "Edg", "Chrome",
                                        "Safari", "curl", "Wget", "okhttp", "python"};
    for (const char* k : known)
        if (ua.find(k) != std::string::npos) return k == std::string("Edg") ? "Edge" : k;
    return ua.substr(0, ua.find_first_of(" /(")).substr(0, 20);
}

std::string device_token_text(const Bytes& raw) { return "dp_tok_" + base64url_encode(raw); }

Result<std::string> issue_device(Store& store, Role role, PairMethod method, const std::string& name,
                                 const ClientAddr& addr, uint32_t now_s, const Bytes& raw) {
    std::string token = device_token_text(raw);
    Bytes id = random_bytes(8);
    auto* d = insert_record<DeviceRecord>(store, Kind::Device, sha256(token), now_s, [&](DeviceRecord* d) {
        d->last_seen_s = now_s;
        d->role = role;
        d->method = method;
        memcpy(d->id, id.data(), 8);
        d->addr_len = addr.len;
        memcpy(d->addr, addr.bytes, sizeof(d->addr));
        copy_name(d, name);
    });
    if (!d) return zone_full();
    return token;
}

// Pages of devices in id order: ?limit=N (default 100, at most 1000) and
// ?cursor= the previous page's next_cursor. The records are copied under the
// lock; the JSON is built after it.
Response device_list(Call& call) {
    constexpr long kDefaultLimit = 100, kMaxLimit = 1000;
    long limit = kDefaultLimit;
    std::string limit_arg = call.req.query_arg("limit"), cursor_arg = call.req.query_arg("cursor");
    if (!limit_arg.empty()) {
        char* end = nullptr;
        limit = limit_arg.size() <= 4 ? strtol(limit_arg.c_str(), &end, 10) : 0;
        if (!end || *end || limit < 1 || limit > kMaxLimit)
            return bad_request("\"limit\" must be a whole number from 1 to 1000");
    }
    std::string after;
    if (!cursor_arg.empty()) {
        auto raw = cursor_arg.size() == 20 && cursor_arg.compare(0, 4, "dev_") == 0 ? hex_decode(cursor_arg.substr(4))
                                                                                   : std::nullopt;
        if (!raw) return bad_request("\"cursor\" must be the next_cursor of the previous page");
        after = *raw;
    }
    std::vector<DeviceRecord> page;
    page.reserve((size_t)limit + 1);
    {
        StoreLock lock(call.store);
        call.store.visit_index_after(Index::DeviceId, after, (size_t)limit + 1, [&](const RecordHeader* h) {
            page.push_back(*as<DeviceRecord>(h));
        });
    }
    const bool more = page.size() > (size_t)limit;
    if (more) page.pop_back();
    Json list(json_array());
    for (const DeviceRecord& d : page) {
        ClientAddr a;
        a.len = d.addr_len;
        memcpy(a.bytes, d.addr, sizeof(a.bytes));
        std::string name = sanitize_utf8(std::string_view(d.name, d.name_len), sizeof(d.name));
        json_checked_append(
            list.get(), json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", device_id_text(d.id).c_str(), "name",
                                  name.c_str(), "role", d.role == Role::Owner ? "owner" : "device", "method",
                                  method_name(d.method), "createdAt", iso8601(d.h.created_s * 1000LL).c_str(),
                                  "lastSeenAt", iso8601(d.last_seen_s * 1000LL).c_str(), "lastAddress",
                                  addr_text(a).c_str()));
    }
    Json answer(json_checked(json_pack("{s:O}", "devices", list.get())));
    json_object_set_new(answer.get(), "next_cursor",
                        more ? json_checked(json_string(device_id_text(page.back().id).c_str())) : json_null());
    return json_response(200, answer.release());
}

// Record counts and the zone's slab usage, for operators and `make bench`.
Response zone_stats(Call& call) {
    json_t* kinds = json_object();
    static const char* const names[kKindCount] = {"devices", "limiters", "mailboxes", "codeRequests", "nonces",
                                                  "accountCounters"};
    StoreLock lock(call.store);
    for (size_t k = 0; k < kKindCount; k++)  // counters: no walk over a million records
        json_object_set_new(kinds, names[k], json_checked(json_integer((json_int_t)call.store.shared().records[k])));
    return json_response(200, json_pack("{s:o, s:I, s:I}", "records", kinds, "zoneBytes",
                                        (json_int_t)call.store.total_bytes(), "zoneFreeBytes",
                                        (json_int_t)call.store.free_bytes()));
}

Response device_revoke(Call& call) {
    const std::string& id = call.param;
    if (call.who.role != Role::Owner && id != call.who.device_id)
        return forbidden("only an owner may revoke another device");
    Response not_found = problem(404, "device_not_found", "Device not found", "no paired device has this id");
    auto raw = id.size() == 20 && id.compare(0, 4, "dev_") == 0 ? hex_decode(id.substr(4)) : std::nullopt;
    if (!raw) return not_found;
    StoreLock lock(call.store);
    const RecordHeader* target = call.store.find_by(Index::DeviceId, *raw);
    if (!target) return not_found;
    call.store.remove(target);
    Response r = no_content();
    r.durable = true;
    return r;
}

}  // namespace dp
