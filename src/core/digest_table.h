// The index of the records found by their SHA-256 key (devices, revoked
// tokens and DPoP proofs' jti for the gate, mailboxes for the relay):
// (kind, key) -> record in one probe, whatever the number of records. An
// rbtree walk at a million devices touches ~20 nodes on ~20 pages per
// lookup; this reads one slot line and the record.
//
// Open addressing with linear probing and backward-shift deletion (no
// tombstones), over slots in memory the caller owns (the zone's slab). A slot
// holds 32 more bits of the key, so a probe rarely reads a record that is not
// the one sought, and the record's place as 8-byte units from a base, so the
// table holds no process-local pointer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/store.h"

namespace dp {

struct DigestSlot {
    uint32_t tag;  // key bytes 8..11, mixed with the kind
    uint32_t ref;  // (record - base) / 8; 0: empty
};

// The table's shape, kept beside its slots (in shared memory for the zone).
struct DigestTableState {
    DigestSlot* slots;
    uint64_t capacity;
    uint64_t used;
};
static_assert(kShmSafe<DigestSlot> && kShmSafe<DigestTableState>);

class DigestTable {
   public:
    // Records live at or after base + 8, at 8-byte multiples from base, and
    // less than kMaxStoreBytes past it.
    static constexpr uint64_t kMaxStoreBytes = 32ULL << 30;
    DigestTable(DigestTableState& state, const void* base)
        : state_(state), base_(static_cast<const uint8_t*>(base)) {}

    // Slots for a store of this many bytes: one per 128 bytes (the smallest
    // chunk a keyed record of the indexed kinds takes), so a zone full of them
    // still leaves the table below its refusal point most of the time.
    static uint64_t capacity_for(size_t store_bytes);
    // The replay cache holds a gate's whole window of proofs (hundreds of
    // thousands at full speed): a tree walk there was the gate's largest cost
    // after the signature. Its records are 128-byte chunks within half the
    // zone (kDpopShareDivisor), so they take at most half the slots.
    static bool indexes(Kind kind) {
        return kind == Kind::Device || kind == Kind::Revoked || kind == Kind::Mailbox || kind == Kind::DpopJti;
    }

    RecordHeader* find(Kind kind, const uint8_t* key) const;
    // False when the table is 7/8 full (long probe runs): the store is full.
    bool insert(RecordHeader* record);
    bool has_room() const { return state_.used + 1 <= state_.capacity / 8 * 7; }
    // The record must be in the table.
    void remove(const RecordHeader* record);

   private:
    uint64_t home(Kind kind, const uint8_t* key) const;
    uint32_t ref_of(const RecordHeader* record) const;
    RecordHeader* record_at(uint32_t ref) const;
    uint64_t next(uint64_t i) const { return i + 1 == state_.capacity ? 0 : i + 1; }

    DigestTableState& state_;
    const uint8_t* base_;
};

}  // namespace dp
