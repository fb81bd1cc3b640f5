// The gateway identity's rotation in the zone (issue #28): the current key,
// the one it replaced and the hand-over chain, shared by every worker and
// kept in state=PATH.identity; each worker's settings follow the zone's.
#pragma once

#include <string>

#include "core/identity.h"
#include "core/persist/disk.h"
#include "ngx/conf.h"

namespace dpngx {

struct ZoneCtx;

constexpr size_t kHandoverChainBytes = 16384;  // about 40 hand-overs
// keep_rotated_identity's error when it lost to a rotation made meanwhile (409).
constexpr const char* kAnotherRotationFirst = "another rotation came first";

struct ShmIdentity {
    uint64_t generation;        // 0: the configured key is current
    uint8_t seed[32];
    uint8_t previous[32];
    uint32_t has_previous;
    uint32_t chain_bytes;
    uint64_t dual_signed_size;  // the checkpoint first after a rotation's leaf (see dp::Settings)
    char chain[kHandoverChainBytes];  // the hand-over notes, each ended by a NUL
};

std::string identity_path(const dp::StatePaths& paths);
// Recovery: a rotated identity kept in the state directory becomes the zone's.
bool load_identity(ZoneCtx* zone, const dp::StatePaths& paths, std::string* error);
// In a thread: under the state lock, unless another rotation came first,
// the new key and the chain are written to PATH.identity (fsynced), then
// put in the zone. False with *error (nothing changed).
bool keep_rotated_identity(ZoneCtx* zone, const dp::IdentityRotation& rotation, std::string* error);
// Before a route runs: the server's settings take the zone's identity when a
// worker rotated it (one word read when nothing changed).
void refresh_identity(ZoneCtx* zone, dp::Settings* settings);
// A durable leaf of a rotation: the checkpoint of this size is signed by both keys.
void note_rotation_leaf(ZoneCtx* zone, uint64_t size_after);

}  // namespace dpngx
