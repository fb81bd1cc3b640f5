// The state file behind `device_pairing_zone ... state=PATH`: a versioned,
// checksummed snapshot of every record, replaced atomically.
#pragma once

#include <string>

#include "core/store.h"

namespace dp {

constexpr uint32_t kStateVersion = 1;

// Snapshot of the store; caller holds the store lock.
std::string serialize_state(Store& store);

// Fills an empty store from a snapshot, dropping expired records. Returns
// false with *error naming the problem; the store may then be partly filled.
bool load_state(Store& store, const std::string& bytes, uint32_t now_s, std::string* error);

// temp file in the same directory, fsync, rename, fsync of the directory.
// On failure the old file is left as it was.
bool write_file_atomically(const std::string& path, const std::string& bytes, std::string* error);

// Serialises and writes under an exclusive flock of PATH.lock, so that of
// two workers persisting at once the newer snapshot lands last.
bool persist_state(Store& store, const std::string& path, std::string* error);

}  // namespace dp
