// A request's state in the module (content.cpp): the gate's verdict and an
// API call's progress, and what the handlers read from a request.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/api.h"
#include "core/http.h"
#include "ngx/conf.h"

namespace dpngx {

struct WriteResult;

// Per request: the gate's verdict (for the variables) and the API call state.
// It lives in a pool cleanup, so it is found again after an internal
// redirect has zeroed the module contexts (as realip finds its own).
struct RequestCtx {
    ngx_http_request_t* owner = nullptr;  // subrequests share the pool: whose this is
    dp::Principal principal;
    bool authenticated = false;
    std::string scope;         // $device_pairing_scope, once read
    bool scope_read = false;
    // A denial by the gate: nginx answers it (error_page, satisfy, auth_delay
    // apply); when that answer is nginx's own page for this very location,
    // the deny filter puts the problem+json body in its place.
    const dp::Response* denial = nullptr;
    void* denied_in = nullptr;            // the LocConf that denied
    ngx_uint_t denied_status = 0;
    bool replacing_body = false;
    bool body_replaced = false;
    dp::RouteMatch route;
    ngx_msec_t poll_deadline = 0;         // monotonic (ngx_current_msec); 0: not polling yet
    bool polling = false;
    uint64_t poll_changes_seen = 0;       // the zone's change count when the poll last ran
    ngx_event_t poll_timer;
    // The record changes this request's route committed (for an undo), and
    // the answer held until they are durable; made only for API routes with
    // state=, so the gate's per-request context stays small.
    struct Durable {
        std::vector<dp::RecordChange> changes;
        dp::Response held;
        bool waiting = false;
        // Called once the writer knows what became of the changes: the
        // content side decides the answer (the writer never answers).
        void (*settled)(ngx_http_request_t* r, const WriteResult& result) = nullptr;
    };
    std::unique_ptr<Durable> durable;
    std::string body;          // the request body, for a route run again (fleet: after a conflict)
    int attempts = 0;          // runs of the route so far
    std::shared_ptr<void> pending_read;  // a read in a thread this request waits for (the pairing log's entries)
};

RequestCtx* request_ctx(ngx_http_request_t* r);  // created on first use; null on error
RequestCtx* find_ctx(ngx_http_request_t* r);     // existing one (after redirects too), or null

dp::ClientAddr client_addr(ngx_http_request_t* r);
// What the core sees of a request (no body).
dp::Request build_request(ngx_http_request_t* r);
std::string header_value(ngx_http_request_t* r, const char* lowercase_name);

}  // namespace dpngx
