// The API's content handler (content.cpp) and its long polls (poll.cpp).
#pragma once

#include <string>

#include "core/http.h"
#include "ngx/request.h"

namespace dpngx {

ngx_int_t content_handler(ngx_http_request_t* r) noexcept;
ngx_int_t send_response(ngx_http_request_t* r, const dp::Response& resp);
// Sends a response from a phase that is not the content phase and ends the request.
ngx_int_t answer_now(ngx_http_request_t* r, const dp::Response& resp);
// Runs the matched route with the body read so far and answers, or parks a long poll.
ngx_int_t run_route(ngx_http_request_t* r, RequestCtx* ctx, std::string body);

// poll.cpp: GET ...?wait=N asks the zone again on a timer until ready or due.
ngx_int_t park_poll(ngx_http_request_t* r, RequestCtx* ctx);

}  // namespace dpngx
