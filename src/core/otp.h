// Seed 000, gateway pairing: the 6-digit OTP, POST /pair, GET /pair/refresh,
// the /pair page, and the banner that shows the operator the code.
#pragma once

#include <string>
#include <vector>

#include "core/call.h"
#include "core/qr.h"

namespace dp {

constexpr uint32_t kOtpBurnAfter = 10;  // failures that burn one OTP, from any address

// A fresh OTP (the old one dies); returns the code for display only.
std::string new_otp(Store& store, const Settings& settings, int64_t now_ms);
bool otp_live(Store& store, int64_t now_ms);
// Lines for the error log: URL, QR, OTP and its guessing budget.
// qr: the pairing URL (base_url + "/pair#otp=" + otp), encoded once by the caller.
std::vector<std::string> otp_banner(const Settings& settings, const std::string& base_url, const std::string& otp,
                                    int64_t now_ms, const QrCode& qr);
// At start or reload: a new OTP unless a live one exists; the banner lines
// when one was made, else none.
std::vector<std::string> otp_at_start(Store& store, const Settings& settings, int64_t now_ms);

// One `listen` of a server, as nginx reports it: "127.0.0.1:3001", "[::]:80".
struct ListenAddress {
    std::string text;
    bool ssl = false;
    bool wildcard = false;  // 0.0.0.0 or [::]: not an address a phone can reach
};
// The start-up QR's base URL when device_pairing_url is not set: the
// server_name when it is a real name, else the listen address, with the
// listen port (omitted when it is the scheme's default). A guess (a wildcard
// listen with no real name, several real names) adds a warning for nginx -t.
std::string startup_url(const std::vector<ListenAddress>& listens, const std::vector<std::string>& server_names,
                        const std::string& hostname, std::vector<std::string>* warnings);

Response health(Call& call);        // GET /health
Response pair_page(Call& call);     // GET /pair
Response pair_otp(Call& call);      // POST /pair
Response pair_refresh(Call& call);  // GET /pair/refresh

// The /pair page and the Content-Security-Policy that admits its own
// script and style, by hash, and nothing else.
const std::string& pair_page_html();
const std::string& pair_page_csp();

}  // namespace dp
