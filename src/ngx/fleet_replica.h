// Between fleet mode's parts (fleet.cpp): the replica zone as the writer
// and the follower change it from Redis's records.
#pragma once

#include "core/persist/journal.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "core/fleet.h"
#include "ngx/zone.h"

namespace dpngx {

// Records as Redis holds them: (Redis key, image), views into a reply that
// live as long as its callback.
using Images = dp::FleetImages;

// The origin this host writes on the feed's entries (hex of the zone's id).
std::string origin_of(ZoneCtx* zone);
// Applies Redis's images of some records to the replica. False when one of
// them is not a valid record (logged with its key, the rest applied): the
// replica no longer matches Redis and must be rebuilt.
// Records first, then the pairing log's leaves the images name (log=on).
bool apply_images(ZoneCtx* zone, const Images& images, const char* from);
// The records alone; the leaves among the images are handed back.
bool apply_records(ZoneCtx* zone, const Images& images, const char* from, std::vector<dp::LogLeafEntry>* leaves);
// Out of step: the follower is rebuilding or has lost the feed (since when
// is kept for device_pairing_redis_stale and the metrics).
void set_out_of_step(ZoneCtx* zone, bool out);
bool out_of_step(ZoneCtx* zone);
// The follower rebuilds the replica at its next step (a commit's outcome was
// unknown, or Redis sent a record this host refuses).
void request_resync(ZoneCtx* zone);

// A short text kept in the zone's state (a master's "host:port"): NUL-padded,
// cut to fit.
template <size_t N>
void set_fixed_text(char (&to)[N], std::string_view text) {
    memset(to, 0, N);
    memcpy(to, text.data(), std::min(text.size(), N - 1));
}
template <size_t N>
std::string fixed_text(const char (&from)[N]) {
    return std::string(from, strnlen(from, N));
}

}  // namespace dpngx
