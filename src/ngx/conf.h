// The module's configuration as nginx holds it: the structs its directives
// fill (module.cpp), and small helpers every glue file uses.
#pragma once

extern "C" {
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
}

#include <optional>
#include <string>
#include <vector>

#include "core/redis_ha.h"
#include "core/settings.h"

extern "C" ngx_module_t ngx_http_device_pairing_module;

namespace dpngx {

// redis=HOST:PORT | redis=unix:PATH, redis_prefix=, redis_db=
// What makes a fleet highly available (issue: Sentinel, WAIT, AUTH); made
// with new and deleted with the configuration's pool.
struct FleetHa {
    std::vector<dp::RedisAddress> sentinels;   // redis_sentinel=: ask these for the master
    std::string master_name;                   // redis_master=
    std::optional<dp::RedisCredentials> auth;  // redis_auth=FILE, read when the configuration is
    std::optional<dp::RedisCredentials> sentinel_auth;  // redis_sentinel_auth=FILE
    int replicas = 0;                          // redis_replicas=: WAIT for this many after each batch
    ngx_msec_t replicas_timeout = 1000;        // redis_replicas_timeout=: WAIT's bound
};

struct FleetConf {
    ngx_str_t text;         // as configured, for log lines
    char* host_z;           // null-terminated, for hiredis (redis=; empty with sentinels)
    ngx_int_t port;
    ngx_str_t unix_path;
    char* unix_path_z;
    ngx_str_t prefix;       // with its hash tag (dp: -> dp:{fleet}:)
    ngx_str_t untagged_prefix;  // as configured when the tag was added (its keys are moved once); else empty
    ngx_int_t db;
    FleetHa* ha;
};

// device_pairing_audit_log: one of nginx's open files, or a syslog peer.
struct AuditLog {
    ngx_open_file_t* file;
    ngx_syslog_peer_t* syslog;
};

// device_pairing_oauth_client CLIENT_ID ["Display name"];
struct OAuthClientConf {
    ngx_str_t id;
    ngx_str_t name;
};

struct SrvConf {
    ngx_str_t token_file;
    ngx_str_t device_keys;
    ngx_str_t identity;
    ngx_str_t url;
    ngx_str_t app_url;
    ngx_msec_t otp_ttl;
    time_t mailbox_ttl;
    time_t code_ttl;
    ngx_uint_t max_pairings;
    size_t max_body;
    ngx_uint_t qr_colors;
    ngx_uint_t approvers;  // device_pairing_approvers: 0 any, 1 owner
    time_t token_idle_timeout;  // 0: off
    time_t token_lifetime;      // 0: off
    ngx_uint_t max_devices;     // 0: off
    AuditLog* audit;            // null: off
    ngx_array_t* oauth_clients; // device_pairing_oauth_client: OAuthClientConf (unset: inherited)
    time_t oauth_interval;      // device_pairing_oauth_interval
    time_t dpop_window;         // device_pairing_dpop_window
    ngx_flag_t dpop_nonce;      // device_pairing_dpop_nonce
    ngx_flag_t log_public;      // device_pairing_log_public
    ngx_str_t log_origin;       // device_pairing_log_origin (empty: HOSTNAME/device-pairing)
    bool identity_created;      // this configuration made the identity key: an audit event at start
    ngx_http_core_srv_conf_t* core;  // its server{}: listen addresses and names for the start-up URL
    dp::Settings* settings;  // built in merge; destroyed by a pool cleanup
};

struct MainConf {
    ngx_shm_zone_t* zone;
    SrvConf* first_pairing_srv;  // whose URL the startup banner shows
    ngx_array_t pairing_srvs;    // SrvConf* of every server with `device_pairing on`
    ngx_flag_t pairing_used;
    ngx_msec_t redis_stale;      // device_pairing_redis_stale: the gate serves a replica out of step this long
    ngx_str_t secret_key_file;   // device_pairing_secret_key (empty: beside the token file)
};

enum AuthMode : ngx_uint_t { kAuthOff = 0, kAuthBearer, kAuthDeviceKey, kAuthAny };

struct LocConf {
    ngx_flag_t enable;
    ngx_uint_t auth;               // device_pairing_auth: the access-phase gate
    ngx_uint_t check;              // device_pairing_check: a content handler for auth_request
    ngx_flag_t pass_credentials;   // keep Authorization / X-DEVICE-KEY for the upstream
    ngx_flag_t metrics;            // device_pairing_metrics: the Prometheus exposition
    ngx_uint_t dpop;               // device_pairing_dpop: a dp::DpopMode
};

SrvConf* srv_conf(ngx_http_request_t* r);

inline std::string to_string(const ngx_str_t& s) {
    return std::string(reinterpret_cast<const char*>(s.data), s.len);
}

// The first element of an ngx_list_t that satisfies pred, or null.
template <typename T, typename Pred>
T* find_in_list(ngx_list_t* list, Pred&& pred) {
    for (ngx_list_part_t* part = &list->part; part; part = part->next) {
        T* elts = static_cast<T*>(part->elts);
        for (ngx_uint_t i = 0; i < part->nelts; i++)
            if (pred(elts[i])) return &elts[i];
    }
    return nullptr;
}

int64_t now_ms();

}  // namespace dpngx
