// nginx's thread pool for the module's blocking steps: the work runs in a
// thread, its completion back in the event loop; neither lets an exception
// out.
#include "ngx/threads.h"

namespace dpngx {

namespace {

void thread_run(void* data, ngx_log_t*) {
    auto* step = *static_cast<ThreadStep**>(data);
    try {
        step->ok = step->work(&step->error);
    } catch (const std::exception& e) {
        step->ok = false;
        step->error = e.what();
    }
}

void thread_done(ngx_event_t* ev) noexcept {
    auto* step = *static_cast<ThreadStep**>(ev->data);
    try {
        step->done(step->ok, step->error);
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ALERT, ev->log, 0, "device_pairing: %s", e.what());
    }
}

}  // namespace

ngx_thread_task_t* new_thread_task(ngx_pool_t* pool, ngx_log_t* log, ThreadStep* step) {
    ngx_thread_task_t* task = ngx_thread_task_alloc(pool, sizeof(ThreadStep*));
    if (!task) return nullptr;
    *static_cast<ThreadStep**>(task->ctx) = step;
    task->handler = thread_run;
    task->event.handler = thread_done;
    task->event.data = task->ctx;
    task->event.log = log;
    return task;
}

ngx_thread_task_t* new_thread_task(ngx_cycle_t* cycle, ThreadStep* step) {
    return new_thread_task(cycle->pool, cycle->log, step);
}

ngx_thread_pool_t* default_thread_pool(ngx_cycle_t* cycle) {
    static ngx_str_t pool_name = ngx_string("default");
    return ngx_thread_pool_get(cycle, &pool_name);
}

bool post_request_step(ngx_http_request_t* r, ThreadStep* step) {
    ngx_thread_task_t* task = new_thread_task(r->pool, r->connection->log, step);
    ngx_thread_pool_t* pool = default_thread_pool((ngx_cycle_t*)ngx_cycle);
    if (!task || !pool) return false;
    r->main->count++;
    if (ngx_thread_task_post(pool, task) == NGX_OK) return true;
    r->main->count--;
    return false;
}

}  // namespace dpngx
