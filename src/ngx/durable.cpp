// The durable writer's side that does not depend on which writer it is:
// which requests wait, what is undone when a write fails, and handing the
// outcome to the handler the request's route installed.
#include "ngx/durable.h"

namespace dpngx {

namespace {

constexpr ngx_msec_t kKeepWorkerCheckMs = 60000;

DurableWriter* worker_writer;  // this worker's, for the zone of the running cycle

DurableWriter* writer_of(ZoneCtx* zone) {
    return zone && (zone->state_path.len || zone->fleet) && worker_writer ? worker_writer : nullptr;
}

}  // namespace

DurableWriter* zone_writer(ZoneCtx* zone) { return writer_of(zone); }

void DurableWriter::keep_worker(bool in_flight) {
    if (!in_flight) {
        if (keep_worker_timer_.timer_set) ngx_del_timer(&keep_worker_timer_);
        return;
    }
    if (keep_worker_timer_.timer_set) return;
    keep_worker_timer_.handler = [](ngx_event_t* ev) noexcept { ngx_add_timer(ev, kKeepWorkerCheckMs); };
    keep_worker_timer_.data = this;
    keep_worker_timer_.log = ngx_cycle->log;
    ngx_add_timer(&keep_worker_timer_, kKeepWorkerCheckMs);
}

void set_worker_writer(ZoneCtx* zone, DurableWriter* writer) {
    worker_writer = writer;
    zone->journal = writer;
}

void undo_changes(ZoneCtx* zone, std::vector<dp::RecordChange>& changes) {
    ZoneStore store(zone);
    store.attach(nullptr);  // the undo puts back what the disk (or Redis) still holds
    dp::StoreLock lock(store);
    const uint32_t now_s = (uint32_t)ngx_time();
    for (auto it = changes.rbegin(); it != changes.rend(); ++it) store.restore(*it, now_s);
}

void settle(ZoneCtx* zone, ngx_http_request_t* r, const WriteResult& result) {
    ngx_connection_t* c = r->connection;
    RequestCtx* ctx = find_ctx(r);
    try {
        if (ctx && ctx->durable && ctx->durable->settled) {
            RequestCtx::Durable& d = *ctx->durable;
            d.waiting = false;
            if (result.kind != WriteResult::Durable) undo_changes(zone, d.changes);
            d.changes.clear();
            return d.settled(r, result);
        }
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0, "device_pairing: %s", e.what());
    }
    ngx_http_finalize_request(r, NGX_ERROR);  // the reference wait() took
    ngx_http_run_posted_requests(c);
}

void collect_changes(ZoneCtx* zone, RequestCtx* ctx) {
    if (DurableWriter* w = writer_of(zone)) w->current = ctx;
}

bool hold_until_durable(ngx_http_request_t* r, ZoneCtx* zone, RequestCtx* ctx, dp::Response&& resp,
                        void (*settled)(ngx_http_request_t*, const WriteResult&)) {
    DurableWriter* w = writer_of(zone);
    if (!w) return false;
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0, "device_pairing route: %uz record changes, %s",
                   ctx->durable ? ctx->durable->changes.size() : (size_t)0,
                   resp.durable || zone->fleet ? "the answer waits for them" : "answered now");
    // In fleet mode every change waits for Redis: a failed guess counts on
    // every host before its answer, or it could be guessed again elsewhere.
    if (!(resp.durable || zone->fleet) || !ctx->durable || ctx->durable->changes.empty()) {
        if (ctx->durable) ctx->durable->changes.clear();  // answered now: written with the next batch, never undone
        w->post();
        return false;
    }
    ctx->durable->held = std::move(resp);
    ctx->durable->waiting = true;
    ctx->durable->settled = settled;
    w->wait(r);
    return true;
}

void write_soon(ZoneCtx* zone) {
    if (DurableWriter* w = writer_of(zone)) w->post();
}

void forget_held(ngx_http_request_t* r, ZoneCtx* zone) {
    if (DurableWriter* w = writer_of(zone)) w->forget(r);
}

void flush_at_exit(ngx_cycle_t* cycle, ZoneCtx* zone) {
    try {
        if (DurableWriter* w = writer_of(zone)) w->flush_at_exit();
    } catch (...) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0, "device_pairing: final journal write failed");
    }
}

}  // namespace dpngx
