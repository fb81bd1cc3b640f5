// The records of the pairing state and the store that holds them. Records
// are plain structs so the nginx glue can keep them in a shared-memory slab
// (one rbtree per kind); unit tests use MemoryStore.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <unordered_set>
#include <vector>

#include "core/crypto.h"
#include "core/tlog.h"

namespace dp {

enum class Kind : uint8_t {
    Device, Limiter, Mailbox, CodeRequest, Nonce, AccountCount, Revoked, Approval, Binding, DpopJti, Count,
    // Not a record: a pairing log leaf's template (pairing_log.h) that a
    // transaction carries to its change log with its record changes.
    LogLeaf = 0xF0
};
constexpr size_t kKindCount = (size_t)Kind::Count;

enum class Role : uint8_t { Owner = 1, Device = 2 };
enum class PairMethod : uint8_t { Otp = 1, Code = 2, Loaded = 3, OAuth = 4 };

struct RecordHeader {
    uint8_t tree_reserved[2];  // the store's own (rbtree colour): never touched by the core
    Kind kind;
    uint8_t flags;
    uint32_t created_s;
    uint32_t expires_s;        // 0: never expires
    uint8_t key[32];           // SHA-256 of the labelled identifier or secret
};

// A paired device, found by the SHA-256 of its bearer token. Its
// h.expires_s is the token's end of life (issue + device_pairing_token_lifetime
// then in force; 0: none): enforced by the gate, and a device past it is not
// loaded from the state file. Devices never leave through the expiry queues.
struct DeviceRecord {
    RecordHeader h;
    uint32_t last_seen_s;
    Role role;
    PairMethod method;
    uint8_t name_len;
    uint8_t addr_len;          // 4 or 16, 0 when unknown
    uint8_t id[8];             // shown as "dev_" + hex
    uint8_t addr[16];
    char name[20];
};

// A device record's flags.
enum DeviceFlags : uint8_t { kDeviceDpopBound = 1 };  // its BindingRecord holds the key its token is bound to

// Failed-attempt counter of one client address for one guessable secret.
struct LimiterRecord {
    RecordHeader h;
    uint32_t failures;
    int64_t last_failure_ms;
};

enum MailboxFlags : uint8_t { kMailboxReady = 1 };

// A relay mailbox, found by its pairing id.
struct MailboxRecord {
    RecordHeader h;
    uint8_t write_token_hash[32];
    uint8_t account_hash[16];
    uint8_t session_pub[32];
    uint8_t ecdh_pub[65];
};

// An OAuth device authorization (RFC 8628) is a code request found by the
// keyed hash of its device code, whose requester is the client_id and meta
// the requested scope (plain text). The flags' upper 7 bits count the
// slow_down answers it got: each adds 5 s to the interval for good.
enum CodeRequestFlags : uint8_t { kCodeRequestOAuth = 1, kCodeRequestSlowDown = 2 };
constexpr uint32_t kMaxSlowDowns = 127;

enum class CodeStatus : uint8_t { Pending = 0, Approved = 1, Rejected = 2, Delivered = 3 };

// Who approved a pairing: the operator token, or a device (its id and role).
struct Approver {
    uint8_t device_id[8];
    Role role;                 // 0: the operator token
    uint8_t pad[3];
};

// A human pairing-code request, found by its request id.
struct CodeRequestRecord {
    RecordHeader h;
    uint8_t code_hash[32];
    CodeStatus status;
    uint8_t requester_len;
    uint16_t meta_len;
    uint32_t code_expires_s;
    // OAuth: the zone's wrong code entries when it was made; it dies
    // kUserCodeDiesAfter later. In what was padding (0 in older images).
    uint32_t failures_base;
    int64_t approved_at_ms;
    char requester[64];
    char meta[256];            // compact JSON of the request's "meta"
    union {
        // Until delivery: who asks, for the owner's confirmation (RFC 8628
        // 5.4), IPv4 as IPv4-mapped IPv6; all zero: unknown (records written
        // before it). Sharing these bytes keeps the record in its 512-byte chunk.
        uint8_t requester_addr[16];
        // From delivery: the token's random bytes XOR a key derived from the
        // request id, which only the requester holds: a retried status call
        // within the grace gets the same token; the zone and the state file
        // hold nothing usable.
        uint8_t sealed_token[32];
    };
    uint32_t delivered_s;
    Approver approver;         // who approved it (kept for the device it becomes)
    // The record fills its 512-byte chunk: what an OAuth request adds is its
    // flags (see CodeRequestFlags) and failures_base.
    bool oauth() const { return h.flags & kCodeRequestOAuth; }
    uint32_t slow_downs() const { return h.flags >> 1; }
};

// An attestation nonce seen by verify, kept for its age window.
struct NonceRecord {
    RecordHeader h;
};

enum RevokedFlags : uint8_t { kRevokedByOwner = 1, kRevokedExpired = 2, kRevokedRotated = 4 };

// What is left of a device token that was revoked or expired, found by the
// same key for a while, so the gate can say why it refuses the token.
struct RevokedRecord {
    RecordHeader h;
    // A rotated token: when, and the new token's random bytes XOR a key
    // derived from the old token, which only the device holds. A rotation
    // retried within the grace (its answer lost) gets the same new token;
    // the zone and the state file hold nothing usable. Zero otherwise.
    uint32_t rotated_s;
    uint8_t sealed_token[32];
};
constexpr uint32_t kRevokedKeptS = 7 * 86400;

constexpr size_t kMaxClientIdLen = 32;  // device_pairing_oauth_client: an id nginx -t accepts
constexpr size_t kMaxScopeLen = 128;    // an OAuth scope the device authorization endpoint accepts

// Who approved a device that paired by code, found by the device's id
// (key_of("approval", id): rotation keeps it); it leaves with the device.
// A record of its own: the device's fits a 128-byte slab chunk exactly.
struct ApprovalRecord {
    RecordHeader h;
    Approver approver;
    // A device paired by the OAuth device grant: its client and the scope
    // granted ($device_pairing_scope). Empty otherwise.
    uint8_t client_len;
    uint8_t scope_len;
    char client_id[kMaxClientIdLen];
    char scope[kMaxScopeLen];
};

// A DPoP-bound device's key (RFC 9449): the RFC 7638 thumbprint (SHA-256)
// of the public key its token is bound to, found by the device's id
// (binding_key: a rotation keeps it, or binds anew); it leaves with the device.
struct BindingRecord {
    RecordHeader h;
    uint8_t jkt[32];
};

// A DPoP proof this host accepted, by its key's thumbprint and jti, kept
// for the proof's window: a replay is refused. Local to the host: never
// journalled, snapshotted or sent to Redis (see local_kind).
struct DpopJtiRecord {
    RecordHeader h;
};

// Live mailboxes of one account, so the per-account cap costs one lookup.
// Derived state: rebuilt from the mailboxes when a state file is loaded.
struct AccountCountRecord {
    RecordHeader h;
    uint32_t live;
};

// Zone-wide state that is not a keyed record.
struct OtpState {
    uint8_t hash[32];
    int64_t expires_ms;        // 0: no OTP
    uint32_t failures;         // failed attempts against this OTP, any address
    uint8_t burned;
    uint8_t pad[3];
};

// Counters for the metrics: events since the zone was made (they survive
// reloads, not restarts). Each process adds to its own slot's line, so
// workers do not contend on one cache line; a scrape sums the slots.
enum class Counter : uint8_t {
    PairedOtp, PairedCode, PairedOAuth, OtpFailures, Lockouts, OtpBurns,
    CodesRequested, CodesApproved, CodesRejected, CodesExpired,
    MailboxesMinted, MailboxesCompleted, MailboxesCancelled, MailboxesExpired,
    GateAccepted, GateMissing, GateInvalid, GateRevoked, GateExpired,
    Revocations, Rotations, Renames, ZoneFull, DeviceLimit,
    FleetRebuilds,  // fleet mode: the replica rebuilt from Redis (a reconnect, a gap, a reply it could not read)
    FleetMasterChanges,  // fleet mode with sentinels: the master they name changed
    // DPoP checks: accepted, then one per refusal (in DpopFailure's order).
    DpopAccepted, DpopMissing, DpopMultiple, DpopMalformed, DpopHeader, DpopSignature, DpopRequest, DpopTime,
    DpopTokenHash, DpopKey, DpopReplay, DpopNonce, DpopFull, DpopUnbound,
    Count
};
constexpr size_t kCounterCount = (size_t)Counter::Count;
constexpr size_t kCounterSlots = 8;  // workers beyond 8 share lines (atomics keep counts right)
struct alignas(64) CounterSlot {
    uint64_t value[kCounterCount];
};

// When an OAuth device code was last polled on this host, for slow_down:
// a direct-mapped table sized with the zone (a collision forgets a mark,
// which only lets a poll through early), never journalled or replicated
// (pacing is per host).
struct PollMark {
    uint64_t key_prefix;  // the first 8 bytes of the request's key; 0: empty
    int64_t at_ms;
};

struct SharedState {
    OtpState otp;
    uint64_t devices;          // live device records
    uint64_t records[kKindCount];  // live records of each kind (for quotas and stats)
    uint64_t dirty;            // bumped on every committed change
    uint64_t journal_seq;      // sequence number of the last journalled record change
    uint64_t generation;       // bumped when a zone takes over another (resize); in the state file
    uint64_t journal_bytes;    // appended to the journal since the last compaction
    uint32_t compactor_pid;    // the worker compacting the journal, 0: none
    uint32_t retired;          // a resize copied this zone into a new one: no more writes here
    uint64_t owners;           // live device records of the owner role
    // Fleet mode (redis=): the replica's place in the fleet's change feed.
    uint64_t fleet_applied_seq;    // the last feed entry applied here
    int64_t fleet_out_of_step_ms;  // since when the feed has not been read (0: in step)
    uint8_t fleet_origin[8];       // this host's name on the feed entries it makes
    uint32_t fleet_resync;         // a commit's outcome is unknown: the follower rebuilds the replica
    uint32_t fleet_link_up;        // worker 0's feed link is up (to the master, with sentinels)
    char fleet_master[64];         // with sentinels: the master they named last ("host:port"), for its changes
    char fleet_writes_to[64];      // with sentinels: the master a writer was last sent to, and when (its
    uint64_t fleet_writes_to_ms;   // ngx_current_msec): a follower still on another one asks again
    // A reload moved (or added) state=: the zone's whole state was written at
    // the new path, covering changes up to moved_at_seq. Workers configured
    // for an older path (their ZoneCtx's epoch) may no longer journal there.
    uint32_t state_epoch;
    uint64_t moved_at_seq;
    // A binary upgrade: a newer generation registered its zone on state=;
    // this zone's appends are refused (1). Or this zone is the newer one and
    // the older generation's master still runs (its pid): no compaction yet.
    uint32_t superseded;
    uint32_t predecessor_pid;
    CounterSlot counters[kCounterSlots];
};

template <typename T>
constexpr bool kShmSafe = std::is_standard_layout_v<T> && std::is_trivially_copyable_v<T>;
static_assert(kShmSafe<DeviceRecord> && kShmSafe<LimiterRecord> && kShmSafe<MailboxRecord> &&
              kShmSafe<CodeRequestRecord> && kShmSafe<NonceRecord> && kShmSafe<AccountCountRecord> &&
              kShmSafe<RevokedRecord> && kShmSafe<ApprovalRecord> && kShmSafe<BindingRecord> &&
              kShmSafe<DpopJtiRecord> && kShmSafe<SharedState>);
static_assert(offsetof(DeviceRecord, h) == 0 && offsetof(MailboxRecord, h) == 0);

size_t record_size(Kind kind);

// Record kinds an anonymous client can make (code requests, attestation
// nonces) may each hold at most this share of the zone, and never the room
// kept for the rest: paired devices, limiters and mailboxes always find room.
constexpr size_t kAnonymousShareDivisor = 8;    // each anonymous kind: 1/8 of the zone
constexpr size_t kDpopShareDivisor = 2;         // the DPoP replay cache: 1/2 of the zone
constexpr size_t kAnonymousReserveDivisor = 4;  // they leave 1/4 of the zone free
constexpr size_t kDeviceReserveDivisor = 16;    // limiters and mailboxes leave 1/16 free for devices
bool anonymous_kind(Kind kind);
// Kinds a host keeps for itself: the DPoP replay cache. Their changes reach
// no change log (journal, Redis) and no snapshot.
inline bool local_kind(Kind kind) { return kind == Kind::DpopJti; }

// Lookups by a record's field other than its key, kept by the store.
enum class Index : uint8_t { DeviceId, CodeHash };
// The field an index finds a record by (device id: 8 bytes; code hash: 32).
std::string_view index_field(Index index, const RecordHeader* record);

// One changed record of a write transaction, as the journal and an undo need
// it: the record's bytes before the transaction and after (empty: absent).
// The OTP, never journalled but undone with the rest, is a change of kind
// Kind::Count holding OtpState bytes.
struct RecordChange {
    Kind kind;
    Digest key;
    std::string before;
    std::string after;
    uint64_t seq = 0;  // from SharedState::journal_seq, assigned at commit
};

// Where committed changes go (the journal writer); called with the lock held,
// so it only takes the changes. A transaction's pairing log leaves come last,
// as changes of kind LogLeaf (`after`: the leaf's template); a transaction
// may hold leaves alone (an identity rotation changes no record).
class ChangeLog {
   public:
    virtual ~ChangeLog() = default;
    virtual void committed(std::vector<RecordChange>&& changes) = 0;
};

// Access to the records. Every call happens inside a StoreLock; the nginx
// implementation holds the zone's ngx_shmtx for that span. Reads hand out
// const records; a change goes through insert(), remove(), update() or
// otp_for_update(), which mark the state dirty, so nothing reaches the
// state file by a call site remembering to say so.
class Store {
   public:
    virtual ~Store() = default;

    const RecordHeader* find(Kind kind, const Digest& key) { return do_find(kind, key); }
    // A zeroed record of record_size(kind) with kind and key set, filled by
    // init, and only then made visible to find(): a worker killed inside init
    // leaves no half-built record. A few expired records of the kind are
    // dropped first, more of every kind when there is no room. Null when the
    // key is already present or there is no room even then.
    RecordHeader* insert(Kind kind, const Digest& key, uint32_t now_s,
                         const std::function<void(RecordHeader*)>& init);
    // Removes a record and keeps the counters that depend on it right (the
    // device count, an account's live mailboxes): the only way records go.
    void remove(const RecordHeader* record);
    // The writable form of a record found by find().
    RecordHeader* update(const RecordHeader* record) {
        mark_written();
        capture(record->kind, record->key, record);
        RecordHeader* writable = const_cast<RecordHeader*>(record);
        requeue(writable);
        return writable;
    }
    const SharedState& shared() { return raw_shared(); }
    // Counts an event for the metrics; needs no lock (an atomic add to this
    // process's slot).
    void count(Counter c, uint64_t n = 1) {
        __atomic_fetch_add(&counter_slots()[counter_slot() % kCounterSlots].value[(size_t)c], n, __ATOMIC_RELAXED);
    }
    // An event's count over every slot.
    uint64_t counted(Counter c) {
        uint64_t sum = 0;
        for (size_t s = 0; s < kCounterSlots; s++)
            sum += __atomic_load_n(&counter_slots()[s].value[(size_t)c], __ATOMIC_RELAXED);
        return sum;
    }
    // A pairing log leaf (its template) for this transaction's commit: it
    // goes with the changes, or nowhere if the transaction is rolled back.
    void append_leaf(std::string leaf_template) { leaves_.push_back(std::move(leaf_template)); }
    // Whether this store logs events (the zone's log=on), and its tree, read
    // under a StoreReadLock (null: no log).
    virtual bool logs_events() { return false; }
    virtual TlogStorage* log_tree() { return nullptr; }
    OtpState& otp_for_update() {
        mark_written();
        capture(Kind::Count, nullptr, nullptr);
        return raw_shared().otp;
    }
    // Visits every record of a kind; the visitor may remove the one it is
    // given. A full walk: for loading, tests and tools, never a request path.
    virtual void for_each(Kind kind, const std::function<void(const RecordHeader*)>& visit) = 0;
    // Up to limit records of a kind that follow `after` (null: from the
    // start) in the store's own stable order; returns how many were visited.
    virtual size_t visit_after(Kind kind, const Digest* after, size_t limit,
                               const std::function<void(const RecordHeader*)>& visit) = 0;
    // A record by an index; the indexed field of an index's kind is set by
    // insert's init and never changes.
    virtual const RecordHeader* find_by(Index index, std::string_view field) = 0;
    // Up to limit records in the order of an index's field, after the field
    // value `after` (empty: from the start); returns how many were visited.
    virtual size_t visit_index_after(Index index, std::string_view after, size_t limit,
                                     const std::function<void(const RecordHeader*)>& visit) = 0;
    // The expiring record of a kind least recently inserted or updated (the
    // head of the kind's expiry queue), or null.
    virtual const RecordHeader* oldest(Kind kind) = 0;
    // Drops up to max expired records from the head of a kind's expiry queue:
    // bounded work that any insert can afford. Returns how many.
    size_t expire_some(Kind kind, uint32_t now_s, size_t max);
    // The journal writer for the changes committed through this store (null: none).
    void attach(ChangeLog* log) { log_ = log; }
    // Undo: puts records back as a change's `before` without journalling
    // (the journal never held the change). Caller holds the lock.
    void restore(const RecordChange& change, uint32_t now_s);
    // Bytes of the store in all, and of them still free (the zone's slab counters).
    virtual size_t total_bytes() = 0;
    virtual size_t free_bytes() = 0;

    // StoreReadLock's: lookups (find, shared) that do not
    // exclude each other, only writers.
    void begin_read() { read_lock(); }
    void end_read() { read_unlock(); }
    // StoreLock's: the lock itself, and the dirty mark and the journal's
    // record images made when it ends. A transaction that ends by an
    // exception is rolled back: every record it changed is put back and
    // nothing reaches the journal. Neither throws.
    void begin() {
        lock();
        written_ = false;
    }
    void commit() noexcept;
    void rollback() noexcept;
    // The change log refused the last commit (an allocation failed): the
    // transaction was undone, so whatever answer was built on it must not be
    // sent. Reading it clears it.
    bool take_commit_failure() { return std::exchange(commit_failed_, false); }
    // For the state loader and the persistence writer, which own the counters.
    SharedState& shared_for_persistence() { return raw_shared(); }
    // The time the request with this key was last polled here (0: not
    // known), which becomes now. Caller holds the lock.
    int64_t swap_poll_mark(const Digest& key, int64_t now_ms);

   protected:
    virtual void lock() = 0;
    virtual void unlock() = 0;
    // Shared with other readers, exclusive of lock(); by default just lock().
    virtual void read_lock() { lock(); }
    virtual void read_unlock() { unlock(); }
    virtual RecordHeader* do_find(Kind kind, const Digest& key) = 0;
    // Allocates, initialises and links a record; null when there is no room.
    virtual RecordHeader* do_insert(Kind kind, const Digest& key,
                                    const std::function<void(RecordHeader*)>& init) = 0;
    virtual void do_remove(RecordHeader* record) = 0;
    // A record changed: it moves to the tail of its kind's expiry queue.
    virtual void requeue(RecordHeader*) {}
    virtual SharedState& raw_shared() = 0;
    virtual void report_full(Kind) {}
    // This process's slot, and the slots (outside any lock: atomics).
    virtual size_t counter_slot() { return 0; }
    virtual CounterSlot* counter_slots() { return raw_shared().counters; }
    // The poll marks' table (swap_poll_mark) and its size; none: no pacing.
    virtual PollMark* poll_marks(size_t* count) = 0;
    // Bytes one record of a kind really takes (the zone: its slab chunk).
    virtual size_t footprint(Kind kind) { return record_size(kind); }

   private:
    bool within_quota(Kind kind);
    void mark_written() { written_ = true; }
    // Keeps the record's bytes (kind Count: the OTP's) as they were before
    // this transaction's first change to it, and room for the bytes after:
    // the commit allocates nothing while the lock is held.
    void capture(Kind kind, const uint8_t* key, const RecordHeader* before);
    // A change's record as it is now (empty: absent), a view into the store.
    std::string_view current_view(const RecordChange& change);
    // Puts a transaction's changes back, newest first; caller holds the lock.
    void undo(std::vector<RecordChange>& changes);
    void drop(const RecordHeader* record, bool journalled);
    bool written_ = false;
    bool commit_failed_ = false;
    ChangeLog* log_ = nullptr;
    bool restoring_ = false;
    std::vector<RecordChange> changes_;
    std::vector<std::string> leaves_;
    // Which (kind, key) changes_ holds, once it is long (a state load, a
    // resize's copy, a fleet rebuild's batch): a capture stays O(1).
    std::unordered_set<std::string> captured_;
};

// A read: find() and shared() only, beside other reads (the gate's
// token lookup in every worker at once).
class StoreReadLock {
   public:
    explicit StoreReadLock(Store& s) : store_(s) { store_.begin_read(); }
    ~StoreReadLock() { store_.end_read(); }
    StoreReadLock(const StoreReadLock&) = delete;
    StoreReadLock& operator=(const StoreReadLock&) = delete;

   private:
    Store& store_;
};

// One write transaction: the store's lock, and the dirty mark when it ends.
class StoreLock {
   public:
    explicit StoreLock(Store& s) : store_(s), exceptions_(std::uncaught_exceptions()) { store_.begin(); }
    ~StoreLock() {
        if (std::uncaught_exceptions() > exceptions_)
            store_.rollback();
        else
            store_.commit();
    }
    StoreLock(const StoreLock&) = delete;
    StoreLock& operator=(const StoreLock&) = delete;

   private:
    Store& store_;
    int exceptions_;  // in flight when the transaction began: more at its end means it is unwinding
};

// Records of every kind but devices expire; expiry is bounded work from the
// head of each kind's queue (expire_some), never a walk.
inline bool expiring_kind(Kind kind) {
    return kind != Kind::Device && kind != Kind::AccountCount && kind != Kind::Approval && kind != Kind::Binding;
}

// True when a record's new bytes (image, of the same kind and key) leave
// what the store derives from it as it is (the owner count, the indexes, an
// account's live mailboxes): they can be written over it in place.
bool same_derived_state(const RecordHeader* now, const RecordHeader* image);

// Live mailboxes of the account that owns account_hash.
uint32_t live_mailboxes(Store& store, const uint8_t account_hash[16]);
// Counts a new mailbox for its account; false when the zone has no room.
bool count_mailbox(Store& store, const MailboxRecord* mailbox, uint32_t now_s);

// Records read back from outside the zone (the state file, the journal,
// Redis) are data, not trusted structs: a checksum proves no intent. Empty
// when image may enter the store as a record of kind with the given key
// (null: any), otherwise why not. An image shorter than the record (written
// before its kind grew trailing fields) passes when allow_short; it loads
// zero-extended.
std::string record_image_problem(Kind kind, std::string_view image, const uint8_t* key = nullptr,
                                 bool allow_short = false);
// Fills a record the store made (its kind and key already set) from an image
// that passed record_image_problem: the kind byte stays the store's.
void copy_record_image(RecordHeader* record, std::string_view image);

template <typename T>
const T* as(const RecordHeader* h) { return reinterpret_cast<const T*>(h); }
template <typename T>
T* as(RecordHeader* h) { return reinterpret_cast<T*>(h); }

// Typed Store::insert: fill(T*) builds the record before it becomes visible.
template <typename T, typename Fill>
T* insert_record(Store& store, Kind kind, const Digest& key, uint32_t now_s, Fill&& fill) {
    return as<T>(store.insert(kind, key, now_s, [&](RecordHeader* h) {
        h->created_s = now_s;
        fill(as<T>(h));
    }));
}

// The writable form of a typed record found by find().
template <typename T>
T* update_record(Store& store, const T* record) {
    return as<T>(store.update(&record->h));
}

inline bool record_live(const RecordHeader* h, uint32_t now_s) { return h->expires_s == 0 || h->expires_s > now_s; }

}  // namespace dp
