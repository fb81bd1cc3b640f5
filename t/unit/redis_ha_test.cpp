// Fleet mode on a highly available Redis: the credentials file, the
// sentinels' and ROLE's replies, which errors send a link back to the
// sentinels, WAIT's outcome, and the hash tag every key carries.
#include <gtest/gtest.h>

#include "core/redis_ha.h"
#include "reply_view.h"

using namespace dp;

namespace {
ReplyView array(std::vector<ReplyView> elements) { return arr(std::move(elements)); }
}  // namespace

TEST(RedisHa, CredentialsFile) {
    std::string error;
    auto c = parse_redis_credentials("s3cret\n", &error);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->user, "");
    EXPECT_EQ(c->password, "s3cret");
    EXPECT_EQ(auth_command(*c), (std::vector<std::string>{"AUTH", "s3cret"}));
    c = parse_redis_credentials("nginx-fleet pa55word", &error);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->user, "nginx-fleet");
    EXPECT_EQ(auth_command(*c), (std::vector<std::string>{"AUTH", "nginx-fleet", "pa55word"}));
    EXPECT_FALSE(parse_redis_credentials("", &error));
    EXPECT_FALSE(parse_redis_credentials("\n", &error));
    EXPECT_FALSE(parse_redis_credentials("a b c", &error));
    EXPECT_FALSE(parse_redis_credentials("user ", &error));
    EXPECT_FALSE(parse_redis_credentials("one\ntwo\n", &error));
    EXPECT_FALSE(parse_redis_credentials("pass\tword", &error));
}

TEST(RedisHa, Addresses) {
    RedisAddress a;
    ASSERT_TRUE(parse_redis_address("127.0.0.1:26379", &a));
    EXPECT_EQ(a.host, "127.0.0.1");
    EXPECT_EQ(a.port, 26379);
    ASSERT_TRUE(parse_redis_address("[::1]:6379", &a));
    EXPECT_EQ(a.host, "::1");
    EXPECT_EQ(a.text(), "[::1]:6379");
    EXPECT_FALSE(parse_redis_address("::1:6379", &a));
    EXPECT_FALSE(parse_redis_address("host:0", &a));
    EXPECT_FALSE(parse_redis_address("host:65536", &a));
    EXPECT_FALSE(parse_redis_address("host:", &a));
    EXPECT_FALSE(parse_redis_address(":6379", &a));
    EXPECT_FALSE(parse_redis_address("host:63a9", &a));
}

TEST(RedisHa, SentinelMasterReply) {
    auto m = parse_sentinel_master(array({str("10.0.0.7"), str("6380")}));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->text(), "10.0.0.7:6380");
    m = parse_sentinel_master(array({str("::1"), str("6380")}));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->host, "::1");
    EXPECT_FALSE(parse_sentinel_master(ReplyView{}));  // nil: this sentinel does not know the master
    EXPECT_FALSE(parse_sentinel_master(array({str("10.0.0.7")})));
    EXPECT_FALSE(parse_sentinel_master(array({str("10.0.0.7"), str("x")})));
    EXPECT_FALSE(parse_sentinel_master(array({str(""), str("6380")})));
    EXPECT_FALSE(parse_sentinel_master(array({str("10.0.0.7"), integer(6380)})));
}

TEST(RedisHa, RoleAndRediscovery) {
    EXPECT_TRUE(reply_says_master(array({str("master"), integer(0), array({})})));
    EXPECT_FALSE(reply_says_master(array({str("slave"), str("10.0.0.7"), integer(6379)})));
    EXPECT_FALSE(reply_says_master(array({str("sentinel"), array({})})));
    EXPECT_FALSE(reply_says_master(str("master")));
    EXPECT_TRUE(error_means_rediscover("READONLY You can't write against a read only replica."));
    EXPECT_TRUE(error_means_rediscover("LOADING Redis is loading the dataset in memory"));
    EXPECT_TRUE(error_means_rediscover("MASTERDOWN Link with MASTER is down"));
    EXPECT_FALSE(error_means_rediscover("NOSCRIPT No matching script."));
    EXPECT_FALSE(error_means_rediscover("READONLYX"));
    EXPECT_FALSE(error_means_rediscover("ERR READONLY"));
    EXPECT_FALSE(error_means_rediscover("NOPERM this user has no permissions"));
}

TEST(RedisHa, WaitOutcome) {
    EXPECT_TRUE(wait_confirmed(integer(1), 1));
    EXPECT_TRUE(wait_confirmed(integer(2), 1));
    EXPECT_FALSE(wait_confirmed(integer(0), 1)) << "a timeout: not on the replicas asked for";
    EXPECT_FALSE(wait_confirmed(integer(1), 2));
    ReplyView error;
    error.type = ReplyView::Error;
    error.text = "NOPERM";
    EXPECT_FALSE(wait_confirmed(error, 1));
    EXPECT_FALSE(wait_confirmed(ReplyView{}, 1));
}

TEST(RedisHa, WaitAsksForEveryReplicaNotHeldDown) {
    const ReplyView two = array({str("master"), integer(1234), array({array({str("10.0.0.8"), str("6379"), str("1200")}),
                                                                     array({str("10.0.0.9"), str("6380"), str("1234")})})});
    EXPECT_EQ(role_replicas(two), (std::vector<std::string>{"10.0.0.8:6379", "10.0.0.9:6380"}));
    EXPECT_TRUE(role_replicas(array({str("master"), integer(0), array({})})).empty());
    EXPECT_TRUE(role_replicas(array({str("slave"), str("10.0.0.7"), integer(6379)})).empty());
    const ReplyView replicas = array({array({str("name"), str("10.0.0.8:6379"), str("ip"), str("10.0.0.8"), str("port"),
                                             str("6379"), str("flags"), str("slave,s_down,disconnected")}),
                                      array({str("ip"), str("10.0.0.9"), str("port"), str("6380"), str("flags"), str("slave")})});
    EXPECT_EQ(sentinel_down_replicas(replicas), std::vector<std::string>{"10.0.0.8:6379"});
    const std::vector<std::string> seen = {"10.0.0.8:6379", "10.0.0.9:6380"};
    EXPECT_EQ(wait_target(1, seen, {}), 2) << "a replica the sentinels may promote must have every acknowledged write";
    EXPECT_EQ(wait_target(1, seen, {"10.0.0.8:6379"}), 1) << "one held down (it died) is not waited for";
    EXPECT_EQ(wait_target(1, {}, {}), 1) << "never fewer than configured";
    EXPECT_EQ(wait_target(2, {"10.0.0.8:6379"}, {}), 2);
    EXPECT_EQ(wait_target(0, seen, {}), 0) << "no WAIT without redis_replicas=";
}

TEST(RedisHa, SentinelRotation) {
    EXPECT_EQ(next_sentinel(0, 3), 1u);
    EXPECT_EQ(next_sentinel(2, 3), 0u);
    EXPECT_EQ(next_sentinel(0, 1), 0u);
}

TEST(RedisHa, HashTag) {
    EXPECT_EQ(fleet_key_prefix("dp:"), "dp:{fleet}:");
    EXPECT_EQ(fleet_key_prefix("app:{pairing}:"), "app:{pairing}:");
    EXPECT_TRUE(has_hash_tag("dp:{fleet}:r:1:00"));
    EXPECT_FALSE(has_hash_tag("dp:r:1:00"));
    EXPECT_FALSE(has_hash_tag("dp:{}:x{y}")) << "Redis takes the first {...}: an empty one hashes the whole key";
    EXPECT_FALSE(has_hash_tag("dp:{open"));
}

TEST(RedisHa, AConflictIsTakenOnlyFromTheMasterTheFollowerReadsOrANewerOne) {
    // Without sentinels there are no names: always.
    EXPECT_TRUE(conflict_master_current("", 0, "", 0));
    EXPECT_TRUE(conflict_master_current("10.0.0.1:6379", 5, "", 0)) << "the follower has named none yet";
    EXPECT_TRUE(conflict_master_current("10.0.0.1:6379", 5, "10.0.0.1:6379", 900)) << "the same master";
    // A failover: the follower moved to the new master at 900; this link is
    // still on the old one, sent there at 5: its records are stale.
    EXPECT_FALSE(conflict_master_current("10.0.0.1:6379", 5, "10.0.0.2:6379", 900));
    EXPECT_FALSE(conflict_master_current("10.0.0.1:6379", 900, "10.0.0.2:6379", 900)) << "named at the same time";
    // The link went to the new master before the follower did: trusted.
    EXPECT_TRUE(conflict_master_current("10.0.0.2:6379", 901, "10.0.0.1:6379", 900));
}
