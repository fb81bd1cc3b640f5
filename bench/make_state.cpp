// Bench-only loader: writes a state file holding N paired devices, so a zone
// can be filled with a million devices without a million HTTP pairings.
// Device i has the bearer token "dp_tok_bench_<i>". Usage: make_state N OUT
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/persist/disk.h"
#include "core/persist/snapshot.h"

namespace {

// Just enough of a Store for serialize_state over a vector of devices.
class DeviceVector final : public dp::Store {
   public:
    std::vector<dp::DeviceRecord> devices;
    void for_each(dp::Kind kind, const std::function<void(const dp::RecordHeader*)>& visit) override {
        if (kind == dp::Kind::Device)
            for (auto& d : devices) visit(&d.h);
    }
    size_t visit_after(dp::Kind, const dp::Digest*, size_t, const std::function<void(const dp::RecordHeader*)>&) override {
        return 0;
    }
    const dp::RecordHeader* find_by(dp::Index, std::string_view) override { return nullptr; }
    size_t visit_index_after(dp::Index, std::string_view, size_t,
                             const std::function<void(const dp::RecordHeader*)>&) override {
        return 0;
    }
    const dp::RecordHeader* oldest(dp::Kind) override { return nullptr; }
    size_t total_bytes() override { return 0; }
    size_t free_bytes() override { return 0; }

   protected:
    void lock() override {}
    void unlock() override {}
    dp::RecordHeader* do_find(dp::Kind, const dp::Digest&) override { return nullptr; }
    dp::RecordHeader* do_insert(dp::Kind, const dp::Digest&, const std::function<void(dp::RecordHeader*)>&) override {
        return nullptr;
    }
    void do_remove(dp::RecordHeader*) override {}
    dp::SharedState& raw_shared() override { return state_; }
    dp::PollMark* poll_marks(size_t* count) override {
        *count = 0;
        return nullptr;
    }

   private:
    dp::SharedState state_{};
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s N OUT\n", argv[0]);
        return 2;
    }
    const long n = atol(argv[1]);
    DeviceVector store;
    store.devices.resize((size_t)n);
    const uint32_t now = (uint32_t)time(nullptr);
    for (long i = 0; i < n; i++) {
        dp::DeviceRecord& d = store.devices[(size_t)i];
        memset(&d, 0, sizeof(d));
        d.h.kind = dp::Kind::Device;
        d.h.created_s = now;
        dp::Digest key = dp::sha256("dp_tok_bench_" + std::to_string(i));
        memcpy(d.h.key, key.data(), 32);
        d.last_seen_s = now;
        d.role = dp::Role::Device;
        d.method = dp::PairMethod::Loaded;
        memcpy(d.id, key.data() + 8, 8);
        memcpy(d.name, "bench", 5);
        d.name_len = 5;
    }
    // In the zone's tree order (the first 8 key bytes as a native integer,
    // then the whole key), as a snapshot written by compaction is.
    std::sort(store.devices.begin(), store.devices.end(), [](const dp::DeviceRecord& a, const dp::DeviceRecord& b) {
        uint64_t ka, kb;
        memcpy(&ka, a.h.key, 8);
        memcpy(&kb, b.h.key, 8);
        return ka != kb ? ka < kb : memcmp(a.h.key, b.h.key, 32) < 0;
    });
    std::string error;
    dp::PosixDisk disk;
    if (!disk.write_atomically(argv[2], dp::serialize_state(store), &error)) {
        fprintf(stderr, "%s\n", error.c_str());
        return 1;
    }
    return 0;
}
