// The gate's (kind, digest) table: every live record is found, nothing else
// is, through collisions, wraparound and removals from the middle of runs.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "core/digest_table.h"

using namespace dp;

namespace {

constexpr uint64_t kMix = 0x9e3779b97f4a7c15ULL;

// Records in one buffer, 64 bytes apart, as in a zone's slab chunks: the
// table refers to them from its base.
struct Table {
    static constexpr size_t kStride = 64;
    static_assert(sizeof(RecordHeader) <= kStride);
    explicit Table(uint64_t capacity, size_t records = 512) : slots(capacity), arena((records + 1) * kStride) {
        state = DigestTableState{slots.data(), capacity, 0};
    }
    DigestTable table() { return DigestTable(state, arena.data()); }
    RecordHeader* record(size_t i) { return reinterpret_cast<RecordHeader*>(arena.data() + (1 + i) * kStride); }

    std::vector<DigestSlot> slots;
    std::vector<uint8_t> arena;
    DigestTableState state;
};

// A key whose home slot is `home` in a table of `capacity`; salt tells keys
// with the same home apart (and, when tag_salt is false, gives them one tag).
void key_with_home(uint8_t key[32], Kind kind, uint64_t capacity, uint64_t home, uint32_t salt, bool same_tag) {
    const uint64_t x = (uint64_t)((((unsigned __int128)home << 64) / capacity) + 1) ^ ((uint64_t)kind * kMix);
    memset(key, 0, 32);
    memcpy(key, &x, 8);
    if (!same_tag) memcpy(key + 8, &salt, 4);
    memcpy(key + 28, &salt, 4);
}

void set(RecordHeader* r, Kind kind, const uint8_t key[32]) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    memcpy(r->key, key, 32);
}

}  // namespace

TEST(DigestTable, CapacityIsOneSlotPer128BytesWithAFloor) {
    EXPECT_EQ(DigestTable::capacity_for(256u << 20), (256u << 20) / 128);
    EXPECT_EQ(DigestTable::capacity_for(10u << 20), (10u << 20) / 128);
    EXPECT_EQ(DigestTable::capacity_for(1000), 64u);
    EXPECT_TRUE(DigestTable::indexes(Kind::Device));
    EXPECT_TRUE(DigestTable::indexes(Kind::Revoked));
    EXPECT_TRUE(DigestTable::indexes(Kind::Mailbox));  // the relay's deposit and poll
    EXPECT_TRUE(DigestTable::indexes(Kind::DpopJti));  // the gate's replay check
    EXPECT_FALSE(DigestTable::indexes(Kind::Limiter));
}

TEST(DigestTable, FindsEachRecordByKindAndWholeKey) {
    Table t(1024);
    DigestTable table = t.table();
    std::mt19937_64 rng(1);
    for (size_t i = 0; i < 500; i++) {
        uint8_t key[32];
        for (auto& b : key) b = (uint8_t)rng();
        set(t.record(i), i % 2 ? Kind::Device : Kind::Revoked, key);
        ASSERT_TRUE(table.insert(t.record(i)));
    }
    EXPECT_EQ(t.state.used, 500u);
    for (size_t i = 0; i < 500; i++) {
        RecordHeader* r = t.record(i);
        EXPECT_EQ(table.find(r->kind, r->key), r);
        const Kind other = r->kind == Kind::Device ? Kind::Revoked : Kind::Device;
        EXPECT_EQ(table.find(other, r->key), nullptr) << "the kind is part of the key";
        uint8_t near[32];
        memcpy(near, r->key, 32);
        near[31] ^= 1;  // differs only in its last byte: same home, same tag
        EXPECT_EQ(table.find(r->kind, near), nullptr);
    }
}

TEST(DigestTable, KeysSharingHomeAndTagAreToldApartByTheWholeKey) {
    Table t(64);
    DigestTable table = t.table();
    for (uint32_t i = 0; i < 10; i++) {
        uint8_t key[32];
        key_with_home(key, Kind::Device, 64, 7, i, /*same_tag=*/true);
        set(t.record(i), Kind::Device, key);
        ASSERT_TRUE(table.insert(t.record(i)));
    }
    for (uint32_t i = 0; i < 10; i++) EXPECT_EQ(table.find(Kind::Device, t.record(i)->key), t.record(i));
}

TEST(DigestTable, RunsWrapAroundTheEnd) {
    Table t(64);
    DigestTable table = t.table();
    for (uint32_t i = 0; i < 6; i++) {
        uint8_t key[32];
        key_with_home(key, Kind::Device, 64, 62, i, false);
        set(t.record(i), Kind::Device, key);
        ASSERT_TRUE(table.insert(t.record(i)));
    }
    table.remove(t.record(0));
    for (uint32_t i = 1; i < 6; i++) EXPECT_EQ(table.find(Kind::Device, t.record(i)->key), t.record(i)) << i;
    EXPECT_EQ(table.find(Kind::Device, t.record(0)->key), nullptr);
}

TEST(DigestTable, RefusesBeyondSevenEighths) {
    Table t(64);
    DigestTable table = t.table();
    std::mt19937_64 rng(2);
    size_t inserted = 0;
    for (size_t i = 0; i < 64; i++) {
        uint8_t key[32];
        for (auto& b : key) b = (uint8_t)rng();
        set(t.record(i), Kind::Device, key);
        if (!table.insert(t.record(i))) break;
        inserted++;
    }
    EXPECT_EQ(inserted, 56u);
    EXPECT_FALSE(table.has_room());
    table.remove(t.record(0));
    EXPECT_TRUE(table.has_room());
}

// Against a model, with keys crowded onto a few homes so that every removal
// shifts entries across other runs and the end of the table.
TEST(DigestTable, RandomInsertsAndRemovalsKeepEveryLiveRecordReachable) {
    constexpr uint64_t kCapacity = 64;
    Table t(kCapacity, 4096);
    DigestTable table = t.table();
    std::mt19937 rng(3);
    std::map<size_t, bool> live;  // record index -> in the table
    size_t next_record = 0;
    const uint64_t homes[] = {0, 1, 30, 31, 62, 63};
    for (int step = 0; step < 20000; step++) {
        const bool add = live.size() < 20 || (live.size() < 56 && rng() % 2);
        if (add) {
            if (next_record == 4096) break;
            uint8_t key[32];
            const Kind kind = rng() % 3 ? Kind::Device : Kind::Revoked;
            key_with_home(key, kind, kCapacity, homes[rng() % 6], (uint32_t)next_record, rng() % 4 == 0);
            set(t.record(next_record), kind, key);
            ASSERT_TRUE(table.insert(t.record(next_record)));
            live[next_record++] = true;
        } else {
            auto it = live.begin();
            std::advance(it, rng() % live.size());
            table.remove(t.record(it->first));
            EXPECT_EQ(table.find(t.record(it->first)->kind, t.record(it->first)->key), nullptr);
            live.erase(it);
        }
        ASSERT_EQ(t.state.used, live.size());
        for (const auto& [i, in] : live)
            ASSERT_EQ(table.find(t.record(i)->kind, t.record(i)->key), t.record(i)) << "step " << step;
    }
}

// A revoked digest and a device with the same digest (a revoke that lands
// while the device is being re-added): the device's probe passes the revoked
// entry first, with the same key, and must not take it.
TEST(DigestTable, TheSameKeyUnderTwoKindsIsTwoEntries) {
    constexpr uint64_t kCapacity = 64;
    auto home_of = [](Kind kind, const uint8_t* key) {
        uint64_t x;
        memcpy(&x, key, 8);
        return (uint64_t)(((unsigned __int128)(x ^ ((uint64_t)kind * kMix)) * kCapacity) >> 64);
    };
    std::mt19937_64 rng(4);
    uint8_t key[32];
    uint64_t revoked_home, device_home;
    do {  // a key whose device home lies a few slots after its revoked home
        for (auto& b : key) b = (uint8_t)rng();
        revoked_home = home_of(Kind::Revoked, key);
        device_home = home_of(Kind::Device, key);
    } while ((device_home + kCapacity - revoked_home) % kCapacity > 20);

    Table t(kCapacity);
    DigestTable table = t.table();
    // Occupy revoked_home .. device_home - 1, so the revoked entry lands on
    // device_home itself, the first slot the device's probe reads.
    size_t n = 0;
    for (uint64_t slot = revoked_home; slot != device_home; slot = (slot + 1) % kCapacity, n++) {
        uint8_t filler[32];
        key_with_home(filler, Kind::Device, kCapacity, slot, (uint32_t)n + 1, false);
        set(t.record(n), Kind::Device, filler);
        ASSERT_TRUE(table.insert(t.record(n)));
    }
    RecordHeader *revoked = t.record(n), *device = t.record(n + 1);
    set(revoked, Kind::Revoked, key);
    set(device, Kind::Device, key);
    ASSERT_TRUE(table.insert(revoked));
    ASSERT_TRUE(table.insert(device));
    ASSERT_EQ(t.slots[device_home].ref, (uint32_t)((reinterpret_cast<uint8_t*>(revoked) - t.arena.data()) >> 3));
    EXPECT_EQ(table.find(Kind::Device, key), device);
    EXPECT_EQ(table.find(Kind::Revoked, key), revoked);
    table.remove(device);
    EXPECT_EQ(table.find(Kind::Device, key), nullptr);
    EXPECT_EQ(table.find(Kind::Revoked, key), revoked);
}
