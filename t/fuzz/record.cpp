// Record images as the state file, the journal or Redis might hold them:
// the validator decides, and what it lets through is applied to a replica
// and read back by every route that walks records (the device list,
// revoke-all, the code requests), under ASan. An image the validator passes
// that crashes a reader, or one it refuses that still changed the store, is
// a finding.
#include <cstring>

#include "core/api.h"
#include "core/fleet.h"
#include "core/persist/snapshot.h"
#include "fuzz.h"

namespace {

dp::Settings& settings() {
    static dp::Settings s = [] {
        dp::Settings s;
        s.operator_token_hash = dp::sha256("dp_op_fuzz");
        return s;
    }();
    return s;
}

dp::Response call(dp::MemoryStore& store, const char* method, const char* path) {
    dp::Request req;
    req.method = method;
    req.path = path;
    req.authorization = "Bearer dp_op_fuzz";
    req.host = "gw.local";
    req.now_ms = 1800000000000;
    dp::ClientAddr addr;
    addr.len = 4;
    return dp::api_handle(store, settings(), dp::api_route(req.method, req.path), req, addr);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;  // an empty image is a removal, not a record
    const dp::Kind kind = (dp::Kind)(data[0] % dp::kKindCount);
    const std::string_view image((const char*)data + 1, size - 1);
    dp::Digest key{};
    if (image.size() >= sizeof(dp::RecordHeader)) memcpy(key.data(), image.data() + offsetof(dp::RecordHeader, key), 32);
    // Short images (written before a kind grew) pass, zero-extended, as in the apply path.
    const bool valid = dp::record_image_problem(kind, image, key.data(), true).empty();

    dp::MemoryStore store;
    store.capacity = 64;
    std::string problem;
    bool applied;
    {
        dp::StoreLock lock(store);
        applied = dp::fleet_apply(store, kind, key, image, 1800000000, &problem);
    }
    // Account counters are derived on each host: their images are ignored.
    if (kind == dp::Kind::AccountCount && (!applied || store.count() != 0)) abort();
    if (kind != dp::Kind::AccountCount && !valid && (applied || problem.empty() || store.count() != 0)) abort();
    if (valid && !problem.empty()) abort();
    call(store, "GET", "/api/devices");
    call(store, "GET", "/api/devices/pairing/pending");
    const std::string bytes = [&] {
        dp::StoreLock lock(store);
        return dp::serialize_state(store);
    }();
    dp::MemoryStore reloaded;
    std::string error;
    if (!dp::load_state(reloaded, bytes, 1800000000, &error)) abort();  // what entered the zone reads back
    call(store, "DELETE", "/api/devices");
    return 0;
}
