// The state file: snapshot codec and the writer behind the Disk interface.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <openssl/rand.h>

#include <atomic>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "core/persist/disk.h"
#include "core/persist/journal.h"
#include "core/persist/snapshot.h"
#include "core/crypto.h"
#include "harness.h"

using namespace dp;

TEST(StateFile, RoundTripAndCorruption) {
    Harness h;
    std::string otp = h.new_otp(kT0);
    ASSERT_EQ(h.pair(otp, kT0).status, 200);
    std::string bytes = h.locked([&] { return serialize_state(h.store); });

    MemoryStore copy;
    std::string err;
    ASSERT_TRUE(load_state(copy, bytes, (uint32_t)(kT0 / 1000), &err)) << err;
    EXPECT_EQ(copy.state().devices, 1u);
    EXPECT_EQ(copy.count(), h.store.count());

    std::string corrupt = bytes;
    corrupt[40] ^= 1;
    MemoryStore other;
    EXPECT_FALSE(load_state(other, corrupt, 0, &err));
    EXPECT_NE(err.find("checksum"), std::string::npos);
    EXPECT_FALSE(load_state(other, bytes.substr(0, bytes.size() - 1), 0, &err));
    std::string future = bytes;
    future[8] = 9;
    EXPECT_FALSE(load_state(other, future, 0, &err));
    EXPECT_NE(err.find("version 9"), std::string::npos);
}

TEST(StateFile, DropsExpiredRecordsOnLoad) {
    Harness h;
    h.settings.device_keys.push_back({sha256("k"), "alice"});
    ASSERT_EQ(h.call("POST", "/api/v1/device-pairing", "", kT0, "", "k").status, 201);
    MemoryStore copy;
    std::string err;
    ASSERT_TRUE(load_state(copy, h.locked([&] { return serialize_state(h.store); }), (uint32_t)(kT0 / 1000) + 301, &err));
    EXPECT_EQ(copy.count(), 0u);
}

TEST(StateFile, TheOtpIsNeverWritten) {
    Harness h;
    std::string otp = h.new_otp(kT0);
    std::string bytes = h.locked([&] { return serialize_state(h.store); });
    Digest hash = guessable_key(h.settings, "otp", otp);
    EXPECT_EQ(bytes.find(std::string((const char*)hash.data(), 32)), std::string::npos);
    MemoryStore copy;
    std::string err;
    ASSERT_TRUE(load_state(copy, bytes, (uint32_t)(kT0 / 1000), &err)) << err;
    EXPECT_FALSE(otp_live(copy, kT0)) << "a start makes a fresh OTP";
}

TEST(StateFile, NoncesAndLimitersSurviveALoad) {
    Harness h;
    std::string otp = h.new_otp(kT0);
    h.pair(otp == "000000" ? "111111" : "000000", kT0);
    MemoryStore copy;
    std::string err;
    ASSERT_TRUE(load_state(copy, h.locked([&] { return serialize_state(h.store); }), (uint32_t)(kT0 / 1000), &err));
    EXPECT_EQ(copy.count(Kind::Limiter), 1u);
}

// Every call into OpenSSL's RNG from this binary, counted: the persistence
// calls that nginx runs in its thread pool must not make OpenSSL keep
// per-thread state there (its thread-exit handler raced the worker's
// exit-time cleanup).
namespace {
std::atomic<int> rand_calls{0};
}  // namespace
extern "C" int RAND_bytes(unsigned char* buf, int num) {
    rand_calls++;
    static auto real = reinterpret_cast<int (*)(unsigned char*, int)>(dlsym(RTLD_NEXT, "RAND_bytes"));
    return real(buf, num);
}

TEST(StateFile, ThreadPoolWritesLeaveOpenSslAlone) {
    char dir[] = "/tmp/dp-unit-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir));
    const std::string base = std::string(dir) + "/state";
    const StatePaths paths(base);
    const int before = rand_calls;
    (void)random_bytes(4);
    ASSERT_EQ(rand_calls, before + 1) << "the counter sees the core's RNG";

    std::string error;
    ASSERT_TRUE(PosixDisk().write_atomically(base + ".banner", "banner\n", &error)) << error;
    ASSERT_TRUE(append_journal(paths, "entry", &error)) << error;
    ASSERT_TRUE(rotate_journal(paths, &error)) << error;
    SnapshotFile file;
    ASSERT_TRUE(file.create(paths, &error)) << error;
    file.abandon();
    EXPECT_EQ(rand_calls, before + 1) << "a thread-pool write called OpenSSL's RNG";
    std::string other;
    ASSERT_TRUE(PosixDisk().write_atomically(base + ".banner", "again\n", &error)) << error;
    ASSERT_TRUE(PosixDisk().read_file(base + ".banner", &other, &error));
    EXPECT_EQ(other, "again\n");
    std::filesystem::remove_all(dir);
}

namespace {

// A state directory of its own, removed at the end.
struct TempState {
    std::string dir, base;
    TempState() {
        char tmpl[] = "/tmp/dp-unit-XXXXXX";
        dir = mkdtemp(tmpl);
        base = dir + "/state";
    }
    ~TempState() { std::filesystem::remove_all(dir); }
    std::string journal() const {
        std::string bytes, error;
        PosixDisk().read_file(base + ".journal", &bytes, &error);
        return bytes;
    }
};

// Two committed owners' journal entries, each as its own string.
std::vector<std::string> two_entries() {
    struct Keep : ChangeLog {
        std::vector<std::string> entries;
        void committed(std::vector<RecordChange>&& changes) override {
            std::string bytes = encode_journal(changes);
            if (!bytes.empty()) entries.push_back(bytes);  // a new OTP alone is never journalled
        }
    } log;
    Harness h;
    h.store.attach(&log);
    h.owner();
    h.owner();
    return log.entries;
}

std::vector<size_t> synced_sizes;  // the journal's size at each sync
int counting_sync(int fd) {
    struct stat st;
    fstat(fd, &st);
    synced_sizes.push_back((size_t)st.st_size);
    return fdatasync(fd);
}

}  // namespace

TEST(JournalFile, AnAppendIsSyncedWholeBeforeItReturns) {
    TempState t;
    const StatePaths paths(t.base);
    const std::vector<std::string> entries = two_entries();
    synced_sizes.clear();
    journal_sync = counting_sync;
    std::string error;
    const bool ok = append_journal(paths, entries[0], &error) && append_journal(paths, entries[1], &error);
    journal_sync = fdatasync;
    ASSERT_TRUE(ok) << error;
    EXPECT_EQ(synced_sizes, (std::vector<size_t>{entries[0].size(), entries[0].size() + entries[1].size()}))
        << "each append is synced once, after all of its bytes are written";
}

TEST(JournalFile, APartialEntryLeftByADeadWriterIsCutBeforeTheNextAppend) {
    const std::vector<std::string> entries = two_entries();
    for (bool lock_file_lost : {false, true}) {
        TempState t;
        const StatePaths paths(t.base);
        std::string error;
        ASSERT_TRUE(append_journal(paths, entries[0], &error)) << error;
        {  // a worker killed inside its write(): part of an entry, no mark
            std::ofstream f(paths.journal, std::ios::app | std::ios::binary);
            f << entries[1].substr(0, entries[1].size() / 2);
        }
        if (lock_file_lost) std::filesystem::remove(paths.lock);
        AppendOutcome outcome;
        ASSERT_TRUE(append_journal(paths, entries[1], &error, &outcome)) << error;
        EXPECT_EQ(outcome.repaired, entries[1].size() / 2);
        JournalScan scan;
        ASSERT_TRUE(parse_journal(t.journal(), &scan, &error)) << error;
        EXPECT_FALSE(scan.torn);
        EXPECT_EQ(scan.entries.size(), 2u) << "the acknowledged entry after the crash is kept";
    }
}

TEST(JournalFile, RecoveryCutsATornTailUnderTheLockAndTheNextAppendFollowsIt) {
    TempState t;
    const StatePaths paths(t.base);
    const std::vector<std::string> entries = two_entries();
    std::string error;
    ASSERT_TRUE(append_journal(paths, entries[0] + entries[1].substr(0, 9), &error)) << error;
    JournalScan scan;
    ASSERT_TRUE(parse_journal(t.journal(), &scan, &error));
    ASSERT_TRUE(scan.torn);
    {
        StateLock lock(paths, &error);
        ASSERT_TRUE(lock.held()) << error;
        ASSERT_TRUE(settle_journal(lock, paths, scan.valid_bytes, &error)) << error;
    }
    EXPECT_EQ(t.journal(), entries[0]);
    ASSERT_TRUE(append_journal(paths, entries[1], &error)) << error;
    EXPECT_EQ(t.journal(), entries[0] + entries[1]);
}

TEST(JournalFile, AJournalDamagedBeforeItsEndIsNotAppendedTo) {
    TempState t;
    const StatePaths paths(t.base);
    const std::vector<std::string> entries = two_entries();
    std::string damaged = entries[0] + entries[1];
    damaged[20] ^= 1;
    std::string error;
    ASSERT_TRUE(PosixDisk().write_atomically(paths.journal, damaged, &error));
    EXPECT_FALSE(append_journal(paths, entries[0], &error));
    EXPECT_NE(error.find("corrupt journal entry at offset 0"), std::string::npos) << error;
    EXPECT_EQ(t.journal(), damaged) << "nothing written, nothing cut";
}

// A binary upgrade: the new generation registers its zone when it recovers;
// from then on the old generation's appends are refused (it answers 503), so
// it acknowledges nothing the new one does not hold.
TEST(JournalFile, OnlyTheRegisteredZoneAppends) {
    TempState t;
    const StatePaths paths(t.base);
    const std::vector<std::string> entries = two_entries();
    std::string error;
    ASSERT_TRUE(append_journal(paths, entries[0], &error, nullptr, 1)) << "no owner yet: " << error;
    {
        StateLock lock(paths, &error);
        ASSERT_TRUE(write_journal_owner(lock, JournalOwner{2, 4242}, &error)) << error;
        JournalOwner owner;
        ASSERT_TRUE(read_journal_owner(lock, &owner));
        EXPECT_EQ(owner.zone_id, 2u);
        EXPECT_EQ(owner.master_pid, 4242u);
    }
    AppendOutcome outcome;
    EXPECT_FALSE(append_journal(paths, entries[1], &error, &outcome, 1));
    EXPECT_TRUE(outcome.superseded);
    EXPECT_EQ(t.journal(), entries[0]) << "nothing of the old generation's append";
    ASSERT_TRUE(append_journal(paths, entries[1], &error, nullptr, 2)) << error;
    EXPECT_EQ(t.journal(), entries[0] + entries[1]);
    JournalScan scan;
    ASSERT_TRUE(parse_journal(t.journal(), &scan, &error)) << error;
    EXPECT_EQ(scan.entries.size(), 2u) << "the end mark and the owner share the lock file without harm";
}
