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
        case Kind::AccountCount: return sizeof(AccountCountRecord);
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
                remove_record(store, h);
                dropped++;
            }
        });
    }
    return dropped;
}

void sweep_expired(Store& store, uint32_t now_s) {
    if (store.shared().last_sweep_s == now_s) return;
    store.shared().last_sweep_s = now_s;
    drop_expired(store, now_s);
}

namespace {

Digest account_count_key(const uint8_t account_hash[16]) {
    return sha256_labeled("account-count", std::string_view((const char*)account_hash, 16));
}

AccountCountRecord* account_counter(Store& store, const uint8_t account_hash[16]) {
    return as<AccountCountRecord>(store.find(Kind::AccountCount, account_count_key(account_hash)));
}

}  // namespace

uint32_t live_mailboxes(Store& store, const uint8_t account_hash[16]) {
    AccountCountRecord* c = account_counter(store, account_hash);
    return c ? c->live : 0;
}

bool count_mailbox(Store& store, const MailboxRecord* mailbox, uint32_t now_s) {
    AccountCountRecord* c = account_counter(store, mailbox->account_hash);
    if (!c)
        c = insert_record<AccountCountRecord>(store, Kind::AccountCount, account_count_key(mailbox->account_hash),
                                              now_s, [](AccountCountRecord*) {});
    if (!c) return false;
    c->live++;
    return true;
}

void remove_record(Store& store, RecordHeader* record) {
    if (record->kind == Kind::Device) {
        store.shared().devices--;
    } else if (record->kind == Kind::Mailbox) {
        AccountCountRecord* c = account_counter(store, as<MailboxRecord>(record)->account_hash);
        if (c && --c->live == 0) store.remove(&c->h);
    }
    store.remove(record);
}

}  // namespace dp
