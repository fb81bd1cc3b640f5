#include "core/limiter.h"

#include "core/call.h"

namespace dp {

namespace {

void touch(LimiterRecord* rec, int64_t now_ms) {
    rec->last_failure_ms = now_ms;
    rec->h.expires_s = to_s(now_ms + kLimitWindowMs) + 1;
}

}  // namespace

Limiter::Limiter(Store& store, std::string_view label, const ClientAddr& addr)
    : store_(store), key_(key_of(label, std::string_view((const char*)addr.bytes, addr.len))) {}

int Limiter::retry_after(int64_t now_ms) {
    auto* rec = as<LimiterRecord>(store_.find(Kind::Limiter, key_));
    if (!rec || rec->failures < kLimitFailures || now_ms - rec->last_failure_ms >= kLimitWindowMs) return 0;
    touch(update_record(store_, rec), now_ms);
    return (int)(kLimitWindowMs / 1000);
}

void Limiter::failed(int64_t now_ms) {
    const LimiterRecord* found = as<LimiterRecord>(store_.find(Kind::Limiter, key_));
    LimiterRecord* rec = found ? update_record(store_, found)
                               : insert_record<LimiterRecord>(store_, Kind::Limiter, key_, to_s(now_ms),
                                                              [](LimiterRecord*) {});
    if (!rec) return;  // zone full: the per-secret budget still bounds guessing
    if (now_ms - rec->last_failure_ms >= kLimitWindowMs) rec->failures = 0;
    rec->failures++;
    touch(rec, now_ms);
}

void Limiter::succeeded() {
    if (const RecordHeader* rec = store_.find(Kind::Limiter, key_)) store_.remove(rec);
}

Response rate_limited(int retry_after, const char* legacy) {
    Response r = problem(429, "rate_limited", "Too many attempts",
                         "too many failed attempts from this address; wait " + std::to_string(retry_after) +
                             " seconds without retrying",
                         legacy);
    r.header("Retry-After", std::to_string(retry_after));
    return r;
}

}  // namespace dp
