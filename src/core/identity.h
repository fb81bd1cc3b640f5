// Seed 002, device identity: the gateway's Ed25519 identity, signed
// attestations over RFC 8785 canonical JSON, and their verification with
// replay protection (attestation nonces kept in the store).
#pragma once

#include "core/call.h"

namespace dp {

// The gateway identity's rotation: the next key and the hand-over note
// (C2SP signed note, text below) signed by the old key, which authorises
// it, and the new, which proves possession; made durable by the caller.
struct IdentityRotation {
    std::shared_ptr<Ed25519Identity> next;
    std::shared_ptr<Ed25519Identity> previous;
    std::string handover;
    uint64_t from_generation;  // the rotation it follows (Settings::identity_generation)
    std::string actor;         // the owner device that rotated it (empty: the operator token)
};
// "<origin> identity hand-over\nold <base64 key>\nnew <base64 key>\nsize <tree size>\n"
std::string handover_text(std::string_view origin, std::string_view old_public, std::string_view new_public,
                          uint64_t tree_size);
// Once the new key is kept: the log's leaf of the rotation, in a transaction.
void log_identity_rotation(Store& store, const IdentityRotation& rotation, int64_t now_ms);

// What state=PATH.identity keeps of a rotated identity: JSON with the
// current key's seed, the one before ("previous", for the dual-signed
// checkpoint) and every hand-over note, oldest first. Seeds in base64.
struct IdentityFile {
    Bytes seed, previous;
    std::vector<std::string> handovers;
};
std::string encode_identity_file(const IdentityFile& file);
bool parse_identity_file(std::string_view text, IdentityFile* file, std::string* error);
// A line of a hand-over note's text ("old", "new", "size"): what follows
// the name, or empty.
std::string handover_field(std::string_view note, std::string_view name);
// The public keys the hand-overs retired, oldest first (their "old" lines).
std::vector<std::string> retired_keys(const std::vector<std::string>& handovers);

Response identity(Call& call);         // GET /api/devices/identity
Response identity_rotate(Call& call);  // POST /api/devices/identity/rotate (owner)
Response attest(Call& call);    // POST /api/devices/attest
Response verify(Call& call);    // POST /api/devices/verify

}  // namespace dp
