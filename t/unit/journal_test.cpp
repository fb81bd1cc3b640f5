// The journal: what a write transaction hands the journal, the entry codec,
// torn tails and corruption, recovery = snapshot + journal, and the undo of
// a change whose write failed.
#include <gtest/gtest.h>

#include <zlib.h>

#include <cstring>
#include <random>

#include "core/devices.h"
#include "core/fleet.h"
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
    Digest otp_hash = guessable_key(h.settings, "otp", otp);
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
    EXPECT_EQ(err, "corrupt journal entry at offset 0 (valid entries follow at offset " + std::to_string(first) + ")");
    flipped = whole;
    flipped[whole.size() - 1] ^= 1;  // the last entry's last byte: a torn tail
    JournalScan tail;
    EXPECT_TRUE(parse_journal(flipped, &tail, &err));
    EXPECT_TRUE(tail.torn);
}

// Every single-byte and four-byte corruption of a small journal: either the
// scan refuses with the damaged entry's offset, or (damage that reaches the
// end, nothing valid after it) it keeps every entry before the damage. It
// never drops an entry that follows a damaged one, and never reports
// anything but the true end as a torn tail.
TEST(Journal, EveryCorruptionIsRefusedWithItsOffsetOrIsTheTrueTail) {
    Harness h;
    RecordingLog log;
    h.store.attach(&log);
    for (int i = 0; i < 3; i++) h.owner();
    const std::string whole = log.bytes;
    JournalScan clean;
    std::string err;
    ASSERT_TRUE(parse_journal(whole, &clean, &err)) << err;
    ASSERT_EQ(clean.entries.size(), 3u);
    std::vector<size_t> starts;  // each entry's offset, then the end
    for (size_t at = 0, k = 0; k <= clean.entries.size(); k++) {
        starts.push_back(at);
        if (k < clean.entries.size()) at += (whole.size() / clean.entries.size());
    }
    ASSERT_EQ(starts.back(), whole.size()) << "entries of one size";
    auto entry_of = [&](size_t pos) {
        size_t k = 0;
        while (starts[k + 1] <= pos) k++;
        return k;
    };
    std::mt19937 rng(11);
    size_t cases = 0;
    for (size_t width : {1, 4}) {
        for (size_t pos = 0; pos + width <= whole.size(); pos++) {
            std::vector<uint32_t> values = {0, 0xffffffffu, 0x00001000u, 0x7fffffffu, (uint32_t)rng()};
            if (width == 1) values = {0, 0xff, 0x01, (uint32_t)(rng() & 0xff)};
            for (uint32_t v : values) {
                std::string damaged = whole;
                memcpy(&damaged[pos], &v, width);
                if (damaged == whole) continue;
                cases++;
                size_t first = pos;
                while (damaged[first] == whole[first]) first++;
                size_t last = pos + width - 1;
                while (damaged[last] == whole[last]) last--;
                const size_t k0 = entry_of(first), k1 = entry_of(last);
                JournalScan scan;
                std::string error;
                const bool ok = parse_journal(damaged, &scan, &error);
                SCOPED_TRACE("width " + std::to_string(width) + " at " + std::to_string(pos) + " value " + std::to_string(v));
                if (k1 + 1 < clean.entries.size()) {
                    ASSERT_FALSE(ok) << "damage before valid entries is refused, never cut as a tail";
                    ASSERT_EQ(error.rfind("corrupt journal entry at offset " + std::to_string(starts[k0]) + " ", 0), 0u)
                        << error;
                } else {
                    ASSERT_TRUE(ok) << error;
                    ASSERT_TRUE(scan.torn);
                    ASSERT_EQ(scan.valid_bytes, starts[k0]);
                    ASSERT_EQ(scan.entries.size(), k0);
                    for (size_t k = 0; k < k0; k++) ASSERT_EQ(scan.entries[k].image, clean.entries[k].image);
                }
            }
        }
    }
    EXPECT_GT(cases, 4 * whole.size());
}

namespace {

// The journal of one paired owner: its bytes, and its entries parsed.
JournalScan one_owner(std::string* bytes) {
    Harness h;
    RecordingLog log;
    h.store.attach(&log);
    h.owner();
    JournalScan scan;
    std::string err;
    EXPECT_TRUE(parse_journal(log.bytes, &scan, &err)) << err;
    *bytes = log.bytes;
    return scan;
}

}  // namespace

TEST(Journal, EntriesOfTheFirstFormatAreStillRead) {
    std::string bytes, err;
    const JournalScan scan = one_owner(&bytes);
    // The first format: u32 length, u32 CRC-32 of the body, the body.
    const std::string body = bytes.substr(12);
    uint32_t len = (uint32_t)body.size();
    uint32_t crc = (uint32_t)crc32(crc32(0, nullptr, 0), (const Bytef*)body.data(), (uInt)body.size());
    std::string v1((const char*)&len, 4);
    v1.append((const char*)&crc, 4);
    v1 += body;
    JournalScan mixed;
    ASSERT_TRUE(parse_journal(v1 + bytes, &mixed, &err)) << err;
    ASSERT_EQ(mixed.entries.size(), 2u);
    EXPECT_EQ(mixed.entries[0].image, scan.entries[0].image);
    EXPECT_FALSE(mixed.torn);
}

// A record read back is data: its kind byte and its length fields are
// checked before it enters the store, wherever it comes from.
TEST(Journal, ARecordWhoseFieldsLieIsRefusedBeforeItEntersTheStore) {
    std::string bytes;
    const JournalScan scan = one_owner(&bytes);
    ASSERT_EQ(scan.entries[0].kind, Kind::Device);
    const std::string good = scan.entries[0].image;
    EXPECT_EQ(record_image_problem(Kind::Device, good, scan.entries[0].key.data()), "");

    auto with = [&](size_t offset, uint8_t value) {
        std::string bad = good;
        bad[offset] = (char)value;
        return bad;
    };
    const std::vector<std::pair<std::string, std::string>> lies = {
        {with(offsetof(RecordHeader, kind), (uint8_t)Kind::Mailbox), "kind byte"},
        {with(offsetof(DeviceRecord, name_len), 255), "name length"},
        {with(offsetof(DeviceRecord, addr_len), 7), "address length"},
        {with(offsetof(DeviceRecord, role), 9), "role"},
        {with(offsetof(DeviceRecord, method), 0), "method"},
        {with(offsetof(RecordHeader, key), good[offsetof(RecordHeader, key)] ^ 1), "key"},
        {good + "x", "bytes"},
    };
    for (const auto& [image, what] : lies) {
        EXPECT_NE(record_image_problem(Kind::Device, image, scan.entries[0].key.data()), "") << what;
        // The journal: the whole replay is refused, nothing applied.
        std::vector<JournalEntry> entries = scan.entries;
        entries[0].image = image;
        MemoryStore store;
        uint64_t last = 0;
        std::string error;
        if (image.size() == good.size()) {
            EXPECT_FALSE(apply_journal(store, entries, 0, (uint32_t)(kT0 / 1000), &last, &error)) << what;
            EXPECT_NE(error.find("journal entry"), std::string::npos) << error;
            EXPECT_EQ(store.count(Kind::Device) + store.count(Kind::Mailbox), 0u) << what;
        }
        // Redis: refused with a reason, the replica unchanged.
        std::string problem;
        MemoryStore replica;
        {
            StoreLock lock(replica);
            EXPECT_FALSE(fleet_apply(replica, Kind::Device, scan.entries[0].key, image, (uint32_t)(kT0 / 1000), &problem))
                << what;
        }
        EXPECT_NE(problem, "") << what;
        EXPECT_EQ(replica.count(Kind::Device) + replica.count(Kind::Mailbox), 0u) << what;
    }
    // The state file: a snapshot holding the lying record is refused with its offset.
    MemoryStore origin;  // a store that holds the good record, for a snapshot of it
    {
        std::vector<JournalEntry> entries = scan.entries;
        uint64_t last = 0;
        std::string error;
        ASSERT_TRUE(apply_journal(origin, entries, 0, (uint32_t)(kT0 / 1000), &last, &error)) << error;
    }
    const std::string snapshot = [&] {
        StoreLock lock(origin);
        return serialize_state(origin);
    }();
    const size_t at = snapshot.find(good);
    ASSERT_NE(at, std::string::npos);
    for (size_t offset : {offsetof(RecordHeader, kind), offsetof(DeviceRecord, name_len)}) {
        std::string bad = snapshot;
        bad[at + offset] = offset == offsetof(RecordHeader, kind) ? (char)Kind::Mailbox : (char)255;
        // Keep its checksum right: a checksum is not a MAC.
        Digest sum = sha256(std::string_view(bad.data(), bad.size() - 32));
        memcpy(&bad[bad.size() - 32], sum.data(), 32);
        MemoryStore store;
        std::string error;
        EXPECT_FALSE(load_state(store, bad, (uint32_t)(kT0 / 1000), &error));
        EXPECT_NE(error.find("bad record at offset"), std::string::npos) << error;
    }
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
