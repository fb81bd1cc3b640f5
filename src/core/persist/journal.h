// The journal: one checksummed entry per changed record, appended after the
// state file's snapshot. Recovery = snapshot + the journal's entries newer
// than the snapshot, in sequence order.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/store.h"

namespace dp {

// An entry: u32 marker "DPJ2", u32 length of the body, u32 CRC-32 of the
// length and the body together (a damaged length is caught like a damaged
// body), then the body: u64 sequence, u8 kind, u8 op (1 put, 2 remove), u16
// image size, and the record's bytes (put) or its 32-byte key (remove). The
// marker lets a reader find the entries after a damaged one. Entries of the
// first format (no marker, the CRC over the body only) are still read.
std::string encode_journal(const std::vector<RecordChange>& changes);  // the OTP (kind Count) is skipped,
                                                                      // and leaf templates (kind LogLeaf)
// The pairing log's leaves as journal entries: kind LogLeaf, op 3, the
// sequence field holds the leaf's index in the log (first, first + 1, ...),
// the image its bytes. They are written with their events' entries, in the
// same append, so a leaf is durable exactly when its event is.
std::string encode_log_leaves(uint64_t first_index, const std::vector<std::string>& leaves);

struct JournalEntry {
    uint64_t seq;
    Kind kind;
    bool removed;
    Digest key;
    std::string image;  // the record, put only
};

struct LogLeafEntry {
    uint64_t index;
    std::string bytes;
};

struct JournalScan {
    std::vector<JournalEntry> entries;
    std::vector<LogLeafEntry> leaves;  // in file order
    size_t valid_bytes = 0;  // the entries end here; anything after is a torn tail
    bool torn = false;
};

// Parses a journal. Bytes that hold no valid entry from some offset to the
// end of the file are a torn tail (an append cut off by a crash):
// scan->torn, valid_bytes says where it starts. A damaged entry with a valid
// entry anywhere after it is corruption, never a tail: false, *error names
// the byte offset of the damage and of the next valid entry.
bool parse_journal(std::string_view bytes, JournalScan* scan, std::string* error);

// Applies the entries newer than after_seq in sequence order: a put replaces
// or inserts the record, a remove drops it. Returns the highest sequence seen.
// Each entry's image is checked (record_image_problem) before it is
// applied; a bad one fails the whole replay with *error naming its sequence.
bool apply_journal(Store& store, std::vector<JournalEntry>& entries, uint64_t after_seq, uint32_t now_s,
                   uint64_t* last_seq, std::string* error);

}  // namespace dp
