#include "core/store.h"

#include <vector>

namespace dp {

size_t record_size(Kind kind) {
    switch (kind) {
        case Kind::Device: return sizeof(DeviceRecord);
        case Kind::Limiter: return sizeof(LimiterRecord);
        case Kind::Mailbox: return sizeof(MailboxRecord);
        case Kind::CodeRequest: return sizeof(CodeRequestRecord);
        case Kind::Nonce: return sizeof(NonceRecord);
        case Kind::Count: break;
    }
    return 0;
}

size_t drop_expired(Store& store, uint32_t now_s) {
    size_t dropped = 0;
    for (size_t k = 0; k < kKindCount; k++) {
        if ((Kind)k == Kind::Device) continue;  // devices live until revoked
        store.for_each((Kind)k, [&](RecordHeader* h) {
            if (h->expires_s != 0 && h->expires_s <= now_s) {
                store.remove(h);
                dropped++;
            }
        });
    }
    return dropped;
}

}  // namespace dp
