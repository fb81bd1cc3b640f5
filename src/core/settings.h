// What one server block configures; built once per configuration load.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/crypto.h"
#include "core/files.h"
#include "core/qr.h"

namespace dp {

struct Settings {
    std::optional<Digest> operator_token_hash;
    bool operator_token_unavailable = false;  // a token file is configured but unusable
    std::vector<DeviceKey> device_keys;
    std::shared_ptr<Ed25519Identity> identity;
    std::string public_url;                  // empty: scheme://Host of the request
    // The start-up QR's base URL without device_pairing_url: the server's
    // listen address and port (or its server_name), found at configuration.
    std::string listen_url = "http://localhost";
    QrColors qr_colors = QrColors::LightOnDark;
    std::string app_url = "devicepairing://pair?code=$code&host=$host";
    int64_t otp_ttl_ms = 600000;
    uint32_t mailbox_ttl_s = 300;
    uint32_t code_ttl_s = 600;
    uint32_t max_pairings_per_account = 16;
    size_t max_body = 16384;
    size_t max_attest_data = 4096;
    uint32_t token_idle_timeout_s = 0;  // 0: off; judged on last-seen, which is kept to the minute
    uint32_t token_lifetime_s = 0;      // 0: off; from the token's issue (pairing or rotation)
    uint64_t max_devices = 0;           // 0: no cap
    // device_pairing_approvers owner: devices may not approve or reject
    // pairing codes (a stolen device token mints no devices that outlive it).
    bool approvers_owner_only = false;
    // The zone's key for OTPs and pairing codes as keyed MACs (one for every
    // server of the zone, and every host of a fleet).
    Digest secret_key{};
    // device_pairing_oauth_client: the public clients of the OAuth device
    // grant (none: the grant is off and its routes answer 404).
    struct OAuthClient {
        std::string id, name;
    };
    std::vector<OAuthClient> oauth_clients;
    uint32_t oauth_interval_s = 5;  // device_pairing_oauth_interval: the poll interval a client starts with
    uint32_t dpop_window_s = 60;  // device_pairing_dpop_window: how far a proof's iat may be from now
    bool dpop_nonce = false;      // device_pairing_dpop_nonce: proofs carry a fresh nonce of this host
    // The pairing log's routes: public (device_pairing_log_public on), or
    // for owners and devices; its checkpoints' origin line and key name.
    bool log_public = false;
    std::string log_origin;
    // Identity rotation (state= keeps the rotated key): the glue refreshes
    // these from the zone when another worker rotated (identity_generation).
    bool identity_rotatable = false;
    uint64_t identity_generation = 0;
    std::vector<std::string> identity_handovers;        // hand-over notes, oldest first
    std::shared_ptr<Ed25519Identity> previous_identity;  // the key the last hand-over replaced
    uint64_t dual_signed_size = 0;  // the checkpoint of this size (the first after a rotation) is signed by both
    // The identity's public keys before the current one (from the hand-overs), oldest first.
    std::vector<std::string> earlier_identity_keys;
    const OAuthClient* oauth_client(std::string_view id) const {
        for (const OAuthClient& c : oauth_clients)
            if (c.id == id) return &c;
        return nullptr;
    }
};

}  // namespace dp
