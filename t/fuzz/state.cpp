// The state-file loader: hostile files are refused with a reason or load
// into a store whose counters agree with its records.
#include "core/persist/snapshot.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    dp::MemoryStore store;
    store.capacity = 4096;
    std::string error;
    if (!dp::load_state(store, std::string((const char*)data, size), 1800000000, &error)) {
        if (error.empty()) abort();
        return 0;
    }
    dp::StoreLock lock(store);
    if (store.shared().devices != store.count(dp::Kind::Device)) abort();
    for (size_t k = 0; k < dp::kKindCount; k++)
        if (store.shared().records[k] != store.count((dp::Kind)k)) abort();
    dp::serialize_state(store);
    return 0;
}
