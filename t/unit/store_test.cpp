// The store's contract, which the zone shares: locking, duplicate refusal,
// the dirty mark on every change, expiry and eviction, counters on removal.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cstring>
#include <new>
#include <stdexcept>

#include "core/devices.h"
#include "core/persist/snapshot.h"
#include "harness.h"

using namespace dp;

namespace {

Digest key(const char* s) { return sha256(s); }

LimiterRecord* limiter_expiring(Store& store, const char* name, uint32_t now_s, uint32_t expires_s) {
    return insert_record<LimiterRecord>(store, Kind::Limiter, key(name), now_s,
                                        [&](LimiterRecord* r) { r->h.expires_s = expires_s; });
}

}  // namespace

TEST(Store, AccessOutsideTheLockFailsTheTest) {
    MemoryStore store;
    EXPECT_NONFATAL_FAILURE(store.find(Kind::Device, key("x")), "outside a StoreLock");
    EXPECT_NONFATAL_FAILURE(store.shared(), "outside a StoreLock");
}

TEST(Store, AReadLockAllowsLookupsButNoWrite) {
    MemoryStore store;
    {
        StoreLock lock(store);
        limiter_expiring(store, "a", 100, 0);
    }
    StoreReadLock read(store);
    const RecordHeader* a = store.find(Kind::Limiter, key("a"));
    ASSERT_TRUE(a);
    EXPECT_NONFATAL_FAILURE(store.update(a), "a read lock is not enough");
    EXPECT_NONFATAL_FAILURE(store.remove(a), "a read lock is not enough");
}

TEST(Store, DuplicateInsertIsRefused) {
    MemoryStore store;
    StoreLock lock(store);
    ASSERT_TRUE(limiter_expiring(store, "a", 1, 0));
    EXPECT_FALSE(limiter_expiring(store, "a", 1, 0));
    EXPECT_EQ(store.count(Kind::Limiter), 1u);
}

TEST(Store, EveryChangeMarksTheStateDirtyOncePerTransaction) {
    MemoryStore store;
    auto dirty = [&] { return store.state().dirty; };
    { StoreLock lock(store); limiter_expiring(store, "a", 1, 0); }
    EXPECT_EQ(dirty(), 1u) << "insert";
    { StoreLock lock(store); store.find(Kind::Limiter, key("a")); store.shared(); }
    EXPECT_EQ(dirty(), 1u) << "reads change nothing";
    { StoreLock lock(store); store.update(store.find(Kind::Limiter, key("a")))->flags = 1; }
    EXPECT_EQ(dirty(), 2u) << "update";
    { StoreLock lock(store); store.otp_for_update().failures++; }
    EXPECT_EQ(dirty(), 3u) << "the OTP";
    { StoreLock lock(store); store.remove(store.find(Kind::Limiter, key("a"))); }
    EXPECT_EQ(dirty(), 4u) << "remove";
    {
        StoreLock lock(store);
        limiter_expiring(store, "b", 1, 0);
        limiter_expiring(store, "c", 1, 0);
    }
    EXPECT_EQ(dirty(), 5u) << "one transaction, one mark";
}

TEST(Store, ExpiredRecordsMakeRoomButDevicesAreNeverEvicted) {
    MemoryStore store;
    store.capacity = 2;
    StoreLock lock(store);
    ASSERT_TRUE(insert_record<DeviceRecord>(store, Kind::Device, key("dev"), 100, [](DeviceRecord*) {}));
    ASSERT_TRUE(limiter_expiring(store, "old", 100, 101));
    EXPECT_FALSE(limiter_expiring(store, "new", 100, 0)) << "full, nothing expired yet";
    EXPECT_TRUE(limiter_expiring(store, "new", 101, 0)) << "the expired limiter made room";
    EXPECT_FALSE(limiter_expiring(store, "more", 5000, 0)) << "a device is never evicted";
    EXPECT_EQ(store.shared().devices, 1u);
}

TEST(Store, EachInsertExpiresAFewRecordsFromTheQueueHeadNeverAWalk) {
    MemoryStore store;
    StoreLock lock(store);
    for (int i = 0; i < 5; i++) limiter_expiring(store, ("old" + std::to_string(i)).c_str(), 100, 101);
    limiter_expiring(store, "new", 200, 0);
    EXPECT_EQ(store.count(Kind::Limiter), 4u) << "two expired records dropped, the new one added";
    EXPECT_FALSE(store.find(Kind::Limiter, key("old0")));
    EXPECT_FALSE(store.find(Kind::Limiter, key("old1")));
    EXPECT_TRUE(store.find(Kind::Limiter, key("old2"))) << "bounded: no more than two per insert";
}

TEST(Store, ExpiryStopsAtTheFirstLiveRecordAndAnUpdateMovesARecordToTheTail) {
    MemoryStore store;
    StoreLock lock(store);
    const LimiterRecord* a = limiter_expiring(store, "a", 100, 150);
    limiter_expiring(store, "b", 100, 101);
    EXPECT_EQ(store.expire_some(Kind::Limiter, 120, 10), 0u) << "the head is live: expiry stops there";
    update_record(store, a)->h.expires_s = 300;  // "a" changed: now the queue's tail
    EXPECT_EQ(store.expire_some(Kind::Limiter, 120, 10), 1u);
    EXPECT_FALSE(store.find(Kind::Limiter, key("b")));
    EXPECT_TRUE(store.find(Kind::Limiter, key("a")));
}

TEST(Store, RemovingAMailboxKeepsItsAccountCounterRight) {
    MemoryStore store;
    StoreLock lock(store);
    uint8_t account[16] = {7};
    auto mailbox = [&](const char* name) {
        auto* m = insert_record<MailboxRecord>(store, Kind::Mailbox, key(name), 1,
                                               [&](MailboxRecord* m) { memcpy(m->account_hash, account, 16); });
        EXPECT_TRUE(count_mailbox(store, m, 1));
        return m;
    };
    MailboxRecord* a = mailbox("a");
    mailbox("b");
    EXPECT_EQ(live_mailboxes(store, account), 2u);
    store.remove(&a->h);
    EXPECT_EQ(live_mailboxes(store, account), 1u);
    store.remove(store.find(Kind::Mailbox, key("b")));
    EXPECT_EQ(live_mailboxes(store, account), 0u);
    EXPECT_EQ(store.count(Kind::AccountCount), 0u) << "the last mailbox takes its counter with it";
}

namespace {

struct CountingLog : ChangeLog {
    size_t transactions = 0;
    bool fail = false;  // the next committed() throws, as an allocation failure would
    void committed(std::vector<RecordChange>&&) override {
        if (fail) throw std::bad_alloc();
        transactions++;
    }
};

std::string snapshot_of(Harness& h) { return h.locked([&] { return serialize_state(h.store); }); }

}  // namespace

// A locked scope that exits by an exception puts back everything it changed
// (inserted, updated, removed records and the OTP) and journals nothing.
TEST(Transactions, AScopeLeftByAnExceptionIsRolledBackAndJournalsNothing) {
    Harness h;
    const std::string owner = h.owner();
    const std::string device = h.device();
    CountingLog log;
    h.store.attach(&log);
    const std::string before = snapshot_of(h);
    const OtpState otp_before = h.store.state().otp;
    const uint64_t devices = h.store.state().devices;
    EXPECT_THROW(
        {
            StoreLock lock(h.store);
            ASSERT_TRUE(issue_device(h.store, h.settings, Role::Device, PairMethod::Code, "new", h.addr,
                                     (uint32_t)(kT0 / 1000), random_bytes(32)));
            const RecordHeader* d = h.store.find(Kind::Device, sha256(owner.substr(7)));
            ASSERT_TRUE(d);
            update_record(h.store, as<DeviceRecord>(d))->name[0] = 'X';
            h.store.remove(h.store.find(Kind::Device, sha256(device.substr(7))));
            h.store.otp_for_update().burned = 1;
            throw std::runtime_error("a step of the transaction failed");
        },
        std::runtime_error);
    EXPECT_EQ(h.store.locked(), 0) << "the lock is released";
    EXPECT_EQ(log.transactions, 0u) << "nothing journalled";
    EXPECT_EQ(snapshot_of(h), before) << "every record as it was";
    EXPECT_EQ(h.store.state().devices, devices);
    EXPECT_EQ(memcmp(&h.store.state().otp, &otp_before, sizeof otp_before), 0) << "the OTP as it was";
    EXPECT_EQ(h.call("GET", "/api/devices", "", kT0, device).status, 200) << "the removed device is back";
}

// The change log failing to take a commit (an allocation failure) neither
// kills the process holding the lock nor leaves a change that no journal
// holds: the transaction is undone and the failure reported.
TEST(Transactions, AnAllocationFailureInTheCommitUndoesTheTransaction) {
    Harness h;
    CountingLog log;
    h.store.attach(&log);
    const std::string otp = h.new_otp(kT0);
    const size_t before = log.transactions;
    log.fail = true;
    h.pair(otp, kT0);  // its 200 must not be sent: the glue asks take_commit_failure()
    EXPECT_TRUE(h.store.take_commit_failure());
    EXPECT_FALSE(h.store.take_commit_failure()) << "reading it clears it";
    EXPECT_EQ(h.store.locked(), 0);
    EXPECT_EQ(h.store.state().devices, 0u) << "the device does not exist";
    log.fail = false;
    EXPECT_EQ(h.pair(otp, kT0).status, 200) << "the OTP the undone pairing spent is live again";
    EXPECT_EQ(log.transactions, before + 1);
}
