// Fleet mode's pure rules: record keys, the images hosts compare, the
// commit's arguments, and a replica applying what Redis holds. The commit
// script's compare-and-set is modelled here (RedisModel) exactly as the Lua
// runs it, so a rule that lets two hosts both spend one thing fails here;
// t/17-fleet.t runs the real script in a real Redis.
#include <gtest/gtest.h>

#include <map>

#include "core/encoding.h"
#include "core/fleet.h"
#include "harness.h"

using namespace dp;

namespace {

struct RecordingLog : ChangeLog {
    std::vector<RecordChange> changes;
    void committed(std::vector<RecordChange>&& c) override {
        for (RecordChange& x : c) changes.push_back(std::move(x));
    }
};

// The commit script's semantics over a key -> image map, and each account's
// set of live mailboxes (member -> expiry ms) for the cap.
struct RedisModel {
    std::map<std::string, std::string> values;
    std::map<std::string, std::map<std::string, uint64_t>> accounts;
    uint64_t seq = 0;
    uint64_t now_ms = (uint64_t)kT0;
    std::string get(const std::string& key) const {
        auto it = values.find(key);
        return it == values.end() ? std::string() : it->second;
    }
    // kCommitted, kCapReached, or 0 with the keys' current images.
    long long commit(const FleetCommit& c, std::vector<std::string>* current) {
        const size_t n = std::stoul(c.argv[2]);
        const size_t args = 3 + n;  // ARGV[1] is argv[args]
        for (size_t i = 0; i < n; i++) {
            if (get(c.argv[3 + i]) != c.argv[args + 4 + 3 * i]) {
                for (size_t j = 0; j < n; j++) current->push_back(get(c.argv[3 + j]));
                return 0;
            }
        }
        const size_t at = args + 4 + 3 * n;
        const uint64_t cap = std::stoull(c.argv[at]);
        const size_t guards = std::stoul(c.argv[at + 1]);
        for (size_t g = 0; g < guards; g++) {
            auto& live = accounts[c.argv[at + 2 + 3 * g]];
            if (std::stoull(c.argv[at + 4 + 3 * g]) == 0 || cap == 0) continue;
            for (auto it = live.begin(); it != live.end();) it = it->second <= now_ms ? live.erase(it) : std::next(it);
            if (live.size() >= cap) return kCapReached;
        }
        for (size_t i = 0; i < n; i++) {
            const std::string& after = c.argv[args + 5 + 3 * i];
            if (after.empty())
                values.erase(c.argv[3 + i]);
            else
                values[c.argv[3 + i]] = after;
        }
        for (size_t g = 0; g < guards; g++) {
            const uint64_t expires = std::stoull(c.argv[at + 4 + 3 * g]);
            auto& live = accounts[c.argv[at + 2 + 3 * g]];
            if (expires)
                live[c.argv[at + 3 + 3 * g]] = expires;
            else
                live.erase(c.argv[at + 3 + 3 * g]);
        }
        seq++;
        return kCommitted;
    }
};

// One host: a replica and the changes its last call committed.
struct Host {
    Harness h;
    RecordingLog log;
    Host() { h.store.attach(&log); }
    // Runs f; commits its changes to redis; on a conflict undoes them and
    // applies Redis's images, as the nginx writer does. True: committed.
    template <typename F>
    bool run(RedisModel& redis, F&& f) {
        log.changes.clear();
        f();
        if (log.changes.empty()) return true;
        FleetCommit c = fleet_commit("dp:", fleet_script_sha(), "host", log.changes, h.settings.max_pairings_per_account);
        std::vector<std::string> current;
        const long long outcome = redis.commit(c, &current);
        if (outcome == kCommitted) return true;
        h.store.attach(nullptr);
        {
            StoreLock lock(h.store);
            for (auto it = log.changes.rbegin(); it != log.changes.rend(); ++it) h.store.restore(*it, to_s(kT0));
            for (size_t i = 0; i < current.size(); i++) {
                Kind kind;
                Digest key;
                EXPECT_TRUE(parse_fleet_record_key("dp:", c.keys[i], &kind, &key));
                EXPECT_TRUE(fleet_apply(h.store, kind, key, current[i], to_s(kT0)));
            }
        }
        h.store.attach(&log);
        return false;
    }
};

// Two hosts and Redis, after host a made an OTP and b read it from the feed.
struct TwoHosts {
    RedisModel redis;
    Host a, b;
    std::string otp;
    TwoHosts() {
        EXPECT_TRUE(a.run(redis, [&] { otp = a.h.new_otp(kT0); }));
        StoreLock lock(b.h.store);
        EXPECT_TRUE(fleet_apply(b.h.store, Kind::Count, Digest{}, redis.get(fleet_otp_key("dp:")), to_s(kT0)));
    }
};

}  // namespace

TEST(Fleet, RecordKeysRoundTripAndStayInTheirPrefix) {
    Digest key = sha256("x");
    const std::string k = fleet_record_key("dp:", Kind::Mailbox, key);
    EXPECT_EQ(k.substr(0, 5), "dp:r:");
    Kind kind;
    Digest back;
    ASSERT_TRUE(parse_fleet_record_key("dp:", k, &kind, &back));
    EXPECT_EQ(kind, Kind::Mailbox);
    EXPECT_EQ(back, key);
    EXPECT_FALSE(parse_fleet_record_key("other:", k, &kind, &back));
    EXPECT_FALSE(parse_fleet_record_key("dp:", k.substr(0, k.size() - 1), &kind, &back));
    std::string bad_kind = k;
    bad_kind[5] = (char)('0' + kKindCount);
    EXPECT_FALSE(parse_fleet_record_key("dp:", bad_kind, &kind, &back));
    ASSERT_TRUE(parse_fleet_record_key("dp:", fleet_otp_key("dp:"), &kind, &back));
    EXPECT_EQ(kind, Kind::Count);
    EXPECT_EQ(fleet_scan_pattern("a*b:"), "a\\*b:r:*");
}

TEST(Fleet, ImagesIgnoreTheStoresBytesAndTheLastSeenHint) {
    DeviceRecord d{};
    d.h.kind = Kind::Device;
    d.role = Role::Device;
    std::string a((const char*)&d, sizeof d);
    d.h.tree_reserved[0] = 1;
    d.last_seen_s = 12345;
    std::string b((const char*)&d, sizeof d);
    EXPECT_EQ(fleet_image(Kind::Device, a), fleet_image(Kind::Device, b));
    d.role = Role::Owner;  // anything else is the record
    EXPECT_NE(fleet_image(Kind::Device, a), fleet_image(Kind::Device, std::string((const char*)&d, sizeof d)));
    OtpState none{};
    EXPECT_EQ(fleet_image(Kind::Count, std::string((const char*)&none, sizeof none)), "") << "no OTP is no key";
}

TEST(Fleet, ACommitCarriesBeforeAfterAndExpiryPerKey) {
    Harness h;
    RecordingLog log;
    h.store.attach(&log);
    std::string otp = h.new_otp(kT0);
    ASSERT_EQ(h.pair(otp, kT0).status, 200);
    FleetCommit c = fleet_commit("dp:", "sha", "origin", log.changes, 16);
    ASSERT_EQ(c.argv[0], "EVALSHA");
    const size_t n = std::stoul(c.argv[2]);
    ASSERT_EQ(n, log.changes.size());
    ASSERT_EQ(c.argv.size(), 3 + n + 4 + 3 * n + 2) << "a pairing guards no account";
    EXPECT_EQ(c.argv[3 + n + 4 + 3 * n], "16");
    EXPECT_EQ(c.argv[3 + n + 5 + 3 * n], "0");
    EXPECT_EQ(c.argv[3 + n], "origin");
    EXPECT_EQ(c.argv[3 + n + 1], fleet_feed_key("dp:"));
    for (size_t i = 0; i < n; i++) {
        const RecordChange& ch = log.changes[i];
        EXPECT_EQ(c.argv[3 + i], fleet_record_key("dp:", ch.kind, ch.key));
        EXPECT_EQ(c.argv[3 + n + 4 + 3 * i], fleet_image(ch.kind, ch.before));
        EXPECT_EQ(c.argv[3 + n + 5 + 3 * i], fleet_image(ch.kind, ch.after));
        const std::string& expiry = c.argv[3 + n + 6 + 3 * i];
        if (ch.kind == Kind::Device) {
            EXPECT_EQ(expiry, "0") << "devices are never expired by Redis";
        }
        if (ch.kind == Kind::Count) {
            OtpState after{};
            if (ch.after.size() == sizeof after) memcpy(&after, ch.after.data(), sizeof after);
            EXPECT_EQ(expiry, std::to_string(after.expires_ms)) << "an OTP key lives as long as the OTP";
        }
    }
}

TEST(Fleet, AppliedRecordsReplaceAndRemoveAndKeepTheLocalLastSeen) {
    Harness a, b;
    RecordingLog log;
    a.store.attach(&log);
    std::string otp = a.new_otp(kT0);
    ASSERT_EQ(a.pair(otp, kT0).status, 200);
    const RecordChange* dev = nullptr;
    for (const RecordChange& c : log.changes)
        if (c.kind == Kind::Device) dev = &c;
    ASSERT_TRUE(dev);
    {
        StoreLock lock(b.store);
        ASSERT_TRUE(fleet_apply(b.store, Kind::Device, dev->key, fleet_image(Kind::Device, dev->after), to_s(kT0)));
        EXPECT_EQ(b.store.shared().devices, 1u);
        DeviceRecord* d = as<DeviceRecord>(b.store.touch(b.store.find(Kind::Device, dev->key)));
        d->last_seen_s = to_s(kT0) + 500;
        // A rename from another host: the record's bytes change, this host's hint stays.
        std::string renamed = fleet_image(Kind::Device, dev->after);
        renamed[offsetof(DeviceRecord, name)] = 'Z';
        ASSERT_TRUE(fleet_apply(b.store, Kind::Device, dev->key, renamed, to_s(kT0)));
        const DeviceRecord* now = as<DeviceRecord>(b.store.find(Kind::Device, dev->key));
        ASSERT_TRUE(now);
        EXPECT_EQ(now->name[0], 'Z');
        EXPECT_EQ(now->last_seen_s, to_s(kT0) + 500);
        EXPECT_EQ(b.store.shared().devices, 1u);
        ASSERT_TRUE(fleet_apply(b.store, Kind::Device, dev->key, "", to_s(kT0)));
        EXPECT_EQ(b.store.find(Kind::Device, dev->key), nullptr);
        EXPECT_EQ(b.store.shared().devices, 0u);
    }
}

// Two hosts, one OTP: the second redemption meets the first's spend in
// Redis, takes Redis's records, and the request run again is refused.
TEST(Fleet, OneOtpRedeemedOnTwoHostsPairsOnce) {
    TwoHosts f;
    Host &a = f.a, &b = f.b;
    RedisModel& redis = f.redis;
    const std::string otp = f.otp;
    Response first, second;
    EXPECT_TRUE(a.run(redis, [&] { first = a.h.pair(otp, kT0 + 1000); }));
    EXPECT_EQ(first.status, 200);
    EXPECT_FALSE(b.run(redis, [&] { second = b.h.pair(otp, kT0 + 1000); })) << "b's spend was based on a stale OTP";
    EXPECT_TRUE(b.run(redis, [&] { second = b.h.pair(otp, kT0 + 1000); })) << "run again on Redis's records";
    EXPECT_NE(second.status, 200) << second.body;
    size_t devices = 0;
    for (const auto& [k, v] : redis.values) devices += k.substr(0, 6) == "dp:r:0";
    EXPECT_EQ(devices, 1u);
}

// Failed guesses on two hosts add up in Redis: the burn counts them all.
TEST(Fleet, OtpFailuresCountOnEveryHost) {
    TwoHosts f;
    Host &a = f.a, &b = f.b;
    RedisModel& redis = f.redis;
    const std::string otp = f.otp;
    const std::string wrong = otp == "000000" ? "111111" : "000000";
    int tries = 0;
    for (int i = 0; i < 5; i++) {
        for (Host* host : {&a, &b}) {
            host->h.addr.bytes[3] = (uint8_t)(2 + i);  // each guess from its own address: no lockout
            for (int run = 0; run < 3 && !host->run(redis, [&] { host->h.pair(wrong, kT0 + 1000 + i); }); run++) tries++;
        }
    }
    OtpState otp_state;
    ASSERT_EQ(redis.get(fleet_otp_key("dp:")).size(), sizeof otp_state);
    memcpy(&otp_state, redis.get(fleet_otp_key("dp:")).data(), sizeof otp_state);
    EXPECT_EQ(otp_state.failures, 10u) << "every host's failures, none lost to a conflict";
    EXPECT_TRUE(otp_state.burned);
    EXPECT_GT(tries, 0) << "the hosts did meet each other's counts";
}

// The per-account cap holds across hosts: a host whose replica has not seen
// the other host's mailboxes is refused by Redis, and a mailbox gone (taken
// or expired) frees its place.
TEST(Fleet, TheAccountCapCountsMailboxesOnEveryHost) {
    TwoHosts f;
    for (Host* host : {&f.a, &f.b}) {
        host->h.settings.max_pairings_per_account = 2;
        host->h.settings.device_keys.push_back({sha256("ka"), "alice"});
        host->h.settings.device_keys.push_back({sha256("kb"), "bob"});
    }
    auto mint = [](Host& host, const char* key) {
        return host.h.call("POST", "/api/v1/device-pairing", "", kT0, "", key);
    };
    Response first, second, third;
    EXPECT_TRUE(f.a.run(f.redis, [&] { first = mint(f.a, "ka"); }));
    EXPECT_TRUE(f.a.run(f.redis, [&] { second = mint(f.a, "ka"); }));
    ASSERT_EQ(second.status, 201);
    EXPECT_FALSE(f.b.run(f.redis, [&] { third = mint(f.b, "ka"); })) << "b's replica knows neither: Redis refuses";
    EXPECT_EQ(f.b.h.locked([&] { return live_mailboxes(f.b.h.store, key_of("account", "alice").data()); }), 0u)
        << "and b's mailbox is undone";
    Response bob;
    EXPECT_TRUE(f.b.run(f.redis, [&] { bob = mint(f.b, "kb"); })) << "the cap is per account";

    // a cancels one: its place is free for b.
    Response cancelled;
    EXPECT_TRUE(f.a.run(f.redis, [&] {
        cancelled = f.a.h.call("DELETE", "/api/v1/device-pairing/" + field(first, "pairing_id"), "", kT0, "", "ka");
    }));
    EXPECT_EQ(cancelled.status, 204);
    EXPECT_TRUE(f.b.run(f.redis, [&] { third = mint(f.b, "ka"); }));
    EXPECT_EQ(third.status, 201);

    // Expired mailboxes leave the set: two more minutes of mailbox TTL later, a has room.
    f.redis.now_ms = (uint64_t)kT0 + (uint64_t)f.a.h.settings.mailbox_ttl_s * 1000 + 1;
    Response later;
    EXPECT_TRUE(f.a.run(f.redis, [&] {
        later = f.a.h.call("POST", "/api/v1/device-pairing", "", f.redis.now_ms, "", "ka");
    }));
    EXPECT_EQ(later.status, 201);
}

TEST(Fleet, ARebuildsKeySetFindsEachRecordUnderItsOwnKindOnly) {
    FleetKeySet seen;
    std::vector<Digest> devices, mailboxes;
    for (int i = 0; i < 500; i++) {
        devices.push_back(sha256("device " + std::to_string(i)));
        mailboxes.push_back(sha256("mailbox " + std::to_string(i)));
    }
    // Scan order is Redis's, not sorted.
    for (int i = 499; i >= 0; i -= 2) seen.add(Kind::Device, devices[i]);
    for (int i = 0; i < 500; i += 2) seen.add(Kind::Mailbox, mailboxes[i]);
    seen.add(Kind::Count, sha256("the OTP is not a record"));
    seen.seal();
    EXPECT_EQ(seen.size(), 500u);
    for (int i = 0; i < 500; i++) {
        EXPECT_EQ(seen.contains(Kind::Device, devices[i]), i % 2 == 1) << i;
        EXPECT_EQ(seen.contains(Kind::Mailbox, mailboxes[i]), i % 2 == 0) << i;
        EXPECT_FALSE(seen.contains(Kind::Revoked, devices[i])) << "a device's key is not a revoked record's";
    }
    Digest last_byte_differs = devices[1];
    last_byte_differs[31] ^= 1;
    EXPECT_FALSE(seen.contains(Kind::Device, last_byte_differs));
    seen.clear();
    EXPECT_EQ(seen.size(), 0u);
    EXPECT_FALSE(seen.contains(Kind::Device, devices[1]));
}
