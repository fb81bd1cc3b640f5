#include "core/codes.h"

#include "core/pairing_log.h"

#include <algorithm>
#include <cstring>

#include "core/devices.h"
#include "core/dpop.h"
#include "core/limiter.h"
#include "core/qr.h"

namespace dp {

namespace {

constexpr uint32_t kExpiredVisibleS = 600;  // an expired code request answers "expired" this long
const char kCodeAlphabet[] = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";  // no 0/O, 1/I/L
constexpr size_t kCodeLength = 9;
const char kUserCodeAlphabet[] = "BCDFGHJKLMNPQRSTVWXZ";  // RFC 8628 6.1: no vowels, no digits
constexpr uint32_t kRequestsPerMinute = 10;  // code requests one address may make a minute

// The zone's count of wrong codes entered (any address, any code), which
// an OAuth user code dies after kUserCodeDiesAfter of (like the OTP): a
// limiter record of its own that never expires.
const Digest& failures_key() {
    static const Digest key = key_of("code-failures", "zone");
    return key;
}

uint32_t code_failures(Store& store) {
    auto* r = as<LimiterRecord>(store.find(Kind::Limiter, failures_key()));
    return r ? r->failures : 0;
}

void count_code_failure(Store& store, uint32_t now_s) {
    if (auto* r = as<LimiterRecord>(store.find(Kind::Limiter, failures_key()))) {
        update_record(store, r)->failures++;
        return;
    }
    insert_record<LimiterRecord>(store, Kind::Limiter, failures_key(), now_s, [](LimiterRecord* r) { r->failures = 1; });
}

}  // namespace

bool code_request_dead(Store& store, const CodeRequestRecord* r, uint32_t now_s) {
    if (r->code_expires_s <= now_s) return true;
    if (!r->oauth()) return false;
    const uint32_t failures = code_failures(store);
    return failures >= r->failures_base && failures - r->failures_base >= kUserCodeDiesAfter;
}

Result<NewCodeRequest> create_code_request(Call& call, const CodeRequestSpec& spec) {
    const int64_t now_ms = call.req.now_ms;
    NewCodeRequest out;
    out.id = spec.oauth ? random_token("", 32) : random_token("pair_", 16);
    if (spec.oauth)  // RFC 8628 6.1: 8 characters of base 20, about 34.5 bits
        for (size_t i = 0; i < kUserCodeLength; i++) out.code += kUserCodeAlphabet[random_below(sizeof(kUserCodeAlphabet) - 1)];
    else
        for (size_t i = 0; i < kCodeLength; i++) out.code += kCodeAlphabet[random_below(sizeof(kCodeAlphabet) - 1)];
    out.expires_ms = now_ms + call.settings.code_ttl_s * 1000LL;
    Digest code_hash = guessable_key(call.settings, "code", out.code);
    const Digest key = spec.oauth ? device_code_key(call.settings, out.id) : key_of("request", out.id);
    const uint32_t now = to_s(now_ms);

    StoreLock lock(call.store);
    if (!within_budget(call.store, "code-request-budget", call.addr, kRequestsPerMinute, now_ms))
        return rate_limited((int)(kLimitWindowMs / 1000), nullptr);
    const uint32_t failures = spec.oauth ? code_failures(call.store) : 0;
    auto* r = insert_record<CodeRequestRecord>(call.store, Kind::CodeRequest, key, now, [&](CodeRequestRecord* r) {
        r->code_expires_s = to_s(out.expires_ms);
        r->h.expires_s = r->code_expires_s + kExpiredVisibleS;  // "expired" stays visible a while
        memcpy(r->code_hash, code_hash.data(), 32);
        // Cut on a character boundary: a cut character made every list
        // that shows the request fail to encode.
        const std::string kept = sanitize_utf8(spec.requester, sizeof(r->requester));
        r->requester_len = (uint8_t)kept.size();
        memcpy(r->requester, kept.data(), r->requester_len);
        r->meta_len = (uint16_t)spec.meta.size();
        memcpy(r->meta, spec.meta.data(), spec.meta.size());
        addr_to16(call.addr, r->requester_addr);
        r->h.flags = spec.oauth ? kCodeRequestOAuth : 0;
        r->failures_base = failures;
    });
    if (!r) return quota_full("pairing-code requests");
    call.store.count(Counter::CodesRequested);
    return out;
}

namespace {

enum class Decision { Inspect, Approve, Reject };
Response code_decide(Call& call, Decision decision);

// What an owner sees of a request before deciding it: who asks, from where,
// and for an OAuth client its name and the scope it asks for (RFC 8628 5.4).
json_t* request_facts(const CodeRequestRecord* r, const Settings& settings) {
    const ClientAddr addr = addr_from16(r->requester_addr);
    const std::string requester = sanitize_utf8(std::string_view(r->requester, r->requester_len), sizeof(r->requester));
    json_t* facts = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "ref",
                              hex_encode(std::string_view((const char*)r->h.key, 4)).c_str(), "requesterId",
                              requester.c_str(), "method", r->oauth() ? "oauth" : "code", "address",
                              addr.len ? addr_text(addr).c_str() : "", "createdAt",
                              iso8601(r->h.created_s * 1000LL).c_str(), "expiresAt",
                              iso8601(r->code_expires_s * 1000LL).c_str());
    if (!facts) return nullptr;
    if (r->oauth()) {
        const Settings::OAuthClient* client = settings.oauth_client(requester);
        json_object_set_new(facts, "clientId", json_string(requester.c_str()));
        json_object_set_new(facts, "clientName", json_string(client ? client->name.c_str() : requester.c_str()));
        json_object_set_new(facts, "scope", json_stringn(r->meta, r->meta_len));
        json_object_set_new(facts, "meta", json_object());
    } else {
        json_error_t err;
        json_t* meta = json_loadb(r->meta, r->meta_len, 0, &err);
        json_object_set_new(facts, "meta", meta ? meta : json_object());
    }
    return facts;
}

}  // namespace

std::string normalize_code(std::string_view input) {
    std::string out;
    for (char c : input)
        if (isalnum((unsigned char)c)) out += (char)toupper((unsigned char)c);  // punctuation and spaces are ignored
    return out;
}

std::string format_user_code(const std::string& code) { return code.substr(0, 4) + "-" + code.substr(4); }

Digest device_code_key(const Settings& settings, std::string_view device_code) {
    return key_of("device-code", device_code);
}

std::string format_code(const std::string& code, char sep) {
    return code.substr(0, 3) + sep + code.substr(3, 3) + sep + code.substr(6);
}

Response code_approve(Call& call) { return code_decide(call, Decision::Approve); }
Response code_reject(Call& call) { return code_decide(call, Decision::Reject); }
Response code_inspect(Call& call) { return code_decide(call, Decision::Inspect); }

Response code_request(Call& call) {
    Result<Json> parsed = body_object(call.req, true);
    if (!parsed) return parsed.error();
    Json& body = *parsed;
    const json_t* requester = json_object_get(body.get(), "requesterId");
    if (requester && (!json_is_string(requester) || json_string_length(requester) > 64))
        return bad_request("\"requesterId\" must be a string of at most 64 bytes");
    const json_t* meta = json_object_get(body.get(), "meta");
    std::string meta_text = meta ? json_compact(meta) : "{}";
    if (meta && !json_is_object(meta)) return bad_request("\"meta\" must be a JSON object");
    if (meta_text.size() > sizeof(CodeRequestRecord::meta))
        return problem(413, "meta_too_large", "Meta too large", "\"meta\" must be at most 256 bytes of JSON");
    auto created = create_code_request(call, {false, requester ? json_string_value(requester) : "", meta_text});
    if (!created) return created.error();
    return json_response(200, json_pack("{s:s, s:s, s:s, s:s}", "requestId", created->id.c_str(),
                                        "code", format_code(created->code, '-').c_str(), "formatted",
                                        format_code(created->code, ' ').c_str(), "expiresAt",
                                        iso8601(created->expires_ms).c_str()));
}

namespace {

Response code_decide(Call& call, Decision decision) {
    const Request& req = call.req;
    // Before the code is even looked up: a device learns nothing from it.
    if (call.settings.approvers_owner_only && call.who.role != Role::Owner)
        return forbidden("device_pairing_approvers owner: only an owner approves or rejects a pairing");
    Result<Json> parsed = body_object(req);
    if (!parsed) return parsed.error();
    Json& body = *parsed;
    auto code = json_string_member(body.get(), "code");
    if (!code) return bad_request("\"code\" must be a string like ABC-123-XYZ");
    Digest code_hash = guessable_key(call.settings, "code", normalize_code(*code));
    const uint32_t now = to_s(req.now_ms);

    StoreLock lock(call.store);
    Limiter limiter(call.store, "code-limit", call.addr);
    if (int wait = limiter.admit(req.now_ms)) return rate_limited(wait, nullptr);
    // The index compares the whole hash; the code itself never reaches the zone.
    auto* found = as<CodeRequestRecord>(
        call.store.find_by(Index::CodeHash, std::string_view((const char*)code_hash.data(), 32)));
    if (found && code_request_dead(call.store, found, now)) found = nullptr;
    if (!found) {
        count_code_failure(call.store, now);
        Response r = problem(404, "code_not_found", "Unknown code", "no pending request has this code, or it expired");
        if (limiter.failed(req.now_ms)) r.audit.push_back(lockout_event("code"));
        return r;
    }
    if (found->status != CodeStatus::Pending)
        return problem(409, "request_not_pending", "Request already decided",
                       "this request was already approved or rejected");
    if (decision == Decision::Inspect) return json_response(200, request_facts(found, call.settings));
    const bool approve = decision == Decision::Approve;
    CodeRequestRecord* decided = update_record(call.store, found);
    decided->status = approve ? CodeStatus::Approved : CodeStatus::Rejected;
    decided->approved_at_ms = req.now_ms;
    decided->approver = approver_of(call.who);
    const std::string requester = sanitize_utf8(std::string_view(found->requester, found->requester_len),
                                                sizeof(found->requester));
    call.store.count(approve ? Counter::CodesApproved : Counter::CodesRejected);
    Response r = json_response(200, json_pack("{s:s, s:s, s:s}", "status", approve ? "approved" : "rejected",
                                              "requesterId", requester.c_str(), approve ? "approvedAt" : "rejectedAt",
                                              iso8601(req.now_ms).c_str()));
    record_event(call, r, AuditEvent{approve ? "code_approved" : "code_rejected", "", "", found->oauth() ? "oauth" : "code",
                                     call.who.device_id, sanitize_utf8(requester, sizeof(found->requester))});
    r.durable = true;
    return r;
}

}  // namespace

namespace {

// The token's random bytes XOR a key only the holder of the request id can derive.
Bytes seal(const std::string& request_id, const uint8_t* bytes) { return seal_with("delivered-token", request_id, bytes); }

Response approved(const CodeRequestRecord* r, const std::string* token) {
    json_t* body = json_pack("{s:s, s:s}", "status", "approved", "approvedAt", iso8601(r->approved_at_ms).c_str());
    if (body && token) json_object_set_new(body, "token", json_string(token->c_str()));
    return json_response(200, body);
}

Response status_of(Call& call, const std::string& request_id, const std::optional<Digest>& binding) {
    const uint32_t now = call.now_s();
    StoreLock lock(call.store);
    auto* r = as<CodeRequestRecord>(call.store.find(Kind::CodeRequest, key_of("request", request_id)));
    if (!r || !record_live(&r->h, now))
        return problem(404, "request_not_found", "Request not found", "no such pairing request");
    switch (r->status) {
        case CodeStatus::Pending:
            return json_response(200, json_pack("{s:s}", "status", r->code_expires_s > now ? "pending" : "expired"));
        case CodeStatus::Rejected:
            return json_response(200, json_pack("{s:s}", "status", "rejected"));
        case CodeStatus::Delivered: {
            // A retry within the grace (a response lost on the network) gets
            // the same token; after it, the sealed bytes are wiped.
            if (now - r->delivered_s <= kRetryGraceS) {
                std::string token = device_token_text(seal(request_id, r->sealed_token));
                return approved(r, &token);
            }
            static const uint8_t kWiped[32] = {};
            if (memcmp(r->sealed_token, kWiped, 32) != 0)
                memset(update_record(call.store, r)->sealed_token, 0, 32);
            return approved(r, nullptr);
        }
        case CodeStatus::Approved: break;
    }
    const Bytes raw = random_bytes(32);
    Result<IssuedDevice> device = issue_device(call.store, call.settings, Role::Device, PairMethod::Code,
                                               std::string(r->requester, r->requester_len), call.addr, now, raw,
                                               binding);
    if (!device) return device.error();
    CodeRequestRecord* delivered = update_record(call.store, r);
    delivered->status = CodeStatus::Delivered;
    delivered->delivered_s = now;
    Bytes sealed = seal(request_id, (const uint8_t*)raw.data());
    memcpy(delivered->sealed_token, sealed.data(), 32);
    if (!record_approval(call.store, device->id, r->approver, now)) return zone_full();
    Response resp = approved(r, &device->token);
    AuditEvent paired = paired_event(call.store, *device, Role::Device, PairMethod::Code);
    paired.actor = approver_text(r->approver);  // who let it in
    record_event(call, resp, std::move(paired));
    resp.durable = true;
    return resp;
}

// The status call that delivers the token binds it to its DPoP proof's key.
Response status_with_binding(Call& call, const std::string& request_id) {
    auto binding = issuance_binding(call);
    if (!binding) return binding.error();
    return status_of(call, request_id, *binding);
}

}  // namespace

Response code_status(Call& call) { return status_with_binding(call, call.param); }

Response code_status_post(Call& call) {
    Result<Json> body = body_object(call.req);
    if (!body) return body.error();
    auto id = json_string_member(body->get(), "requestId");
    if (!id || id->empty() || id->size() > 128) return bad_request("\"requestId\" must be the request's id");
    return status_with_binding(call, *id);
}

Response code_pending(Call& call) {
    const uint32_t now = call.now_s();
    Json list(json_array());
    StoreLock lock(call.store);
    call.store.for_each(Kind::CodeRequest, [&](const RecordHeader* h) {
        auto* r = as<CodeRequestRecord>(h);
        if (r->status != CodeStatus::Pending || code_request_dead(call.store, r, now)) return;
        json_checked_append(list.get(), request_facts(r, call.settings));
    });
    return json_response(200, json_pack("{s:O}", "requests", list.get()));
}

std::string expand_app_url(std::string_view tmpl, const std::string& code, const std::string& host) {
    std::string out;
    for (size_t i = 0; i < tmpl.size(); i++) {
        std::string_view rest = tmpl.substr(i);
        if (rest.rfind("$code", 0) == 0) {
            out += percent_encode(code);
            i += 4;
        } else if (rest.rfind("$host", 0) == 0) {
            out += percent_encode(host);
            i += 4;
        } else {
            out += tmpl[i];
        }
    }
    return out;
}

Response code_qr(Call& call) {
    Result<std::string> host = public_host(call.settings, call.req);
    if (!host) return host.error();  // before the request is made: a bad Host changes nothing
    auto created = create_code_request(call, {false, "qr", "{}"});
    if (!created) return created.error();
    std::string url = expand_app_url(call.settings.app_url, format_code(created->code, '-'), *host);
    return json_response(200, json_pack("{s:s, s:s, s:s, s:s}", "qrSvg", QrCode(url).svg().c_str(), "pairingUrl",
                                        url.c_str(), "requestId", created->id.c_str(),
                                        "expiresAt", iso8601(created->expires_ms).c_str()));
}

Response code_cleanup(Call& call) {
    const uint32_t now = call.now_s();
    json_int_t removed = 0;
    StoreLock lock(call.store);
    call.store.for_each(Kind::CodeRequest, [&](const RecordHeader* h) {
        if (as<CodeRequestRecord>(h)->code_expires_s <= now) {
            call.store.remove(h);
            removed++;
        }
    });
    return json_response(200, json_pack("{s:I}", "removed", removed));
}

}  // namespace dp
