// state=PATH: durable answers are written before they leave, everything
// else within a second (a timer per worker) and at worker exit.
#include <malloc.h>

#include "core/persist/disk.h"
#include "ngx/glue.h"

namespace dpngx {

namespace {

constexpr ngx_msec_t kFlushIntervalMs = 1000;  // short-lived records reach the state file within a second
ngx_event_t flush_timer;

void flush_tick(ngx_event_t* ev) noexcept {
    try {
        persist_if_dirty(static_cast<ZoneCtx*>(ev->data), ev->log);
    } catch (...) {
        ngx_log_error(NGX_LOG_ALERT, ev->log, 0, "device_pairing: state flush failed");
    }
    if (!ngx_exiting && !ngx_quit && !ngx_terminate) ngx_add_timer(ev, kFlushIntervalMs);
}

}  // namespace

void persist_if_dirty(ZoneCtx* zone, ngx_log_t* log) {
    if (!zone || !zone->sh || zone->state_path.len == 0) return;
    ZoneStore store(zone);
    {
        dp::StoreLock lock(store);
        if (store.shared().dirty == store.shared().persisted) return;
    }
    std::string error;
    static time_t last_alert;  // a failing disk alerts once a minute, not once a second
    dp::PosixDisk disk;
    bool ok = dp::persist_state(store, disk, to_string(zone->state_path), &error);
    malloc_trim(0);  // the snapshot of a large zone must not stay resident in the worker
    if (!ok && ngx_time() - last_alert >= 60) {
        last_alert = ngx_time();
        ngx_log_error(NGX_LOG_ALERT, log, 0, "device_pairing_zone \"%V\": %s; the old state file is kept "
                      "and a full rewrite will be retried", &zone->shm_zone->shm.name, error.c_str());
    }
}

ngx_int_t start_flush_timer(ngx_cycle_t* cycle, ZoneCtx* zone) {
    if (!zone || zone->state_path.len == 0) return NGX_OK;
    flush_timer.handler = flush_tick;
    flush_timer.log = cycle->log;
    flush_timer.data = zone;
    flush_timer.cancelable = 1;  // never holds up a graceful shutdown
    ngx_add_timer(&flush_timer, kFlushIntervalMs);
    return NGX_OK;
}

void flush_at_exit(ngx_cycle_t* cycle, ZoneCtx* zone) {
    try {
        persist_if_dirty(zone, cycle->log);
    } catch (...) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0, "device_pairing: final state flush failed");
    }
}

}  // namespace dpngx
