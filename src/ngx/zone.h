// The shared-memory zone (zone.cpp): its layout, the configuration's view of
// it, and the store the core reads and writes it through.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/digest_table.h"
#include "core/store.h"
#include "ngx/conf.h"
#include "ngx/identity.h"
#include "ngx/pairing_log.h"

namespace dpngx {

constexpr size_t kIndexCount = 2;  // dp::Index

// Shared memory: one rbtree per record kind, one per index, an expiry queue
// per kind (records of expiring kinds carry its link before their tree node),
// and the zone-wide state.
struct SharedZone {
    ngx_rbtree_t trees[dp::kKindCount];
    ngx_rbtree_node_t sentinels[dp::kKindCount];
    ngx_rbtree_t indexes[kIndexCount];
    ngx_rbtree_node_t index_sentinels[kIndexCount];
    ngx_queue_t expiry[dp::kKindCount];
    dp::DigestTableState by_digest;  // the gate's lookups: devices and revoked tokens
    // OAuth poll pacing (dp::PollMark), after the digest table in the same
    // allocation: an offset from this header, and how many.
    size_t poll_marks_offset;
    size_t poll_marks_count;
    dp::SharedState state;
    ShmLog log;  // the pairing log's tree (log=on)
    ShmIdentity identity;  // the identity once rotated
    // Fleet mode with sentinels: when the follower's link was last sent to
    // SharedState::fleet_master (ngx_current_msec), for the writers' conflicts.
    ngx_msec_t fleet_master_named_ms;
    // The readers-writer protocol beside the slab mutex (see ZoneStore).
    ngx_atomic_t writer;                      // pid of the process writing, 0: none
    ngx_atomic_t reader_slots;                // process slots that have ever read
    ngx_atomic_t readers[NGX_MAX_PROCESSES];  // per process slot: pid while it reads, else 0
};
static_assert(dp::kShmSafe<SharedZone>);

// shm_zone->data: one per configuration cycle, in the cycle's pool.
struct ZoneCtx {
    SharedZone* sh;
    ngx_slab_pool_t* shpool;
    ngx_shm_zone_t* shm_zone;
    ngx_str_t state_path;  // empty: no persistence
    ngx_str_t banner_path;  // where a new OTP's banner is written for the operator; empty: nowhere
    size_t compact_after;   // compact=SIZE: journal bytes that start a new snapshot
    uint32_t state_epoch;   // SharedState::state_epoch when this configuration took the zone
    bool moved_state;       // this configuration moved state= (undone if the reload fails)
    MainConf* mcf;
    ngx_cycle_t* cycle;      // the configuration cycle that made this ctx (its workers' user)
    dp::ChangeLog* journal;  // this worker's writer: journal or fleet (null: neither, or the master)
    struct FleetConf* fleet; // redis=: Redis holds the state, this zone is a replica (null: standalone)
    SharedZone* took_over;   // a resize copied this zone from it: retired unless this cycle fails
    bool cycle_ok;           // init_module ran: the cycle that holds this zone is the running one
    bool log_on;             // log=on: the pairing log (needs state=)
};

class ZoneStore final : public dp::Store {
   public:
    explicit ZoneStore(ZoneCtx* zone) : zone_(zone) { attach(zone->journal); }
    void for_each(dp::Kind kind, const std::function<void(const dp::RecordHeader*)>& visit) override;
    size_t visit_after(dp::Kind kind, const dp::Digest* after, size_t limit,
                       const std::function<void(const dp::RecordHeader*)>& visit) override;
    const dp::RecordHeader* find_by(dp::Index index, std::string_view field) override;
    size_t visit_index_after(dp::Index index, std::string_view after, size_t limit,
                             const std::function<void(const dp::RecordHeader*)>& visit) override;
    const dp::RecordHeader* oldest(dp::Kind kind) override;
    // Loading a zone: records go in without their index entries, which
    // build_indexes() then inserts in index order (a million random-order
    // inserts into a second tree cost more than the rest of the load).
    void defer_indexes() { defer_indexes_ = true; }
    bool build_indexes();
    size_t total_bytes() override { return zone_->shm_zone->shm.size; }
    size_t free_bytes() override { return zone_->shpool->pfree * ngx_pagesize; }

   protected:
    // Writers take the slab mutex (a worker killed while holding it does not
    // wedge the zone: the master releases it when it reaps the worker), then
    // raise `writer` and wait until no process slot is reading. A reader
    // marks its slot and reads unless a writer is up: readers never wait for
    // each other. A dead reader's or writer's pid is cleared by whoever waits on it.
    void lock() override;
    void unlock() override;
    void read_lock() override;
    void read_unlock() override;
    dp::RecordHeader* do_find(dp::Kind kind, const dp::Digest& key) override;
    dp::RecordHeader* do_insert(dp::Kind kind, const dp::Digest& key,
                                const std::function<void(dp::RecordHeader*)>& init) override;
    void do_remove(dp::RecordHeader* record) override;
    void requeue(dp::RecordHeader* record) override;
    dp::SharedState& raw_shared() override { return zone_->sh->state; }
    dp::PollMark* poll_marks(size_t* count) override;
    void report_full(dp::Kind kind) override;
    size_t footprint(dp::Kind kind) override;
    size_t counter_slot() override { return (size_t)ngx_process_slot; }
    bool logs_events() override { return zone_->log_on; }
    dp::TlogStorage* log_tree() override { return zone_->log_on ? &tree_ : nullptr; }

   private:
    dp::DigestTable by_digest();  // the zone's (kind, key) table: one probe per lookup
    ZoneCtx* zone_;
    ZoneLogTree tree_{zone_};
    bool defer_indexes_ = false;
};

ngx_int_t init_zone(ngx_shm_zone_t* shm_zone, void* data) noexcept;
ZoneCtx* zone_of(ngx_http_request_t* r);
// A resize retired the zone this worker uses: no more writes.
bool zone_retired(ZoneCtx* zone);
// The zone's name as the journal's owner (and on fleet feed entries).
uint64_t zone_id(ZoneCtx* zone);
// The zone's count of committed changes (one word, read without the lock).
inline uint64_t zone_changes(ZoneCtx* zone) {
    return zone && zone->sh ? ((volatile dp::SharedState&)zone->sh->state).dirty : 0;
}

}  // namespace dpngx
