// Fleet mode (redis=): Redis holds the pairing state; each host's zone is a
// replica of it. This is the pure part: how records are named and stored in
// Redis, the commit script that makes a transaction's changes fleet-wide
// atomic, and how a change read back from Redis is applied to a replica.
//
// A transaction commits in an EVALSHA of kCommitScript: every record it
// changed must still hold, in Redis, the bytes this host read before the
// change (compare-and-set on whole records); then the new images are stored
// and named in the batch's entry of the change feed (a stream whose ids are
// the fleet's sequence numbers). A mismatch changes nothing and
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
// The pairing log (log=on): a list of the leaves, in index order; a feed
// entry names each leaf it added as "<prefix>log:<index>".
std::string fleet_log_key(std::string_view prefix);
bool parse_fleet_log_field(std::string_view prefix, std::string_view field, uint64_t* index);
// One step of moving a fleet's keys from the layout before hash tags
// (old_prefix) to the tagged one (src/assets/migrate.lua): an EVAL whose
// reply is the next cursor ("0": done). Start with cursor "0".
std::vector<std::string> fleet_migration(std::string_view old_prefix, std::string_view new_prefix, std::string_view cursor);

// A Redis reply as the follower reads it, independent of hiredis: views
// into the reply the glue received (valid while its callback runs).
struct ReplyView {
    enum Type { Nil, String, Integer, Array, Error, Other } type = Nil;
    std::string_view text;              // String (bulk or status), Error
    long long integer = 0;              // Integer
    std::vector<ReplyView> elements;    // Array
};
// (Redis key, image) pairs, views into a reply.
using FleetImages = std::vector<std::pair<std::string_view, std::string_view>>;

// The follower's readings of Redis's replies; false when a reply is not
// what the command returns (the follower then rebuilds the replica).
// GET of the feed's sequence: a number, or nil (nothing committed yet).
bool parse_feed_sequence(const ReplyView& reply, uint64_t* seq);
// SCAN: the next cursor and the keys of this step.
bool parse_scan(const ReplyView& reply, std::string* cursor, std::vector<std::string>* keys);
// XREAD of the feed after `after`: the images of its entries, in order, and
// the last sequence read (nil: none new). False on a gap (the stream was
// trimmed past what this host had read) or an entry it cannot read.
bool parse_feed_entries(const ReplyView& reply, uint64_t after, FleetImages* images, uint64_t* last);

// A record's bytes as the fleet compares and stores them: the store's own
// bytes (rbtree colour) zeroed, so hosts agree on a record whatever their
// trees did with it.
std::string fleet_image(Kind kind, std::string_view bytes);

// One EVALSHA commits a batch of transactions, each checked and applied on
// its own, in order (as if sent one after another): a worker sends the
// transactions that arrived while its last batch was in flight. Every key
// it touches is in KEYS (and, with the prefix's hash tag, in one slot): the
// feed, the sequence, the pairing log, then each transaction's records and
// its accounts' sets. A committed transaction's leaves are numbered by the
// script (the log's length) and pushed to the log: the fleet's commit order.
// ARGV: origin, stream length cap, the number of transactions, then each
// one's FleetTransaction args. Returns {seq (0: nothing committed), one
// outcome per transaction}: kCommitted, kCapReached (a new mailbox would pass
// its account's cap fleet-wide), or {0, the current image of each of its
// keys...} when one of them no longer holds its before image. All committed
// transactions share one feed entry.
extern const char* const kCommitScript;
constexpr long long kCommitted = 1, kCapReached = 2;
std::string fleet_script_sha();  // its SHA-1, as EVALSHA names it
constexpr size_t kFeedMaxLen = 100000;  // entries kept; a host further behind resyncs
constexpr size_t kMaxBatch = 64;        // transactions in one EVALSHA

// One transaction's part of a batch. args: the number of keys, the
// per-account cap of live pairings new mailboxes check (0: none), the number
// of account guards, the number of leaves; per key: before image, after
// image ("" = absent), expiry in Unix ms (0: none); per guard (its set in
// guard_keys): the mailbox's key, its expiry in Unix ms (0: it is removed);
// per leaf: its template (core/pairing_log.h).
struct FleetTransaction {
    std::vector<std::string> keys;        // the record keys, in change order
    std::vector<std::string> guard_keys;  // per guard, the account's set of live mailboxes
    std::vector<std::string> args;
};
FleetTransaction fleet_transaction(std::string_view prefix, const std::vector<RecordChange>& changes,
                                   uint32_t account_cap);
// The EVALSHA of a batch (at most kMaxBatch transactions).
std::vector<std::string> fleet_commit(std::string_view prefix, std::string_view script_sha, std::string_view origin,
                                      const std::vector<const FleetTransaction*>& batch);
std::string fleet_account_key(std::string_view prefix, const uint8_t account_hash[16]);

// The records a rebuild found in Redis, so it can then drop whatever the
// replica holds beyond them: 32 bytes a record (the Redis key strings in a
// hash set took ~140), sorted once the scan is done, then searched.
class FleetKeySet {
   public:
    void add(Kind kind, const Digest& key);
    void seal();  // after the last add: sorts
    bool contains(Kind kind, const Digest& key) const;
    size_t size() const;
    void clear();

   private:
    std::vector<Digest> keys_[kKindCount];
};

// Puts a record (or the OTP) into a replica as the fleet holds it: an empty
// image removes it. A device keeps this host's last seen hint. Caller holds
// a StoreLock with no change log attached. False when the zone has no room
// (*problem empty) or the image is not a valid record of its kind and key
// (*problem says why; nothing changed).
bool fleet_apply(Store& store, Kind kind, const Digest& key, std::string_view image, uint32_t now_s,
                 std::string* problem);

}  // namespace dp
