// Fleet mode on a highly available Redis (Sentinel, WAIT, AUTH): the pure
// rules, so that unit tests drive them without a server. The glue
// (redis_link.h, fleet_writer.cpp) asks these what a reply means.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/fleet.h"

namespace dp {

// redis_auth=FILE, redis_sentinel_auth=FILE: one line, "PASSWORD" or
// "USER PASSWORD" (a trailing newline allowed). Empty optional and *error
// set when the text is not that.
struct RedisCredentials {
    std::string user;      // empty: the default user (AUTH PASSWORD)
    std::string password;
};
std::optional<RedisCredentials> parse_redis_credentials(std::string_view text, std::string* error);
// The AUTH command for them: AUTH PASSWORD, or AUTH USER PASSWORD.
std::vector<std::string> auth_command(const RedisCredentials& credentials);

// HOST:PORT; false when it is not one (IPv6 in brackets: [::1]:26379).
struct RedisAddress {
    std::string host;
    int port = 0;
    bool operator==(const RedisAddress& o) const { return host == o.host && port == o.port; }
    std::string text() const;
};
bool parse_redis_address(std::string_view text, RedisAddress* out);

// SENTINEL get-master-addr-by-name NAME: [ip, port], or nil when the
// sentinel does not know that master (then the next sentinel is asked).
std::optional<RedisAddress> parse_sentinel_master(const ReplyView& reply);

// ROLE's first element: only a master takes the fleet's writes.
bool reply_says_master(const ReplyView& reply);
// A master's ROLE: its replicas, "ip:port" each (empty for anything else).
std::vector<std::string> role_replicas(const ReplyView& reply);
// SENTINEL replicas NAME: the replicas the sentinel holds down ("ip:port";
// flags s_down, o_down or disconnected): a replica that died, not one
// promoted by a failover.
std::vector<std::string> sentinel_down_replicas(const ReplyView& reply);

// An error reply that means this server is not (or not yet) the master to
// write to: READONLY (a replica since a failover), LOADING (reading its
// data), MASTERDOWN (a replica that lost its master). The link asks the
// sentinels again (the Sentinel client protocol) or reconnects.
bool error_means_rediscover(std::string_view error);

// WAIT's answer after a batch that committed: durable on the replicas asked
// for, or not known to be (the writes are treated as of unknown outcome).
bool wait_confirmed(const ReplyView& reply, int replicas);

// How many replicas a batch's WAIT asks for: redis_replicas=N at least, and
// every replica this master has been seen with (its ROLE, at each connect and
// batch) that the sentinels do not hold down. Why every one: Sentinel's
// failover promotes a replica while the old master still takes writes until
// it is demoted, and a replica still following the old master could satisfy
// a WAIT of fewer; such a write would be acknowledged and then lost. Asking
// for all, the promoted one's silence makes the WAIT fall short (503, and
// the sentinels are asked again, until they name the new master). A replica
// that died is held down by the sentinels within down-after-milliseconds and
// no longer counted.
int wait_target(int configured, const std::vector<std::string>& seen, const std::vector<std::string>& down);

// Whether the records a commit's conflict brings back may go into the
// replica: they come from the master that commit link writes to, and in a
// failover the old master still answers until Sentinel demotes it, holding
// none of what the new one took since (taken in, they removed a device
// just paired through the new master, and the same host answered 404 for
// it). Trusted: the master the follower reads, or one the link was sent to
// after the follower's was named (ms on one clock). Without sentinels (no
// names), always.
bool conflict_master_current(std::string_view link_master, uint64_t link_named_ms, std::string_view followed_master,
                             uint64_t followed_named_ms);

// Which sentinel to ask next: each in turn, from the one after the last
// that failed, so one down sentinel costs one connection attempt.
inline size_t next_sentinel(size_t last, size_t count) { return count ? (last + 1) % count : 0; }

// Every key the commit script touches carries one hash tag, so that a
// single-slot Redis Cluster could serve the fleet: a prefix without one gets
// "{fleet}:" added ("dp:" -> "dp:{fleet}:"); one that has a tag is kept.
std::string fleet_key_prefix(std::string_view configured);
bool has_hash_tag(std::string_view key);

}  // namespace dp
