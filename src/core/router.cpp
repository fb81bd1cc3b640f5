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

void allow(std::string* list, std::string_view method) {
    if (list->find(method) != std::string::npos) return;
    if (!list->empty()) *list += ", ";
    *list += method;
}

}  // namespace

RouteMatch match_route(const RouteSpec* table, size_t count, std::string_view method, std::string_view path) {
    RouteMatch m;
    for (const RouteSpec* spec = table; spec < table + count; spec++) {
        std::string param;
        if (!match_pattern(spec->pattern, path, &param)) continue;
        const std::string_view spec_method = spec->method;
        // HEAD wherever GET is allowed: the same answer without its body.
        if (method == spec_method || (method == "HEAD" && spec_method == "GET")) {
            m.outcome = RouteMatch::Found;
            m.spec = spec;
            m.param = std::move(param);
            return m;
        }
        allow(&m.allow, spec_method);
        if (spec_method == "GET") allow(&m.allow, "HEAD");
    }
    m.outcome = m.allow.empty() ? RouteMatch::NotFound : RouteMatch::MethodNotAllowed;
    return m;
}

}  // namespace dp
