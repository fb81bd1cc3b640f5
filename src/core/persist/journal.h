// The journal: one checksummed entry per changed record, appended after the
// state file's snapshot. Recovery = snapshot + the journal's entries newer
// than the snapshot, in sequence order.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/store.h"

namespace dp {

// An entry: u32 length of what follows the checksum, u32 CRC-32 of it, then
// u64 sequence, u8 kind, u8 op (1 put, 2 remove), u16 image size, and the
// record's bytes (put) or its 32-byte key (remove).
std::string encode_journal(const std::vector<RecordChange>& changes);  // the OTP (kind Count) is skipped

struct JournalEntry {
    uint64_t seq;
    Kind kind;
    bool removed;
    Digest key;
    std::string image;  // the record, put only
};

struct JournalScan {
    std::vector<JournalEntry> entries;
    size_t valid_bytes = 0;  // the entries end here; anything after is a torn tail
    bool torn = false;
};

// Parses a journal. A bad entry that runs to the end of the file (or is
// followed only by zeros) is a torn tail: scan->torn, parsing stops there.
// A bad entry with more after it is corruption: false, *error names the
// byte offset.
bool parse_journal(std::string_view bytes, JournalScan* scan, std::string* error);

// Applies the entries newer than after_seq in sequence order: a put replaces
// or inserts the record, a remove drops it. Returns the highest sequence seen.
bool apply_journal(Store& store, std::vector<JournalEntry>& entries, uint64_t after_seq, uint32_t now_s,
                   uint64_t* last_seq, std::string* error);

}  // namespace dp
