#include "core/call.h"

#include <strings.h>

#include <cstdio>
#include <cstring>

namespace dp {

Response bad_request(const std::string& detail) {
    return problem(400, "invalid_request", "Invalid request", detail);
}

Response zone_full() {
    return problem(503, "zone_full", "Pairing state is full",
                   "the shared-memory zone has no room left; try again later");
}

Response quota_full(const char* what) {
    Response r = problem(503, "quota_exceeded", "Quota exceeded",
                         std::string("the zone's share for ") + what + " is used up; try again later");
    r.header("Retry-After", "60");
    return r;
}

Response unavailable(const char* detail) {
    Response r = problem(503, "state_unavailable", "Try again", detail);
    r.header("Retry-After", "1");
    return r;
}

Response forbidden(const char* detail) { return problem(403, "forbidden", "Forbidden", detail); }

std::string media_type(const std::string& content_type) {
    std::string type = content_type.substr(0, content_type.find(';'));
    while (!type.empty() && type.back() == ' ') type.pop_back();
    for (char& c : type) c = (char)tolower((unsigned char)c);
    return type;
}

bool media_type_can_hold_json(const std::string& content_type) {
    const std::string type = media_type(content_type);
    // Clients send JSON as it comes: curl -d (form-urlencoded), fetch with a
    // string (text/plain), or no type at all. Only types that cannot be JSON
    // text are refused.
    static const char* const binary_prefixes[] = {"multipart/", "image/", "audio/", "video/", "font/", "model/"};
    for (const char* p : binary_prefixes)
        if (type.rfind(p, 0) == 0) return false;
    static const char* const binary_types[] = {"application/octet-stream", "application/cbor", "application/zip",
                                               "application/gzip", "application/pdf", "application/x-protobuf",
                                               "application/msgpack", "application/x-msgpack"};
    for (const char* t : binary_types)
        if (type == t) return false;
    return true;
}

Result<Json> body_object(const Request& req, bool empty_ok) {
    if (!req.body.empty() && !media_type_can_hold_json(req.content_type))
        return problem(415, "unsupported_media_type", "Unsupported media type",
                       "send the body as JSON (Content-Type: application/json)");
    if (req.body.empty() && empty_ok) return Json(json_object());
    std::string why;
    Json root = parse_json_object(req.body, &why);
    if (!root) return bad_request(why);
    return root;
}

std::string_view bearer_token(std::string_view authorization, bool* malformed, bool* dpop_scheme) {
    *malformed = false;
    if (dpop_scheme) *dpop_scheme = false;
    if (authorization.empty()) return {};
    size_t skip = 7;
    if (dpop_scheme && authorization.size() >= 6 && strncasecmp(authorization.data(), "DPoP ", 5) == 0) {
        *dpop_scheme = true;
        skip = 5;
    } else if (authorization.size() < 8 || strncasecmp(authorization.data(), "Bearer ", 7) != 0) {
        *malformed = true;
        return {};
    }
    std::string_view token = authorization.substr(skip);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
    if (token.empty()) *malformed = true;
    return token;
}

namespace {

Response invalid_host() {
    return problem(400, "invalid_host", "Invalid Host header",
                   "the Host header is not a valid host[:port]; set device_pairing_url to publish a fixed URL");
}

}  // namespace

Result<std::string> base_url(const Settings& settings, const Request& req) {
    if (settings.public_url.empty() && !valid_host(req.host)) return invalid_host();
    std::string url = settings.public_url.empty() ? req.scheme + "://" + req.host : settings.public_url;
    while (!url.empty() && url.back() == '/') url.pop_back();
    return url;
}

Result<std::string> public_host(const Settings& settings, const Request& req) {
    if (settings.public_url.empty()) {
        if (!valid_host(req.host)) return invalid_host();
        return req.host;
    }
    const std::string& url = settings.public_url;
    size_t start = url.find("://") == std::string::npos ? 0 : url.find("://") + 3;
    return url.substr(start, url.find('/', start) - start);
}

void addr_to16(const ClientAddr& a, uint8_t out[16]) {
    memset(out, 0, 16);
    if (a.len == 16) {
        memcpy(out, a.bytes, 16);
    } else if (a.len == 4) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, a.bytes, 4);
    }
}

ClientAddr addr_from16(const uint8_t in[16]) {
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t kZero[16] = {};
    ClientAddr a;
    if (memcmp(in, kZero, 16) == 0) return a;
    if (memcmp(in, kMapped, 12) == 0) {
        a.len = 4;
        memcpy(a.bytes, in + 12, 4);
    } else {
        a.len = 16;
        memcpy(a.bytes, in, 16);
    }
    return a;
}

std::string addr_text(const ClientAddr& a) {
    char buf[64] = "";
    if (a.len == 4) {
        snprintf(buf, sizeof(buf), "%u.%u.%u.%u", a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3]);
    } else if (a.len == 16) {
        std::string s;
        for (int i = 0; i < 16; i += 2) {
            char part[8];
            snprintf(part, sizeof(part), "%s%x", i ? ":" : "", a.bytes[i] << 8 | a.bytes[i + 1]);
            s += part;
        }
        return s;
    }
    return buf;
}

std::string device_id_text(const uint8_t id[8]) {
    return "dev_" + hex_encode(std::string_view((const char*)id, 8));
}

Bytes seal_with(std::string_view label, std::string_view secret, const uint8_t* bytes) {
    const Digest key = key_of(label, secret);
    Bytes out(32, '\0');
    for (size_t i = 0; i < 32; i++) out[i] = (char)(bytes[i] ^ key[i]);
    return out;
}

}  // namespace dp
