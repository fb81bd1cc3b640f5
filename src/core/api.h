// The pairing API: the route table (route -> handler, with its credential
// and role), the checks made before a body is read (404, 405, 413),
// and the dispatch that authenticates and runs a handler.
#pragma once

#include <optional>

#include "core/call.h"
#include "core/router.h"

namespace dp {

RouteMatch api_route(std::string_view method, std::string_view path);

// What the request line and headers already decide: a 404, 405 or 413
// answer, or nothing (then read the body if route.spec->has_body, and handle).
// The media type (415) is judged after the credentials, by body_object().
std::optional<Response> api_precheck(const RouteMatch& route, const Request& head, const Settings& settings);

// 413 for a body found larger than the limit while reading it.
Response body_too_large(size_t limit);

// Authenticates as the route requires, checks the role, runs the handler.
Response api_handle(Store& store, const Settings& settings, const RouteMatch& route, const Request& req,
                    const ClientAddr& addr);

}  // namespace dp
