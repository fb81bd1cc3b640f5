// What the core sees of a request and hands back as a response. The nginx
// glue fills Request from ngx_http_request_t and sends Response; unit tests
// build them directly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <jansson.h>

namespace dp {

struct Request {
    std::string method;
    std::string path;
    std::string query;
    std::string authorization;  // "Authorization" header value, empty if absent
    std::string device_key;     // "X-DEVICE-KEY" header value, empty if absent
    std::string content_type;
    std::string body;
    std::string client_addr;    // text form of the client address ($remote_addr)
    std::string user_agent;
    std::string host;           // Host header, for URLs when no public URL is set
    std::string scheme = "http";
    int64_t now_ms = 0;

    // Value of one query argument, or empty.
    std::string query_arg(std::string_view name) const;
};

struct Response {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
    std::vector<std::string> notices;  // lines for the error log at notice level
    bool durable = false;              // persist state before the answer leaves
    int64_t poll_until_ms = 0;         // long poll: ask again until ready or this time

    void header(std::string name, std::string value) {
        headers.emplace_back(std::move(name), std::move(value));
    }
};

// RFC 9457 problem. legacy_error adds the "error" member seed 000's clients read.
Response problem(int status, const std::string& code, const std::string& title,
                 const std::string& detail, const char* legacy_error = nullptr);
Response json_response(int status, json_t* body);  // steals the reference
Response no_content();

}  // namespace dp
