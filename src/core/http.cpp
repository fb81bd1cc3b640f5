#include "core/http.h"

#include "core/encoding.h"
#include "core/json.h"

namespace dp {

std::string Request::query_arg(std::string_view name) const {
    size_t pos = 0;
    while (pos <= query.size()) {
        size_t end = query.find('&', pos);
        if (end == std::string::npos) end = query.size();
        std::string_view arg(query.data() + pos, end - pos);
        if (arg.size() > name.size() && arg.substr(0, name.size()) == name && arg[name.size()] == '=')
            return std::string(arg.substr(name.size() + 1));
        pos = end + 1;
    }
    return {};
}

Response problem(int status, const std::string& code, const std::string& title,
                 const std::string& detail, const char* legacy_error) {
    // A detail may quote the client's bytes (a parser's message): only valid
    // UTF-8 of them goes into the answer.
    const std::string clean_detail = sanitize_utf8(detail, 1024);
    Json body(json_pack("{s:s, s:s, s:i, s:s, s:s}", "type",
                        ("urn:ngx-device-pairing:problem:" + code).c_str(), "title",
                        title.c_str(), "status", status, "detail", clean_detail.c_str(), "code",
                        code.c_str()));
    if (!body) throw std::bad_alloc();
    if (legacy_error) json_object_set_new(body.get(), "error", json_string(legacy_error));
    Response r;
    r.status = status;
    r.content_type = "application/problem+json";
    r.body = json_compact(body.get());
    return r;
}

Response json_response(int status, json_t* body) {
    Json owned(body);
    if (!owned) throw std::bad_alloc();
    Response r;
    r.status = status;
    r.body = json_compact(owned.get());
    return r;
}

Response internal_error() { return problem(500, "internal_error", "Internal error", "see the error log"); }

Response no_content() {
    Response r;
    r.status = 204;
    r.content_type.clear();
    return r;
}

}  // namespace dp
