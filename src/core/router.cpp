#include "core/router.h"

namespace dp {

namespace {

bool id_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

bool match_pattern(std::string_view pattern, std::string_view path, std::string* param) {
    size_t hole = pattern.find("{}");
    if (hole == std::string_view::npos) return pattern == path;
    if (path.size() <= hole || path.substr(0, hole) != pattern.substr(0, hole)) return false;
    std::string_view rest = path.substr(hole);
    if (rest.size() > 128) return false;
    for (char c : rest)
        if (!id_char(c)) return false;
    *param = std::string(rest);
    return true;
}

}  // namespace

RouteMatch match_route(const RouteSpec* table, size_t count, std::string_view method, std::string_view path) {
    RouteMatch m;
    for (const RouteSpec* spec = table; spec < table + count; spec++) {
        std::string param;
        if (!match_pattern(spec->pattern, path, &param)) continue;
        if (method == spec->method) {
            m.outcome = RouteMatch::Found;
            m.spec = spec;
            m.route = spec->route;
            m.param = std::move(param);
            m.has_body = spec->has_body;
            m.auth = spec->auth;
            return m;
        }
        if (m.allow.find(spec->method) == std::string::npos) {
            if (!m.allow.empty()) m.allow += ", ";
            m.allow += spec->method;
        }
    }
    m.outcome = m.allow.empty() ? RouteMatch::NotFound : RouteMatch::MethodNotAllowed;
    return m;
}

}  // namespace dp
