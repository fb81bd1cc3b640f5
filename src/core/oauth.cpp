#include "core/oauth.h"

#include "core/pairing_log.h"

#include <cstring>

#include "core/codes.h"
#include "core/devices.h"
#include "core/dpop.h"

namespace dp {

namespace {

std::optional<std::string> form_decode(std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size(); i++) {
        if (text[i] == '+') {
            out += ' ';
        } else if (text[i] == '%') {
            const int octet = percent_escape_value(text, i);
            if (octet < 0) return std::nullopt;
            out += (char)octet;
            i += 2;
        } else {
            out += text[i];
        }
    }
    return out;
}

bool grant_on(const Settings& settings) { return !settings.oauth_clients.empty(); }

Response grant_off() {
    return problem(404, "not_found", "Not found", "the OAuth device grant is off (no device_pairing_oauth_client)");
}

// The form of an OAuth request, or the invalid_request answer.
Result<std::map<std::string, std::string>> read_form(const Request& req) {
    if (media_type(req.content_type) != "application/x-www-form-urlencoded")
        return oauth_error(400, "invalid_request", "the body must be application/x-www-form-urlencoded");
    std::string why;
    auto form = parse_form(req.body, &why);
    if (!form) return oauth_error(400, "invalid_request", why);
    return *std::move(form);
}

std::string member(const std::map<std::string, std::string>& form, const char* name) {
    auto it = form.find(name);
    return it == form.end() ? std::string() : it->second;
}

}  // namespace

std::optional<std::map<std::string, std::string>> parse_form(std::string_view body, std::string* why) {
    std::map<std::string, std::string> out;
    size_t pos = 0;
    while (pos < body.size()) {
        size_t end = body.find('&', pos);
        if (end == std::string_view::npos) end = body.size();
        const std::string_view pair = body.substr(pos, end - pos);
        pos = end + 1;
        if (pair.empty()) continue;
        const size_t eq = pair.find('=');
        auto name = form_decode(pair.substr(0, eq));
        auto value = form_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
        if (!name || !value) {
            *why = "the body is not valid application/x-www-form-urlencoded";
            return std::nullopt;
        }
        if (!out.emplace(*name, *value).second) {
            *why = "the parameter \"" + sanitize_utf8(*name, 64) + "\" is given more than once";
            return std::nullopt;
        }
    }
    return out;
}

bool valid_scope(std::string_view scope) {
    if (scope.empty() || scope.size() > kMaxScopeLen || scope.front() == ' ' || scope.back() == ' ') return false;
    char prev = 0;
    for (char c : scope) {
        if (c == ' ') {
            if (prev == ' ') return false;
        } else if (c < 0x21 || c > 0x7e || c == '"' || c == '\\') {
            return false;
        }
        prev = c;
    }
    return true;
}

Response oauth_error(int status, const char* error, const std::string& description) {
    return json_response(status, json_pack("{s:s, s:s}", "error", error, "error_description",
                                           sanitize_utf8(description, 512).c_str()));
}

uint32_t poll_interval_s(const Settings& settings, const CodeRequestRecord* r) {
    return settings.oauth_interval_s + kSlowDownS * r->slow_downs();
}

Response oauth_metadata(Call& call) {
    if (!grant_on(call.settings)) return grant_off();
    Result<std::string> base = base_url(call.settings, call.req);
    if (!base) return base.error();
    return json_response(
        200, json_pack("{s:s, s:s, s:s, s:s, s:[s], s:[s], s:[s], s:[], s:[s,s,s]}", "issuer", base->c_str(),
                       "device_authorization_endpoint", (*base + "/oauth/device_authorization").c_str(),
                       "token_endpoint", (*base + "/oauth/token").c_str(), "revocation_endpoint",
                       (*base + "/oauth/revoke").c_str(), "grant_types_supported", kDeviceCodeGrant,
                       "token_endpoint_auth_methods_supported", "none", "revocation_endpoint_auth_methods_supported",
                       "none", "response_types_supported", "dpop_signing_alg_values_supported", "ES256", "EdDSA", "Ed25519"));
}

Response oauth_device_authorization(Call& call) {
    if (!grant_on(call.settings)) return grant_off();
    auto form = read_form(call.req);
    if (!form) return form.error();
    const std::string client_id = member(*form, "client_id");
    if (client_id.empty()) return oauth_error(400, "invalid_request", "client_id is missing");
    if (!call.settings.oauth_client(client_id)) return oauth_error(400, "invalid_client", "unknown client_id");
    const std::string scope = member(*form, "scope");
    if (form->count("scope") && !valid_scope(scope))
        return oauth_error(400, "invalid_scope", "the scope must be space-separated tokens, at most " +
                                                     std::to_string(kMaxScopeLen) + " bytes");
    Result<std::string> base = base_url(call.settings, call.req);
    if (!base) return base.error();  // before the request is made: a bad Host changes nothing
    auto created = create_code_request(call, {true, client_id, scope});
    if (!created) return created.error();
    const std::string user_code = format_user_code(created->code);
    // The page an owner already uses; the complete form pre-fills its code
    // box from the fragment, which never reaches a server's log.
    const std::string verification_uri = *base + "/pair";
    return json_response(200, json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "device_code", created->id.c_str(),
                                        "user_code", user_code.c_str(), "verification_uri", verification_uri.c_str(),
                                        "verification_uri_complete", (verification_uri + "#code=" + user_code).c_str(),
                                        "expires_in", (json_int_t)call.settings.code_ttl_s, "interval",
                                        (json_int_t)call.settings.oauth_interval_s));
}

namespace {

// The approved request becomes a device: the token is answered once (a
// device code is exchanged once), the grant is kept with the device.
Response exchange(Call& call, const CodeRequestRecord* r, const Settings::OAuthClient& client,
                  const std::optional<Digest>& binding) {
    const uint32_t now = call.now_s();
    const std::string scope(r->meta, r->meta_len);
    Result<IssuedDevice> device = issue_device(call.store, call.settings, Role::Device, PairMethod::OAuth, client.name,
                                               call.addr, now, random_bytes(32), binding);
    if (!device) {
        const Response& refused = device.error();
        return refused.status == 409 ? oauth_error(400, "access_denied", "this gateway has as many devices as it "
                                                                         "pairs; an owner must revoke one first")
                                     : oauth_error(503, "temporarily_unavailable", "the pairing state is full");
    }
    CodeRequestRecord* delivered = update_record(call.store, r);
    delivered->status = CodeStatus::Delivered;
    delivered->delivered_s = now;
    if (!record_approval(call.store, device->id, r->approver, now, client.id, scope))
        return oauth_error(503, "temporarily_unavailable", "the pairing state is full");
    Json body(json_pack("{s:s, s:s}", "access_token", device->token.c_str(), "token_type", binding ? "DPoP" : "Bearer"));
    if (call.settings.token_lifetime_s)
        json_object_set_new(body.get(), "expires_in", json_integer(call.settings.token_lifetime_s));
    if (!scope.empty()) json_object_set_new(body.get(), "scope", json_string(scope.c_str()));
    Response resp = json_response(200, body.release());
    AuditEvent paired = paired_event(call.store, *device, Role::Device, PairMethod::OAuth);
    paired.actor = approver_text(r->approver);  // who let it in
    paired.detail = client.id;
    record_event(call, resp, std::move(paired));
    resp.durable = true;
    return resp;
}

}  // namespace

// RFC 8628 3.4-3.5 and RFC 6749 5.2, in this order: the request's form and
// grant type, the client, the device code (and whose it is), then the
// request's state: expired, exchanged, denied, pending (or too fast), approved.
Response oauth_token(Call& call) {
    if (!grant_on(call.settings)) return grant_off();
    auto form = read_form(call.req);
    if (!form) return form.error();
    const std::string grant_type = member(*form, "grant_type");
    if (grant_type.empty()) return oauth_error(400, "invalid_request", "grant_type is missing");
    if (grant_type != kDeviceCodeGrant)
        return oauth_error(400, "unsupported_grant_type", "only the device code grant is supported");
    const std::string client_id = member(*form, "client_id");
    const Settings::OAuthClient* client = call.settings.oauth_client(client_id);
    if (!client) return oauth_error(400, "invalid_client", client_id.empty() ? "client_id is missing" : "unknown client_id");
    const std::string device_code = member(*form, "device_code");
    if (device_code.empty()) return oauth_error(400, "invalid_request", "device_code is missing");
    // RFC 9449 5: a proof with the token request binds the token to its key.
    auto binding = issuance_binding(call);
    if (!binding) return binding.error();
    const Digest key = device_code_key(call.settings, device_code);
    const uint32_t now = call.now_s();

    StoreLock lock(call.store);
    auto* r = as<CodeRequestRecord>(call.store.find(Kind::CodeRequest, key));
    if (!r || !r->oauth() || !record_live(&r->h, now)) return oauth_error(400, "invalid_grant", "unknown device_code");
    if (std::string_view(r->requester, r->requester_len) != client_id)
        return oauth_error(400, "invalid_grant", "the device_code was issued to another client");
    const bool expired = r->code_expires_s <= now;
    switch (r->status) {
        case CodeStatus::Delivered:
            // Exchanged once; a late poll learns it is over.
            return expired ? oauth_error(400, "expired_token", "the device_code has expired")
                           : oauth_error(400, "invalid_grant", "the device_code was already exchanged");
        case CodeStatus::Rejected:
            return expired ? oauth_error(400, "expired_token", "the device_code has expired")
                           : oauth_error(400, "access_denied", "an owner rejected the request");
        case CodeStatus::Approved:
            if (expired) return oauth_error(400, "expired_token", "the device_code has expired");
            return exchange(call, r, *client, *binding);
        case CodeStatus::Pending: break;
    }
    if (code_request_dead(call.store, r, now))
        return oauth_error(400, "expired_token", expired ? "the device_code has expired"
                                                         : "the user code was withdrawn after too many wrong codes");
    const int64_t last = call.store.swap_poll_mark(key, call.req.now_ms);
    if (last && call.req.now_ms - last < (int64_t)poll_interval_s(call.settings, r) * 1000 - kPollLeewayMs) {
        // For this poll and every later one of this code (RFC 8628 3.5).
        if (r->slow_downs() < kMaxSlowDowns) update_record(call.store, r)->h.flags += kCodeRequestSlowDown;
        return oauth_error(400, "slow_down", "poll every " + std::to_string(poll_interval_s(call.settings, r)) + " seconds");
    }
    return oauth_error(400, "authorization_pending", "an owner has not approved the request yet");
}

// RFC 7009: the device presents its own token; 200 whether or not it was one.
Response oauth_revoke(Call& call) {
    if (!grant_on(call.settings)) return grant_off();
    auto form = read_form(call.req);
    if (!form) return form.error();
    const std::string client_id = member(*form, "client_id");
    if (form->count("client_id") && !call.settings.oauth_client(client_id))
        return oauth_error(400, "invalid_client", "unknown client_id");
    const std::string token = member(*form, "token");
    if (token.empty()) return oauth_error(400, "invalid_request", "token is missing");
    Response r = json_response(200, json_object());
    StoreLock lock(call.store);
    auto* d = as<DeviceRecord>(call.store.find(Kind::Device, sha256(token)));
    if (!d) return r;
    const std::string id = device_id_text(d->id);
    record_event(call, r, AuditEvent{"revoked", id, d->role == Role::Owner ? "owner" : "device",
                                     pair_method_name(d->method), id, "oauth revocation"});
    retire_device(call.store, &d->h, kRevokedByOwner, call.now_s());
    call.store.count(Counter::Revocations);
    r.durable = true;
    return r;
}

}  // namespace dp
