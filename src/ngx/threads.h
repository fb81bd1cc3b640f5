// A blocking step run in nginx's thread pool, with its completion in the
// event loop (threads.cpp): journal appends, snapshots, the banner file.
#pragma once

#include <functional>
#include <string>

#include "ngx/conf.h"

#if !(NGX_THREADS)
#error "device_pairing needs nginx built --with-threads: the journal is written in a thread pool"
#endif

namespace dpngx {

struct ThreadStep {
    // The thread's: no nginx calls; the zone only through a ZoneStore's lock
    // (the pairing log's tree, grown while the state file's lock is held).
    std::function<bool(std::string*)> work;
    std::function<void(bool, const std::string&)> done;
    bool ok = false;
    std::string error;
};
ngx_thread_task_t* new_thread_task(ngx_cycle_t* cycle, ThreadStep* step);
ngx_thread_task_t* new_thread_task(ngx_pool_t* pool, ngx_log_t* log, ThreadStep* step);
ngx_thread_pool_t* default_thread_pool(ngx_cycle_t* cycle);
// A request's step in the pool "default": the request is held (one
// reference) until step->done runs, which answers and finalizes it. The
// step must outlive the task (the request's context keeps it). False when it
// could not be posted (nothing held).
bool post_request_step(ngx_http_request_t* r, ThreadStep* step);

}  // namespace dpngx
