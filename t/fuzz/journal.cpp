// The journal reader: hostile bytes are refused with an offset, cut as a torn
// tail, or replayed into a store whose counters agree with its records.
#include "core/persist/journal.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    dp::JournalScan scan;
    std::string error;
    std::string_view bytes((const char*)data, size);
    if (!dp::parse_journal(bytes, &scan, &error)) {
        if (error.find("offset") == std::string::npos) abort();
        return 0;
    }
    if (scan.valid_bytes > size || (!scan.torn && scan.valid_bytes != size)) abort();
    dp::MemoryStore store;
    store.capacity = 4096;
    uint64_t last = 0;
    if (!dp::apply_journal(store, scan.entries, 0, 1800000000, &last, &error)) return 0;
    dp::StoreLock lock(store);
    if (store.shared().devices != store.count(dp::Kind::Device)) abort();
    for (size_t k = 0; k < dp::kKindCount; k++)
        if (store.shared().records[k] != store.count((dp::Kind)k)) abort();
    return 0;
}
