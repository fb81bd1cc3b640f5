#include "core/store.h"

namespace dp {

size_t record_size(Kind kind) {
    switch (kind) {
        case Kind::Device: return sizeof(DeviceRecord);
        case Kind::Limiter: return sizeof(LimiterRecord);
        case Kind::Mailbox: return sizeof(MailboxRecord);
        case Kind::CodeRequest: return sizeof(CodeRequestRecord);
        case Kind::Nonce: return sizeof(NonceRecord);
        case Kind::AccountCount: return sizeof(AccountCountRecord);
        case Kind::Count: break;
    }
    return 0;
}

bool anonymous_kind(Kind kind) { return kind == Kind::CodeRequest || kind == Kind::Nonce; }

bool Store::within_quota(Kind kind) {
    if (kind == Kind::Device) return true;
    const size_t total = total_bytes(), size = footprint(kind), free = free_bytes();
    if (!anonymous_kind(kind)) return free >= size + total / kDeviceReserveDivisor;
    const size_t used = raw_shared().records[(size_t)kind] * size;
    return used + size <= total / kAnonymousShareDivisor && free >= size + total / kAnonymousReserveDivisor;
}

size_t drop_expired(Store& store, uint32_t now_s) {
    size_t dropped = 0;
    for (size_t k = 0; k < kKindCount; k++) {
        if ((Kind)k == Kind::Device) continue;  // devices live until revoked
        store.for_each((Kind)k, [&](const RecordHeader* h) {
            if (!record_live(h, now_s)) {
                store.remove(h);
                dropped++;
            }
        });
    }
    return dropped;
}

void sweep_expired(Store& store, uint32_t now_s) {
    SharedState& state = store.raw_shared();
    if (state.last_sweep_s == now_s) return;
    state.last_sweep_s = now_s;
    drop_expired(store, now_s);
}

RecordHeader* Store::insert(Kind kind, const Digest& key, uint32_t now_s,
                            const std::function<void(RecordHeader*)>& init) {
    if (do_find(kind, key)) return nullptr;
    sweep_expired(*this, now_s);
    RecordHeader* record = within_quota(kind) ? do_insert(kind, key, init) : nullptr;
    if (!record && drop_expired(*this, now_s) > 0 && within_quota(kind)) record = do_insert(kind, key, init);
    if (!record) {
        report_full(kind);
        return nullptr;
    }
    raw_shared().records[(size_t)kind]++;
    if (kind == Kind::Device) raw_shared().devices++;
    mark_written();
    return record;
}

namespace {

Digest account_count_key(const uint8_t account_hash[16]) {
    return sha256_labeled("account-count", std::string_view((const char*)account_hash, 16));
}

const AccountCountRecord* account_counter(Store& store, const uint8_t account_hash[16]) {
    return as<AccountCountRecord>(store.find(Kind::AccountCount, account_count_key(account_hash)));
}

}  // namespace

void Store::remove(const RecordHeader* record) {
    RecordHeader* r = update(record);
    raw_shared().records[(size_t)r->kind]--;
    if (r->kind == Kind::Device) {
        raw_shared().devices--;
    } else if (r->kind == Kind::Mailbox) {
        if (const AccountCountRecord* c = account_counter(*this, as<MailboxRecord>(r)->account_hash)) {
            if (c->live <= 1) {
                raw_shared().records[(size_t)Kind::AccountCount]--;
                do_remove(update(&c->h));
            }
            else
                update_record(*this, c)->live--;
        }
    }
    do_remove(r);
}

uint32_t live_mailboxes(Store& store, const uint8_t account_hash[16]) {
    const AccountCountRecord* c = account_counter(store, account_hash);
    return c ? c->live : 0;
}

bool count_mailbox(Store& store, const MailboxRecord* mailbox, uint32_t now_s) {
    const AccountCountRecord* c = account_counter(store, mailbox->account_hash);
    AccountCountRecord* counter =
        c ? update_record(store, c)
          : insert_record<AccountCountRecord>(store, Kind::AccountCount, account_count_key(mailbox->account_hash),
                                              now_s, [](AccountCountRecord*) {});
    if (!counter) return false;
    counter->live++;
    return true;
}

}  // namespace dp
