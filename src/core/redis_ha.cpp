#include "core/redis_ha.h"

#include <algorithm>
#include <cctype>

namespace dp {

std::optional<RedisCredentials> parse_redis_credentials(std::string_view text, std::string* error) {
    if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.find('\n') != std::string_view::npos) {
        *error = "more than one line; expected PASSWORD or USER PASSWORD";
        return std::nullopt;
    }
    RedisCredentials c;
    const size_t space = text.find(' ');
    if (space == std::string_view::npos) {
        c.password = std::string(text);
    } else {
        c.user = std::string(text.substr(0, space));
        c.password = std::string(text.substr(space + 1));
        if (c.user.empty() || c.password.find(' ') != std::string::npos) {
            *error = "expected PASSWORD or USER PASSWORD on one line";
            return std::nullopt;
        }
    }
    if (c.password.empty()) {
        *error = "no password";
        return std::nullopt;
    }
    for (char ch : text)
        if ((unsigned char)ch < 0x20 || ch == 0x7f) {
            *error = "a control character";
            return std::nullopt;
        }
    return c;
}

std::vector<std::string> auth_command(const RedisCredentials& credentials) {
    if (credentials.user.empty()) return {"AUTH", credentials.password};
    return {"AUTH", credentials.user, credentials.password};
}

std::string RedisAddress::text() const {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool parse_redis_address(std::string_view text, RedisAddress* out) {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size() || text.size() - colon > 6)
        return false;
    std::string_view host = text.substr(0, colon);
    if (host.front() == '[') {
        if (host.size() < 3 || host.back() != ']') return false;
        host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string_view::npos) {
        return false;  // IPv6 needs its brackets
    }
    int port = 0;
    for (char c : text.substr(colon + 1)) {
        if (!isdigit((unsigned char)c)) return false;
        port = port * 10 + (c - '0');
    }
    if (port < 1 || port > 65535) return false;
    out->host = std::string(host);
    out->port = port;
    return true;
}

namespace {
// A host and a port as Redis's replies give them apart (an IPv6 host bare).
std::optional<RedisAddress> address_of(std::string_view host, std::string_view port) {
    const std::string h(host);
    RedisAddress a;
    if (!parse_redis_address((h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + std::string(port), &a))
        return std::nullopt;
    return a;
}
}  // namespace

std::optional<RedisAddress> parse_sentinel_master(const ReplyView& reply) {
    if (reply.type != ReplyView::Array || reply.elements.size() != 2 || reply.elements[0].type != ReplyView::String ||
        reply.elements[1].type != ReplyView::String || reply.elements[0].text.empty())
        return std::nullopt;
    return address_of(reply.elements[0].text, reply.elements[1].text);
}

bool reply_says_master(const ReplyView& reply) {
    return reply.type == ReplyView::Array && !reply.elements.empty() && reply.elements[0].type == ReplyView::String &&
           reply.elements[0].text == "master";
}

std::vector<std::string> role_replicas(const ReplyView& reply) {
    std::vector<std::string> out;
    if (!reply_says_master(reply) || reply.elements.size() < 3 || reply.elements[2].type != ReplyView::Array) return out;
    for (const ReplyView& r : reply.elements[2].elements) {
        if (r.type != ReplyView::Array || r.elements.size() < 2 || r.elements[0].type != ReplyView::String ||
            r.elements[1].type != ReplyView::String)
            continue;
        if (auto a = address_of(r.elements[0].text, r.elements[1].text)) out.push_back(a->text());
    }
    return out;
}

std::vector<std::string> sentinel_down_replicas(const ReplyView& reply) {
    std::vector<std::string> out;
    if (reply.type != ReplyView::Array) return out;
    for (const ReplyView& r : reply.elements) {
        if (r.type != ReplyView::Array) continue;
        std::string_view ip, port, flags;
        for (size_t i = 0; i + 1 < r.elements.size(); i += 2) {
            const std::string_view field = r.elements[i].text, value = r.elements[i + 1].text;
            if (field == "ip") ip = value;
            if (field == "port") port = value;
            if (field == "flags") flags = value;
        }
        bool down = false;
        for (std::string_view flag : {"s_down", "o_down", "disconnected"})
            down = down || ("," + std::string(flags) + ",").find("," + std::string(flag) + ",") != std::string::npos;
        if (!down) continue;
        if (auto a = address_of(ip, port)) out.push_back(a->text());
    }
    return out;
}

int wait_target(int configured, const std::vector<std::string>& seen, const std::vector<std::string>& down) {
    if (configured <= 0) return 0;
    int live = 0;
    for (const std::string& r : seen) live += std::find(down.begin(), down.end(), r) == down.end();
    return std::max(configured, std::min(live, 64));
}

bool conflict_master_current(std::string_view link_master, uint64_t link_named_ms, std::string_view followed_master,
                             uint64_t followed_named_ms) {
    if (link_master.empty() || followed_master.empty() || link_master == followed_master) return true;
    return link_named_ms > followed_named_ms;
}

bool error_means_rediscover(std::string_view error) {
    for (std::string_view code : {"READONLY", "LOADING", "MASTERDOWN"})
        if (error.substr(0, code.size()) == code && (error.size() == code.size() || error[code.size()] == ' '))
            return true;
    return false;
}

bool wait_confirmed(const ReplyView& reply, int replicas) {
    return reply.type == ReplyView::Integer && reply.integer >= replicas;
}

bool has_hash_tag(std::string_view key) {
    const size_t open = key.find('{');
    if (open == std::string_view::npos) return false;
    const size_t close = key.find('}', open + 1);
    return close != std::string_view::npos && close > open + 1;  // "{}" is no tag: Redis hashes the whole key
}

std::string fleet_key_prefix(std::string_view configured) {
    if (has_hash_tag(configured)) return std::string(configured);
    return std::string(configured) + "{fleet}:";
}

}  // namespace dp
