// The pairing log's rules where they live: the tree kept at levels 0 and
// 4+ gives RFC 6962's roots and proofs, leaves are canonical JSON numbered
// when durable and never hold a secret, each durable event (and only such)
// becomes a leaf of its own transaction, the journal and PATH.log carry
// leaves (torn tails, out-of-place records, catching up from the journal),
// the log routes' ranges, the identity's hand-overs and its state file.
#include <gtest/gtest.h>

#include <unistd.h>

#include "core/dpop.h"
#include "core/encoding.h"
#include "core/identity.h"
#include "core/pairing_log.h"
#include "core/persist/disk.h"
#include "core/persist/journal.h"
#include "harness.h"

using namespace dp;

namespace {

struct RecordingLog : ChangeLog {
    std::vector<std::vector<RecordChange>> batches;
    void committed(std::vector<RecordChange>&& changes) override { batches.push_back(std::move(changes)); }
    std::vector<std::string> leaves() const {
        std::vector<std::string> out;
        for (const auto& b : batches)
            for (const RecordChange& c : b)
                if (c.kind == Kind::LogLeaf) out.push_back(c.after);
        return out;
    }
};

Json leaf_json(const std::string& leaf) {
    std::string error;
    Json j = parse_json_object(leaf, &error);
    EXPECT_TRUE(j) << leaf;
    return j;
}

std::string member(const Json& j, const char* name) {
    json_t* v = json_object_get(j.get(), name);
    return json_is_string(v) ? json_string_value(v) : json_is_integer(v) ? std::to_string(json_integer_value(v)) : "";
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/dp-log-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { (void)!system(("rm -rf " + path).c_str()); }
};

void write_bytes(const std::string& path, const std::string& bytes) {
    FILE* f = fopen(path.c_str(), "wb");
    fwrite(bytes.data(), 1, bytes.size(), f);
    fclose(f);
}

std::string read_bytes(const std::string& path) {
    std::string out, error;
    read_file(path, &out, &error);
    return out;
}

}  // namespace

TEST(PairingLogTree, KeptLevelsGiveTheRootsAndProofsOfEveryLevel) {
    TlogHashes every;
    KeptLevelsTlog kept;
    for (uint64_t n = 1; n <= 140; n++) {
        const Digest leaf = tlog_leaf_hash("leaf " + std::to_string(n));
        every.append(leaf);
        tlog_append(kept, leaf);
        ASSERT_EQ(kept.size(), n);
        ASSERT_EQ(tlog_root(n, tlog_subtrees(kept)), tlog_root(n, every.reader())) << n;
        for (uint64_t i = 0; i < n; i += 7)
            ASSERT_EQ(tlog_inclusion_proof(i, n, tlog_subtrees(kept)), tlog_inclusion_proof(i, n, every.reader()));
        for (uint64_t m = 1; m <= n; m += 5)
            ASSERT_EQ(tlog_consistency_proof(m, n, tlog_subtrees(kept)), tlog_consistency_proof(m, n, every.reader()));
    }
    // 140 leaf hashes, 8 at level 4, 4 at 5, 2 at 6, 1 at 7: 36 bytes a leaf or less.
    EXPECT_EQ(kept.hashes_kept(), 140u + 8 + 4 + 2 + 1);
}

TEST(PairingLogLeaves, CanonicalNumberedAndWithoutSecrets) {
    // A name that spells the seq member inside a string stays a string.
    AuditEvent renamed{"renamed", "dev_0011223344556677", "device", "code", "dev_8899aabbccddeeff", "x\",\"seq\":0"};
    const std::string t = leaf_template(renamed, "jkt-of-the-key", kT0);
    EXPECT_EQ(std::count(t.begin(), t.end(), '\0'), 1);
    const std::string leaf = leaf_from_template(t, 42);
    Json j = leaf_json(leaf);
    EXPECT_EQ(json_canonical(j.get()), leaf) << "RFC 8785 as it stands";
    EXPECT_EQ(member(j, "seq"), "42");
    EXPECT_EQ(member(j, "name"), "x\",\"seq\":0");
    EXPECT_EQ(member(j, "jkt"), "jkt-of-the-key");
    EXPECT_EQ(member(j, "actor"), "dev_8899aabbccddeeff");
    EXPECT_EQ(member(j, "time"), iso8601(kT0));
    EXPECT_EQ(leaf_from_template(t, 9007199254740991).find("\"seq\":9007199254740991,"), leaf.find("\"seq\":42,"));
    // Only a rename's detail is kept (a pairing's is a binding note, a code
    // decision's the requester's name): none is a secret, but the leaf says
    // only what it defines.
    Json paired = leaf_json(leaf_from_template(leaf_template(AuditEvent{"paired", "dev_1", "owner", "otp", "", "detail"}, "", kT0), 0));
    EXPECT_EQ(json_object_size(paired.get()), 6u) << "event, seq, time, device_id, role, method";
    EXPECT_EQ(json_object_get(paired.get(), "jkt"), nullptr);
    const std::string note = "o identity hand-over\nold OLD\nnew NEW\nsize 3\n\n\u2014 o sig\n";
    Json rotated = leaf_json(leaf_from_template(leaf_template(AuditEvent{"identity_rotated", "", "", "", "", note}, "", kT0), 3));
    EXPECT_EQ(member(rotated, "key"), "NEW");
    EXPECT_EQ(member(rotated, "handover"), note) << "the hand-over itself is the log's entry";
}

TEST(PairingLogLeaves, EachDurableEventIsALeafOfItsOwnTransactionAndNothingElseIs) {
    Harness h;
    RecordingLog log;
    h.store.attach(&log);
    h.store.log_on = true;
    const std::string owner = h.owner();
    ASSERT_EQ(log.leaves().size(), 1u);
    EXPECT_EQ(member(leaf_json(leaf_from_template(log.leaves()[0], 0)), "event"), "paired");
    // The leaf rides with its event's record changes, last.
    const auto& batch = log.batches.back();
    EXPECT_EQ(batch.back().kind, Kind::LogLeaf);
    EXPECT_GT(std::count_if(batch.begin(), batch.end(), [](const RecordChange& c) { return c.kind == Kind::Device; }), 0);

    const size_t before = log.leaves().size();
    h.call("GET", "/api/devices", "", kT0, owner);                         // a read
    h.pair("000000", kT0);                                                 // a wrong OTP
    h.call("DELETE", "/api/devices/dev_0000000000000000", "", kT0, owner);  // no such device
    EXPECT_EQ(log.leaves().size(), before) << "refusals and reads log nothing";

    const std::string device = h.device();
    Response list = h.call("GET", "/api/devices", "", kT0, owner);
    std::string id;
    {
        std::string error;
        Json j = parse_json_object(list.body, &error);
        size_t i;
        json_t* d;
        json_array_foreach(json_object_get(j.get(), "devices"), i, d) if (std::string(json_string_value(json_object_get(d, "role"))) == "device")
            id = json_string_value(json_object_get(d, "id"));
    }
    ASSERT_FALSE(id.empty());
    {  // a bound key: its thumbprint goes in the revocation's leaf
        StoreLock lock(h.store);
        insert_record<BindingRecord>(h.store, Kind::Binding, binding_key(id), kT0 / 1000,
                                     [](BindingRecord* b) { memset(b->jkt, 7, 32); });
    }
    h.call("PATCH", "/api/devices/" + id, "{\"name\":\"kitchen\"}", kT0, owner);
    h.call("DELETE", "/api/devices/" + id, "", kT0, owner);
    std::vector<std::string> events;
    for (const std::string& t : log.leaves()) events.push_back(member(leaf_json(leaf_from_template(t, 0)), "event"));
    EXPECT_EQ(events, (std::vector<std::string>{"paired", "code_approved", "paired", "renamed", "revoked"}));
    Json revoked = leaf_json(leaf_from_template(log.leaves().back(), 0));
    EXPECT_EQ(member(revoked, "jkt"), base64url_encode(std::string(32, '\7')));
    EXPECT_EQ(member(revoked, "device_id"), id);
    for (const std::string& t : log.leaves()) {
        EXPECT_EQ(t.find(owner.substr(7)), std::string::npos) << "no token in a leaf";
        EXPECT_EQ(t.find(device.substr(7)), std::string::npos);
        EXPECT_EQ(t.find("127.0.0.1"), std::string::npos) << "no address";
    }

    // No log: no leaves.
    h.store.log_on = false;
    h.owner();
    EXPECT_EQ(log.leaves().size(), events.size());
}

TEST(PairingLogLeaves, ARolledBackTransactionTakesItsLeavesWithIt) {
    MemoryStore store;
    RecordingLog log;
    store.attach(&log);
    store.log_on = true;
    try {
        StoreLock lock(store);
        store.append_leaf("{\"seq\":" + std::string(1, '\0') + "}");
        throw std::runtime_error("the route failed");
    } catch (const std::runtime_error&) {
    }
    {
        StoreLock lock(store);  // a transaction of its own commits nothing old
    }
    EXPECT_TRUE(log.batches.empty());
    {
        StoreLock lock(store);
        store.append_leaf(std::string("x") + '\0' + "y");  // a leaf alone (an identity rotation) is committed
    }
    ASSERT_EQ(log.leaves().size(), 1u);
}

TEST(PairingLogJournal, LeafEntriesRoundTripBesideRecordsAndReplayIgnoresThem) {
    Harness h;
    RecordingLog log;
    h.store.attach(&log);
    h.owner();
    std::string bytes = encode_log_leaves(5, {"{\"a\":1}", "{\"b\":2}"}) + encode_journal(log.batches.back());
    JournalScan scan;
    std::string error;
    ASSERT_TRUE(parse_journal(bytes, &scan, &error)) << error;
    ASSERT_EQ(scan.leaves.size(), 2u);
    EXPECT_EQ(scan.leaves[1].index, 6u);
    EXPECT_EQ(scan.leaves[1].bytes, "{\"b\":2}");
    EXPECT_FALSE(scan.entries.empty());
    for (const JournalEntry& e : scan.entries) EXPECT_NE(e.kind, Kind::LogLeaf);
    MemoryStore fresh;
    uint64_t last = 0;
    EXPECT_TRUE(apply_journal(fresh, scan.entries, 0, kT0 / 1000, &last, &error)) << error;
    // A leaf entry cut short is a torn tail like any entry.
    JournalScan torn;
    ASSERT_TRUE(parse_journal(bytes.substr(0, 20), &torn, &error));
    EXPECT_TRUE(torn.torn);
    EXPECT_TRUE(torn.leaves.empty());
}

TEST(PairingLogFile, RecordsAreFoundInOrderATornTailCutAndAStrangerRefused) {
    TempDir dir;
    const StatePaths paths(dir.path + "/state");
    const std::vector<std::string> leaves = {"zero", "one", std::string(300, 'x'), "three"};
    write_bytes(paths.log, encode_log_records(0, leaves));
    std::vector<std::pair<uint64_t, uint64_t>> seen;
    uint64_t valid = 0;
    bool torn = false;
    std::string error;
    ASSERT_TRUE(scan_log_file(paths.log, [&](uint64_t i, uint64_t off, std::string_view leaf) {
        EXPECT_EQ(leaf, leaves[i]);
        seen.emplace_back(i, off);
    }, &valid, &torn, &error));
    ASSERT_EQ(seen.size(), 4u);
    EXPECT_FALSE(torn);
    std::vector<std::string> read;
    ASSERT_TRUE(read_log_leaves(paths.log, seen[2].second, 2, 2, &read, &error)) << error;
    EXPECT_EQ(read, (std::vector<std::string>{leaves[2], leaves[3]}));
    read.clear();
    EXPECT_FALSE(read_log_leaves(paths.log, seen[1].second, 2, 1, &read, &error)) << "a record that is not the leaf asked for";

    const std::string whole = read_bytes(paths.log);
    write_bytes(paths.log, whole.substr(0, whole.size() - 5));
    seen.clear();
    ASSERT_TRUE(scan_log_file(paths.log, [&](uint64_t i, uint64_t off, std::string_view) { seen.emplace_back(i, off); },
                              &valid, &torn, &error));
    EXPECT_TRUE(torn);
    EXPECT_EQ(seen.size(), 3u);
    EXPECT_EQ(valid, seen[2].second + 4 + 300 + 12);

    write_bytes(paths.log, encode_log_records(0, {"zero"}) + encode_log_records(2, {"two"}));
    EXPECT_FALSE(scan_log_file(paths.log, [](uint64_t, uint64_t, std::string_view) {}, &valid, &torn, &error));
    EXPECT_NE(error.find("is not pairing log leaf 1"), std::string::npos) << error;
}

namespace {

// The zone's part in an append: numbering from its size, hearing of durable leaves.
struct CountingSink : LeafSink {
    std::vector<std::string> batch;
    uint64_t size = 0;
    bool room = true;
    std::vector<std::pair<uint64_t, std::string>> durable_leaves;
    uint64_t last_offset = 0;
    const std::vector<std::string>& templates() override { return batch; }
    bool next_index(uint64_t, size_t, uint64_t* first, std::string* error) override {
        if (!room) *error = "no room";
        *first = size;
        return room;
    }
    void durable(uint64_t first, const std::vector<std::string>& leaves, uint64_t offset) override {
        for (const std::string& l : leaves) durable_leaves.emplace_back(first++, l);
        size = first;
        last_offset = offset;
    }
};

}  // namespace

TEST(PairingLogFile, AnAppendNumbersItsLeavesJournalsThemFirstAndCopiesThemToTheLogFile) {
    TempDir dir;
    const StatePaths paths(dir.path + "/state");
    CountingSink sink;
    sink.batch = {std::string("{\"event\":\"a\",\"seq\":") + '\0' + "}", std::string("{\"seq\":") + '\0' + "}"};
    std::string error;
    ASSERT_TRUE(append_journal(paths, "", &error, nullptr, 0, &sink)) << error;
    ASSERT_EQ(sink.durable_leaves.size(), 2u);
    EXPECT_EQ(sink.durable_leaves[1], std::make_pair(uint64_t(1), std::string("{\"seq\":1}")));
    EXPECT_EQ(sink.last_offset, 0u);
    ASSERT_TRUE(append_journal(paths, "", &error, nullptr, 0, &sink)) << error;
    EXPECT_EQ(sink.durable_leaves[3].second, "{\"seq\":3}");
    JournalScan scan;
    ASSERT_TRUE(parse_journal(read_bytes(paths.journal), &scan, &error));
    EXPECT_EQ(scan.leaves.size(), 4u) << "the journal holds them";
    std::vector<std::string> copied;
    uint64_t valid;
    bool torn;
    ASSERT_TRUE(scan_log_file(paths.log, [&](uint64_t, uint64_t, std::string_view l) { copied.emplace_back(l); }, &valid, &torn, &error));
    EXPECT_EQ(copied.size(), 4u) << "and PATH.log too";

    // PATH.log lost its last two records (a copy that failed): the next
    // append catches it up from the journal before it adds its own.
    write_bytes(paths.log, encode_log_records(0, {copied[0], copied[1]}));
    ASSERT_TRUE(append_journal(paths, "", &error, nullptr, 0, &sink)) << error;
    copied.clear();
    ASSERT_TRUE(scan_log_file(paths.log, [&](uint64_t, uint64_t, std::string_view l) { copied.emplace_back(l); }, &valid, &torn, &error));
    EXPECT_EQ(copied.size(), 6u);
    EXPECT_EQ(copied[5], "{\"seq\":5}");

    // No room in the zone: nothing is written.
    sink.room = false;
    const std::string journal = read_bytes(paths.journal);
    EXPECT_FALSE(append_journal(paths, "", &error, nullptr, 0, &sink));
    EXPECT_EQ(read_bytes(paths.journal), journal);
    // Settling (a compaction) catches up and syncs: every leaf is there.
    write_bytes(paths.log, "");
    ASSERT_TRUE(settle_log_file(paths, &error)) << error;
    copied.clear();
    ASSERT_TRUE(scan_log_file(paths.log, [&](uint64_t, uint64_t, std::string_view l) { copied.emplace_back(l); }, &valid, &torn, &error));
    EXPECT_EQ(copied.size(), 6u);
}

TEST(PairingLogRoutes, CheckpointProofsAndRangesWithoutNginx) {
    Harness h;
    h.settings.identity = Ed25519Identity::from_seed(std::string(32, '\1'));
    h.settings.log_origin = "example.org/log";
    EXPECT_EQ(h.call("GET", "/api/devices/log/checkpoint", "", kT0, kOperator).status, 404) << "log=off";
    h.store.log_on = true;
    TlogHashes every;
    {
        StoreLock lock(h.store);
        for (int i = 0; i < 5; i++) {
            tlog_append(h.store.log, tlog_leaf_hash("l" + std::to_string(i)));
            every.append(tlog_leaf_hash("l" + std::to_string(i)));
        }
    }
    Response cp = h.call("GET", "/api/devices/log/checkpoint", "", kT0, kOperator);
    EXPECT_EQ(cp.content_type, "text/plain; charset=utf-8");
    const Digest root = tlog_root(5, every.reader());
    EXPECT_EQ(cp.body.substr(0, cp.body.find("\n\n") + 1), checkpoint_text("example.org/log", 5, root));
    EXPECT_EQ(cp.body, sign_note(checkpoint_text("example.org/log", 5, root), {NoteSigner{"example.org/log", h.settings.identity.get()}}));
    h.settings.previous_identity = Ed25519Identity::from_seed(std::string(32, '\2'));
    h.settings.dual_signed_size = 5;
    EXPECT_EQ(h.call("GET", "/api/devices/log/checkpoint", "", kT0, kOperator).body,
              sign_note(checkpoint_text("example.org/log", 5, root),
                        {NoteSigner{"example.org/log", h.settings.identity.get()},
                         NoteSigner{"example.org/log", h.settings.previous_identity.get()}}))
        << "the first checkpoint after a rotation: both keys";
    EXPECT_EQ(h.call("GET", "/api/devices/log/proof/inclusion?index=4&size=5", "", kT0, kOperator).status, 200);
    for (const char* bad : {"index=5&size=5", "index=0&size=6", "index=-1&size=5", "index=1", "index=0x1&size=5"})
        EXPECT_EQ(h.call("GET", std::string("/api/devices/log/proof/inclusion?") + bad, "", kT0, kOperator).status, 400) << bad;
    for (const char* bad : {"old=0&new=5", "old=3&new=2", "old=1&new=6", "old=&new=2"})
        EXPECT_EQ(h.call("GET", std::string("/api/devices/log/proof/consistency?") + bad, "", kT0, kOperator).status, 400) << bad;
    Response range = h.call("GET", "/api/devices/log/entries?start=2&end=9999", "", kT0, kOperator);
    EXPECT_EQ(range.log_first, 2u);
    EXPECT_EQ(range.log_end, 5u) << "capped at the log's size";
    for (const char* bad : {"start=5&end=6", "start=3&end=3", "start=4&end=2"})
        EXPECT_EQ(h.call("GET", std::string("/api/devices/log/entries?") + bad, "", kT0, kOperator).status, 400) << bad;
    EXPECT_EQ(h.call("GET", "/api/devices/log/checkpoint", "", kT0).status, 401) << "a credential unless public";
    h.settings.log_public = true;
    EXPECT_EQ(h.call("GET", "/api/devices/log/checkpoint", "", kT0).status, 200);
    Response entries = log_entries_answer(7, {"a", "b"});
    EXPECT_EQ(entries.body, "{\"entries\":[{\"index\":7,\"leaf\":\"YQ==\"},{\"index\":8,\"leaf\":\"Yg==\"}]}");
}

TEST(IdentityRotation, TheHandOverIsSignedByBothKeysAndTheFileKeepsTheChain) {
    Harness h;
    h.settings.identity = Ed25519Identity::from_seed(std::string(32, '\3'));
    h.settings.log_origin = "example.org/log";
    const std::string owner = h.owner();
    EXPECT_EQ(h.call("POST", "/api/devices/identity/rotate", "", kT0, owner).status, 501) << "no state=";
    h.settings.identity_rotatable = true;
    EXPECT_EQ(h.call("POST", "/api/devices/identity/rotate", "", kT0, h.device()).status, 403) << "owners only";
    EXPECT_EQ(h.call("POST", "/api/devices/identity/rotate", "", kT0).status, 401);
    Response r = h.call("POST", "/api/devices/identity/rotate", "", kT0, owner);
    ASSERT_EQ(r.status, 200);
    ASSERT_TRUE(r.rotation);
    const IdentityRotation& rot = *r.rotation;
    const std::string text = handover_text("example.org/log", h.settings.identity->public_raw(), rot.next->public_raw(), 0);
    EXPECT_EQ(rot.handover, sign_note(text, {NoteSigner{"example.org/log", h.settings.identity.get()},
                                             NoteSigner{"example.org/log", rot.next.get()}}));
    EXPECT_EQ(field(r, "publicKey"), base64_encode(rot.next->public_raw()));
    EXPECT_EQ(retired_keys({rot.handover}), (std::vector<std::string>{h.settings.identity->public_raw()}));

    IdentityFile f{rot.next->seed(), rot.previous->seed(), {rot.handover, "second"}}, back;
    std::string error;
    ASSERT_TRUE(parse_identity_file(encode_identity_file(f), &back, &error)) << error;
    EXPECT_EQ(back.seed, f.seed);
    EXPECT_EQ(back.previous, f.previous);
    EXPECT_EQ(back.handovers, f.handovers);
    EXPECT_EQ(Ed25519Identity::from_seed(back.seed)->public_raw(), rot.next->public_raw());
    EXPECT_FALSE(parse_identity_file("{\"key\":\"AAAA\",\"handovers\":[]}", &back, &error)) << "a short seed";
    EXPECT_FALSE(parse_identity_file("[]", &back, &error));
}

TEST(IdentityRotation, AttestationsSayWhichKeyMadeThem) {
    Harness h;
    auto k0 = Ed25519Identity::from_seed(std::string(32, '\4'));
    auto k1 = Ed25519Identity::from_seed(std::string(32, '\5'));
    h.settings.identity = k0;
    const std::string owner = h.owner();
    Response a0 = h.call("POST", "/api/devices/attest", "{\"data\":{\"n\":0}}", kT0, owner);
    h.settings.identity = k1;
    h.settings.earlier_identity_keys = {k0->public_raw()};
    Response a1 = h.call("POST", "/api/devices/attest", "{\"data\":{\"n\":1}}", kT0, owner);
    Response v0 = h.call("POST", "/api/devices/verify", a0.body, kT0);
    Response v1 = h.call("POST", "/api/devices/verify", a1.body, kT0);
    EXPECT_EQ(field(v0, "valid"), "true");
    EXPECT_EQ(field(v0, "signer"), "earlier");
    EXPECT_EQ(field(v0, "retiredBy"), "0");
    EXPECT_EQ(field(v1, "signer"), "current");
    h.settings.earlier_identity_keys.clear();
    EXPECT_EQ(field(h.call("POST", "/api/devices/verify", a0.body, kT0 + 1), "signer"), "<absent>") << "a replay is not valid";
}
