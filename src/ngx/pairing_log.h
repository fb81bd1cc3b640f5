// The pairing log in the zone (issue #28): the tree's kept hashes
// (dp::TlogStorage over slab chunks), where each 16th leaf's record starts
// in PATH.log, the journal writer's leaf sink, recovery's rebuild, and the
// entries route's read in a thread.
#pragma once

#include "core/persist/disk.h"
#include "core/persist/journal.h"
#include "core/tlog.h"
#include "ngx/conf.h"

namespace dpngx {

struct ZoneCtx;
struct RequestCtx;

// A growable array in the zone: fixed-size chunks from the slab, found
// through a directory that doubles when full.
struct ShmChunks {
    uint64_t count;      // elements in use
    u_char** chunks;     // the directory (slab), null: none yet
    uint64_t slots;      // its length
};

constexpr int kLogLevels = 64;
constexpr uint64_t kLogHintEvery = 16;          // leaves per PATH.log offset hint
constexpr uint64_t kNoOffset = UINT64_MAX;      // a hint not known (the copy to PATH.log was caught up later)

struct ShmLog {
    uint64_t size;                  // leaves in the tree
    uint32_t stalled;               // a leaf found no room: the tree stops there until a restart
    ShmChunks levels[kLogLevels];   // dp::tlog_level_kept levels only
    ShmChunks hints;                // PATH.log offset of leaf i * kLogHintEvery
};

// The zone's tree, read under a StoreReadLock, grown under a StoreLock.
class ZoneLogTree final : public dp::TlogStorage {
   public:
    explicit ZoneLogTree(ZoneCtx* zone) : zone_(zone) {}
    uint64_t size() override;
    dp::Digest kept(int level, uint64_t index) override;
    void keep(int level, uint64_t index, const dp::Digest& hash) override;
    void grew(uint64_t size) override;
    // Room for count more leaves, every kept level and hint included.
    bool reserve(uint64_t count);
    // Appends durable leaves (reserve()d) and their offset hints; offset:
    // where the first one's record starts, kNoOffset when not known.
    void add(uint64_t first, const std::vector<std::string>& leaves, uint64_t offset);
    void add(uint64_t index, std::string_view leaf, uint64_t offset);  // one
    // Where to start reading for leaf `first`: the record offset of an
    // earlier or equal leaf (*from) with a known hint.
    uint64_t read_start(uint64_t first, uint64_t* from);

   private:
    ZoneCtx* zone_;
};

// The journal writer's leaves for one append (see dp::LeafSink).
class JournalLeaves final : public dp::LeafSink {
   public:
    explicit JournalLeaves(ZoneCtx* zone) : zone_(zone) {}
    std::vector<std::string> pending, writing;  // templates collected; those of the batch in flight
    const std::vector<std::string>& templates() override { return writing; }
    bool next_index(uint64_t file_next, size_t count, uint64_t* first, std::string* error) override;
    void durable(uint64_t first, const std::vector<std::string>& leaves, uint64_t file_offset) override;

   private:
    ZoneCtx* zone_;
};

// Recovery (the state lock held): PATH.log caught up from the journals,
// then read into the zone's tree. False with *error.
bool load_pairing_log(ZoneCtx* zone, const dp::StatePaths& paths, std::string* error);
// Leaves a journal tail or the fleet's feed holds, in order: those the tree
// lacks go in (their file offsets are not known); false on a gap (a leaf
// past the tree's next) or no room.
bool follow_log_leaves(ZoneCtx* zone, const std::vector<dp::LogLeafEntry>& leaves);
// Fleet mode's rebuild: the tree's size and last leaf hash, and a tree
// started again (Redis no longer holds what it was built from).
uint64_t log_tree_size(ZoneCtx* zone, dp::Digest* last_leaf);
void reset_log_tree(ZoneCtx* zone);
// A resize: the new zone takes the old one's tree (and rotated identity) as
// it is; false when it has no room for them.
bool copy_log_tree(ZoneCtx* from, ZoneCtx* to);
// The entries route: reads [first, end) from PATH.log in a thread and
// answers (NGX_DONE: the request waits for it).
ngx_int_t answer_log_entries(ngx_http_request_t* r, RequestCtx* ctx, uint64_t first, uint64_t end);

}  // namespace dpngx
