// ngx_http_device_pairing_module: directives, configuration, module tables.
#include <algorithm>
#include <new>

#include "core/encoding.h"
#include "core/files.h"
#include "core/otp.h"
#include "ngx/access.h"
#include "ngx/banner.h"
#include "ngx/console.h"
#include "ngx/content.h"
#include "ngx/durable.h"
#include "ngx/fleet.h"
#include "ngx/persist.h"
#include "ngx/zone.h"

namespace dpngx {

namespace {

void* create_main_conf(ngx_conf_t* cf) noexcept;
char* init_main_conf(ngx_conf_t* cf, void* conf) noexcept;
void* create_srv_conf(ngx_conf_t* cf) noexcept;
char* merge_srv_conf(ngx_conf_t* cf, void* parent, void* child) noexcept;
char* oauth_client_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;
void* create_loc_conf(ngx_conf_t* cf) noexcept;
char* merge_loc_conf(ngx_conf_t* cf, void* parent, void* child) noexcept;
char* zone_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;
char* pairing_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;
char* sec_or_off_slot(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;
char* num_or_off_slot(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;
char* metrics_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;
ngx_int_t preconfiguration(ngx_conf_t* cf) noexcept;
ngx_int_t postconfiguration(ngx_conf_t* cf) noexcept;
ngx_int_t init_process(ngx_cycle_t* cycle) noexcept;
void exit_process(ngx_cycle_t* cycle) noexcept;

ngx_conf_enum_t auth_modes[] = {
    {ngx_string("off"), kAuthOff},
    {ngx_string("bearer"), kAuthBearer},
    {ngx_string("device_key"), kAuthDeviceKey},
    {ngx_string("any"), kAuthAny},
    {ngx_null_string, 0},
};

// device_pairing_approvers: who may approve or reject a pairing code.
ngx_conf_enum_t approver_roles[] = {
    {ngx_string("any"), 0},    // seed 002: any paired device
    {ngx_string("owner"), 1},  // owners (and the operator token) only
    {ngx_null_string, 0},
};

ngx_conf_enum_t qr_color_schemes[] = {
    {ngx_string("light-on-dark"), (ngx_uint_t)dp::QrColors::LightOnDark},
    {ngx_string("dark-on-light"), (ngx_uint_t)dp::QrColors::DarkOnLight},
    {ngx_null_string, 0},
};

// device_pairing_dpop: DPoP-bound tokens (RFC 9449).
ngx_conf_enum_t dpop_modes[] = {
    {ngx_string("on"), (ngx_uint_t)dp::DpopMode::On},
    {ngx_string("off"), (ngx_uint_t)dp::DpopMode::Off},
    {ngx_string("required"), (ngx_uint_t)dp::DpopMode::Required},
    {ngx_null_string, 0},
};

ngx_command_t commands[] = {
    {ngx_string("device_pairing_approvers"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_enum_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, approvers), approver_roles},
    {ngx_string("device_pairing_qr_colors"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_enum_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, qr_colors), qr_color_schemes},
    {ngx_string("device_pairing_zone"), NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE, zone_directive,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("device_pairing_redis_stale"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, ngx_conf_set_msec_slot,
     NGX_HTTP_MAIN_CONF_OFFSET, offsetof(MainConf, redis_stale), nullptr},
    {ngx_string("device_pairing_secret_key"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, ngx_conf_set_str_slot,
     NGX_HTTP_MAIN_CONF_OFFSET, offsetof(MainConf, secret_key_file), nullptr},
    {ngx_string("device_pairing"), NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_FLAG, pairing_directive,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, enable), nullptr},
    {ngx_string("device_pairing_auth"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_enum_slot, NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, auth), auth_modes},
    {ngx_string("device_pairing_check"), NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1, ngx_conf_set_enum_slot,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, check), auth_modes},
    {ngx_string("device_pairing_pass_credentials"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_FLAG,
     ngx_conf_set_flag_slot, NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, pass_credentials), nullptr},
    {ngx_string("device_pairing_token_file"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, token_file), nullptr},
    {ngx_string("device_pairing_device_keys"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, device_keys), nullptr},
    {ngx_string("device_pairing_identity"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, identity), nullptr},
    {ngx_string("device_pairing_url"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, url), nullptr},
    {ngx_string("device_pairing_app_url"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, app_url), nullptr},
    {ngx_string("device_pairing_otp_ttl"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, otp_ttl), nullptr},
    {ngx_string("device_pairing_mailbox_ttl"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_sec_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, mailbox_ttl), nullptr},
    {ngx_string("device_pairing_code_ttl"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_sec_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, code_ttl), nullptr},
    {ngx_string("device_pairing_max_pairings"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_num_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, max_pairings), nullptr},
    {ngx_string("device_pairing_max_body"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_size_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, max_body), nullptr},
    {ngx_string("device_pairing_token_idle_timeout"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     sec_or_off_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, token_idle_timeout), nullptr},
    {ngx_string("device_pairing_token_lifetime"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     sec_or_off_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, token_lifetime), nullptr},
    {ngx_string("device_pairing_max_devices"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     num_or_off_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, max_devices), nullptr},
    {ngx_string("device_pairing_audit_log"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     audit_log_directive, NGX_HTTP_SRV_CONF_OFFSET, 0, nullptr},
    {ngx_string("device_pairing_oauth_client"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE12,
     oauth_client_directive, NGX_HTTP_SRV_CONF_OFFSET, 0, nullptr},
    {ngx_string("device_pairing_oauth_interval"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_sec_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, oauth_interval), nullptr},
    {ngx_string("device_pairing_dpop"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_enum_slot, NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, dpop), dpop_modes},
    {ngx_string("device_pairing_dpop_window"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_sec_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, dpop_window), nullptr},
    {ngx_string("device_pairing_dpop_nonce"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_FLAG,
     ngx_conf_set_flag_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, dpop_nonce), nullptr},
    {ngx_string("device_pairing_log_public"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_FLAG,
     ngx_conf_set_flag_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, log_public), nullptr},
    {ngx_string("device_pairing_log_origin"), NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_SRV_CONF_OFFSET, offsetof(SrvConf, log_origin), nullptr},
    {ngx_string("device_pairing_metrics"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, metrics_directive,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, metrics), nullptr},
    ngx_null_command,
};

ngx_http_module_t module_ctx = {
    preconfiguration,   /* preconfiguration */
    postconfiguration,  /* postconfiguration */
    create_main_conf,   /* create main configuration */
    init_main_conf,     /* init main configuration */
    create_srv_conf,    /* create server configuration */
    merge_srv_conf,     /* merge server configuration */
    create_loc_conf,    /* create location configuration */
    merge_loc_conf,     /* merge location configuration */
};

void* create_main_conf(ngx_conf_t* cf) noexcept {
    auto* mcf = static_cast<MainConf*>(ngx_pcalloc(cf->pool, sizeof(MainConf)));
    if (!mcf || ngx_array_init(&mcf->pairing_srvs, cf->pool, 4, sizeof(SrvConf*)) != NGX_OK) return nullptr;
    mcf->redis_stale = NGX_CONF_UNSET_MSEC;
    return mcf;
}

constexpr ngx_msec_t kDefaultRedisStaleMs = 60000;

char* init_main_conf(ngx_conf_t*, void* conf) noexcept {
    auto* mcf = static_cast<MainConf*>(conf);
    ngx_conf_init_msec_value(mcf->redis_stale, kDefaultRedisStaleMs);
    return NGX_CONF_OK;
}

void* create_srv_conf(ngx_conf_t* cf) noexcept {
    auto* conf = static_cast<SrvConf*>(ngx_pcalloc(cf->pool, sizeof(SrvConf)));
    if (!conf) return nullptr;
    conf->otp_ttl = NGX_CONF_UNSET_MSEC;
    conf->mailbox_ttl = NGX_CONF_UNSET;
    conf->code_ttl = NGX_CONF_UNSET;
    conf->max_pairings = NGX_CONF_UNSET_UINT;
    conf->max_body = NGX_CONF_UNSET_SIZE;
    conf->qr_colors = NGX_CONF_UNSET_UINT;
    conf->approvers = NGX_CONF_UNSET_UINT;
    conf->token_idle_timeout = NGX_CONF_UNSET;
    conf->token_lifetime = NGX_CONF_UNSET;
    conf->max_devices = NGX_CONF_UNSET_UINT;
    conf->audit = static_cast<AuditLog*>(NGX_CONF_UNSET_PTR);
    conf->oauth_clients = static_cast<ngx_array_t*>(NGX_CONF_UNSET_PTR);
    conf->oauth_interval = NGX_CONF_UNSET;
    conf->dpop_window = NGX_CONF_UNSET;
    conf->dpop_nonce = NGX_CONF_UNSET;
    conf->log_public = NGX_CONF_UNSET;
    return conf;
}

// device_pairing_oauth_client CLIENT_ID ["Display name"]: a public client of
// the OAuth device grant. The id is what clients send (RFC 6749's VSCHAR
// without spaces, at most 32 bytes); the name is what an owner sees.
char* oauth_client_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept {
    auto* scf = static_cast<SrvConf*>(conf);
    ngx_str_t* value = static_cast<ngx_str_t*>(cf->args->elts);
    const ngx_str_t& id = value[1];
    bool id_ok = id.len >= 1 && id.len <= dp::kMaxClientIdLen;
    for (size_t i = 0; id_ok && i < id.len; i++) id_ok = id.data[i] > 0x20 && id.data[i] < 0x7f;
    if (!id_ok) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid client id \"%V\": 1 to %uz printable ASCII characters "
                           "without spaces", &id, dp::kMaxClientIdLen);
        return (char*)NGX_CONF_ERROR;
    }
    const ngx_str_t name = cf->args->nelts > 2 ? value[2] : id;
    if (name.len == 0 || name.len > 64 || !dp::valid_utf8(std::string_view((const char*)name.data, name.len))) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid client name \"%V\": 1 to 64 bytes of UTF-8", &name);
        return (char*)NGX_CONF_ERROR;
    }
    if (scf->oauth_clients == NGX_CONF_UNSET_PTR) {
        scf->oauth_clients = ngx_array_create(cf->pool, 4, sizeof(OAuthClientConf));
        if (!scf->oauth_clients) return (char*)NGX_CONF_ERROR;
    }
    auto* clients = static_cast<OAuthClientConf*>(scf->oauth_clients->elts);
    for (ngx_uint_t i = 0; i < scf->oauth_clients->nelts; i++)
        if (clients[i].id.len == id.len && ngx_strncmp(clients[i].id.data, id.data, id.len) == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "duplicate client id \"%V\"", &id);
            return (char*)NGX_CONF_ERROR;
        }
    auto* client = static_cast<OAuthClientConf*>(ngx_array_push(scf->oauth_clients));
    if (!client) return (char*)NGX_CONF_ERROR;
    *client = {id, name};
    return NGX_CONF_OK;
}

// VALUE | off (0) into a field of type T; parse gives < 1 for a bad value.
template <typename T>
char* set_value_or_off(ngx_conf_t* cf, ngx_command_t* cmd, void* conf, T unset, int64_t (*parse)(ngx_str_t*),
                       const char* refusal) {
    auto* field = reinterpret_cast<T*>(static_cast<char*>(conf) + cmd->offset);
    if (*field != unset) return (char*)"is duplicate";
    ngx_str_t* value = static_cast<ngx_str_t*>(cf->args->elts);
    if (ngx_strcmp(value[1].data, "off") == 0) {
        *field = 0;
        return NGX_CONF_OK;
    }
    int64_t parsed = parse(&value[1]);
    if (parsed < 1) return (char*)refusal;
    *field = (T)parsed;
    return NGX_CONF_OK;
}

char* sec_or_off_slot(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept {
    return set_value_or_off<time_t>(cf, cmd, conf, NGX_CONF_UNSET,
                                    [](ngx_str_t* v) { return (int64_t)ngx_parse_time(v, 1); },
                                    "must be \"off\" or a time of at least 1s");
}

char* num_or_off_slot(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept {
    return set_value_or_off<ngx_uint_t>(cf, cmd, conf, NGX_CONF_UNSET_UINT,
                                        [](ngx_str_t* v) { return (int64_t)ngx_atoi(v->data, v->len); },
                                        "must be \"off\" or a number of at least 1");
}

char* metrics_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept {
    auto* lcf = static_cast<LocConf*>(conf);
    if (lcf->metrics != NGX_CONF_UNSET) return (char*)"is duplicate";
    lcf->metrics = 1;
    return NGX_CONF_OK;
}

// Absolute path, relative ones taken from the nginx prefix.
bool full_path(ngx_conf_t* cf, ngx_str_t* path, std::string* out) {
    if (path->len == 0) return false;
    ngx_str_t copy = *path;
    if (ngx_conf_full_name(cf->cycle, &copy, 0) != NGX_OK) return false;
    *out = to_string(copy);
    return true;
}

char* merge_srv_conf(ngx_conf_t* cf, void* parent, void* child) noexcept {
    auto* prev = static_cast<SrvConf*>(parent);
    auto* conf = static_cast<SrvConf*>(child);
    ngx_conf_merge_str_value(conf->token_file, prev->token_file, "");
    ngx_conf_merge_str_value(conf->device_keys, prev->device_keys, "");
    ngx_conf_merge_str_value(conf->identity, prev->identity, "");
    ngx_conf_merge_str_value(conf->url, prev->url, "");
    ngx_conf_merge_str_value(conf->app_url, prev->app_url, "devicepairing://pair?code=$code&host=$host");
    ngx_conf_merge_msec_value(conf->otp_ttl, prev->otp_ttl, 600000);
    ngx_conf_merge_sec_value(conf->mailbox_ttl, prev->mailbox_ttl, 300);
    ngx_conf_merge_sec_value(conf->code_ttl, prev->code_ttl, 600);
    ngx_conf_merge_uint_value(conf->max_pairings, prev->max_pairings, 16);
    ngx_conf_merge_size_value(conf->max_body, prev->max_body, 16384);
    ngx_conf_merge_uint_value(conf->qr_colors, prev->qr_colors, (ngx_uint_t)dp::QrColors::LightOnDark);
    ngx_conf_merge_uint_value(conf->approvers, prev->approvers, 0);
    ngx_conf_merge_sec_value(conf->token_idle_timeout, prev->token_idle_timeout, 0);
    ngx_conf_merge_sec_value(conf->token_lifetime, prev->token_lifetime, 0);
    ngx_conf_merge_uint_value(conf->max_devices, prev->max_devices, 0);
    ngx_conf_merge_ptr_value(conf->audit, prev->audit, nullptr);
    ngx_conf_merge_ptr_value(conf->oauth_clients, prev->oauth_clients, nullptr);
    ngx_conf_merge_sec_value(conf->oauth_interval, prev->oauth_interval, 5);
    ngx_conf_merge_sec_value(conf->dpop_window, prev->dpop_window, 60);
    ngx_conf_merge_value(conf->dpop_nonce, prev->dpop_nonce, 0);
    ngx_conf_merge_value(conf->log_public, prev->log_public, 0);
    ngx_conf_merge_str_value(conf->log_origin, prev->log_origin, "");
    // A C2SP origin is one line, and a note's key name has no space or "+".
    for (size_t i = 0; i < conf->log_origin.len; i++) {
        const u_char c = conf->log_origin.data[i];
        if (c <= ' ' || c == '+' || c >= 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "device_pairing_log_origin \"%V\": printable ASCII without "
                               "spaces or \"+\" (it names the checkpoints' signing key)", &conf->log_origin);
            return (char*)NGX_CONF_ERROR;
        }
    }
    if (conf->dpop_window < 1 || conf->dpop_window > 3600) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "device_pairing_dpop_window must be from 1s to 1h");
        return (char*)NGX_CONF_ERROR;
    }
    if (conf->oauth_interval < 1 || conf->oauth_interval > 300) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "device_pairing_oauth_interval must be from 1s to 5m");
        return (char*)NGX_CONF_ERROR;
    }
    if (conf->mailbox_ttl < 1 || conf->code_ttl < 1 || conf->otp_ttl < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "device pairing lifetimes must be at least 1s");
        return (char*)NGX_CONF_ERROR;
    }
    try {
        ngx_pool_cleanup_t* cln = ngx_pool_cleanup_add(cf->pool, sizeof(dp::Settings));
        if (!cln) return (char*)NGX_CONF_ERROR;
        auto* s = new (cln->data) dp::Settings();
        cln->handler = [](void* p) { static_cast<dp::Settings*>(p)->~Settings(); };
        conf->settings = s;
        s->public_url = to_string(conf->url);
        s->app_url = to_string(conf->app_url);
        s->otp_ttl_ms = (int64_t)conf->otp_ttl;
        s->mailbox_ttl_s = (uint32_t)conf->mailbox_ttl;
        s->code_ttl_s = (uint32_t)conf->code_ttl;
        s->max_pairings_per_account = (uint32_t)conf->max_pairings;
        s->max_body = conf->max_body;
        s->qr_colors = (dp::QrColors)conf->qr_colors;
        s->approvers_owner_only = conf->approvers == 1;
        s->token_idle_timeout_s = (uint32_t)conf->token_idle_timeout;
        s->token_lifetime_s = (uint32_t)conf->token_lifetime;
        s->max_devices = conf->max_devices;
        s->oauth_interval_s = (uint32_t)conf->oauth_interval;
        s->dpop_window_s = (uint32_t)conf->dpop_window;
        s->dpop_nonce = conf->dpop_nonce == 1;
        s->log_public = conf->log_public == 1;
        s->log_origin = conf->log_origin.len
                            ? to_string(conf->log_origin)
                            : std::string((const char*)cf->cycle->hostname.data, cf->cycle->hostname.len) + "/device-pairing";
        if (conf->oauth_clients)
            for (ngx_uint_t i = 0; i < conf->oauth_clients->nelts; i++) {
                const OAuthClientConf& c = static_cast<OAuthClientConf*>(conf->oauth_clients->elts)[i];
                s->oauth_clients.push_back({to_string(c.id), to_string(c.name)});
            }

        std::string path, error;
        if (full_path(cf, &conf->token_file, &path)) {
            s->operator_token_hash = dp::load_or_create_token_file(path, &error);
            if (!s->operator_token_hash) {
                // nginx still starts; POST /pair answers 501 (seed 000).
                s->operator_token_unavailable = true;
                ngx_conf_log_error(NGX_LOG_WARN, cf, 0, "device_pairing_token_file \"%s\": %s; "
                                   "pairing is unavailable", path.c_str(), error.c_str());
            }
        }
        if (full_path(cf, &conf->device_keys, &path) &&
            !dp::load_device_keys_file(path, &s->device_keys, &error)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "device_pairing_device_keys \"%s\": %s", path.c_str(),
                               error.c_str());
            return (char*)NGX_CONF_ERROR;
        }
        if (full_path(cf, &conf->identity, &path)) conf->identity_created = access(path.c_str(), F_OK) != 0;
        if (full_path(cf, &conf->identity, &path) &&
            !(s->identity = dp::Ed25519Identity::load_or_create(path, &error))) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "device_pairing_identity \"%s\": %s", path.c_str(),
                               error.c_str());
            return (char*)NGX_CONF_ERROR;
        }
    } catch (const std::exception& e) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "device_pairing: %s", e.what());
        return (char*)NGX_CONF_ERROR;
    } catch (...) {
        return (char*)NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}

void* create_loc_conf(ngx_conf_t* cf) noexcept {
    auto* conf = static_cast<LocConf*>(ngx_pcalloc(cf->pool, sizeof(LocConf)));
    if (!conf) return nullptr;
    conf->enable = NGX_CONF_UNSET;
    conf->auth = NGX_CONF_UNSET_UINT;
    conf->check = NGX_CONF_UNSET_UINT;
    conf->pass_credentials = NGX_CONF_UNSET;
    conf->metrics = NGX_CONF_UNSET;
    conf->dpop = NGX_CONF_UNSET_UINT;
    return conf;
}

char* merge_loc_conf(ngx_conf_t* cf, void* parent, void* child) noexcept {
    auto* prev = static_cast<LocConf*>(parent);
    auto* conf = static_cast<LocConf*>(child);
    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_uint_value(conf->auth, prev->auth, kAuthOff);
    ngx_conf_merge_uint_value(conf->check, prev->check, kAuthOff);
    ngx_conf_merge_value(conf->pass_credentials, prev->pass_credentials, 0);
    ngx_conf_merge_value(conf->metrics, prev->metrics, 0);
    ngx_conf_merge_uint_value(conf->dpop, prev->dpop, (ngx_uint_t)dp::DpopMode::On);
    return NGX_CONF_OK;
}

// A reload that failed after its zone took over the old one (resize) gives
// the old zone back to the workers that still use it.
void give_back_old_zone(void* data) {
    auto* ctx = static_cast<ZoneCtx*>(data);
    if (ctx->took_over && !ctx->cycle_ok) ctx->took_over->state.retired = 0;
    if (ctx->moved_state && !ctx->cycle_ok && ctx->sh) ctx->sh->state.state_epoch = ctx->state_epoch - 1;
}

constexpr size_t kDefaultCompactAfter = 64 << 20;

// A copy of part of a directive's argument, null-terminated.
char* conf_cstring(ngx_conf_t* cf, const u_char* data, size_t len) {
    auto* s = static_cast<char*>(ngx_pnalloc(cf->pool, len + 1));
    if (s) *ngx_cpymem(s, data, len) = '\0';
    return s;
}

// redis=HOST:PORT or redis=unix:PATH into fleet.
bool parse_redis_target(ngx_conf_t* cf, ngx_str_t* arg, FleetConf* fleet) {
    ngx_str_t v = {arg->len - 6, arg->data + 6};
    fleet->text = v;
    if (v.len > 5 && ngx_strncmp(v.data, "unix:", 5) == 0) {
        fleet->unix_path = {v.len - 5, v.data + 5};
        if (ngx_conf_full_name(cf->cycle, &fleet->unix_path, 0) != NGX_OK) return false;
        fleet->unix_path_z = conf_cstring(cf, fleet->unix_path.data, fleet->unix_path.len);
        return fleet->unix_path_z != nullptr;
    }
    u_char* colon = nullptr;
    for (u_char* p = v.data; p < v.data + v.len; p++)
        if (*p == ':') colon = p;
    if (!colon || colon == v.data) return false;
    fleet->port = ngx_atoi(colon + 1, (size_t)(v.data + v.len - colon - 1));
    if (fleet->port < 1 || fleet->port > 65535) return false;
    fleet->host_z = conf_cstring(cf, v.data, (size_t)(colon - v.data));
    return fleet->host_z != nullptr;
}

// redis_auth=FILE: read now, by the master (root): the workers never open
// it. Refused when anyone but its owner may read or write it.
bool read_redis_credentials(ngx_conf_t* cf, ngx_str_t* arg, size_t name_len, std::optional<dp::RedisCredentials>* out) {
    ngx_str_t path = {arg->len - name_len, arg->data + name_len};
    if (path.len == 0 || ngx_conf_full_name(cf->cycle, &path, 0) != NGX_OK) return false;
    const std::string file = to_string(path);
    const int fd = open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "cannot read \"%V\"", &path);
        if (fd >= 0) close(fd);
        return false;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        close(fd);
        char mode[8];
        snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" may be read by others (mode %s): it holds a Redis password; "
                           "chmod 600 it", &path, mode);
        return false;
    }
    std::string text;
    char buf[512];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0 && text.size() < 4096;) text.append(buf, (size_t)n);
    close(fd);
    std::string error;
    *out = dp::parse_redis_credentials(text, &error);
    if (!*out) ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\": %s", &path, error.c_str());
    return out->has_value();
}

// redis_sentinel=HOST:PORT,HOST:PORT,...
bool parse_sentinels(ngx_conf_t* cf, ngx_str_t* arg, FleetHa* ha) {
    std::string_view list((const char*)arg->data + 15, arg->len - 15);
    while (!list.empty()) {
        const size_t comma = list.find(',');
        dp::RedisAddress a;
        if (!dp::parse_redis_address(list.substr(0, comma), &a)) return false;
        ha->sentinels.push_back(a);
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    }
    return !ha->sentinels.empty();
}

// device_pairing_zone zone=NAME:SIZE [state=PATH] [compact=SIZE] [log=on|off]
//                     [redis=HOST:PORT|unix:PATH | redis_sentinel=H:P,... redis_master=NAME]
//                     [redis_prefix=P] [redis_db=N] [redis_auth=FILE] [redis_sentinel_auth=FILE]
//                     [redis_replicas=N] [redis_replicas_timeout=TIME]
char* zone_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept {
    auto* mcf = static_cast<MainConf*>(conf);
    if (mcf->zone) return (char*)"is duplicate";
    ngx_str_t* value = static_cast<ngx_str_t*>(cf->args->elts);
    ngx_str_t name = ngx_null_string, state = ngx_null_string;
    ssize_t size = 0, compact_after = (ssize_t)kDefaultCompactAfter;
    bool log_on = false;
    FleetConf* fleet = nullptr;
    ngx_str_t prefix = ngx_string("dp:");
    ngx_int_t db = 0;
    bool fleet_options = false;
    // Made now, kept only in fleet mode (deleted with the pool either way).
    auto* ha = new (std::nothrow) FleetHa();
    ngx_pool_cleanup_t* ha_cln = ha ? ngx_pool_cleanup_add(cf->pool, 0) : nullptr;
    if (!ha_cln) {
        delete ha;
        return (char*)NGX_CONF_ERROR;
    }
    ha_cln->handler = [](void* p) { delete static_cast<FleetHa*>(p); };
    ha_cln->data = ha;
    for (ngx_uint_t i = 1; i < cf->args->nelts; i++) {
        const auto starts = [&](const char* name) {
            return value[i].len >= ngx_strlen(name) && ngx_strncmp(value[i].data, name, ngx_strlen(name)) == 0;
        };
        if (starts("redis_sentinel=")) {
            if (!parse_sentinels(cf, &value[i], ha)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid \"%V\", expected redis_sentinel=HOST:PORT,HOST:PORT,...",
                                   &value[i]);
                return (char*)NGX_CONF_ERROR;
            }
            continue;
        }
        if (starts("redis_master=")) {
            ha->master_name.assign((const char*)value[i].data + 13, value[i].len - 13);
            if (ha->master_name.empty()) return (char*)"has an empty redis_master=";
            continue;
        }
        if (starts("redis_auth=")) {
            if (!read_redis_credentials(cf, &value[i], 11, &ha->auth)) return (char*)NGX_CONF_ERROR;
            fleet_options = true;
            continue;
        }
        if (starts("redis_sentinel_auth=")) {
            if (!read_redis_credentials(cf, &value[i], 20, &ha->sentinel_auth)) return (char*)NGX_CONF_ERROR;
            continue;
        }
        if (starts("redis_replicas=")) {
            ha->replicas = (int)ngx_atoi(value[i].data + 15, value[i].len - 15);
            if (ha->replicas < 0 || ha->replicas > 16) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid \"%V\", expected redis_replicas=0..16", &value[i]);
                return (char*)NGX_CONF_ERROR;
            }
            fleet_options = true;
            continue;
        }
        if (starts("redis_replicas_timeout=")) {
            ngx_str_t t = {value[i].len - 23, value[i].data + 23};
            const ngx_msec_t ms = ngx_parse_time(&t, 0);
            // Below the link's watchdog (kReplyTimeoutMs), which would drop a link waiting longer.
            if (ms == (ngx_msec_t)NGX_ERROR || ms < 1 || ms > 2000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid \"%V\", expected a time from 1ms to 2s", &value[i]);
                return (char*)NGX_CONF_ERROR;
            }
            ha->replicas_timeout = ms;
            fleet_options = true;
            continue;
        }
        if (ngx_strncmp(value[i].data, "redis=", 6) == 0) {
            fleet = static_cast<FleetConf*>(ngx_pcalloc(cf->pool, sizeof(FleetConf)));
            if (!fleet) return (char*)NGX_CONF_ERROR;
            if (!parse_redis_target(cf, &value[i], fleet)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid \"%V\", expected redis=HOST:PORT or redis=unix:PATH",
                                   &value[i]);
                return (char*)NGX_CONF_ERROR;
            }
            continue;
        }
        if (ngx_strncmp(value[i].data, "redis_prefix=", 13) == 0) {
            prefix = {value[i].len - 13, value[i].data + 13};
            fleet_options = true;
            continue;
        }
        if (ngx_strncmp(value[i].data, "redis_db=", 9) == 0) {
            db = ngx_atoi(value[i].data + 9, value[i].len - 9);
            fleet_options = true;
            if (db == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid \"%V\", expected redis_db=NUMBER", &value[i]);
                return (char*)NGX_CONF_ERROR;
            }
            continue;
        }
        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            name.data = value[i].data + 5;
            u_char* colon = (u_char*)ngx_strchr(name.data, ':');
            if (!colon) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid zone \"%V\", expected zone=NAME:SIZE", &value[i]);
                return (char*)NGX_CONF_ERROR;
            }
            name.len = (size_t)(colon - name.data);
            ngx_str_t s = {(size_t)(value[i].data + value[i].len - colon - 1), colon + 1};
            size = ngx_parse_size(&s);
            if (size == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid zone size \"%V\"", &value[i]);
                return (char*)NGX_CONF_ERROR;
            }
            if (size < (ssize_t)(8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zone \"%V\" is too small, at least %uzk is needed",
                                   &value[i], 8 * ngx_pagesize / 1024);
                return (char*)NGX_CONF_ERROR;
            }
            if ((uint64_t)size > dp::DigestTable::kMaxStoreBytes) {  // the digest table's 32-bit references
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zone \"%V\" is too large, at most 32g", &value[i]);
                return (char*)NGX_CONF_ERROR;
            }
            continue;
        }
        if (ngx_strncmp(value[i].data, "state=", 6) == 0) {
            state.len = value[i].len - 6;
            state.data = value[i].data + 6;
            if (state.len == 0 || ngx_conf_full_name(cf->cycle, &state, 0) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid state path \"%V\"", &value[i]);
                return (char*)NGX_CONF_ERROR;
            }
            continue;
        }
        if (ngx_strncmp(value[i].data, "log=", 4) == 0) {
            const std::string_view v((const char*)value[i].data + 4, value[i].len - 4);
            if (v != "on" && v != "off") {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid \"%V\", expected log=on or log=off", &value[i]);
                return (char*)NGX_CONF_ERROR;
            }
            log_on = v == "on";
            continue;
        }
        if (ngx_strncmp(value[i].data, "compact=", 8) == 0) {
            ngx_str_t s = {value[i].len - 8, value[i].data + 8};
            compact_after = ngx_parse_size(&s);
            if (compact_after == NGX_ERROR || compact_after < 1024) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid \"%V\", expected compact=SIZE of at least 1k",
                                   &value[i]);
                return (char*)NGX_CONF_ERROR;
            }
            continue;
        }
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"", &value[i]);
        return (char*)NGX_CONF_ERROR;
    }
    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" must have \"zone=NAME:SIZE\"", &cmd->name);
        return (char*)NGX_CONF_ERROR;
    }
    if (!ha->sentinels.empty() != !ha->master_name.empty()) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "redis_sentinel= and redis_master= go together");
        return (char*)NGX_CONF_ERROR;
    }
    if (!ha->sentinels.empty()) {
        if (fleet) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "redis= and redis_sentinel= exclude each other: the sentinels name the master");
            return (char*)NGX_CONF_ERROR;
        }
        fleet = static_cast<FleetConf*>(ngx_pcalloc(cf->pool, sizeof(FleetConf)));
        if (!fleet) return (char*)NGX_CONF_ERROR;
        const std::string text = "master \"" + ha->master_name + "\" of the sentinels";
        fleet->text.data = (u_char*)conf_cstring(cf, (const u_char*)text.data(), text.size());
        if (!fleet->text.data) return (char*)NGX_CONF_ERROR;
        fleet->text.len = text.size();
    } else if (ha->sentinel_auth) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "redis_sentinel_auth= needs redis_sentinel=");
        return (char*)NGX_CONF_ERROR;
    }
    if (fleet_options && !fleet) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "redis_prefix=, redis_db=, redis_auth= and redis_replicas= need redis= or "
                           "redis_sentinel=");
        return (char*)NGX_CONF_ERROR;
    }
    if (prefix.len && ngx_strlchr(prefix.data, prefix.data + prefix.len, '{') &&
        !dp::has_hash_tag(std::string_view((const char*)prefix.data, prefix.len))) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "redis_prefix=%V has a \"{\" but no hash tag (\"{name}\"): every key "
                           "must carry one", &prefix);
        return (char*)NGX_CONF_ERROR;
    }
    if (log_on && !state.len && !fleet) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "log=on needs state=PATH (the leaves are kept in PATH.log) or "
                           "redis= (in a list in Redis)");
        return (char*)NGX_CONF_ERROR;
    }
    if (fleet && state.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "state= and redis= exclude each other: in fleet mode Redis holds the state");
        return (char*)NGX_CONF_ERROR;
    }
    if (fleet) {
        // Every key carries one hash tag (one Redis Cluster slot): dp: -> dp:{fleet}:
        const std::string tagged = dp::fleet_key_prefix(std::string_view((const char*)prefix.data, prefix.len));
        fleet->prefix.data = (u_char*)conf_cstring(cf, (const u_char*)tagged.data(), tagged.size());
        if (!fleet->prefix.data) return (char*)NGX_CONF_ERROR;
        fleet->prefix.len = tagged.size();
        if (tagged.size() != prefix.len) fleet->untagged_prefix = prefix;
        fleet->db = db;
        fleet->ha = ha;
    }
    auto* ctx = static_cast<ZoneCtx*>(ngx_pcalloc(cf->pool, sizeof(ZoneCtx)));
    if (!ctx) return (char*)NGX_CONF_ERROR;
    ctx->fleet = fleet;
    ctx->state_path = state;
    ctx->compact_after = (size_t)compact_after;
    ctx->log_on = log_on;
    ctx->mcf = mcf;
    ctx->cycle = cf->cycle;
    // The journal and the banner file are written in nginx's thread pool
    // "default" (created with its defaults unless nginx.conf declares it).
    if (!ngx_thread_pool_add(cf, nullptr)) return (char*)NGX_CONF_ERROR;
    ngx_pool_cleanup_t* cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (!cln) return (char*)NGX_CONF_ERROR;
    cln->handler = give_back_old_zone;
    cln->data = ctx;
    ngx_shm_zone_t* shm_zone = ngx_shared_memory_add(cf, &name, (size_t)size, &ngx_http_device_pairing_module);
    if (!shm_zone) return (char*)NGX_CONF_ERROR;
    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "duplicate zone \"%V\"", &name);
        return (char*)NGX_CONF_ERROR;
    }
    ctx->shm_zone = shm_zone;
    shm_zone->init = init_zone;
    shm_zone->data = ctx;
    mcf->zone = shm_zone;
    return NGX_CONF_OK;
}

// device_pairing on|off: the location serves the pairing API.
char* pairing_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept {
    char* rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) return rv;
    if (static_cast<LocConf*>(conf)->enable) {
        auto* mcf = static_cast<MainConf*>(ngx_http_conf_get_module_main_conf(cf, ngx_http_device_pairing_module));
        mcf->pairing_used = 1;
        auto* scf = static_cast<SrvConf*>(ngx_http_conf_get_module_srv_conf(cf, ngx_http_device_pairing_module));
        if (!mcf->first_pairing_srv) mcf->first_pairing_srv = scf;
        scf->core = static_cast<ngx_http_core_srv_conf_t*>(ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module));
        auto** known = static_cast<SrvConf**>(mcf->pairing_srvs.elts);
        if (std::find(known, known + mcf->pairing_srvs.nelts, scf) == known + mcf->pairing_srvs.nelts) {
            auto** slot = static_cast<SrvConf**>(ngx_array_push(&mcf->pairing_srvs));
            if (!slot) return (char*)NGX_CONF_ERROR;
            *slot = scf;
        }
    }
    return NGX_CONF_OK;
}

ngx_int_t preconfiguration(ngx_conf_t* cf) noexcept { return add_variables(cf); }

// Without device_pairing_url the start-up QR needs a URL a phone can reach:
// the server's listen address and port, or its server_name (core rule:
// dp::startup_url). nginx -t warns when that is a guess.
void set_listen_url(ngx_conf_t* cf, ngx_http_core_main_conf_t* cmcf, SrvConf* scf) {
    std::vector<dp::ListenAddress> listens;
    auto* ports = cmcf->ports ? static_cast<ngx_http_conf_port_t*>(cmcf->ports->elts) : nullptr;
    for (ngx_uint_t p = 0; ports && p < cmcf->ports->nelts; p++) {
        auto* addrs = static_cast<ngx_http_conf_addr_t*>(ports[p].addrs.elts);
        for (ngx_uint_t a = 0; a < ports[p].addrs.nelts; a++) {
            auto** servers = static_cast<ngx_http_core_srv_conf_t**>(addrs[a].servers.elts);
            if (std::find(servers, servers + addrs[a].servers.nelts, scf->core) == servers + addrs[a].servers.nelts)
                continue;
            dp::ListenAddress l;
            l.text = to_string(addrs[a].opt.addr_text);
            l.ssl = addrs[a].opt.ssl;
            struct sockaddr* sa = addrs[a].opt.sockaddr;
            l.wildcard = (sa->sa_family == AF_INET &&
                          reinterpret_cast<struct sockaddr_in*>(sa)->sin_addr.s_addr == INADDR_ANY)
#if (NGX_HAVE_INET6)
                         || (sa->sa_family == AF_INET6 &&
                             IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<struct sockaddr_in6*>(sa)->sin6_addr))
#endif
                ;
            listens.push_back(l);
        }
    }
    std::vector<std::string> names;
    auto* sn = static_cast<ngx_http_server_name_t*>(scf->core->server_names.elts);
    for (ngx_uint_t i = 0; i < scf->core->server_names.nelts; i++) names.push_back(to_string(sn[i].name));
    std::vector<std::string> warnings;
    scf->settings->listen_url = dp::startup_url(listens, names, to_string(cf->cycle->hostname), &warnings);
    if (scf->settings->public_url.empty())
        for (const std::string& w : warnings) ngx_conf_log_error(NGX_LOG_WARN, cf, 0, "device_pairing: %s", w.c_str());
}

// Where a new OTP's banner goes: next to the state file, else next to the
// operator token file.
void set_banner_path(ngx_conf_t* cf, MainConf* mcf) {
    auto* zone = static_cast<ZoneCtx*>(mcf->zone->data);
    std::string base = to_string(zone->state_path);
    if (base.empty() && !full_path(cf, &mcf->first_pairing_srv->token_file, &base)) return;
    base += ".banner";
    zone->banner_path.data = static_cast<u_char*>(ngx_pnalloc(cf->pool, base.size()));
    if (!zone->banner_path.data) return;
    ngx_memcpy(zone->banner_path.data, base.data(), base.size());
    zone->banner_path.len = base.size();
}

// The zone's key for OTPs and pairing codes (stored as MACs under it):
// device_pairing_secret_key, else a file beside the operator token file,
// made on first start. Every server of the zone uses it; fleet hosts share
// the file. With neither, a key of this configuration's own.
bool set_secret_key(ngx_conf_t* cf, MainConf* mcf) {
    std::string path, error;
    if (!full_path(cf, &mcf->secret_key_file, &path) && mcf->first_pairing_srv &&
        full_path(cf, &mcf->first_pairing_srv->token_file, &path))
        path += ".key";
    std::optional<dp::Digest> key;
    if (!path.empty() && !(key = dp::load_or_create_secret_key_file(path, &error))) {
        if (mcf->secret_key_file.len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "device_pairing_secret_key \"%s\": %s", path.c_str(),
                               error.c_str());
            return false;
        }
        // Beside a token file that cannot be made either: pairing by OTP is
        // unavailable anyway (501); codes live as long as this configuration.
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0, "device_pairing_secret_key \"%s\": %s; pairing codes do not "
                           "survive a reload", path.c_str(), error.c_str());
    }
    if (!key) {
        dp::Bytes random = dp::random_bytes(32);
        key.emplace();
        memcpy(key->data(), random.data(), 32);
    }
    auto** srvs = static_cast<SrvConf**>(mcf->pairing_srvs.elts);
    for (ngx_uint_t i = 0; i < mcf->pairing_srvs.nelts; i++) srvs[i]->settings->secret_key = *key;
    return true;
}

ngx_int_t postconfiguration(ngx_conf_t* cf) noexcept {
    auto* mcf = static_cast<MainConf*>(ngx_http_conf_get_module_main_conf(cf, ngx_http_device_pairing_module));
    auto* cmcf = static_cast<ngx_http_core_main_conf_t*>(ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module));
    if (!mcf->zone) {
        if (mcf->pairing_used) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"device_pairing\" needs a \"device_pairing_zone\" in http{}");
            return NGX_ERROR;
        }
        // device_pairing_auth without a zone can still check device keys
    }
    // One zone holds one realm: every pairing server shares its devices and
    // its OTP. Servers that name different operator token files look
    // isolated and are not, so such a configuration is refused.
    auto** srvs = static_cast<SrvConf**>(mcf->pairing_srvs.elts);
    for (ngx_uint_t i = 1; i < mcf->pairing_srvs.nelts; i++) {
        const ngx_str_t& a = srvs[0]->token_file;
        const ngx_str_t& b = srvs[i]->token_file;
        if (a.len != b.len || ngx_strncmp(a.data, b.data, a.len) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "servers with \"device_pairing on\" name different device_pairing_token_file "
                               "(\"%V\" and \"%V\"), but they share one zone: one realm of devices and one OTP; "
                               "set device_pairing_token_file once in http{}", &a, &b);
            return NGX_ERROR;
        }
    }
    try {
        for (ngx_uint_t i = 0; i < mcf->pairing_srvs.nelts; i++) set_listen_url(cf, cmcf, srvs[i]);
        if (mcf->zone && mcf->first_pairing_srv) set_banner_path(cf, mcf);
        if (!set_secret_key(cf, mcf)) return NGX_ERROR;
    } catch (...) {
        return NGX_ERROR;
    }
    auto* h = static_cast<ngx_http_handler_pt*>(ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers));
    if (!h) return NGX_ERROR;
    *h = access_handler;
    h = static_cast<ngx_http_handler_pt*>(ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers));
    if (!h) return NGX_ERROR;
    *h = subrequest_guard;
    h = static_cast<ngx_http_handler_pt*>(ngx_array_push(&cmcf->phases[NGX_HTTP_CONTENT_PHASE].handlers));
    if (!h) return NGX_ERROR;
    *h = content_handler;
    return init_deny_filter();
}

ZoneCtx* cycle_zone(ngx_cycle_t* cycle) {
    if (!cycle->conf_ctx || !cycle->conf_ctx[ngx_http_module.index]) return nullptr;  // no http{}
    auto* mcf = static_cast<MainConf*>(ngx_http_cycle_get_module_main_conf(cycle, ngx_http_device_pairing_module));
    return mcf && mcf->zone ? static_cast<ZoneCtx*>(mcf->zone->data) : nullptr;
}

// The cycle that holds the zone runs: a zone it took over in a resize stays retired.
// nginx's log files are open by now: the identity this configuration made
// is an audit event (once, from the master).
ngx_int_t init_module(ngx_cycle_t* cycle) noexcept {
    if (ZoneCtx* zone = cycle_zone(cycle)) {
        zone->cycle_ok = true;
        try {
            show_otp_at_start(zone, cycle->log);
        } catch (const std::exception& e) {
            ngx_log_error(NGX_LOG_ALERT, cycle->log, 0, "device_pairing: the OTP at start: %s", e.what());
        }
    }
    if (!cycle->conf_ctx || !cycle->conf_ctx[ngx_http_module.index]) return NGX_OK;
    auto* mcf = static_cast<MainConf*>(ngx_http_cycle_get_module_main_conf(cycle, ngx_http_device_pairing_module));
    auto** srvs = static_cast<SrvConf**>(mcf->pairing_srvs.elts);
    try {
        for (ngx_uint_t i = 0; i < mcf->pairing_srvs.nelts; i++)
            if (srvs[i]->identity_created)
                write_audit_at_start(srvs[i]->audit, dp::AuditEvent{"identity_created", "", "", "", "", to_string(srvs[i]->identity)},
                                     cycle->log);
    } catch (...) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0, "device_pairing_audit_log: the identity event was not written");
    }
    return NGX_OK;
}

ngx_int_t init_process(ngx_cycle_t* cycle) noexcept {
    ZoneCtx* zone = cycle_zone(cycle);
    return zone && zone->fleet ? start_fleet(cycle, zone) : start_journal(cycle, zone);
}

void exit_process(ngx_cycle_t* cycle) noexcept {
    flush_at_exit(cycle, cycle_zone(cycle));
    stop_fleet();
}

}  // namespace

}  // namespace dpngx

extern "C" {
ngx_module_t ngx_http_device_pairing_module = {
    NGX_MODULE_V1,
    &dpngx::module_ctx,       /* module context */
    dpngx::commands,          /* module directives */
    NGX_HTTP_MODULE,          /* module type */
    nullptr,                  /* init master */
    dpngx::init_module,       /* init module */
    dpngx::init_process,      /* init process */
    nullptr,                  /* init thread */
    nullptr,                  /* exit thread */
    dpngx::exit_process,      /* exit process */
    nullptr,                  /* exit master */
    NGX_MODULE_V1_PADDING};
}
