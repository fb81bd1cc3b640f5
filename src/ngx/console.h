// The operator's console (console.cpp): metrics and the audit log.
#pragma once

#include <vector>

#include "core/http.h"
#include "ngx/conf.h"

namespace dpngx {

ngx_int_t metrics_handler(ngx_http_request_t* r) noexcept;
char* audit_log_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;
// The events of an answer that stands, with the request's address and User-Agent.
void write_audit(ngx_http_request_t* r, const std::vector<dp::AuditEvent>& events);
void write_audit_at_start(AuditLog* log, const dp::AuditEvent& event, ngx_log_t* error_log);
// An event of the zone's, not of a request (a Redis failover): every server's audit log.
void write_audit_everywhere(MainConf* mcf, const dp::AuditEvent& event, ngx_log_t* error_log);

}  // namespace dpngx
