#include "core/store.h"

#include "core/encoding.h"

#include <algorithm>
#include <cstring>

namespace dp {

size_t record_size(Kind kind) {
    switch (kind) {
        case Kind::Device: return sizeof(DeviceRecord);
        case Kind::Limiter: return sizeof(LimiterRecord);
        case Kind::Mailbox: return sizeof(MailboxRecord);
        case Kind::CodeRequest: return sizeof(CodeRequestRecord);
        case Kind::Nonce: return sizeof(NonceRecord);
        case Kind::AccountCount: return sizeof(AccountCountRecord);
        case Kind::Revoked: return sizeof(RevokedRecord);
        case Kind::Approval: return sizeof(ApprovalRecord);
        case Kind::Binding: return sizeof(BindingRecord);
        case Kind::DpopJti: return sizeof(DpopJtiRecord);
        case Kind::Count:
        case Kind::LogLeaf: break;
    }
    return 0;
}

bool anonymous_kind(Kind kind) { return kind == Kind::CodeRequest || kind == Kind::Nonce || kind == Kind::DpopJti; }

bool Store::within_quota(Kind kind) {
    if (kind == Kind::Device) return true;
    const size_t total = total_bytes(), size = footprint(kind), free = free_bytes();
    if (!anonymous_kind(kind)) return free >= size + total / kDeviceReserveDivisor;
    const size_t used = raw_shared().records[(size_t)kind] * size;
    // A DPoP proof is only remembered after its signature checked out for a
    // bound token: a larger share than what any client can make.
    const size_t share = total / (kind == Kind::DpopJti ? kDpopShareDivisor : kAnonymousShareDivisor);
    return used + size <= share && free >= size + total / kAnonymousReserveDivisor;
}

std::string_view index_field(Index index, const RecordHeader* record) {
    if (index == Index::DeviceId) return std::string_view((const char*)as<DeviceRecord>(record)->id, 8);
    return std::string_view((const char*)as<CodeRequestRecord>(record)->code_hash, 32);
}

namespace {

// Checks the fields of a full-size record that say how much of another
// field is used, or pick a meaning: never trusted to stay in bounds.
std::string field_problem(const RecordHeader* h) {
    switch (h->kind) {
        case Kind::Device: {
            const DeviceRecord* d = as<DeviceRecord>(h);
            if (d->role != Role::Owner && d->role != Role::Device) return "unknown role";
            if (d->method < PairMethod::Otp || d->method > PairMethod::OAuth) return "unknown pairing method";
            if (d->name_len > sizeof(d->name)) return "name length past the name field";
            if (!valid_utf8(std::string_view(d->name, d->name_len))) return "a name that is not UTF-8";
            if (d->addr_len != 0 && d->addr_len != 4 && d->addr_len != 16) return "bad address length";
            return "";
        }
        case Kind::CodeRequest: {
            const CodeRequestRecord* c = as<CodeRequestRecord>(h);
            if ((uint8_t)c->status > (uint8_t)CodeStatus::Delivered) return "unknown code status";
            if (c->requester_len > sizeof(c->requester)) return "requester length past its field";
            if (!valid_utf8(std::string_view(c->requester, c->requester_len))) return "a requester that is not UTF-8";
            if (c->meta_len > sizeof(c->meta)) return "meta length past its field";
            if ((uint8_t)c->approver.role > (uint8_t)Role::Device) return "unknown approver role";
            if (c->h.flags && !c->oauth()) return "flags on a request that is not OAuth";
            return "";
        }
        case Kind::Approval: {
            const ApprovalRecord* a = as<ApprovalRecord>(h);
            if ((uint8_t)a->approver.role > (uint8_t)Role::Device) return "unknown approver role";
            if (a->client_len > sizeof(a->client_id)) return "client id length past its field";
            if (a->scope_len > sizeof(a->scope)) return "scope length past its field";
            return "";
        }
        default: return "";
    }
}

}  // namespace

std::string record_image_problem(Kind kind, std::string_view image, const uint8_t* key, bool allow_short) {
    if ((size_t)kind >= kKindCount) return "unknown record kind " + std::to_string((unsigned)kind);
    const size_t size = record_size(kind);
    if (image.size() > size || image.size() < sizeof(RecordHeader) || (!allow_short && image.size() != size))
        return "a record of " + std::to_string(image.size()) + " bytes where kind " + std::to_string((unsigned)kind) +
               " has " + std::to_string(size);
    union {  // the image, zero-extended and aligned for reading as a record
        RecordHeader head;
        CodeRequestRecord largest;
    } copy{};
    static_assert(sizeof(CodeRequestRecord) >= sizeof(DeviceRecord) && sizeof(CodeRequestRecord) >= sizeof(MailboxRecord) &&
                  sizeof(CodeRequestRecord) >= sizeof(LimiterRecord));
    memcpy(&copy, image.data(), image.size());
    if (copy.head.kind != kind)
        return "a record whose kind byte (" + std::to_string((unsigned)copy.head.kind) + ") is not its kind (" +
               std::to_string((unsigned)kind) + ")";
    if (key && memcmp(copy.head.key, key, 32) != 0) return "a record under another record's key";
    return field_problem(&copy.head);
}

void copy_record_image(RecordHeader* record, std::string_view image) {
    constexpr size_t kFrom = offsetof(RecordHeader, flags);  // reserved bytes and kind stay the store's
    memcpy(reinterpret_cast<char*>(record) + kFrom, image.data() + kFrom, image.size() - kFrom);
    memset(reinterpret_cast<char*>(record) + image.size(), 0, record_size(record->kind) - image.size());
}

bool same_derived_state(const RecordHeader* now, const RecordHeader* image) {
    switch (now->kind) {
        case Kind::Device:
            return as<DeviceRecord>(now)->role == as<DeviceRecord>(image)->role &&
                   index_field(Index::DeviceId, now) == index_field(Index::DeviceId, image);
        case Kind::CodeRequest: return index_field(Index::CodeHash, now) == index_field(Index::CodeHash, image);
        case Kind::Mailbox:
            return memcmp(as<MailboxRecord>(now)->account_hash, as<MailboxRecord>(image)->account_hash, 16) == 0;
        default: return true;
    }
}

size_t Store::expire_some(Kind kind, uint32_t now_s, size_t max) {
    size_t dropped = 0;
    for (const RecordHeader* h; dropped < max && (h = oldest(kind)) && !record_live(h, now_s); dropped++) {
        if (kind == Kind::Mailbox) count(Counter::MailboxesExpired);
        if (kind == Kind::CodeRequest && as<CodeRequestRecord>(h)->status == CodeStatus::Pending)
            count(Counter::CodesExpired);
        drop(h, false);  // not journalled: a replayed record past its expiry is not loaded either
    }
    return dropped;
}

namespace {

constexpr size_t kExpirePerInsert = 2;   // as limit_req: a little expiry work on every insert
constexpr size_t kExpireWhenFull = 64;   // per kind, before an insert gives up for want of room

std::string bytes_of(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

}  // namespace

RecordHeader* Store::insert(Kind kind, const Digest& key, uint32_t now_s,
                            const std::function<void(RecordHeader*)>& init) {
    if (do_find(kind, key)) return nullptr;
    if (expiring_kind(kind)) expire_some(kind, now_s, kExpirePerInsert);
    capture(kind, key.data(), nullptr);
    RecordHeader* record = within_quota(kind) ? do_insert(kind, key, init) : nullptr;
    if (!record) {
        size_t dropped = 0;
        for (size_t k = 0; k < kKindCount; k++)
            if (expiring_kind((Kind)k)) dropped += expire_some((Kind)k, now_s, kExpireWhenFull);
        if (dropped > 0 && within_quota(kind)) record = do_insert(kind, key, init);
    }
    if (!record) {
        report_full(kind);
        count(Counter::ZoneFull);
        return nullptr;
    }
    raw_shared().records[(size_t)kind]++;
    if (kind == Kind::Device) {
        raw_shared().devices++;
        raw_shared().owners += as<DeviceRecord>(record)->role == Role::Owner;
    }
    mark_written();
    return record;
}

void Store::capture(Kind kind, const uint8_t* key, const RecordHeader* before) {
    if (restoring_ || kind == Kind::AccountCount) return;  // account counters are derived
    Digest k{};
    if (key) memcpy(k.data(), key, 32);
    // Small transactions (nearly all) look through their few changes; a
    // long one keeps a set, so a million-record load is not quadratic.
    constexpr size_t kScanUpTo = 16;
    auto id_of = [](Kind kd, const Digest& key_bytes) {
        return std::string(1, (char)kd) + std::string((const char*)key_bytes.data(), 32);
    };
    if (changes_.size() < kScanUpTo) {
        for (const RecordChange& c : changes_)
            if (c.kind == kind && c.key == k) return;
    } else {
        if (captured_.empty())
            for (const RecordChange& c : changes_) captured_.insert(id_of(c.kind, c.key));
        if (captured_.count(id_of(kind, k))) return;
    }
    // Everything this change will need is allocated here, before the record
    // changes: a failure throws with the store as it was.
    const size_t size = kind == Kind::Count ? sizeof(OtpState) : record_size(kind);
    RecordChange change{kind, k, {}, {}, 0};
    if (kind == Kind::Count)
        change.before = bytes_of(&raw_shared().otp, size);
    else if (before)
        change.before = bytes_of(before, size);
    change.after.reserve(size);
    if (changes_.size() == changes_.capacity()) changes_.reserve(std::max<size_t>(8, changes_.size() * 2));  // amortised
    if (changes_.size() >= kScanUpTo) captured_.insert(id_of(kind, k));
    changes_.push_back(std::move(change));
}

std::string_view Store::current_view(const RecordChange& change) {
    if (change.kind == Kind::Count) return std::string_view((const char*)&raw_shared().otp, sizeof(OtpState));
    const RecordHeader* now = do_find(change.kind, change.key);
    return now ? std::string_view((const char*)now, record_size(change.kind)) : std::string_view();
}

void Store::commit() noexcept {
    if (written_) raw_shared().dirty++;
    written_ = false;
    std::vector<RecordChange> changes;
    changes.swap(changes_);
    captured_.clear();
    for (RecordChange& c : changes) {
        const std::string_view now = current_view(c);
        c.after.assign(now.data(), now.size());  // within the capacity capture reserved
    }
    // Changed and changed back, or rewritten as it was, or the host's own:
    // nothing to keep.
    changes.erase(std::remove_if(changes.begin(), changes.end(),
                                 [](const RecordChange& c) { return c.after == c.before || local_kind(c.kind); }),
                  changes.end());
    for (RecordChange& c : changes)
        if (c.kind != Kind::Count) c.seq = ++raw_shared().journal_seq;
    std::vector<std::string> leaves;
    leaves.swap(leaves_);
    if (!log_ || (changes.empty() && leaves.empty())) return unlock();
    try {
        for (std::string& leaf : leaves) changes.push_back(RecordChange{Kind::LogLeaf, Digest{}, std::string(), std::move(leaf)});
    } catch (...) {
        undo(changes);
        commit_failed_ = true;
        return unlock();
    }
    try {
        log_->committed(std::move(changes));
    } catch (...) {
        // The log could not take them (its allocation failed): the
        // transaction is undone, as if its write had failed.
        undo(changes);
        commit_failed_ = true;
    }
    unlock();
}

void Store::rollback() noexcept {
    leaves_.clear();
    std::vector<RecordChange> changes;
    changes.swap(changes_);
    captured_.clear();
    for (RecordChange& c : changes) {
        const std::string_view now = current_view(c);
        c.after.assign(now.data(), now.size());
    }
    undo(changes);
    written_ = false;
    unlock();
}

void Store::undo(std::vector<RecordChange>& changes) {
    for (auto it = changes.rbegin(); it != changes.rend(); ++it) restore(*it, 0);
}

void Store::restore(const RecordChange& change, uint32_t now_s) {
    if (change.kind == Kind::LogLeaf) return;  // numbered only when durable: an undone one never was
    if (current_view(change) != change.after) return;  // changed again since: that change stands
    restoring_ = true;
    mark_written();
    if (change.kind == Kind::Count) {
        memcpy(&raw_shared().otp, change.before.data(), sizeof(OtpState));
    } else if (const RecordHeader* now = do_find(change.kind, change.key)) {
        if (change.before.empty())
            drop(now, true);
        else  // the store's reserved bytes stay the store's
            memcpy(reinterpret_cast<char*>(const_cast<RecordHeader*>(now)) + 2, change.before.data() + 2,
                   change.before.size() - 2);
    } else if (!change.before.empty()) {
        RecordHeader* back = insert(change.kind, change.key, now_s, [&](RecordHeader* r) {
            memcpy(reinterpret_cast<char*>(r) + 2, change.before.data() + 2, change.before.size() - 2);
        });
        if (back && change.kind == Kind::Mailbox) count_mailbox(*this, as<MailboxRecord>(back), now_s);
    }
    restoring_ = false;
}

namespace {

Digest account_count_key(const uint8_t account_hash[16]) {
    return sha256_labeled("account-count", std::string_view((const char*)account_hash, 16));
}

const AccountCountRecord* account_counter(Store& store, const uint8_t account_hash[16]) {
    return as<AccountCountRecord>(store.find(Kind::AccountCount, account_count_key(account_hash)));
}

}  // namespace

void Store::remove(const RecordHeader* record) { drop(record, true); }

void Store::drop(const RecordHeader* record, bool journalled) {
    if (journalled) capture(record->kind, record->key, record);
    mark_written();
    RecordHeader* r = const_cast<RecordHeader*>(record);
    raw_shared().records[(size_t)r->kind]--;
    if (r->kind == Kind::Device) {
        raw_shared().devices--;
        raw_shared().owners -= as<DeviceRecord>(r)->role == Role::Owner;
    } else if (r->kind == Kind::Mailbox) {
        if (const AccountCountRecord* c = account_counter(*this, as<MailboxRecord>(r)->account_hash)) {
            if (c->live <= 1) {
                raw_shared().records[(size_t)Kind::AccountCount]--;
                do_remove(const_cast<RecordHeader*>(&c->h));
            }
            else
                const_cast<AccountCountRecord*>(c)->live--;
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

int64_t Store::swap_poll_mark(const Digest& key, int64_t now_ms) {
    uint64_t prefix;
    memcpy(&prefix, key.data(), sizeof(prefix));
    size_t count = 0;
    PollMark* marks = poll_marks(&count);
    if (!count) return 0;
    PollMark& mark = marks[prefix % count];
    prefix |= 1;  // never the empty mark
    const int64_t last = mark.key_prefix == prefix ? mark.at_ms : 0;
    mark = PollMark{prefix, now_ms};
    return last;
}

}  // namespace dp
