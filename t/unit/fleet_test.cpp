// Fleet mode's pure rules: record keys, the images hosts compare, the
// commit's arguments, and a replica applying what Redis holds. The commit
// script's compare-and-set is modelled here (RedisModel) exactly as the Lua
// runs it, so a rule that lets two hosts both spend one thing fails here;
// t/17-fleet.t runs the real script in a real Redis.
#include <gtest/gtest.h>

#include <map>

#include "core/encoding.h"
#include "core/fleet.h"
#include "core/pairing_log.h"
#include "harness.h"
#include "reply_view.h"

using namespace dp;

namespace {
std::string apply_problem;  // what fleet_apply found wrong with an image (none in these tests)

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
    std::vector<std::string> log;  // the pairing log's leaves
    uint64_t seq = 0;
    uint64_t now_ms = (uint64_t)kT0;
    std::string get(const std::string& key) const {
        auto it = values.find(key);
        return it == values.end() ? std::string() : it->second;
    }
    // A batch's outcome per transaction: kCommitted, kCapReached, or 0 with
    // its keys' current images in current[t].
    std::vector<long long> commit(const std::vector<std::string>& argv, std::vector<std::vector<std::string>>* current) {
        const size_t all_keys = std::stoul(argv[2]);
        auto key = [&](size_t i) -> const std::string& { return argv[3 + i]; };  // KEYS[i + 1]
        const size_t args = 3 + all_keys;  // ARGV[1] is argv[args]
        const size_t txs = std::stoul(argv[args + 2]);
        size_t a = args + 3, k = 3;  // KEYS[1..3]: the feed, the sequence, the pairing log
        std::vector<long long> outcomes;
        bool any = false;
        current->assign(txs, {});
        for (size_t t = 0; t < txs; t++) {
            const size_t n = std::stoul(argv[a]), guards = std::stoul(argv[a + 2]), leaves = std::stoul(argv[a + 3]);
            const uint64_t cap = std::stoull(argv[a + 1]);
            const size_t kv = a + 4, gv = kv + 3 * n, lv = gv + 2 * guards;
            a = lv + leaves;
            long long outcome = kCommitted;
            for (size_t i = 0; i < n; i++) {
                if (get(key(k + i)) != argv[kv + 3 * i]) {
                    for (size_t j = 0; j < n; j++) (*current)[t].push_back(get(key(k + j)));
                    outcome = 0;
                    break;
                }
            }
            for (size_t g = 0; outcome == kCommitted && cap && g < guards; g++) {
                auto& live = accounts[key(k + n + g)];
                if (argv[gv + 1 + 2 * g] == "0") continue;
                for (auto it = live.begin(); it != live.end();) it = it->second <= now_ms ? live.erase(it) : std::next(it);
                if (live.size() >= cap) outcome = kCapReached;
            }
            if (outcome == kCommitted) {
                any = true;
                for (size_t i = 0; i < n; i++) {
                    const std::string& after = argv[kv + 1 + 3 * i];
                    if (after.empty())
                        values.erase(key(k + i));
                    else
                        values[key(k + i)] = after;
                }
                for (size_t l = 0; l < leaves; l++) log.push_back(leaf_from_template(argv[lv + l], log.size()));
                for (size_t g = 0; g < guards; g++) {
                    const uint64_t expires = std::stoull(argv[gv + 1 + 2 * g]);
                    auto& live = accounts[key(k + n + g)];
                    if (expires)
                        live[argv[gv + 2 * g]] = expires;
                    else
                        live.erase(argv[gv + 2 * g]);
                }
            }
            outcomes.push_back(outcome);
            k += n + guards;
        }
        seq += any;
        return outcomes;
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
        const FleetTransaction tx = fleet_transaction("dp:", log.changes, h.settings.max_pairings_per_account);
        std::vector<std::vector<std::string>> current;
        const long long outcome = redis.commit(fleet_commit("dp:", fleet_script_sha(), "host", {&tx}), &current)[0];
        if (outcome == kCommitted) return true;
        h.store.attach(nullptr);
        {
            StoreLock lock(h.store);
            for (auto it = log.changes.rbegin(); it != log.changes.rend(); ++it) h.store.restore(*it, to_s(kT0));
            for (size_t i = 0; i < current[0].size(); i++) {
                Kind kind;
                Digest key;
                EXPECT_TRUE(parse_fleet_record_key("dp:", tx.keys[i], &kind, &key));
                EXPECT_TRUE(fleet_apply(h.store, kind, key, current[0][i], to_s(kT0), &apply_problem));
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
        EXPECT_TRUE(fleet_apply(b.h.store, Kind::Count, Digest{}, redis.get(fleet_otp_key("dp:")), to_s(kT0), &apply_problem));
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

TEST(Fleet, ImagesIgnoreTheStoresBytesButKeepLastSeen) {
    DeviceRecord d{};
    d.h.kind = Kind::Device;
    d.role = Role::Device;
    std::string a((const char*)&d, sizeof d);
    d.h.tree_reserved[0] = 1;
    std::string b((const char*)&d, sizeof d);
    EXPECT_EQ(fleet_image(Kind::Device, a), fleet_image(Kind::Device, b));
    d.last_seen_s = 12345;  // a durable write: every host must see it
    EXPECT_NE(fleet_image(Kind::Device, a), fleet_image(Kind::Device, std::string((const char*)&d, sizeof d)));
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
    const FleetTransaction t = fleet_transaction("dp:", log.changes, 16);
    const size_t n = log.changes.size();
    ASSERT_EQ(t.keys.size(), n);
    ASSERT_EQ(t.args.size(), 4 + 3 * n) << "a pairing guards no account";
    EXPECT_EQ(t.args[0], std::to_string(n));
    EXPECT_EQ(t.args[1], "16");
    EXPECT_EQ(t.args[2], "0");
    for (size_t i = 0; i < n; i++) {
        const RecordChange& ch = log.changes[i];
        EXPECT_EQ(t.keys[i], fleet_record_key("dp:", ch.kind, ch.key));
        EXPECT_EQ(t.args[4 + 3 * i], fleet_image(ch.kind, ch.before));
        EXPECT_EQ(t.args[5 + 3 * i], fleet_image(ch.kind, ch.after));
        const std::string& expiry = t.args[6 + 3 * i];
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

// A mailbox made or taken names its account's set, the mailbox and its
// expiry (0: it goes) after the per-key triples.
TEST(Fleet, AMailboxMadeOrTakenGuardsItsAccount) {
    Harness h;
    h.settings.device_keys.push_back({sha256("ka"), "alice"});
    RecordingLog log;
    h.store.attach(&log);
    const Response minted = h.call("POST", "/api/v1/device-pairing", "", kT0, "", "ka");
    ASSERT_EQ(minted.status, 201);
    FleetTransaction t = fleet_transaction("dp:", log.changes, 16);
    size_t n = log.changes.size();
    ASSERT_EQ(t.args[2], "1");
    ASSERT_EQ(t.args.size(), 4 + 3 * n + 2);
    const std::string account = fleet_account_key("dp:", key_of("account", "alice").data());
    EXPECT_EQ(t.guard_keys, std::vector<std::string>{account}) << "the set is a key (KEYS), not an argument";
    size_t mailbox = 0;
    while (log.changes[mailbox].kind != Kind::Mailbox) mailbox++;
    EXPECT_EQ(t.args[4 + 3 * n], t.keys[mailbox]);
    EXPECT_EQ(t.args[5 + 3 * n], std::to_string((uint64_t)(to_s(kT0) + h.settings.mailbox_ttl_s) * 1000));

    log.changes.clear();
    ASSERT_EQ(h.call("DELETE", "/api/v1/device-pairing/" + field(minted, "pairing_id"), "", kT0, "", "ka").status, 204);
    t = fleet_transaction("dp:", log.changes, 16);
    n = log.changes.size();
    ASSERT_EQ(t.args[2], "1");
    EXPECT_EQ(t.guard_keys, std::vector<std::string>{account});
    EXPECT_EQ(t.args[5 + 3 * n], "0");
}

// A batch: every key it touches in KEYS (the feed, the sequence, the
// pairing log, then each transaction's records and accounts' sets), then the
// origin, the feed's cap, the count, and each transaction's args in the same order.
TEST(Fleet, ABatchLaysOutItsTransactionsInOrder) {
    const FleetTransaction a{{"k1", "k2"}, {}, {"2", "0", "0", "1", "b1", "a1", "0", "b2", "a2", "0", "leaf"}};
    const FleetTransaction b{{"k3"}, {"set3"}, {"1", "5", "1", "0", "b3", "a3", "7", "k3", "7"}};
    const std::vector<std::string> argv = fleet_commit("dp:", "sha", "origin", {&a, &b});
    const std::vector<std::string> expected = {
        "EVALSHA", "sha", "7", fleet_feed_key("dp:"), fleet_seq_key("dp:"), fleet_log_key("dp:"), "k1", "k2", "k3", "set3",
        "origin", std::to_string(kFeedMaxLen), "2", "2", "0", "0", "1", "b1", "a1", "0", "b2", "a2", "0", "leaf", "1", "5",
        "1", "0", "b3", "a3", "7", "k3", "7"};
    EXPECT_EQ(argv, expected);
}

TEST(Fleet, AppliedRecordsReplaceAndRemoveAndKeepTheNewestLastSeen) {
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
        ASSERT_TRUE(fleet_apply(b.store, Kind::Device, dev->key, fleet_image(Kind::Device, dev->after), to_s(kT0), &apply_problem));
        EXPECT_EQ(b.store.shared().devices, 1u);
        DeviceRecord* d = update_record(b.store, as<DeviceRecord>(b.store.find(Kind::Device, dev->key)));
        d->last_seen_s = to_s(kT0) + 500;
        // A rename from another host written before this host's last seen
        // reached it: the record's bytes change, the newer last seen stays.
        std::string renamed = fleet_image(Kind::Device, dev->after);
        renamed[offsetof(DeviceRecord, name)] = 'Z';
        ASSERT_TRUE(fleet_apply(b.store, Kind::Device, dev->key, renamed, to_s(kT0), &apply_problem));
        const DeviceRecord* now = as<DeviceRecord>(b.store.find(Kind::Device, dev->key));
        ASSERT_TRUE(now);
        EXPECT_EQ(now->name[0], 'Z');
        EXPECT_EQ(now->last_seen_s, to_s(kT0) + 500);
        EXPECT_EQ(b.store.shared().devices, 1u);
        EXPECT_EQ(&now->h, &d->h) << "a changed record is written where it is";
        // A change of role changes the owner count: it still comes out right.
        const uint64_t owners = b.store.shared().owners;
        const bool was_owner = now->role == Role::Owner;
        renamed[offsetof(DeviceRecord, role)] = (char)(was_owner ? Role::Device : Role::Owner);
        ASSERT_TRUE(fleet_apply(b.store, Kind::Device, dev->key, renamed, to_s(kT0), &apply_problem));
        EXPECT_EQ(b.store.shared().owners, was_owner ? owners - 1 : owners + 1);
        EXPECT_EQ(b.store.find_by(Index::DeviceId, index_field(Index::DeviceId, b.store.find(Kind::Device, dev->key))),
                  b.store.find(Kind::Device, dev->key))
            << "the id index finds the record as it is now";
        EXPECT_EQ(as<DeviceRecord>(b.store.find(Kind::Device, dev->key))->last_seen_s, to_s(kT0) + 500);
        // Last seen is carried by the fleet: another host's newer one is taken.
        const uint32_t later = to_s(kT0) + 900;
        memcpy(&renamed[offsetof(DeviceRecord, last_seen_s)], &later, 4);
        EXPECT_EQ(fleet_image(Kind::Device, renamed).substr(offsetof(DeviceRecord, last_seen_s), 4), std::string((const char*)&later, 4))
            << "images keep last seen";
        ASSERT_TRUE(fleet_apply(b.store, Kind::Device, dev->key, renamed, to_s(kT0), &apply_problem));
        EXPECT_EQ(as<DeviceRecord>(b.store.find(Kind::Device, dev->key))->last_seen_s, later);
        ASSERT_TRUE(fleet_apply(b.store, Kind::Device, dev->key, "", to_s(kT0), &apply_problem));
        EXPECT_EQ(b.store.find(Kind::Device, dev->key), nullptr);
        EXPECT_EQ(b.store.shared().devices, 0u);
    }
}

// A mailbox minted and filled on host a, as b's follower applies it: the
// deposit lands in place and the account still counts one live mailbox; a
// mailbox taken from another account's set moves its count.
TEST(Fleet, AppliedMailboxesKeepTheirAccountsCount) {
    Harness a, b;
    a.settings.device_keys.push_back({sha256("ka"), "alice"});
    RecordingLog log;
    a.store.attach(&log);
    const Response minted = a.call("POST", "/api/v1/device-pairing", "", kT0, "", "ka");
    ASSERT_EQ(minted.status, 201);
    auto mailbox_change = [&]() -> RecordChange {
        for (const RecordChange& c : log.changes)
            if (c.kind == Kind::Mailbox) return c;
        ADD_FAILURE() << "no mailbox change";
        return {};
    };
    const RecordChange made = mailbox_change();
    const Digest alice = key_of("account", "alice");
    StoreLock lock(b.store);
    ASSERT_TRUE(fleet_apply(b.store, Kind::Mailbox, made.key, fleet_image(Kind::Mailbox, made.after), to_s(kT0), &apply_problem));
    EXPECT_EQ(live_mailboxes(b.store, alice.data()), 1u);
    const RecordHeader* where = b.store.find(Kind::Mailbox, made.key);

    std::string ready = fleet_image(Kind::Mailbox, made.after);
    ready[offsetof(MailboxRecord, h.flags)] = kMailboxReady;
    ready[offsetof(MailboxRecord, session_pub)] = 7;
    ASSERT_TRUE(fleet_apply(b.store, Kind::Mailbox, made.key, ready, to_s(kT0), &apply_problem));
    const RecordHeader* now = b.store.find(Kind::Mailbox, made.key);
    EXPECT_EQ(now, where) << "written in place";
    EXPECT_EQ(as<MailboxRecord>(now)->session_pub[0], 7);
    EXPECT_TRUE(now->flags & kMailboxReady);
    EXPECT_EQ(live_mailboxes(b.store, alice.data()), 1u) << "still one live mailbox";

    std::string other = ready;
    other[offsetof(MailboxRecord, account_hash)] ^= 1;
    ASSERT_TRUE(fleet_apply(b.store, Kind::Mailbox, made.key, other, to_s(kT0), &apply_problem));
    EXPECT_EQ(live_mailboxes(b.store, alice.data()), 0u) << "the account it left counts it no more";
    ASSERT_TRUE(fleet_apply(b.store, Kind::Mailbox, made.key, "", to_s(kT0), &apply_problem));
    EXPECT_EQ(b.store.find(Kind::Mailbox, made.key), nullptr);
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
    const std::string image = redis.get(fleet_otp_key("dp:"));
    ASSERT_EQ(image.size(), sizeof otp_state);
    memcpy(&otp_state, image.data(), sizeof otp_state);
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

namespace {

ReplyView entry(std::string_view id, std::vector<ReplyView> fields) { return arr({str(id), arr(std::move(fields))}); }
ReplyView xread(std::vector<ReplyView> entries) { return arr({arr({str("dp:feed"), arr(std::move(entries))})}); }

}  // namespace

// The follower's readings of Redis's replies: what the commands return is
// read, anything else is refused (the follower then rebuilds), a gap in the
// feed is caught, and nothing throws on hostile text.
TEST(FleetReplies, TheFeedIsReadInOrderAndAGapOrAMalformedEntryIsRefused) {
    FleetImages images;
    uint64_t last;
    ASSERT_TRUE(parse_feed_entries(xread({entry("8-1", {str("o"), str("aa"), str("k1"), str("i1"), str("k2"), str("i2")}),
                                          entry("9-1", {str("o"), str("bb"), str("k3"), str("")})}),
                                   7, &images, &last));
    EXPECT_EQ(last, 9u);
    ASSERT_EQ(images.size(), 3u);
    EXPECT_EQ(images[0], std::make_pair(std::string_view("k1"), std::string_view("i1")));
    EXPECT_EQ(images[2], std::make_pair(std::string_view("k3"), std::string_view("")));
    images.clear();
    EXPECT_TRUE(parse_feed_entries(ReplyView{}, 9, &images, &last)) << "nil: the BLOCK timed out";
    EXPECT_EQ(last, 9u);
    EXPECT_FALSE(parse_feed_entries(xread({entry("11-1", {str("o"), str("aa")})}), 9, &images, &last)) << "a gap";
    EXPECT_FALSE(parse_feed_entries(xread({entry("x-1", {str("o"), str("aa")})}), 9, &images, &last)) << "a bad id";
    EXPECT_FALSE(parse_feed_entries(xread({entry("99999999999999999999999-1", {})}), 9, &images, &last));
    EXPECT_FALSE(parse_feed_entries(xread({entry("10-1", {str("o"), str("aa"), str("k")})}), 9, &images, &last))
        << "a key without its image";
    EXPECT_FALSE(parse_feed_entries(arr({str("not a stream")}), 9, &images, &last));
    ReplyView error;
    error.type = ReplyView::Error;
    error.text = "ERR wrong";
    EXPECT_FALSE(parse_feed_entries(error, 9, &images, &last));
}

TEST(FleetReplies, TheSequenceAndTheScanAreReadOrRefused) {
    uint64_t seq = 5;
    EXPECT_TRUE(parse_feed_sequence(ReplyView{}, &seq));
    EXPECT_EQ(seq, 0u) << "nil: nothing committed yet";
    EXPECT_TRUE(parse_feed_sequence(str("42"), &seq));
    EXPECT_EQ(seq, 42u);
    EXPECT_FALSE(parse_feed_sequence(str("4x2"), &seq));
    EXPECT_FALSE(parse_feed_sequence(arr({}), &seq));
    std::string cursor;
    std::vector<std::string> keys;
    ASSERT_TRUE(parse_scan(arr({str("17"), arr({str("dp:r:0:ab"), str("dp:r:2:cd")})}), &cursor, &keys));
    EXPECT_EQ(cursor, "17");
    EXPECT_EQ(keys, (std::vector<std::string>{"dp:r:0:ab", "dp:r:2:cd"}));
    EXPECT_FALSE(parse_scan(arr({str("17")}), &cursor, &keys));
    EXPECT_FALSE(parse_scan(arr({str("next"), arr({})}), &cursor, &keys)) << "a cursor is a number";
    EXPECT_FALSE(parse_scan(arr({str("0"), arr({ReplyView{}})}), &cursor, &keys)) << "a key is a string";
}

// The pairing log in fleet mode: each host's committed transactions carry
// their leaves to the script, which numbers them in the fleet's order; a
// transaction refused on a stale record logs nothing (its rerun does).
TEST(Fleet, LeavesAreNumberedInTheFleetsCommitOrderAndOnlyWhenCommitted) {
    TwoHosts fleet;
    fleet.a.h.store.log_on = fleet.b.h.store.log_on = true;
    Response first, second;
    ASSERT_TRUE(fleet.a.run(fleet.redis, [&] { first = fleet.a.h.pair(fleet.otp, kT0 + 1000); }));
    EXPECT_FALSE(fleet.b.run(fleet.redis, [&] { second = fleet.b.h.pair(fleet.otp, kT0 + 1000); }))
        << "b read the OTP before a spent it: refused, nothing logged";
    ASSERT_EQ(fleet.redis.log.size(), 1u);
    std::string otp;
    ASSERT_TRUE(fleet.b.run(fleet.redis, [&] { otp = fleet.b.h.new_otp(kT0 + 2000); }));
    ASSERT_TRUE(fleet.b.run(fleet.redis, [&] { second = fleet.b.h.pair(otp, kT0 + 2000); }));
    ASSERT_EQ(fleet.redis.log.size(), 2u);
    for (size_t i = 0; i < 2; i++) {
        std::string error;
        Json leaf = parse_json_object(fleet.redis.log[i], &error);
        EXPECT_EQ(json_integer_value(json_object_get(leaf.get(), "seq")), (json_int_t)i);
        EXPECT_STREQ(json_string_value(json_object_get(leaf.get(), "event")), "paired");
    }
}
