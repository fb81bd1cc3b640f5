// The state file's format: a versioned, checksummed snapshot of every record,
// with the journal sequence it covers and the zone generation that wrote it.
#pragma once

#include <string>
#include <string_view>

#include "core/store.h"

namespace dp {

constexpr uint32_t kStateVersion = 2;  // 1: no sequence or generation (still read)

struct SnapshotInfo {
    uint64_t covers_seq = 0;   // journal entries up to this sequence are in the snapshot
    uint64_t generation = 0;   // a writer of an older generation never replaces it
};

// A snapshot built a slice at a time: take() hands out the bytes so far
// (for a write while the next slice is copied), finish() the rest and the
// checksum.
class SnapshotWriter {
   public:
    explicit SnapshotWriter(const SnapshotInfo& info);
    void add(const RecordHeader* record);
    std::string take();
    std::string finish();
    size_t pending() const { return buf_.size(); }

   private:
    std::string buf_;
    Sha256Stream sum_;
};

// Snapshot of the whole store; caller holds the store lock.
std::string serialize_state(Store& store, const SnapshotInfo& info = {});

// The header of a state file, or false when it is not one.
bool read_snapshot_info(std::string_view bytes, SnapshotInfo* info);

// Fills an empty store from a snapshot, dropping expired records; takes the
// store lock itself. Returns false with *error naming the problem; the store
// may then be partly filled.
bool load_state(Store& store, const std::string& bytes, uint32_t now_s, std::string* error,
                SnapshotInfo* info = nullptr);

}  // namespace dp
