// The state file: snapshot codec and the writer behind the Disk interface.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <openssl/rand.h>

#include <atomic>
#include <filesystem>

#include "core/persist/disk.h"
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
    Digest hash = key_of("otp", otp);
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
