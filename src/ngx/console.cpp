// The operator's console on the nginx side: device_pairing_metrics (the
// Prometheus exposition) and device_pairing_audit_log (nginx's own log
// files, so `nginx -s reopen` and logrotate work, or its syslog writer).
#include "core/audit.h"
#include "core/metrics.h"
#include "ngx/console.h"
#include "ngx/content.h"
#include "ngx/zone.h"

namespace dpngx {

namespace {

void write_line(AuditLog* log, const std::string& line, ngx_log_t* error_log) {
    if (log->syslog) {
        // syslog carries one line per message, without its newline.
        u_char buf[4096];  // the header (< 300 bytes) and a line (< 2 KiB: its fields are bounded)
        u_char* p = ngx_syslog_add_header(log->syslog, buf);
        size_t room = (size_t)(buf + sizeof(buf) - p), len = std::min(line.size() - 1, room);
        p = ngx_cpymem(p, line.data(), len);
        ngx_syslog_send(log->syslog, buf, (size_t)(p - buf));
        return;
    }
    // One write per line with O_APPEND: lines from several workers never interleave.
    ssize_t n = ngx_write_fd(log->file->fd, (u_char*)line.data(), line.size());
    if (n != (ssize_t)line.size())
        ngx_log_error(NGX_LOG_ALERT, error_log, ngx_errno, "device_pairing_audit_log: write to \"%s\" failed",
                      log->file->name.data);
}

}  // namespace

void write_audit(ngx_http_request_t* r, const std::vector<dp::AuditEvent>& events) {
    AuditLog* log = srv_conf(r)->audit;
    if (!log || events.empty()) return;
    std::string user_agent = r->headers_in.user_agent ? to_string(r->headers_in.user_agent->value) : std::string();
    const dp::ClientAddr addr = client_addr(r);
    const int64_t now = now_ms();
    for (const dp::AuditEvent& e : events) write_line(log, dp::audit_line(e, now, addr, user_agent), r->connection->log);
}

void write_audit_at_start(AuditLog* log, const dp::AuditEvent& event, ngx_log_t* error_log) {
    if (log) write_line(log, dp::audit_line(event, now_ms(), dp::ClientAddr(), ""), error_log);
}

void write_audit_everywhere(MainConf* mcf, const dp::AuditEvent& event, ngx_log_t* error_log) {
    auto** srvs = static_cast<SrvConf**>(mcf->pairing_srvs.elts);
    std::vector<AuditLog*> written;  // servers may share one log
    for (ngx_uint_t i = 0; i < mcf->pairing_srvs.nelts; i++) {
        AuditLog* log = srvs[i]->audit;
        if (!log || log == NGX_CONF_UNSET_PTR || std::find(written.begin(), written.end(), log) != written.end()) continue;
        written.push_back(log);
        write_audit_at_start(log, event, error_log);
    }
}

ngx_int_t metrics_handler(ngx_http_request_t* r) noexcept {
    try {
        if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) return NGX_HTTP_NOT_ALLOWED;
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        ZoneCtx* zone = zone_of(r);
        if (!zone) return NGX_HTTP_NOT_FOUND;
        ZoneStore store(zone);
        dp::Response resp;
        resp.content_type = dp::kMetricsContentType;
        resp.body = dp::metrics_text(store, (uint32_t)ngx_time());
        return send_response(r, resp);
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0, "device_pairing_metrics: %s", e.what());
    } catch (...) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0, "device_pairing_metrics: unknown exception");
    }
    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}

// device_pairing_audit_log PATH | syslog:server=... | off
char* audit_log_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept {
    auto* scf = static_cast<SrvConf*>(conf);
    if (scf->audit != NGX_CONF_UNSET_PTR) return (char*)"is duplicate";
    ngx_str_t* value = static_cast<ngx_str_t*>(cf->args->elts);
    if (ngx_strcmp(value[1].data, "off") == 0) {
        scf->audit = nullptr;
        return NGX_CONF_OK;
    }
    auto* log = static_cast<AuditLog*>(ngx_pcalloc(cf->pool, sizeof(AuditLog)));
    if (!log) return (char*)NGX_CONF_ERROR;
    if (ngx_strncmp(value[1].data, "syslog:", 7) == 0) {
        log->syslog = static_cast<ngx_syslog_peer_t*>(ngx_pcalloc(cf->pool, sizeof(ngx_syslog_peer_t)));
        if (!log->syslog || ngx_syslog_process_conf(cf, log->syslog) != NGX_CONF_OK) return (char*)NGX_CONF_ERROR;
    } else {
        log->file = ngx_conf_open_file(cf->cycle, &value[1]);
        if (!log->file) return (char*)NGX_CONF_ERROR;
    }
    scf->audit = log;
    return NGX_CONF_OK;
}

}  // namespace dpngx
