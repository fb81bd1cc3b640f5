// device_pairing_auth: the access-phase gate in front of any location, and
// the $device_pairing_* variables it sets for logs and upstream headers.
#include "ngx/glue.h"

namespace dpngx {

namespace {

// What a gated request proved, or why it failed: one lock and one tree
// lookup for a bearer token, a hash compare for a device key.
dp::Principal check(ngx_http_request_t* r, ngx_uint_t mode, bool* device_key) {
    SrvConf* scf = srv_conf(r);
    ngx_table_elt_t* auth = r->headers_in.authorization;
    *device_key = mode == kAuthDeviceKey || (mode == kAuthAny && !auth);
    if (*device_key) return dp::authenticate_device_key(*scf->settings, header_value(r, "x-device-key"));
    std::string_view value = auth ? std::string_view((const char*)auth->value.data, auth->value.len)
                                  : std::string_view();
    ZoneCtx* zone = zone_of(r);
    if (!zone) return dp::authenticate_bearer(nullptr, *scf->settings, value, client_addr(r), (uint32_t)ngx_time());
    ZoneStore store(zone);
    return dp::authenticate_bearer(&store, *scf->settings, value, client_addr(r), (uint32_t)ngx_time());
}

ngx_int_t variable(ngx_http_request_t* r, ngx_http_variable_value_t* v, uintptr_t which) noexcept {
    auto* ctx = static_cast<RequestCtx*>(ngx_http_get_module_ctx(r, ngx_http_device_pairing_module));
    const char* text = nullptr;
    if (ctx && ctx->authenticated) {
        const dp::Principal& p = ctx->principal;
        switch (which) {
            case 0: text = p.device_id; break;
            case 1: text = p.account ? p.account->c_str() : (p.role == dp::Role::Owner ? "owner" : "device"); break;
            case 2: text = p.method_name(); break;
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

}  // namespace

ngx_int_t access_handler(ngx_http_request_t* r) noexcept {
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_device_pairing_module));
    if (lcf->auth == kAuthOff) return NGX_DECLINED;
    try {
        bool device_key;
        dp::Principal p = check(r, lcf->auth, &device_key);
        if (p.status == dp::Principal::Ok) {
            RequestCtx* ctx = request_ctx(r);
            if (!ctx) return NGX_HTTP_INTERNAL_SERVER_ERROR;
            ctx->principal = p;
            ctx->authenticated = true;
            return NGX_OK;
        }
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "device_pairing: %s credential rejected",
                      p.status == dp::Principal::Missing ? "missing" : "invalid");
        return answer_now(r, dp::unauthorized(p, device_key));
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0, "device_pairing: %s", e.what());
    } catch (...) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0, "device_pairing: unknown exception");
    }
    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}

ngx_int_t add_variables(ngx_conf_t* cf) noexcept {
    static ngx_str_t names[] = {ngx_string("device_pairing_device_id"), ngx_string("device_pairing_account"),
                                ngx_string("device_pairing_auth_method")};
    for (uintptr_t i = 0; i < 3; i++) {
        ngx_http_variable_t* var = ngx_http_add_variable(cf, &names[i], NGX_HTTP_VAR_NOCACHEABLE);
        if (!var) return NGX_ERROR;
        var->get_handler = [](ngx_http_request_t* r, ngx_http_variable_value_t* v, uintptr_t data) {
            return variable(r, v, data);
        };
        var->data = i;
    }
    return NGX_OK;
}

}  // namespace dpngx
