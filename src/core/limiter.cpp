#include "core/limiter.h"

#include "core/call.h"

namespace dp {

namespace {

constexpr int kWaitSeconds = (int)(kLimitWindowMs / 1000);

void touch(LimiterRecord* rec, int64_t now_ms) {
    rec->last_failure_ms = now_ms;
    rec->h.expires_s = to_s(now_ms + kLimitWindowMs) + 1;
}

LimiterRecord* find_or_make(Store& store, const Digest& key, int64_t now_ms) {
    if (const LimiterRecord* found = as<LimiterRecord>(store.find(Kind::Limiter, key)))
        return update_record(store, found);
    return insert_record<LimiterRecord>(store, Kind::Limiter, key, to_s(now_ms),
                                        [&](LimiterRecord* r) { r->h.expires_s = to_s(now_ms + kLimitWindowMs) + 1; });
}

}  // namespace

Limiter::Limiter(Store& store, std::string_view label, const ClientAddr& addr)
    : store_(store), key_(key_of(label, std::string_view((const char*)addr.bytes, addr.len))) {}

int Limiter::admit(int64_t now_ms) {
    const LimiterRecord* rec = as<LimiterRecord>(store_.find(Kind::Limiter, key_));
    if (!rec) return find_or_make(store_, key_, now_ms) ? 0 : kWaitSeconds;  // fail closed
    if (rec->failures < kLimitFailures || now_ms - rec->last_failure_ms >= kLimitWindowMs) return 0;
    touch(update_record(store_, rec), now_ms);
    return kWaitSeconds;
}

bool Limiter::failed(int64_t now_ms) {
    LimiterRecord* rec = find_or_make(store_, key_, now_ms);
    if (!rec) return false;  // admit() refused this address already
    if (now_ms - rec->last_failure_ms >= kLimitWindowMs) rec->failures = 0;
    rec->failures++;
    touch(rec, now_ms);
    if (rec->failures != kLimitFailures) return false;
    store_.count(Counter::Lockouts);
    return true;
}

void Limiter::succeeded() {
    if (const RecordHeader* rec = store_.find(Kind::Limiter, key_)) store_.remove(rec);
}

bool within_budget(Store& store, std::string_view label, const ClientAddr& addr, uint32_t max, int64_t now_ms) {
    Digest key = key_of(label, std::string_view((const char*)addr.bytes, addr.len));
    LimiterRecord* rec = find_or_make(store, key, now_ms);
    if (!rec) return false;
    if (rec->failures == 0 || now_ms - rec->last_failure_ms >= kLimitWindowMs) {  // a new minute
        rec->failures = 0;
        touch(rec, now_ms);
    }
    if (rec->failures >= max) return false;
    rec->failures++;
    return true;
}

Response rate_limited(int retry_after, const char* legacy) {
    Response r = problem(429, "rate_limited", "Too many attempts",
                         "too many attempts from this address; wait " + std::to_string(retry_after) +
                             " seconds without retrying",
                         legacy);
    r.header("Retry-After", std::to_string(retry_after));
    return r;
}

}  // namespace dp
