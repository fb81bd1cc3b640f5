#include "core/digest_table.h"

#include <cstring>

namespace dp {

namespace {

constexpr uint64_t kSlotPerBytes = 128;
constexpr uint64_t kMinCapacity = 64;

uint64_t load64(const uint8_t* p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

uint32_t tag_of(Kind kind, const uint8_t* key) {
    uint32_t v;
    memcpy(&v, key + 8, sizeof v);
    return v ^ (uint32_t)kind;
}

}  // namespace

uint64_t DigestTable::capacity_for(size_t store_bytes) {
    const uint64_t slots = store_bytes / kSlotPerBytes;
    return slots < kMinCapacity ? kMinCapacity : slots;
}

// Keys are SHA-256 digests: their first 8 bytes are already uniform. The
// capacity need not be a power of two (a multiply maps onto it), so the table
// costs exactly 1/16 of the store.
uint64_t DigestTable::home(Kind kind, const uint8_t* key) const {
    const uint64_t h = load64(key) ^ ((uint64_t)kind * 0x9e3779b97f4a7c15ULL);
    return (uint64_t)(((unsigned __int128)h * state_.capacity) >> 64);
}

uint32_t DigestTable::ref_of(const RecordHeader* record) const {
    return (uint32_t)((reinterpret_cast<const uint8_t*>(record) - base_) >> 3);
}

RecordHeader* DigestTable::record_at(uint32_t ref) const {
    return reinterpret_cast<RecordHeader*>(const_cast<uint8_t*>(base_) + ((size_t)ref << 3));
}

RecordHeader* DigestTable::find(Kind kind, const uint8_t* key) const {
    const uint32_t tag = tag_of(kind, key);
    for (uint64_t i = home(kind, key);; i = next(i)) {
        const DigestSlot& slot = state_.slots[i];
        if (slot.ref == 0) return nullptr;
        if (slot.tag != tag) continue;
        // Equal tags and keys mean equal kinds: the tag carries the kind.
        RecordHeader* record = record_at(slot.ref);
        if (memcmp(record->key, key, 32) == 0) return record;
    }
}

bool DigestTable::insert(RecordHeader* record) {
    if (!has_room()) return false;
    uint64_t i = home(record->kind, record->key);
    while (state_.slots[i].ref != 0) i = next(i);
    state_.slots[i] = DigestSlot{tag_of(record->kind, record->key), ref_of(record)};
    state_.used++;
    return true;
}

void DigestTable::remove(const RecordHeader* record) {
    const uint32_t ref = ref_of(record);
    uint64_t hole = home(record->kind, record->key);
    while (state_.slots[hole].ref != ref) {
        if (state_.slots[hole].ref == 0) return;  // not here: nothing to undo
        hole = next(hole);
    }
    // Backward shift: an entry after the hole moves into it unless its home
    // lies cyclically in (hole, j], where it would no longer be reachable.
    for (uint64_t j = next(hole);; j = next(j)) {
        const DigestSlot slot = state_.slots[j];
        if (slot.ref == 0) break;
        const RecordHeader* moved = record_at(slot.ref);
        const uint64_t h = home(moved->kind, moved->key);
        const bool reachable_from_here = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
        if (!reachable_from_here) {
            state_.slots[hole] = slot;
            hole = j;
        }
    }
    state_.slots[hole] = DigestSlot{0, 0};
    state_.used--;
}

}  // namespace dp
