// The journal: what a write transaction hands the journal, the entry codec,
// torn tails and corruption, recovery = snapshot + journal, and the undo of
// a change whose write failed.
#include <gtest/gtest.h>

#include <random>

#include "core/devices.h"
#include "core/persist/journal.h"
#include "core/persist/snapshot.h"
#include "harness.h"

using namespace dp;

namespace {

// Keeps every committed transaction, as the nginx writer does, and its bytes.
struct RecordingLog : ChangeLog {
    std::vector<std::vector<RecordChange>> batches;
    std::string bytes;
    void committed(std::vector<RecordChange>&& changes) override {
        bytes += encode_journal(changes);
        batches.push_back(std::move(changes));
    }
};

// Per kind: the record count, the counter, and a digest of every record's
// bytes (the store's reserved bytes aside).
std::string contents(MemoryStore& store) {
    std::string out;
    StoreLock lock(store);
    for (size_t k = 0; k < kKindCount; k++) {
        std::string all;
        size_t n = 0;
        store.for_each((Kind)k, [&](const RecordHeader* h) {
            if (h->kind == Kind::AccountCount)  // derived, made when loaded: only its count is the state
                all += std::to_string(as<AccountCountRecord>(h)->live);
            else
                all.append((const char*)h + 2, record_size(h->kind) - 2);
            n++;
        });
        out += "kind " + std::to_string(k) + ": " + std::to_string(n) + " records, counter " +
               std::to_string(store.shared().records[k]) + ", " + hex_encode(std::string_view((const char*)sha256(all).data(), 4)) + "\n";
    }
    return out + "devices " + std::to_string(store.shared().devices);
}

std::string body_field(const Response& r, const char* name) { return field(r, name); }

}  // namespace

TEST(Journal, ACommitHandsOverEachChangedRecordWithItsBytesBeforeAndAfter) {
    Harness h;
    RecordingLog log;
    h.store.attach(&log);
    std::string otp = h.new_otp(kT0);
    log.batches.clear();
    ASSERT_EQ(h.pair(otp, kT0).status, 200);
    ASSERT_EQ(log.batches.size(), 1u) << "one transaction";
    const RecordChange* device = nullptr;
    bool otp_changed = false;
    for (const RecordChange& c : log.batches[0]) {
        if (c.kind == Kind::Device) device = &c;
        otp_changed = otp_changed || c.kind == Kind::Count;
    }
    ASSERT_TRUE(device);
    EXPECT_TRUE(device->before.empty());
    EXPECT_EQ(device->after.size(), sizeof(DeviceRecord));
    EXPECT_GT(device->seq, 0u);
    EXPECT_TRUE(otp_changed) << "the OTP's burn is part of the transaction (for an undo), never journalled";
    EXPECT_EQ(h.store.state().journal_seq, device->seq);
}

TEST(Journal, AReadOnlyCallAndATouchHandOverNothing) {
    Harness h;
    std::string owner = h.owner();
    RecordingLog log;
    h.store.attach(&log);
    ASSERT_EQ(h.call("GET", "/api/devices", "", kT0 + 120000, owner).status, 200);  // last seen moves: a hint
    EXPECT_TRUE(log.batches.empty());
}

TEST(Journal, EntriesRoundTripAndCarryNoOtp) {
    Harness h;
    RecordingLog log;
    h.store.attach(&log);
    std::string otp = h.new_otp(kT0);
    ASSERT_EQ(h.pair(otp, kT0).status, 200);
    JournalScan scan;
    std::string err;
    ASSERT_TRUE(parse_journal(log.bytes, &scan, &err)) << err;
    EXPECT_FALSE(scan.torn);
    ASSERT_EQ(scan.entries.size(), 1u) << "the device; the OTP is never journalled";
    EXPECT_EQ(scan.entries[0].kind, Kind::Device);
    EXPECT_LE(log.bytes.size(), 120u) << "state on disk per device";
    Digest otp_hash = key_of("otp", otp);
    EXPECT_EQ(log.bytes.find(std::string((const char*)otp_hash.data(), 32)), std::string::npos);
}

TEST(Journal, ATornTailIsDroppedACorruptMiddleIsRefusedWithItsOffset) {
    Harness h;
    RecordingLog log;
    h.store.attach(&log);
    h.owner();
    h.owner();
    const std::string whole = log.bytes;
    JournalScan scan;
    std::string err;
    ASSERT_TRUE(parse_journal(whole, &scan, &err));
    ASSERT_EQ(scan.entries.size(), 2u);
    const size_t first = scan.valid_bytes / 2;  // both entries have the same size

    for (size_t cut = first + 1; cut < whole.size(); cut += 7) {
        JournalScan torn;
        ASSERT_TRUE(parse_journal(whole.substr(0, cut), &torn, &err)) << "cut at " << cut;
        EXPECT_TRUE(torn.torn);
        EXPECT_EQ(torn.entries.size(), 1u);
        EXPECT_EQ(torn.valid_bytes, first);
    }
    JournalScan zeros;
    ASSERT_TRUE(parse_journal(whole.substr(0, first) + std::string(300, '\0'), &zeros, &err));
    EXPECT_TRUE(zeros.torn) << "a tail of zeros (the file grew, the data never landed) is torn";

    std::string flipped = whole;
    flipped[first - 1] ^= 1;  // the last byte of the first entry: its checksum fails, good data follows
    JournalScan corrupt;
    EXPECT_FALSE(parse_journal(flipped, &corrupt, &err));
    EXPECT_EQ(err, "corrupt journal entry at offset 0");
    flipped = whole;
    flipped[whole.size() - 1] ^= 1;  // the last entry's last byte: a torn tail
    JournalScan tail;
    EXPECT_TRUE(parse_journal(flipped, &tail, &err));
    EXPECT_TRUE(tail.torn);
}

TEST(Journal, SnapshotPlusJournalReproduceTheStateAfterAThousandMixedOperations) {
    Harness h;
    h.settings.device_keys.push_back({sha256("k"), "alice"});
    h.settings.max_pairings_per_account = 1000;
    RecordingLog log;
    h.store.attach(&log);
    std::mt19937 rng(7);
    std::vector<std::string> ids, mailboxes;
    std::string snapshot;
    uint64_t snapshot_seq = 0;
    int64_t now = kT0;
    for (int i = 0; i < 1000; i++, now += 50) {
        h.addr.bytes[1] = (uint8_t)(i >> 8), h.addr.bytes[2] = (uint8_t)i;  // no rate limit in the way
        switch (rng() % 5) {
            case 0: h.owner(now); break;
            case 1: h.device(now); break;
            case 2: {
                Response m = h.call("POST", "/api/v1/device-pairing", "", now, "", "k");
                if (m.status == 201) mailboxes.push_back(body_field(m, "pairing_id"));
                break;
            }
            case 3:
                if (!mailboxes.empty())
                    h.call("DELETE", "/api/v1/device-pairing/" + mailboxes[rng() % mailboxes.size()], "", now, "", "k");
                break;
            case 4: {
                Response list = h.call("GET", "/api/devices?limit=1000", "", now, kOperator);
                std::string err;
                Json j = parse_json_object(list.body, &err);
                json_t* arr = json_object_get(j.get(), "devices");
                if (json_array_size(arr) > 0) {
                    const char* id = json_string_value(json_object_get(json_array_get(arr, rng() % json_array_size(arr)), "id"));
                    h.call("DELETE", std::string("/api/devices/") + id, "", now, kOperator);
                }
                break;
            }
        }
        if (i == 500) {
            snapshot_seq = h.store.state().journal_seq;
            snapshot = h.locked([&] { return serialize_state(h.store, SnapshotInfo{snapshot_seq, 1}); });
        }
    }
    const uint32_t now_s = (uint32_t)(kT0 / 1000);
    const std::string expected = contents(h.store);
    std::string err;

    MemoryStore from_journal;
    JournalScan scan;
    ASSERT_TRUE(parse_journal(log.bytes, &scan, &err)) << err;
    uint64_t last = 0;
    ASSERT_TRUE(apply_journal(from_journal, scan.entries, 0, now_s, &last, &err)) << err;
    EXPECT_EQ(last, h.store.state().journal_seq);
    EXPECT_EQ(contents(from_journal), expected) << "the journal alone";

    MemoryStore recovered;
    SnapshotInfo info;
    ASSERT_TRUE(load_state(recovered, snapshot, now_s, &err, &info)) << err;
    EXPECT_EQ(info.covers_seq, snapshot_seq);
    JournalScan again;
    ASSERT_TRUE(parse_journal(log.bytes, &again, &err));
    std::shuffle(again.entries.begin(), again.entries.end(), rng);  // two workers append in either order
    ASSERT_TRUE(apply_journal(recovered, again.entries, info.covers_seq, now_s, &last, &err)) << err;
    EXPECT_EQ(contents(recovered), expected) << "the snapshot plus the journal entries after it";
}

TEST(Journal, AnUndoPutsTheTransactionBackAndSparesLaterChanges) {
    Harness h;
    RecordingLog log;
    h.store.attach(&log);
    std::string otp = h.new_otp(kT0);
    Response paired = h.pair(otp, kT0);
    ASSERT_EQ(paired.status, 200);
    std::vector<RecordChange> failed = log.batches.back();
    {
        StoreLock lock(h.store);
        for (auto it = failed.rbegin(); it != failed.rend(); ++it) h.store.restore(*it, (uint32_t)(kT0 / 1000));
    }
    EXPECT_EQ(h.store.state().devices, 0u) << "the device whose write failed does not exist";
    EXPECT_EQ(h.call("GET", "/api/devices", "", kT0, "Bearer " + field(paired, "token")).status, 401);
    EXPECT_EQ(h.pair(otp, kT0).status, 200) << "the OTP the failed pairing spent is live again";

    // A record changed again after the failed transaction keeps that change.
    h.settings.device_keys.push_back({sha256("k"), "alice"});
    Response minted = h.call("POST", "/api/v1/device-pairing", "", kT0, "", "k");
    ASSERT_EQ(minted.status, 201);
    std::vector<RecordChange> mint = log.batches.back();
    ASSERT_EQ(h.call("DELETE", "/api/v1/device-pairing/" + field(minted, "pairing_id"), "", kT0, "", "k").status, 204);
    size_t before = h.store.count(Kind::Mailbox);
    {
        StoreLock lock(h.store);
        for (auto it = mint.rbegin(); it != mint.rend(); ++it) h.store.restore(*it, (uint32_t)(kT0 / 1000));
    }
    EXPECT_EQ(h.store.count(Kind::Mailbox), before);
    EXPECT_TRUE(log.batches.back().size() > 0);
}
