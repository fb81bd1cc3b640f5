// Seed 000, gateway pairing: the 6-digit OTP, POST /pair, GET /pair/refresh,
// the /pair page, and the banner that shows the operator the code.
#pragma once

#include <string>
#include <vector>

#include "core/call.h"

namespace dp {

constexpr uint32_t kOtpBurnAfter = 10;  // failures that burn one OTP, from any address

// A fresh OTP (the old one dies); returns the code for display only.
std::string new_otp(Store& store, const Settings& settings, int64_t now_ms);
bool otp_live(Store& store, int64_t now_ms);
// Lines for the error log: URL, QR, OTP and its guessing budget.
std::vector<std::string> otp_banner(const Settings& settings, const std::string& base_url, const std::string& otp,
                                    int64_t now_ms);
// At start or reload: a new OTP unless a live one exists; the banner lines
// when one was made, else none.
std::vector<std::string> otp_at_start(Store& store, const Settings& settings, int64_t now_ms);

Response health(Call& call);        // GET /health
Response pair_page(Call& call);     // GET /pair
Response pair_otp(Call& call);      // POST /pair
Response pair_refresh(Call& call);  // GET /pair/refresh

extern const char kPairPageHtml[];

}  // namespace dp
