// Long polls (GET /api/v1/device-pairing/{id}?wait=N): the request is held
// on a timer, never blocking the worker, until the pairing is ready or the
// monotonic deadline passes. Every 20 ms it reads the zone's change count
// (one word) and runs the route again only when the zone changed: a deposit
// by another worker, or (fleet mode) by another host through the feed, or a
// resize retired it.
#include "ngx/content.h"
#include "ngx/zone.h"

namespace dpngx {

namespace {

constexpr ngx_msec_t kPollIntervalMs = 20;



void poll_again(ngx_event_t* ev) noexcept {
    auto* r = static_cast<ngx_http_request_t*>(ev->data);
    ngx_connection_t* conn = r->connection;  // r may be freed by finalize
    auto* ctx = static_cast<RequestCtx*>(ngx_http_get_module_ctx(r, ngx_http_device_pairing_module));
    ZoneCtx* zone = zone_of(r);
    bool quiet = zone_changes(zone) == ctx->poll_changes_seen && !zone_retired(zone);  // a resize ends it at once
    if (quiet && (ngx_msec_int_t)(ctx->poll_deadline - ngx_current_msec) > 0) {
        ngx_add_timer(ev, kPollIntervalMs);  // nothing changed: nothing to ask
        return;
    }
    ngx_int_t rc;
    try {
        rc = run_route(r, ctx, std::string());
    } catch (...) {
        ngx_log_error(NGX_LOG_ALERT, conn->log, 0, "device_pairing: long poll failed");
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    if (rc != NGX_DONE) ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(conn);
}

}  // namespace

ngx_int_t park_poll(ngx_http_request_t* r, RequestCtx* ctx) {
    ctx->poll_timer.handler = poll_again;
    ctx->poll_timer.data = r;
    ctx->poll_timer.log = r->connection->log;
    ngx_add_timer(&ctx->poll_timer, kPollIntervalMs);
    if (!ctx->polling) {  // the request now outlives this handler call
        ctx->polling = true;
        r->main->count++;
    }
    r->read_event_handler = ngx_http_test_reading;  // notice a client that gives up
    return NGX_DONE;
}

}  // namespace dpngx
