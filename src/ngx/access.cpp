// device_pairing_auth: the access-phase gate in front of any location, with
// nginx's access contract (it returns 401/403 with WWW-Authenticate set, so
// error_page, satisfy and auth_delay apply); the $device_pairing_* variables;
// the filter that gives nginx's own 401 page the problem+json body; the guard
// for subrequests, which skip the access phase; and device_pairing_check, the
// same check as a content handler for auth_request.
#include <optional>

#include "core/devices.h"
#include "core/dpop.h"
#include "ngx/access.h"
#include "ngx/console.h"
#include "ngx/content.h"
#include "ngx/durable.h"
#include "ngx/fleet.h"
#include "ngx/zone.h"

namespace dpngx {

namespace {

ngx_http_output_header_filter_pt next_header_filter;
ngx_http_output_body_filter_pt next_body_filter;

LocConf* loc_conf(ngx_http_request_t* r) {
    return static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_device_pairing_module));
}

dp::Counter decision_counter(const dp::Principal& p) {
    if (p.status == dp::Principal::Ok) return dp::Counter::GateAccepted;
    if (p.status == dp::Principal::Missing) return dp::Counter::GateMissing;
    if (p.reason == dp::Principal::Revoked) return dp::Counter::GateRevoked;
    if (p.reason == dp::Principal::Expired) return dp::Counter::GateExpired;
    return dp::Counter::GateInvalid;
}

// What the request proves for a mode, or why not: one read lock and one
// tree lookup for a bearer token, a hash compare for a device key; counted
// for the metrics in this worker's slot.
dp::Principal check(ngx_http_request_t* r, ngx_uint_t mode, bool* device_key) {
    SrvConf* scf = srv_conf(r);
    ngx_table_elt_t* auth = r->headers_in.authorization;
    *device_key = mode == kAuthDeviceKey || (mode == kAuthAny && !auth);
    ZoneCtx* zone = zone_of(r);
    std::optional<ZoneStore> store;
    if (zone) store.emplace(zone);
    std::string_view value = auth ? std::string_view((const char*)auth->value.data, auth->value.len)
                                  : std::string_view();
    // DPoP needs the request's method, URL and proofs: built only when the
    // credential is "DPoP <token>" or the location requires DPoP (a bound
    // token sent as Bearer is refused without them).
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_device_pairing_module));
    std::optional<dp::Request> req;
    if (!*device_key && (lcf->dpop == (ngx_uint_t)dp::DpopMode::Required ||
                         (value.size() > 5 && ngx_strncasecmp((u_char*)value.data(), (u_char*)"dpop ", 5) == 0)))
        req.emplace(build_request(r));
    dp::Principal p = *device_key ? dp::authenticate_device_key(*scf->settings, header_value(r, "x-device-key"))
                                  : dp::authenticate_bearer(store ? &*store : nullptr, *scf->settings, value,
                                                            client_addr(r), (uint32_t)ngx_time(), req ? &*req : nullptr);
    if (!store) return p;
    store->count(decision_counter(p));
    if (p.expired_now) write_audit(r, {dp::expired_event(p)});
    if (p.expired_now || p.seen_written) write_soon(zone);
    return p;
}

// Why the gate refused, for the debug log (never the credential itself).
const char* refusal_reason(const dp::Principal& p, bool device_key) {
    if (p.status == dp::Principal::Missing) return device_key ? "no X-DEVICE-KEY" : "no bearer token";
    if (device_key) return "unknown device key";
    switch (p.reason) {
        case dp::Principal::Revoked: return "the token was revoked";
        case dp::Principal::Expired: return "the token expired";
        case dp::Principal::Unknown: break;
    }
    if (p.dpop_failure) return dp::dpop_failure_name((dp::DpopFailure)p.dpop_failure);
    return "unknown or malformed token";
}

// Sets the challenge and remembers the answer; nginx sends it (or an error_page).
ngx_int_t deny(ngx_http_request_t* r, RequestCtx* ctx, const dp::Principal& p, bool device_key) {
    const dp::Response& answer = dp::unauthorized(p, device_key);
    for (const auto& h : answer.headers) {
        if (h.first != "WWW-Authenticate") continue;
        ngx_table_elt_t* e = static_cast<ngx_table_elt_t*>(ngx_list_push(&r->headers_out.headers));
        if (!e) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        e->hash = 1;
        ngx_str_set(&e->key, "WWW-Authenticate");
        e->value.len = h.second.size();
        e->value.data = (u_char*)h.second.data();  // the answer is static
        r->headers_out.www_authenticate = e;
    }
    if (p.dpop_failure == (uint8_t)dp::DpopFailure::Nonce) {  // a fresh nonce of this host to sign with
        const std::string nonce = dp::dpop_nonce(*srv_conf(r)->settings, zone_id(zone_of(r)), ngx_time());
        ngx_table_elt_t* e = static_cast<ngx_table_elt_t*>(ngx_list_push(&r->headers_out.headers));
        u_char* v = static_cast<u_char*>(ngx_pnalloc(r->pool, nonce.size()));
        if (!e || !v) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        e->hash = 1;
        ngx_str_set(&e->key, "DPoP-Nonce");
        e->value.len = nonce.size();
        e->value.data = ngx_cpymem(v, nonce.data(), nonce.size()) - nonce.size();
    }
    ctx->denial = &answer;
    ctx->denied_in = loc_conf(r);
    ctx->denied_status = (ngx_uint_t)answer.status;
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0, "device_pairing gate: refused: %s, answered %i",
                   refusal_reason(p, device_key), (ngx_int_t)answer.status);
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "device_pairing: %s credential rejected",
                  p.status == dp::Principal::Missing ? "missing" : "invalid");
    return answer.status;
}

// A credential header: Authorization (nginx points at it), X-DEVICE-KEY or
// a DPoP proof (the length is checked before any compare).
bool is_credential(ngx_http_request_t* r, const ngx_table_elt_t& h) {
    static const ngx_str_t kDeviceKey = ngx_string("x-device-key");
    return &h == r->headers_in.authorization ||
           (h.key.len == kDeviceKey.len && ngx_strncasecmp(h.key.data, kDeviceKey.data, kDeviceKey.len) == 0) ||
           (h.key.len == 4 && ngx_strncasecmp(h.key.data, (u_char*)"dpop", 4) == 0) ||
           (h.key.len == sizeof("authorization") - 1 &&
            ngx_strncasecmp(h.key.data, (u_char*)"authorization", sizeof("authorization") - 1) == 0);
}

// device_pairing_pass_credentials off: the upstream never sees them.
ngx_int_t strip_credentials(ngx_http_request_t* r) {
    ngx_uint_t total = 0, found = 0;
    for (ngx_list_part_t* part = &r->headers_in.headers.part; part; part = part->next) {
        auto* h = static_cast<ngx_table_elt_t*>(part->elts);
        for (ngx_uint_t i = 0; i < part->nelts; i++, total++) found += is_credential(r, h[i]);
    }
    if (!found) return NGX_OK;
    // A new list of just the other headers: the old one stays intact, so the
    // pointers nginx keeps into it (Host, User-Agent...) stay valid.
    ngx_list_t kept;
    if (ngx_list_init(&kept, r->pool, total - found + 1, sizeof(ngx_table_elt_t)) != NGX_OK) return NGX_ERROR;
    for (ngx_list_part_t* part = &r->headers_in.headers.part; part; part = part->next) {
        auto* h = static_cast<ngx_table_elt_t*>(part->elts);
        for (ngx_uint_t i = 0; i < part->nelts; i++) {
            if (is_credential(r, h[i])) continue;
            auto* copy = static_cast<ngx_table_elt_t*>(ngx_list_push(&kept));
            if (!copy) return NGX_ERROR;
            *copy = h[i];
        }
    }
    r->headers_in.headers = kept;
    // kept was made with room for every header: one part, which the copy
    // must point at (not at the local it was built in).
    r->headers_in.headers.last = &r->headers_in.headers.part;
    r->headers_in.authorization = nullptr;
    return NGX_OK;
}

ngx_int_t run_gate(ngx_http_request_t* r, ngx_uint_t mode, bool strip) {
    RequestCtx* ctx = request_ctx(r);
    if (!ctx) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    // Fleet mode: a replica out of step with Redis longer than
    // device_pairing_redis_stale may still admit a revoked token.
    if (fleet_out_of_step(zone_of(r))) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "device_pairing: the replica is out of step with redis");
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "device_pairing gate: refused: the replica is past device_pairing_redis_stale, answered 503");
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }
    bool device_key;
    dp::Principal p = check(r, mode, &device_key);
    // Decided either way: the credential stays here. A refused one must not
    // follow an error_page into a proxy_pass either.
    if (strip && strip_credentials(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    if (p.status != dp::Principal::Ok) return deny(r, ctx, p, device_key);
    ctx->principal = p;
    ctx->authenticated = true;
    ctx->denial = nullptr;
    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0, "device_pairing gate: accepted %s \"%s\" (%s)",
                   p.method_name(), p.device_id, p.role_name());
    return NGX_OK;
}

// $device_pairing_scope: the OAuth scope granted to the device, read from
// the zone once per request and only when a configuration uses it.
const char* granted_scope(ngx_http_request_t* r, RequestCtx* ctx) {
    if (!ctx->scope_read) {
        ctx->scope_read = true;
        ZoneCtx* zone = zone_of(r);
        if (!zone || !*ctx->principal.device_id) return nullptr;
        try {
            ZoneStore store(zone);
            dp::StoreReadLock lock(store);
            ctx->scope = dp::granted_scope(store, ctx->principal.device_id);
        } catch (...) {
            return nullptr;
        }
    }
    return ctx->scope.c_str();
}

ngx_int_t variable(ngx_http_request_t* r, ngx_http_variable_value_t* v, uintptr_t which) noexcept {
    RequestCtx* ctx = find_ctx(r);
    const char* text = nullptr;
    if (ctx && ctx->authenticated) {
        const dp::Principal& p = ctx->principal;
        switch (which) {
            case 0: text = p.device_id; break;
            case 1: text = p.account ? p.account->c_str() : p.role_name(); break;
            case 2: text = p.method_name(); break;
            case 3: text = p.role_name(); break;
            case 4: text = p.device_name; break;
            case 5: text = granted_scope(r, ctx); break;
            case 6: text = p.jkt; break;
            case 7: text = p.dpop_checked ? "1" : nullptr; break;
        }
    }
    if (!text || !*text) {
        v->not_found = 1;
        return NGX_OK;
    }
    v->len = ngx_strlen(text);
    v->data = (u_char*)text;  // lives in the request ctx or the configuration
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    return NGX_OK;
}

// nginx's own page for the gate's denial, in the location that denied it:
// the module's problem+json instead. An error_page answer, an upstream's
// own 401, or another module's 403 pass untouched.
ngx_int_t deny_header_filter(ngx_http_request_t* r) noexcept {
    auto* ctx = static_cast<RequestCtx*>(ngx_http_get_module_ctx(r, ngx_http_device_pairing_module));
    if (!ctx || !ctx->denial || r->err_status != ctx->denied_status || ctx->denied_in != loc_conf(r) ||
        r->headers_out.status != ctx->denied_status)
        return next_header_filter(r);
    static const ngx_str_t kHtml = ngx_string("text/html");
    if (r->headers_out.content_type.len != kHtml.len ||
        ngx_strncmp(r->headers_out.content_type.data, kHtml.data, kHtml.len) != 0)
        return next_header_filter(r);
    ctx->replacing_body = true;
    ngx_str_set(&r->headers_out.content_type, "application/problem+json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = nullptr;
    r->headers_out.content_length_n = (off_t)ctx->denial->body.size();
    ngx_table_elt_t* cc = static_cast<ngx_table_elt_t*>(ngx_list_push(&r->headers_out.headers));
    if (!cc) return NGX_ERROR;
    cc->hash = 1;
    ngx_str_set(&cc->key, "Cache-Control");
    ngx_str_set(&cc->value, "no-store");
    return next_header_filter(r);
}

ngx_int_t deny_body_filter(ngx_http_request_t* r, ngx_chain_t* in) noexcept {
    auto* ctx = static_cast<RequestCtx*>(ngx_http_get_module_ctx(r, ngx_http_device_pairing_module));
    if (!ctx || !ctx->replacing_body) return next_body_filter(r, in);
    bool last = false;
    for (ngx_chain_t* cl = in; cl; cl = cl->next) {  // nginx's page is consumed, not sent
        last = last || cl->buf->last_buf || cl->buf->last_in_chain;
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }
    if (!last || ctx->body_replaced) return NGX_OK;
    ctx->body_replaced = true;
    const std::string& body = ctx->denial->body;
    ngx_buf_t* b = ngx_create_temp_buf(r->pool, body.size());
    if (!b) return NGX_ERROR;
    b->last = ngx_cpymem(b->pos, body.data(), body.size());
    b->last_buf = r == r->main;
    b->last_in_chain = 1;
    ngx_chain_t out = {b, nullptr};
    return next_body_filter(r, &out);
}

}  // namespace

ngx_int_t access_handler(ngx_http_request_t* r) noexcept {
    LocConf* lcf = loc_conf(r);
    if (lcf->auth == kAuthOff) return NGX_DECLINED;
    try {
        return run_gate(r, lcf->auth, !lcf->pass_credentials);
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0, "device_pairing: %s", e.what());
    } catch (...) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0, "device_pairing: unknown exception");
    }
    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}

// Subrequests (SSI includes, auth_request, mirror) skip the access phase. In
// a gated location they follow the main request's verdict, or the
// credentials they carry; otherwise they are refused, never silently open.
ngx_int_t subrequest_guard(ngx_http_request_t* r) noexcept {
    LocConf* lcf = loc_conf(r);
    if (r == r->main || lcf->auth == kAuthOff) return NGX_DECLINED;
    try {
        RequestCtx* main_ctx = find_ctx(r->main);
        if (main_ctx && main_ctx->authenticated) return NGX_DECLINED;
        ngx_int_t rc = run_gate(r, lcf->auth, false);
        return rc == NGX_OK ? NGX_DECLINED : rc;
    } catch (...) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0, "device_pairing: subrequest check failed");
    }
    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}

// device_pairing_check bearer|device_key|any: 204 with the variables set, or
// 401 with WWW-Authenticate, for `auth_request` to combine with other checks.
ngx_int_t check_handler(ngx_http_request_t* r) noexcept {
    LocConf* lcf = loc_conf(r);
    if (lcf->check == kAuthOff) return NGX_DECLINED;
    try {
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        ngx_int_t rc = run_gate(r, lcf->check, false);
        // The check decided for the main request (auth_request): its
        // upstream, or an error_page fallback, never gets the credential.
        if (!lcf->pass_credentials && strip_credentials(r->main) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        if (rc != NGX_OK) return rc;
        r->headers_out.status = NGX_HTTP_NO_CONTENT;
        r->header_only = 1;
        r->headers_out.content_length_n = 0;
        return ngx_http_send_header(r);
    } catch (...) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0, "device_pairing: check failed");
    }
    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}

ngx_int_t add_variables(ngx_conf_t* cf) noexcept {
    static ngx_str_t names[] = {ngx_string("device_pairing_device_id"), ngx_string("device_pairing_account"),
                                ngx_string("device_pairing_auth_method"), ngx_string("device_pairing_role"),
                                ngx_string("device_pairing_device_name"), ngx_string("device_pairing_scope"),
                                ngx_string("device_pairing_dpop_jkt"), ngx_string("device_pairing_dpop")};
    for (uintptr_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        ngx_http_variable_t* var = ngx_http_add_variable(cf, &names[i], NGX_HTTP_VAR_NOCACHEABLE);
        if (!var) return NGX_ERROR;
        var->get_handler = [](ngx_http_request_t* r, ngx_http_variable_value_t* v, uintptr_t data) {
            return variable(r, v, data);
        };
        var->data = i;
    }
    return NGX_OK;
}

ngx_int_t init_deny_filter() noexcept {
    next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = deny_header_filter;
    next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = deny_body_filter;
    return NGX_OK;
}

}  // namespace dpngx
