// Per-address counting of failed guesses at a secret (OTP or pairing code):
// 5 failures within 60 s lock the address out until 60 s pass quietly.
#pragma once

#include <string_view>

#include "core/http.h"
#include "core/store.h"

namespace dp {

constexpr uint32_t kLimitFailures = 5;     // failures per address before 429
constexpr int64_t kLimitWindowMs = 60000;  // quiet time that lifts a lockout

// Use under the store lock.
class Limiter {
   public:
    Limiter(Store& store, std::string_view label, const ClientAddr& addr);

    // Seconds to wait, or 0. A locked-out attempt counts as a failure and so
    // restarts the quiet window (seed 000: "each failed attempt resets the window").
    int retry_after(int64_t now_ms);
    void failed(int64_t now_ms);
    void succeeded();

   private:
    Store& store_;
    Digest key_;
};

// 429 rate_limited with Retry-After; legacy is seed 000's "error" string or null.
Response rate_limited(int retry_after, const char* legacy);

}  // namespace dp
