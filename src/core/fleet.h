// Fleet mode (redis=): Redis holds the pairing state; each host's zone is a
// replica of it. This is the pure part: how records are named and stored in
// Redis, the commit script that makes a transaction's changes fleet-wide
// atomic, and how a change read back from Redis is applied to a replica.
//
// A transaction commits as one EVALSHA of kCommitScript: every record it
// changed must still hold, in Redis, the bytes this host read before the
// change (compare-and-set on whole records); then the new images are stored
// and one entry naming them is appended to the change feed (a stream whose
// ids are the fleet's sequence numbers). A mismatch changes nothing and
// returns Redis's current images, which the host applies before it runs the
// request again: single-use spends, OTP redemption, approvals and failure
// counters hold across hosts because two hosts cannot both commit on the
// same before-image.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/store.h"

namespace dp {

// Kind::Count stands for the OTP, as in RecordChange.
std::string fleet_record_key(std::string_view prefix, Kind kind, const Digest& key);
// The inverse, for feed entries and resync scans; false for other keys.
bool parse_fleet_record_key(std::string_view prefix, std::string_view redis_key, Kind* kind, Digest* key);
std::string fleet_scan_pattern(std::string_view prefix);  // every record key but the OTP's
std::string fleet_otp_key(std::string_view prefix);
std::string fleet_seq_key(std::string_view prefix);
std::string fleet_feed_key(std::string_view prefix);
std::string fleet_epoch_key(std::string_view prefix);

// A record's bytes as the fleet compares and stores them: the store's own
// bytes (rbtree colour) and per-host hints (a device's last seen) zeroed, so
// hosts agree on a record that only their hints tell apart.
std::string fleet_image(Kind kind, std::string_view bytes);

// KEYS: the changed records. ARGV: origin, stream key, seq key, stream
// length cap, then per key: before image, after image ("" = absent), expiry
// in Unix ms (0: none). Returns {1, seq} or, on a mismatch, {0, current
// image of each key...}.
extern const char* const kCommitScript;
std::string fleet_script_sha();  // its SHA-1, as EVALSHA names it
constexpr size_t kFeedMaxLen = 100000;  // entries kept; a host further behind resyncs

struct FleetCommit {
    std::vector<std::string> argv;  // "EVALSHA", sha, numkeys, keys..., args...
    std::vector<std::string> keys;  // the record keys, in change order
};
FleetCommit fleet_commit(std::string_view prefix, std::string_view script_sha, std::string_view origin,
                         const std::vector<RecordChange>& changes);

// Puts a record (or the OTP) into a replica as the fleet holds it: an empty
// image removes it. A device keeps this host's last seen hint. Caller holds
// a StoreLock with no change log attached. False when the zone has no room.
bool fleet_apply(Store& store, Kind kind, const Digest& key, std::string_view image, uint32_t now_s);

}  // namespace dp
