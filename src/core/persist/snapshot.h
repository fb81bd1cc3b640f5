// The state file's format: a versioned, checksummed snapshot of every record.
#pragma once

#include <string>

#include "core/store.h"

namespace dp {

constexpr uint32_t kStateVersion = 1;

// Snapshot of the store; caller holds the store lock.
std::string serialize_state(Store& store);

// Fills an empty store from a snapshot, dropping expired records; takes the
// store lock itself. Returns false with *error naming the problem; the store
// may then be partly filled.
bool load_state(Store& store, const std::string& bytes, uint32_t now_s, std::string* error);

}  // namespace dp
