// The commit script itself, in a real redis-server (started here on a unix
// socket): how a batch of transactions commits. Each transaction is checked
// and applied on its own, in order, so one that builds on an earlier one of
// its batch commits, one that meets a changed record is refused with Redis's
// images and changes nothing, and the account cap counts the batch's own
// mailboxes. fleet_test.cpp covers the hosts' side with a model of it.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "core/fleet.h"

using namespace dp;

namespace {

using ReplyPtr = std::unique_ptr<redisReply, void (*)(void*)>;

class FleetScript : public ::testing::Test {
   protected:
    static void SetUpTestSuite() {
        char dir_template[] = "/tmp/dp-fleet-script-XXXXXX";
        dir_ = mkdtemp(dir_template);
        socket_ = dir_ + "/redis.sock";
        server_ = fork();
        if (server_ == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);  // a crashed test run leaves no server behind
            execl("/usr/bin/redis-server", "redis-server", "--port", "0", "--unixsocket", socket_.c_str(), "--save", "",
                  "--appendonly", "no", "--dir", dir_.c_str(), "--logfile", (dir_ + "/redis.log").c_str(), (char*)nullptr);
            _exit(127);
        }
        for (int i = 0; i < 200 && !redis_; i++) {
            redisContext* c = redisConnectUnix(socket_.c_str());
            if (c && !c->err)
                redis_ = c;
            else {
                if (c) redisFree(c);
                std::this_thread::sleep_for(std::chrono::milliseconds(25));
            }
        }
    }
    static void TearDownTestSuite() {
        if (redis_) redisFree(redis_);
        redis_ = nullptr;
        if (server_ > 0) {
            kill(server_, SIGTERM);
            waitpid(server_, nullptr, 0);
        }
        std::system(("rm -rf " + dir_).c_str());
    }
    void SetUp() override {
        ASSERT_TRUE(redis_) << "redis-server did not start on " << socket_;
        command({"FLUSHALL"});
        ReplyPtr sha = command({"SCRIPT", "LOAD", kCommitScript});
        ASSERT_EQ(std::string(sha->str, sha->len), fleet_script_sha());
    }

    static ReplyPtr command(const std::vector<std::string>& argv) {
        std::vector<const char*> ptrs;
        std::vector<size_t> lens;
        for (const std::string& a : argv) {
            ptrs.push_back(a.data());
            lens.push_back(a.size());
        }
        return ReplyPtr((redisReply*)redisCommandArgv(redis_, (int)argv.size(), ptrs.data(), lens.data()),
                        freeReplyObject);
    }
    static std::string get(const std::string& key) {
        ReplyPtr r = command({"GET", key});
        return r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : std::string();
    }
    ReplyPtr commit(const std::vector<const FleetTransaction*>& batch) {
        ReplyPtr r = command(fleet_commit("dp:", fleet_script_sha(), "host-a", batch));
        EXPECT_EQ(r->type, REDIS_REPLY_ARRAY) << (r->type == REDIS_REPLY_ERROR ? r->str : "");
        return r;
    }
    static long long feed_entries() { return command({"XLEN", fleet_feed_key("dp:")})->integer; }

    // One record changed from before to after (no expiry unless given).
    static FleetTransaction change(const std::string& key, const std::string& before, const std::string& after,
                                   uint64_t expires_ms = 0) {
        return FleetTransaction{{key}, {}, {"1", "0", "0", "0", before, after, std::to_string(expires_ms)}};
    }
    // A new mailbox of an account, under a cap.
    static FleetTransaction mint(const std::string& key, const std::string& account, uint32_t cap) {
        const std::string expires = std::to_string(now_ms() + 60000);
        return FleetTransaction{{key}, {account}, {"1", std::to_string(cap), "1", "0", "", "mailbox", expires, key, expires}};
    }
    static uint64_t now_ms() {
        return (uint64_t)std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }

    static std::string dir_, socket_;
    static pid_t server_;
    static redisContext* redis_;
};
std::string FleetScript::dir_, FleetScript::socket_;
pid_t FleetScript::server_ = -1;
redisContext* FleetScript::redis_ = nullptr;

TEST_F(FleetScript, ATransactionBuildingOnAnEarlierOneOfItsBatchCommits) {
    const FleetTransaction first = change("dp:r:0:a", "", "one"), second = change("dp:r:0:a", "one", "two");
    const FleetTransaction other = change("dp:r:0:b", "", "bee", now_ms() + 60000);
    ReplyPtr r = commit({&first, &second, &other});
    ASSERT_EQ(r->elements, 4u);
    EXPECT_EQ(r->element[0]->integer, 1) << "the batch's sequence number";
    for (size_t i = 1; i < 4; i++) EXPECT_EQ(r->element[i]->integer, kCommitted) << i;
    EXPECT_EQ(get("dp:r:0:a"), "two");
    EXPECT_EQ(get("dp:r:0:b"), "bee");
    EXPECT_GT(command({"PTTL", "dp:r:0:b"})->integer, 0) << "an expiring record keeps its expiry";
    EXPECT_EQ(command({"PTTL", "dp:r:0:a"})->integer, -1);
    ASSERT_EQ(feed_entries(), 1) << "one feed entry for the batch";
    ReplyPtr entry = command({"XRANGE", fleet_feed_key("dp:"), "-", "+"});
    const redisReply* fields = entry->element[0]->element[1];
    ASSERT_EQ(fields->elements, 2u + 6u) << "origin, then each committed change in order";
    EXPECT_EQ(std::string(fields->element[1]->str), "host-a");
    EXPECT_EQ(std::string(fields->element[3]->str), "one");
    EXPECT_EQ(std::string(fields->element[5]->str), "two");
    EXPECT_EQ(std::string(fields->element[7]->str), "bee");
}

TEST_F(FleetScript, AStaleTransactionIsRefusedAloneAndChangesNothing) {
    const FleetTransaction made = change("dp:r:1:x", "", "now");
    ASSERT_EQ(commit({&made})->element[1]->integer, kCommitted);
    // Two records in one transaction, one of them stale: neither is written.
    const FleetTransaction stale{{"dp:r:1:y", "dp:r:1:x"}, {}, {"2", "0", "0", "0", "", "new y", "0", "then", "new x", "0"}};
    const FleetTransaction fresh = change("dp:r:1:z", "", "zed");
    const FleetTransaction after_stale = change("dp:r:1:y", "new y", "newer y");
    ReplyPtr r = commit({&stale, &fresh, &after_stale});
    ASSERT_EQ(r->elements, 4u);
    EXPECT_EQ(r->element[0]->integer, 2);
    ASSERT_EQ(r->element[1]->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(r->element[1]->elements, 3u);
    EXPECT_EQ(r->element[1]->element[0]->integer, 0);
    EXPECT_EQ(std::string(r->element[1]->element[1]->str, r->element[1]->element[1]->len), "") << "y is absent";
    EXPECT_EQ(std::string(r->element[1]->element[2]->str), "now") << "x as Redis holds it";
    EXPECT_EQ(r->element[2]->integer, kCommitted) << "a transaction of its own is not held up by another's conflict";
    EXPECT_EQ(r->element[3]->type, REDIS_REPLY_ARRAY) << "what built on the refused one is refused too";
    EXPECT_EQ(get("dp:r:1:x"), "now");
    EXPECT_EQ(get("dp:r:1:y"), "");
    EXPECT_EQ(get("dp:r:1:z"), "zed");

    const FleetTransaction again = change("dp:r:1:x", "then", "never");
    r = commit({&again});
    EXPECT_EQ(r->element[0]->integer, 0) << "nothing committed: no sequence number";
    EXPECT_EQ(feed_entries(), 2) << "and no feed entry";
}

TEST_F(FleetScript, TheAccountCapCountsTheBatchsOwnMailboxes) {
    const FleetTransaction m1 = mint("dp:r:2:m1", "dp:a:alice", 2), m2 = mint("dp:r:2:m2", "dp:a:alice", 2);
    const FleetTransaction m3 = mint("dp:r:2:m3", "dp:a:alice", 2), bob = mint("dp:r:2:b1", "dp:a:bob", 2);
    ReplyPtr r = commit({&m1, &m2, &m3, &bob});
    ASSERT_EQ(r->elements, 5u);
    EXPECT_EQ(r->element[1]->integer, kCommitted);
    EXPECT_EQ(r->element[2]->integer, kCommitted);
    EXPECT_EQ(r->element[3]->integer, kCapReached);
    EXPECT_EQ(r->element[4]->integer, kCommitted) << "the cap is per account";
    EXPECT_EQ(get("dp:r:2:m3"), "") << "a refused mailbox is not stored";
    EXPECT_EQ(command({"ZCARD", "dp:a:alice"})->integer, 2);
    EXPECT_GT(command({"PTTL", "dp:a:alice"})->integer, 0) << "an account's set lives as long as its last mailbox";

    // One taken (removed with its guard): its place is free in the same batch.
    const FleetTransaction taken{{"dp:r:2:m1"}, {"dp:a:alice"}, {"1", "0", "1", "0", "mailbox", "", "0", "dp:r:2:m1", "0"}};
    r = commit({&taken, &m3});
    EXPECT_EQ(r->element[1]->integer, kCommitted);
    EXPECT_EQ(r->element[2]->integer, kCommitted);
    EXPECT_EQ(get("dp:r:2:m3"), "mailbox");
}

}  // namespace

TEST_F(FleetScript, CommittedTransactionsNumberTheirLeavesInTheFleetsOrderAStaleOneLogsNothing) {
    command({"DEL", fleet_log_key("dp:"), "dp:r:0:l1", "dp:r:0:l2"});
    const std::string t1 = std::string("{\"event\":\"paired\",\"seq\":") + '\0' + "}";
    const std::string t2 = std::string("{\"seq\":") + '\0' + ",\"z\":1}";
    FleetTransaction first = change("dp:r:0:l1", "", "one"), stale = change("dp:r:0:l2", "not-there", "x"),
                     second = change("dp:r:0:l2", "", "two");
    for (FleetTransaction* t : {&first, &stale, &second}) t->args[3] = "2";
    first.args.insert(first.args.end(), {t1, t2});
    stale.args.insert(stale.args.end(), {t1, t1});
    second.args.insert(second.args.end(), {t2, t1});
    ReplyPtr r = commit({&first, &stale, &second});
    ASSERT_EQ(r->elements, 4u);
    ReplyPtr log = command({"LRANGE", fleet_log_key("dp:"), "0", "-1"});
    ASSERT_EQ(log->elements, 4u) << "the stale transaction's leaves are not logged";
    EXPECT_EQ(std::string(log->element[0]->str), "{\"event\":\"paired\",\"seq\":0}");
    EXPECT_EQ(std::string(log->element[1]->str), "{\"seq\":1,\"z\":1}");
    EXPECT_EQ(std::string(log->element[2]->str), "{\"seq\":2,\"z\":1}");
    EXPECT_EQ(std::string(log->element[3]->str), "{\"event\":\"paired\",\"seq\":3}");
    // The feed names each leaf with its index, after its transaction's records.
    ReplyPtr entries = command({"XREVRANGE", fleet_feed_key("dp:"), "+", "-", "COUNT", "1"});
    const redisReply* fields = entries->element[0]->element[1];
    ASSERT_EQ(fields->elements, 2u + 2 * 6u);
    uint64_t index = 0;
    EXPECT_EQ(std::string(fields->element[4]->str), fleet_log_key("dp:") + ":0");
    ASSERT_TRUE(parse_fleet_log_field("dp:", fields->element[12]->str, &index));
    EXPECT_EQ(index, 3u);
    EXPECT_EQ(std::string(fields->element[13]->str), "{\"event\":\"paired\",\"seq\":3}");
    EXPECT_FALSE(parse_fleet_log_field("dp:", "dp:logx:1", &index));
    EXPECT_FALSE(parse_fleet_log_field("dp:", "dp:log:", &index));
}
