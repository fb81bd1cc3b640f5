// Seed 002, device identity: the gateway's Ed25519 identity, signed
// attestations over RFC 8785 canonical JSON, and their verification with
// replay protection (attestation nonces kept in the store).
#pragma once

#include "core/call.h"

namespace dp {

Response identity(Call& call);  // GET /api/devices/identity
Response attest(Call& call);    // POST /api/devices/attest
Response verify(Call& call);    // POST /api/devices/verify

}  // namespace dp
