// Per-address failure counting and creation budgets, with injected time.
#include <gtest/gtest.h>

#include "core/limiter.h"
#include "harness.h"

using namespace dp;

namespace {

struct Limited : Harness {
    int admit(int64_t now) { return locked([&] { return Limiter(store, "test", addr).admit(now); }); }
    void fail(int64_t now) { locked([&] { Limiter(store, "test", addr).failed(now); return 0; }); }
    void succeed() { locked([&] { Limiter(store, "test", addr).succeeded(); return 0; }); }
    bool spend(uint32_t max, int64_t now) { return locked([&] { return within_budget(store, "b", addr, max, now); }); }
};

}  // namespace

TEST(Limiter, FiveFailuresInAMinuteLockTheAddressUntilAQuietMinute) {
    Limited h;
    for (int i = 0; i < 4; i++) {
        EXPECT_EQ(h.admit(kT0 + i), 0);
        h.fail(kT0 + i);
    }
    EXPECT_EQ(h.admit(kT0 + 10), 0) << "four failures: still admitted";
    h.fail(kT0 + 10);
    EXPECT_EQ(h.admit(kT0 + 20), 60);
    EXPECT_EQ(h.admit(kT0 + 20 + 59999), 60) << "a locked attempt restarts the window";
    EXPECT_EQ(h.admit(kT0 + 20 + 59999 + 60000), 0);
}

TEST(Limiter, ASuccessClearsTheAddressAndAnotherAddressIsCountedApart) {
    Limited h;
    for (int i = 0; i < 5; i++) h.fail(kT0 + i);
    h.addr.bytes[3] = 2;
    EXPECT_EQ(h.admit(kT0 + 10), 0) << "per address";
    h.addr.bytes[3] = 1;
    h.succeed();
    EXPECT_EQ(h.admit(kT0 + 10), 0);
}

TEST(Limiter, ItFailsClosedWhenNoCountCanBeKept) {
    Limited h;
    h.store.capacity = 0;
    EXPECT_EQ(h.admit(kT0), 60) << "no record for this address: refused, not let through uncounted";
    EXPECT_FALSE(h.spend(10, kT0));
}

TEST(Limiter, BudgetsCountCreationsPerMinute) {
    Limited h;
    for (int i = 0; i < 3; i++) EXPECT_TRUE(h.spend(3, kT0 + i));
    EXPECT_FALSE(h.spend(3, kT0 + 10));
    EXPECT_TRUE(h.spend(3, kT0 + 60001)) << "a new minute";
    const Response r = rate_limited(60, "legacy");
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(r.headers[0].second, "60");
    EXPECT_EQ(field(r, "error"), "legacy");
}
