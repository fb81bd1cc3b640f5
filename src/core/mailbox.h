// Seed 001, the relay mailbox: a desktop mints a pairing with its device
// key, a phone deposits two public keys with the single-use write token,
// the desktop polls (or long-polls) and may cancel.
#pragma once

#include "core/call.h"

namespace dp {

constexpr uint32_t kMaxWaitS = 30;  // longest ?wait= of a poll

Response mailbox_mint(Call& call);     // POST /api/v1/device-pairing
Response mailbox_deposit(Call& call);  // PUT /api/v1/device-pairing/{id}
Response mailbox_poll(Call& call);     // GET /api/v1/device-pairing/{id}[?wait=N]
Response mailbox_cancel(Call& call);   // DELETE /api/v1/device-pairing/{id}
// 429: the account has its cap of live pairings (here or, in fleet mode, in Redis).
Response too_many_pairings(uint32_t live_count);

}  // namespace dp
