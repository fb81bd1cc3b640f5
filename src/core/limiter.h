// Per-address counting: failed guesses at a secret (OTP or pairing code;
// 5 failures within 60 s lock the address out until 60 s pass quietly) and
// creation budgets for what anonymous clients may make. Both fail closed: an
// address whose count cannot be kept (a full zone) is refused, never let
// through uncounted.
#pragma once

#include <string_view>

#include "core/http.h"
#include "core/store.h"

namespace dp {

constexpr uint32_t kLimitFailures = 5;     // failures per address before 429
constexpr int64_t kLimitWindowMs = 60000;  // quiet time that lifts a lockout

// Use under the store lock: admit(), then failed() or succeeded().
class Limiter {
   public:
    Limiter(Store& store, std::string_view label, const ClientAddr& addr);

    // Seconds to wait before guessing again, or 0. A locked-out attempt
    // counts as a failure and so restarts the quiet window (seed 000: "each
    // failed attempt resets the window"). Keeps a record for the address
    // before any guess is judged; when there is no room for one, waits.
    int admit(int64_t now_ms);
    // True when this failure is the one that locks the address out.
    bool failed(int64_t now_ms);
    void succeeded();

   private:
    LimiterRecord* record();
    Store& store_;
    Digest key_;
};

// Counts one creation by addr in the current minute; false when the address
// already made max this minute, or its count cannot be kept. Lock held.
bool within_budget(Store& store, std::string_view label, const ClientAddr& addr, uint32_t max, int64_t now_ms);

// 429 rate_limited with Retry-After; legacy is seed 000's "error" string or null.
Response rate_limited(int retry_after, const char* legacy);

}  // namespace dp
