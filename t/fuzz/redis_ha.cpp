// Fleet mode on Sentinel: what a password file, a sentinel, a master's ROLE
// or an error reply may say. Nothing throws or crashes; a parsed address
// prints as one that parses to itself; a prefix always ends up with a hash
// tag; WAIT never asks for fewer replicas than configured.
#include <algorithm>

#include "core/redis_ha.h"
#include "fuzz.h"

namespace {
dp::ReplyView text(std::string_view s) {
    dp::ReplyView v;
    v.type = dp::ReplyView::String;
    v.text = s;
    return v;
}
dp::ReplyView list(std::vector<dp::ReplyView> elements) {
    dp::ReplyView v;
    v.type = dp::ReplyView::Array;
    v.elements = std::move(elements);
    return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto f = dpfuzz::fields(data, size, 6);
    std::string error;
    if (auto c = dp::parse_redis_credentials(f[0], &error)) {
        if (c->password.empty() || c->password.find_first_of(" \n\r") != std::string::npos) abort();
        if (dp::auth_command(*c).size() != (c->user.empty() ? 2u : 3u)) abort();
    }
    dp::RedisAddress a, again;
    if (dp::parse_redis_address(f[1], &a) && (!dp::parse_redis_address(a.text(), &again) || !(again == a))) abort();
    if (!dp::has_hash_tag(dp::fleet_key_prefix(f[2])) && f[2].find('{') == std::string::npos) abort();
    (void)dp::error_means_rediscover(f[3]);
    // A sentinel's and a master's answers, built from the fields.
    const auto master = dp::parse_sentinel_master(list({text(f[4]), text(f[5])}));
    if (master && (master->port < 1 || master->port > 65535)) abort();
    const dp::ReplyView role = list({text(f[3]), text(f[4]), list({list({text(f[4]), text(f[5]), text(f[1])}),
                                                                     list({text(f[5])})})});
    const std::vector<std::string> seen = dp::role_replicas(role);
    const std::vector<std::string> down = dp::sentinel_down_replicas(
        list({list({text("ip"), text(f[4]), text("port"), text(f[5]), text("flags"), text(f[3])})}));
    for (int configured : {0, 1, 3})
        if (configured && dp::wait_target(configured, seen, down) < configured) abort();
    return 0;
}
