// The pairing state machines behind every route: OTP pairing (seed 000), the
// relay mailbox (seed 001), identity, attestations and pairing codes (seed
// 002), and the credential checks the access-phase gate shares with them.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/crypto.h"
#include "core/files.h"
#include "core/http.h"
#include "core/router.h"
#include "core/store.h"

namespace dp {

// What one server block configures; built once per configuration load.
struct Settings {
    std::optional<Digest> operator_token_hash;
    bool operator_token_unavailable = false;  // a token file is configured but unusable
    std::vector<DeviceKey> device_keys;
    std::shared_ptr<Ed25519Identity> identity;
    std::string public_url;                  // empty: scheme://Host of the request
    std::string app_url = "devicepairing://pair?code=$code&host=$host";
    int64_t otp_ttl_ms = 600000;
    uint32_t mailbox_ttl_s = 300;
    uint32_t code_ttl_s = 600;
    uint32_t max_pairings_per_account = 16;
    size_t max_attest_data = 4096;
};

struct ClientAddr {
    uint8_t len = 0;  // 4, 16, or 0 when unknown
    uint8_t bytes[16] = {};
};

struct Principal {
    enum Status { Missing, Invalid, Ok } status = Missing;
    enum Method { OperatorToken, DeviceToken, DeviceKeyAuth } method = DeviceToken;
    Role role = Role::Device;
    char device_id[24] = {};     // "dev_<16 hex>", "operator", or empty
    const std::string* account = nullptr;  // device key's account

    const char* method_name() const;
};

// Checks "Authorization: Bearer <token>" against the operator token and the
// device records (when there is a store); refreshes last-seen at most once a minute.
Principal authenticate_bearer(Store* store, const Settings& settings, std::string_view authorization,
                              const ClientAddr& addr, uint32_t now_s);
Principal authenticate_device_key(const Settings& settings, std::string_view key);

// Problem answers for a failed credential check (RFC 6750 header included).
const Response& unauthorized(const Principal& p, bool device_key);

std::string device_id_text(const uint8_t id[8]);

class Service {
   public:
    Service(Store& store, const Settings& settings) : store_(store), settings_(settings) {}

    Response handle(const RouteMatch& route, const Request& req, const ClientAddr& addr);

    // A fresh OTP (the old one dies); returns the code for display only.
    std::string new_otp(int64_t now_ms);
    bool otp_live(int64_t now_ms);
    // Lines for the error log: URL, QR, OTP and its guessing budget.
    std::vector<std::string> otp_banner(const std::string& base_url, const std::string& otp,
                                        int64_t now_ms) const;

   private:
    Response health();
    Response pair_otp(const Request& req, const ClientAddr& addr);
    Response pair_refresh(const Request& req);
    Response mailbox_mint(const Request& req, const std::string& account);
    Response mailbox_deposit(const Request& req, const std::string& id);
    Response mailbox_poll(const Request& req, const std::string& id, const std::string& account);
    Response mailbox_cancel(const Request& req, const std::string& id, const std::string& account);
    Response identity();
    Response attest(const Request& req);
    Response verify(const Request& req);
    Response code_request(const Request& req);
    Response code_decide(const Request& req, bool approve, const ClientAddr& addr);
    Response code_status(const Request& req, const std::string& id, const ClientAddr& addr);
    Response code_pending(const Request& req);
    Response code_qr(const Request& req);
    Response code_cleanup(const Request& req);
    Response device_list();
    Response stats();
    Response device_revoke(const Principal& who, const std::string& id);

    struct NewRequest {
        std::string request_id, code;
        int64_t expires_ms;
    };
    std::optional<NewRequest> create_code_request(const std::string& requester,
                                                  const std::string& meta, int64_t now_ms);
    // Issues a device token; nullopt when the zone is full. Lock held.
    std::optional<std::string> issue_device_locked(Role role, PairMethod method,
                                                   const std::string& name,
                                                   const ClientAddr& addr, uint32_t now_s);
    MailboxRecord* find_mailbox_locked(const std::string& id, const std::string* account,
                                       uint32_t now_s);
    std::string base_url(const Request& req) const;

    Store& store_;
    const Settings& settings_;
};

std::string normalize_code(std::string_view input);  // "abc-123 xyz" -> "ABC123XYZ"
std::string format_code(const std::string& code, char sep);

extern const char kPairPageHtml[];

}  // namespace dp
