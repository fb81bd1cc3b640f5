#include "core/devices.h"

#include "core/pairing_log.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "core/dpop.h"

namespace dp {

namespace {

// Names come from clients (a body or a User-Agent): stored as valid UTF-8,
// cut on a character boundary, without control characters.
void copy_name(DeviceRecord* d, const std::string& name) {
    std::string clean = sanitize_utf8(name, sizeof(d->name));
    memcpy(d->name, clean.data(), clean.size());
    d->name_len = (uint8_t)clean.size();
}

const char* role_name(Role role) { return role == Role::Owner ? "owner" : "device"; }

// A device id from a URL ("dev_" + 16 hex digits), raw, or nothing.
std::optional<std::string> device_id_raw(const std::string& id) {
    return id.size() == 20 && id.compare(0, 4, "dev_") == 0 ? hex_decode(id.substr(4)) : std::nullopt;
}

Response device_not_found() {
    return problem(404, "device_not_found", "Device not found", "no paired device has this id");
}

AuditEvent device_event(const char* event, const DeviceRecord* d, const Principal& actor) {
    return AuditEvent{event, device_id_text(d->id), role_name(d->role), pair_method_name(d->method),
                      actor.device_id, std::string()};
}

Response durable(Response r) {
    r.durable = true;
    return r;
}

}  // namespace

uint32_t token_end_of_life(const Settings& settings, uint32_t issued_s) {
    return settings.token_lifetime_s ? issued_s + settings.token_lifetime_s : 0;
}

const char* pair_method_name(PairMethod m) {
    switch (m) {
        case PairMethod::Otp: return "otp";
        case PairMethod::Code: return "code";
        case PairMethod::OAuth: return "oauth";
        case PairMethod::Loaded: break;
    }
    return "imported";
}

std::string user_agent_summary(const std::string& ua) {
    static const char* const known[] = {"iPhone", "iPad", "Android", "Firefox", "Edg", "Chrome",
                                        "Safari", "curl", "Wget", "okhttp", "python"};
    for (const char* k : known)
        if (ua.find(k) != std::string::npos) return k == std::string("Edg") ? "Edge" : k;
    return ua.empty() ? "" : "other";  // never the header's own words: they are the client's to choose
}

std::string device_token_text(const Bytes& raw) { return "dp_tok_" + base64url_encode(raw); }

Result<IssuedDevice> issue_device(Store& store, const Settings& settings, Role role, PairMethod method,
                                  const std::string& name, const ClientAddr& addr, uint32_t now_s,
                                  const Bytes& raw, const std::optional<Digest>& dpop_jkt) {
    // Signal's model: past the cap the owner revokes first; nothing is evicted.
    if (settings.max_devices && store.shared().devices >= settings.max_devices) {
        store.count(Counter::DeviceLimit);
        return problem(409, "device_limit", "Device limit reached",
                       "this gateway pairs at most " + std::to_string(settings.max_devices) +
                           " devices; revoke one first");
    }
    std::string token = device_token_text(raw);
    Bytes id = random_bytes(8);
    auto* d = insert_record<DeviceRecord>(store, Kind::Device, sha256(token), now_s, [&](DeviceRecord* d) {
        d->h.expires_s = token_end_of_life(settings, now_s);
        d->last_seen_s = now_s;
        d->role = role;
        d->method = method;
        memcpy(d->id, id.data(), 8);
        d->addr_len = addr.len;
        memcpy(d->addr, addr.bytes, sizeof(d->addr));
        copy_name(d, name);
    });
    if (!d) return zone_full();
    if (dpop_jkt && !bind_device(store, d, *dpop_jkt, now_s)) return zone_full();
    return IssuedDevice{token, device_id_text(d->id), dpop_jkt};
}

Approver approver_of(const Principal& who) {
    Approver a{};
    if (who.method == Principal::DeviceToken && hex_decode_to(std::string_view(who.device_id).substr(4), a.device_id, 8))
        a.role = who.role;
    return a;
}

std::string approver_text(const Approver& approver) {
    return approver.role == Role{} ? "operator" : device_id_text(approver.device_id);
}

bool record_approval(Store& store, const std::string& device_id, const Approver& approver, uint32_t now_s,
                     std::string_view client_id, std::string_view scope) {
    return insert_record<ApprovalRecord>(store, Kind::Approval, approval_key(device_id), now_s, [&](ApprovalRecord* r) {
               r->approver = approver;
               r->client_len = (uint8_t)std::min(client_id.size(), sizeof(r->client_id));
               r->scope_len = (uint8_t)std::min(scope.size(), sizeof(r->scope));
               if (r->client_len) memcpy(r->client_id, client_id.data(), r->client_len);  // an empty view may be null
               if (r->scope_len) memcpy(r->scope, scope.data(), r->scope_len);
           }) != nullptr;
}

namespace {
std::string scope_of(const ApprovalRecord* r) {
    return r ? std::string(r->scope, std::min<size_t>(r->scope_len, sizeof(r->scope))) : std::string();
}
}  // namespace

std::string granted_scope(Store& store, const std::string& device_id) {
    return scope_of(as<ApprovalRecord>(store.find(Kind::Approval, approval_key(device_id))));
}

std::string binding_note(const std::optional<Digest>& jkt) {
    return jkt ? "dpop jkt=" + base64url_encode(std::string_view((const char*)jkt->data(), 32)) : std::string();
}

AuditEvent paired_event(Store& store, const IssuedDevice& device, Role role, PairMethod method) {
    store.count(method == PairMethod::Otp ? Counter::PairedOtp
                : method == PairMethod::OAuth ? Counter::PairedOAuth
                                              : Counter::PairedCode);
    return AuditEvent{"paired", device.id, role_name(role), pair_method_name(method), "", binding_note(device.dpop_jkt)};
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
    std::vector<std::string> approved_by;  // per device: who approved it ("": paired by OTP)
    std::vector<std::string> scopes;       // per device: the OAuth scope granted ("": none)
    page.reserve((size_t)limit + 1);
    {
        StoreLock lock(call.store);
        call.store.visit_index_after(Index::DeviceId, after, (size_t)limit + 1, [&](const RecordHeader* h) {
            page.push_back(*as<DeviceRecord>(h));
            auto* approval = as<ApprovalRecord>(call.store.find(Kind::Approval, approval_key(device_id_text(page.back().id))));
            approved_by.push_back(approval ? approver_text(approval->approver) : "");
            scopes.push_back(scope_of(approval));
        });
    }
    const bool more = page.size() > (size_t)limit;
    if (more) page.pop_back();
    Json list(json_array());
    for (size_t i = 0; i < page.size(); i++) {
        const DeviceRecord& d = page[i];
        ClientAddr a;
        a.len = d.addr_len;
        memcpy(a.bytes, d.addr, sizeof(a.bytes));
        std::string name = sanitize_utf8(std::string_view(d.name, d.name_len), sizeof(d.name));
        const uint32_t expiry = token_expiry(&d, call.settings);
        json_checked_append(
            list.get(),
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "id", device_id_text(d.id).c_str(), "name",
                      name.c_str(), "role", role_name(d.role), "method", pair_method_name(d.method), "createdAt",
                      iso8601(d.h.created_s * 1000LL).c_str(), "lastSeenAt",
                      iso8601(d.last_seen_s * 1000LL).c_str(), "lastAddress", addr_text(a).c_str(), "expiresAt",
                      expiry ? json_string(iso8601(expiry * 1000LL).c_str()) : json_null()));
        json_t* entry = json_array_get(list.get(), json_array_size(list.get()) - 1);
        json_object_set_new(entry, "approvedBy", approved_by[i].empty() ? json_null() : json_string(approved_by[i].c_str()));
        if (d.method == PairMethod::OAuth) json_object_set_new(entry, "scope", json_string(scopes[i].c_str()));
        json_object_set_new(entry, "dpopBound", json_boolean(d.h.flags & kDeviceDpopBound));
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
                                                  "accountCounters", "revokedTokens", "approvals", "bindings",
                                                  "dpopProofs"};
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
    auto raw = device_id_raw(id);
    if (!raw) return device_not_found();
    StoreLock lock(call.store);
    const RecordHeader* target = call.store.find_by(Index::DeviceId, *raw);
    if (!target) return device_not_found();
    Response r = no_content();
    record_event(call, r, device_event("revoked", as<DeviceRecord>(target), call.who));
    retire_device(call.store, target, kRevokedByOwner, call.now_s());
    call.store.count(Counter::Revocations);
    return durable(std::move(r));
}

// Every device but the caller's own, a slice of the id index per hold of
// the lock, so gate checks interleave with a large revocation.
Response device_revoke_others(Call& call) {
    if (call.req.query_arg("all_but_self") != "1")
        return bad_request("DELETE /api/devices revokes every other device and needs ?all_but_self=1");
    constexpr size_t kSlice = 1024;
    std::vector<AuditEvent> audit;
    std::string after;
    json_int_t revoked = 0;
    for (bool more = true; more;) {
        StoreLock lock(call.store);
        std::vector<const RecordHeader*> slice;
        more = call.store.visit_index_after(Index::DeviceId, after, kSlice,
                                            [&](const RecordHeader* h) { slice.push_back(h); }) == kSlice;
        if (!slice.empty()) after = std::string((const char*)as<DeviceRecord>(slice.back())->id, 8);
        for (const RecordHeader* h : slice) {
            auto* d = as<DeviceRecord>(h);
            if (device_id_text(d->id) == call.who.device_id) continue;
            audit.push_back(device_event("revoked", d, call.who));
            log_event(call.store, audit.back(), call.req.now_ms);
            retire_device(call.store, h, kRevokedByOwner, call.now_s());
            revoked++;
        }
    }
    call.store.count(Counter::Revocations, (uint64_t)revoked);
    Response r = json_response(200, json_pack("{s:I}", "revoked", revoked));
    r.audit = std::move(audit);
    return durable(std::move(r));
}

// PATCH /api/devices/{id} {"name": "..."}: owners rename any device, a device itself.
Response device_rename(Call& call) {
    if (call.who.role != Role::Owner && call.param != call.who.device_id)
        return forbidden("only an owner may rename another device");
    Result<Json> body = body_object(call.req);
    if (!body) return body.error();
    auto name = json_string_member(body->get(), "name");
    std::string clean = name ? sanitize_utf8(*name, sizeof(DeviceRecord::name)) : std::string();
    if (clean.empty()) return bad_request("\"name\" must be a non-empty string (at most 20 bytes are kept)");
    auto raw = device_id_raw(call.param);
    if (!raw) return device_not_found();
    StoreLock lock(call.store);
    const RecordHeader* target = call.store.find_by(Index::DeviceId, *raw);
    if (!target) return device_not_found();
    DeviceRecord* renamed = update_record(call.store, as<DeviceRecord>(target));
    copy_name(renamed, clean);
    Response r = json_response(200, json_pack("{s:s, s:s}", "id", call.param.c_str(), "name", clean.c_str()));
    AuditEvent event = device_event("renamed", renamed, call.who);
    event.detail = clean;
    record_event(call, r, std::move(event));
    call.store.count(Counter::Renames);
    return durable(std::move(r));
}

namespace {

Response rotated_answer(const std::string& token, const char* device_id) {
    return json_response(200, json_pack("{s:s, s:s}", "token", token.c_str(), "id", device_id));
}

}  // namespace

std::optional<Response> rotation_retry(Call& call) {
    bool malformed;
    const std::string_view old_token = bearer_token(call.req.authorization, &malformed);
    if (old_token.empty()) return std::nullopt;
    const Digest old_key = sha256(old_token);
    StoreReadLock lock(call.store);
    const auto* gone = as<RevokedRecord>(call.store.find(Kind::Revoked, old_key));
    const uint32_t now = call.now_s();
    if (!gone || !ct_equal(gone->h.key, old_key.data(), 32) || !(gone->h.flags & kRevokedRotated) ||
        now - gone->rotated_s > kRetryGraceS)
        return std::nullopt;
    const std::string token = device_token_text(seal_with("rotated-token", old_token, gone->sealed_token));
    const auto* d = as<DeviceRecord>(call.store.find(Kind::Device, sha256(token)));
    if (!d) return std::nullopt;  // the new token was revoked or rotated since: nothing to hand out again
    return rotated_answer(token, device_id_text(d->id).c_str());
}

// POST /api/devices/self/rotate: a new token for the calling device; the
// old one is refused from this moment (ASVS V7.2.4), but for this route: a
// retry with it within the grace gets the same new token (rotation_retry).
// Lifetimes count anew.
Response device_rotate(Call& call) {
    if (call.who.method != Principal::DeviceToken)
        return bad_request("only a device token rotates; the operator token is the gateway's token file");
    // A bound device proved its key to get here (that proof binds the new
    // token too); an unbound one's proof binds its new token to that key.
    Result<std::optional<Digest>> binding =
        call.who.dpop_checked ? Result<std::optional<Digest>>(std::optional<Digest>(call.who.bound_jkt))
                              : issuance_binding(call);
    if (!binding) return binding.error();
    bool malformed;
    const std::string_view old_token = bearer_token(call.req.authorization, &malformed);
    const Digest old_key = sha256(old_token);
    const Bytes raw = random_bytes(32);
    const Bytes sealed = seal_with("rotated-token", old_token, (const uint8_t*)raw.data());
    const std::string token = device_token_text(raw);
    const uint32_t now = call.now_s();
    StoreLock lock(call.store);
    const RecordHeader* current = call.store.find(Kind::Device, old_key);
    if (!current) return unauthorized(call.who, false);
    const DeviceRecord copy = *as<DeviceRecord>(current);
    // The new record first (the id index holds both for a moment): without
    // room for it the old token stays as it was.
    auto* d = insert_record<DeviceRecord>(call.store, Kind::Device, sha256(token), now, [&](DeviceRecord* d) {
        memcpy(reinterpret_cast<char*>(d) + sizeof(RecordHeader),
               reinterpret_cast<const char*>(&copy) + sizeof(RecordHeader), sizeof(DeviceRecord) - sizeof(RecordHeader));
        d->h.created_s = copy.h.created_s;
        d->h.flags = copy.h.flags;  // a bound device stays bound
        d->h.expires_s = token_end_of_life(call.settings, now);
        d->last_seen_s = now;
    });
    if (!d) return zone_full();
    if (*binding && !bind_device(call.store, d, **binding, now)) return zone_full();
    retire_device(call.store, current, kRevokedRotated, now, [&](RevokedRecord* gone) {
        gone->rotated_s = now;
        memcpy(gone->sealed_token, sealed.data(), 32);
    });
    Response r = rotated_answer(token, call.who.device_id);
    AuditEvent event = device_event("rotated", d, call.who);
    event.detail = binding_note(*binding);
    record_event(call, r, std::move(event));
    call.store.count(Counter::Rotations);
    return durable(std::move(r));
}

}  // namespace dp
