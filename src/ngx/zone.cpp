// device_pairing_zone: records in a slab pool, one rbtree per kind, modelled
// on limit_req. A node is an ngx_rbtree_node_t whose tail, from the colour
// byte on, is the core's record (RecordHeader reserves those two bytes).
#include <malloc.h>

#include <algorithm>

#include <vector>

#include "core/dpop.h"
#include "core/otp.h"
#include "core/persist/disk.h"
#include "core/files.h"
#include "core/persist/journal.h"
#include "core/persist/snapshot.h"
#include "ngx/banner.h"
#include "ngx/persist.h"
#include "ngx/zone.h"

namespace dpngx {

namespace {

constexpr size_t kRecordOffset = offsetof(ngx_rbtree_node_t, color);
// Records of expiring kinds start with their expiry queue link.
constexpr size_t kQueueLink = sizeof(ngx_queue_t);
// The slab hands out power-of-two chunks: a field added to the two most
// numerous kinds must not double their chunk.
static_assert(kRecordOffset + sizeof(dp::DeviceRecord) <= 128, "a device fits a 128-byte chunk");
static_assert(kQueueLink + kRecordOffset + sizeof(dp::CodeRequestRecord) <= 512, "a code request fits 512 bytes");
static_assert(kRecordOffset + sizeof(dp::ApprovalRecord) <= 256, "an approval (an OAuth grant) fits 256 bytes");

dp::RecordHeader* record_of(ngx_rbtree_node_t* node) {
    return reinterpret_cast<dp::RecordHeader*>(reinterpret_cast<u_char*>(node) + kRecordOffset);
}

ngx_rbtree_node_t* node_of(const dp::RecordHeader* record) {
    return reinterpret_cast<ngx_rbtree_node_t*>(reinterpret_cast<u_char*>(const_cast<dp::RecordHeader*>(record)) -
                                                kRecordOffset);
}

ngx_queue_t* link_of(const dp::RecordHeader* record) {
    return reinterpret_cast<ngx_queue_t*>(reinterpret_cast<u_char*>(node_of(record)) - kQueueLink);
}

dp::RecordHeader* record_of_link(ngx_queue_t* link) {
    return record_of(reinterpret_cast<ngx_rbtree_node_t*>(reinterpret_cast<u_char*>(link) + kQueueLink));
}

size_t link_size(dp::Kind kind) { return dp::expiring_kind(kind) ? kQueueLink : 0; }

// The DPoP replay cache is found through the digest table, leaves by its
// expiry queue and is never listed in key order: it keeps no tree. (A proof
// per request walked and rebalanced a tree of the window's proofs: ~20 pages
// touched, the gate's largest cost after the signature.)
bool kept_in_order(dp::Kind kind) { return kind != dp::Kind::DpopJti; }

ngx_rbtree_key_t tree_key(const uint8_t* digest) {
    ngx_rbtree_key_t k;
    ngx_memcpy(&k, digest, sizeof(k));
    return k;
}

// Index trees order by the field's first 8 bytes read big-endian, then by the
// whole field: byte order, so that a page of device ids follows the ids.
ngx_rbtree_key_t index_key(std::string_view field) {
    uint8_t first[8] = {};
    ngx_memcpy(first, field.data(), std::min<size_t>(8, field.size()));
    ngx_rbtree_key_t k = 0;
    for (uint8_t b : first) k = (k << 8) | b;
    return k;
}

// An index entry: its own small node pointing at the record (the zone is
// mapped at one address in every process).
struct IndexNode {
    ngx_rbtree_node_t node;
    dp::RecordHeader* record;
};

dp::Index index_of(dp::Kind kind, bool* has) {
    *has = kind == dp::Kind::Device || kind == dp::Kind::CodeRequest;
    return kind == dp::Kind::Device ? dp::Index::DeviceId : dp::Index::CodeHash;
}

std::string_view field_of(dp::Index index, ngx_rbtree_node_t* node) {
    return dp::index_field(index, reinterpret_cast<IndexNode*>(node)->record);
}

// (tree key, rest) of a node against a probe: <0, 0, >0.
int compare_node(ngx_rbtree_node_t* node, ngx_rbtree_key_t key, const std::function<int(ngx_rbtree_node_t*)>& rest) {
    if (node->key != key) return node->key < key ? -1 : 1;
    return rest(node);
}

// The first node after the probe in tree order (null: none).
ngx_rbtree_node_t* first_after(ngx_rbtree_t* tree, ngx_rbtree_key_t key,
                               const std::function<int(ngx_rbtree_node_t*)>& rest) {
    ngx_rbtree_node_t *node = tree->root, *found = nullptr;
    while (node != tree->sentinel) {
        if (compare_node(node, key, rest) > 0) {
            found = node;
            node = node->left;
        } else {
            node = node->right;
        }
    }
    return found;
}

size_t visit_from(ngx_rbtree_t* tree, ngx_rbtree_node_t* node, size_t limit,
                  const std::function<void(ngx_rbtree_node_t*)>& visit) {
    size_t n = 0;
    for (; node && n < limit; n++) {
        ngx_rbtree_node_t* next = ngx_rbtree_next(tree, node);  // the visitor may delete this one
        visit(node);
        node = next;
    }
    return n;
}

// Ties of the 8-byte tree key: the record's whole key, or the index's whole field.
bool record_key_less(ngx_rbtree_node_t* a, ngx_rbtree_node_t* b) {
    return ngx_memcmp(record_of(a)->key, record_of(b)->key, 32) < 0;
}

template <dp::Index index>
bool field_less(ngx_rbtree_node_t* a, ngx_rbtree_node_t* b) {
    return field_of(index, a).compare(field_of(index, b)) < 0;
}

// ngx_rbtree's insert: by the tree key, ties broken by tie_less.
template <bool (*tie_less)(ngx_rbtree_node_t*, ngx_rbtree_node_t*)>
void insert_ordered(ngx_rbtree_node_t* temp, ngx_rbtree_node_t* node, ngx_rbtree_node_t* sentinel) {
    ngx_rbtree_node_t** p;
    for (;;) {
        const bool left = node->key != temp->key ? node->key < temp->key : tie_less(node, temp);
        p = left ? &temp->left : &temp->right;
        if (*p == sentinel) break;
        temp = *p;
    }
    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}

// On reload with a changed size nginx gives us a new, empty zone while the
// old one is still mapped: copy its records so nothing is lost.
ZoneCtx* old_zone_with_same_name(ngx_shm_zone_t* shm_zone) {
    ngx_shm_zone_t* old = find_in_list<ngx_shm_zone_t>(
        &((ngx_cycle_t*)ngx_cycle)->shared_memory, [&](ngx_shm_zone_t& z) {
            return z.tag == shm_zone->tag && z.shm.name.len == shm_zone->shm.name.len &&
                   ngx_strncmp(z.shm.name.data, shm_zone->shm.name.data, z.shm.name.len) == 0 && z.data &&
                   static_cast<ZoneCtx*>(z.data)->sh;
        });
    return old ? static_cast<ZoneCtx*>(old->data) : nullptr;
}

}  // namespace

namespace {

constexpr ngx_uint_t kSpinsBeforeLivenessCheck = 4096;

void full_fence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }  // a store then a load: x86 needs mfence

// Waits until *word is 0; a pid in it that names no live process is cleared.
void wait_for_zero(ngx_atomic_t* word) {
    for (ngx_uint_t spins = 1;; spins++) {
        ngx_atomic_uint_t pid = *word;
        if (pid == 0) return;
        if (spins % kSpinsBeforeLivenessCheck == 0) {
            if (kill((pid_t)pid, 0) == -1 && errno == ESRCH) ngx_atomic_cmp_set(word, pid, 0);
            sched_yield();
        } else {
            ngx_cpu_pause();
        }
    }
}

}  // namespace

void ZoneStore::lock() {
    SharedZone* sh = zone_->sh;
    ngx_shmtx_lock(&zone_->shpool->mutex);
    sh->writer = (ngx_atomic_uint_t)ngx_pid;
    full_fence();
    const ngx_atomic_uint_t used = sh->reader_slots, slots = used < NGX_MAX_PROCESSES ? used : NGX_MAX_PROCESSES;
    for (ngx_atomic_uint_t i = 0; i < slots; i++) wait_for_zero(&sh->readers[i]);
}

void ZoneStore::unlock() {
    full_fence();
    zone_->sh->writer = 0;
    ngx_shmtx_unlock(&zone_->shpool->mutex);
}

void ZoneStore::read_lock() {
    SharedZone* sh = zone_->sh;
    const ngx_atomic_uint_t slot = (ngx_atomic_uint_t)ngx_process_slot;
    if (slot >= NGX_MAX_PROCESSES) return lock();
    for (ngx_atomic_uint_t seen = sh->reader_slots; seen <= slot; seen = sh->reader_slots)
        ngx_atomic_cmp_set(&sh->reader_slots, seen, slot + 1);
    for (;;) {
        sh->readers[slot] = (ngx_atomic_uint_t)ngx_pid;
        full_fence();
        if (sh->writer == 0) return;
        sh->readers[slot] = 0;  // let the writer finish
        wait_for_zero(&sh->writer);
    }
}

void ZoneStore::read_unlock() {
    const ngx_atomic_uint_t slot = (ngx_atomic_uint_t)ngx_process_slot;
    if (slot >= NGX_MAX_PROCESSES) return unlock();
    __atomic_thread_fence(__ATOMIC_RELEASE);
    zone_->sh->readers[slot] = 0;
}

dp::RecordHeader* ZoneStore::do_find(dp::Kind kind, const dp::Digest& key) {
    if (dp::DigestTable::indexes(kind)) return by_digest().find(kind, key.data());
    ngx_rbtree_t* tree = &zone_->sh->trees[(size_t)kind];
    ngx_rbtree_key_t hash = tree_key(key.data());
    ngx_rbtree_node_t* node = tree->root;
    while (node != tree->sentinel) {
        if (hash != node->key) {
            node = hash < node->key ? node->left : node->right;
            continue;
        }
        int rc = ngx_memcmp(key.data(), record_of(node)->key, 32);
        if (rc == 0) return record_of(node);
        node = rc < 0 ? node->left : node->right;
    }
    return nullptr;
}

dp::DigestTable ZoneStore::by_digest() { return dp::DigestTable(zone_->sh->by_digest, zone_->shpool); }

void ZoneStore::report_full(dp::Kind) {
    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0, "device_pairing_zone \"%V\" is full", &zone_->shm_zone->shm.name);
}

size_t ZoneStore::footprint(dp::Kind kind) {
    // The slab hands out power-of-two chunks (whole pages above half a page).
    size_t size = link_size(kind) + kRecordOffset + dp::record_size(kind), chunk = 8;
    while (chunk < size) chunk <<= 1;
    bool indexed;
    index_of(kind, &indexed);
    return chunk + (indexed ? 64 : 0);  // an IndexNode takes a 64-byte chunk
}

dp::RecordHeader* ZoneStore::do_insert(dp::Kind kind, const dp::Digest& key,
                                       const std::function<void(dp::RecordHeader*)>& init) {
    SharedZone* sh = zone_->sh;
    const bool digest_indexed = dp::DigestTable::indexes(kind);
    if (digest_indexed && !by_digest().has_room()) return nullptr;
    const size_t link = link_size(kind);
    auto* block = static_cast<u_char*>(ngx_slab_calloc_locked(zone_->shpool, link + kRecordOffset + dp::record_size(kind)));
    if (!block) return nullptr;
    auto* node = reinterpret_cast<ngx_rbtree_node_t*>(block + link);
    bool indexed;
    const dp::Index index = index_of(kind, &indexed);
    IndexNode* entry = nullptr;
    if (indexed && !defer_indexes_ && !(entry = static_cast<IndexNode*>(ngx_slab_calloc_locked(zone_->shpool, sizeof(IndexNode))))) {
        ngx_slab_free_locked(zone_->shpool, block);
        return nullptr;
    }
    node->key = tree_key(key.data());
    dp::RecordHeader* record = record_of(node);
    record->kind = kind;
    ngx_memcpy(record->key, key.data(), 32);
    try {
        init(record);
    } catch (...) {
        if (entry) ngx_slab_free_locked(zone_->shpool, entry);
        ngx_slab_free_locked(zone_->shpool, block);
        throw;
    }
    if (kept_in_order(kind)) ngx_rbtree_insert(&sh->trees[(size_t)kind], node);  // visible only once complete
    if (digest_indexed) by_digest().insert(record);
    if (entry) {
        entry->record = record;
        entry->node.key = index_key(dp::index_field(index, record));
        ngx_rbtree_insert(&sh->indexes[(size_t)index], &entry->node);
    }
    if (link) {
        ngx_queue_insert_tail(&sh->expiry[(size_t)kind], link_of(record));
    }
    return record;
}

void ZoneStore::do_remove(dp::RecordHeader* record) {
    const dp::Kind kind = record->kind;
    bool indexed;
    const dp::Index index = index_of(kind, &indexed);
    if (indexed && !defer_indexes_) {
        ngx_rbtree_t* tree = &zone_->sh->indexes[(size_t)index];
        std::string_view field = dp::index_field(index, record);
        ngx_rbtree_key_t key = index_key(field);
        // Entries with an equal field are adjacent: from the first, to ours.
        ngx_rbtree_node_t* n = first_after(tree, key, [&](ngx_rbtree_node_t* x) {
            return field_of(index, x).compare(field) >= 0 ? 1 : -1;
        });
        while (n && reinterpret_cast<IndexNode*>(n)->record != record) n = ngx_rbtree_next(tree, n);
        if (n) {
            ngx_rbtree_delete(tree, n);
            ngx_slab_free_locked(zone_->shpool, n);
        }
    }
    if (dp::DigestTable::indexes(kind)) by_digest().remove(record);
    ngx_rbtree_node_t* node = node_of(record);
    if (kept_in_order(kind)) ngx_rbtree_delete(&zone_->sh->trees[(size_t)kind], node);
    if (link_size(kind)) {
        ngx_queue_remove(link_of(record));
    }
    ngx_slab_free_locked(zone_->shpool, reinterpret_cast<u_char*>(node) - link_size(kind));
}

bool ZoneStore::build_indexes() {
    defer_indexes_ = false;
    for (dp::Kind kind : {dp::Kind::Device, dp::Kind::CodeRequest}) {
        bool indexed;
        const dp::Index index = index_of(kind, &indexed);
        std::vector<std::pair<ngx_rbtree_key_t, dp::RecordHeader*>> order;
        order.reserve(zone_->sh->state.records[(size_t)kind]);
        for_each(kind, [&](const dp::RecordHeader* r) {
            order.emplace_back(index_key(dp::index_field(index, r)), const_cast<dp::RecordHeader*>(r));
        });
        std::sort(order.begin(), order.end(), [&](const auto& a, const auto& b) {
            return a.first != b.first ? a.first < b.first
                                      : dp::index_field(index, a.second) < dp::index_field(index, b.second);
        });
        for (const auto& [key, record] : order) {
            auto* entry = static_cast<IndexNode*>(ngx_slab_calloc_locked(zone_->shpool, sizeof(IndexNode)));
            if (!entry) return false;
            entry->record = record;
            entry->node.key = key;
            ngx_rbtree_insert(&zone_->sh->indexes[(size_t)index], &entry->node);
        }
    }
    return true;
}

void ZoneStore::requeue(dp::RecordHeader* record) {
    if (!link_size(record->kind)) return;
    ngx_queue_remove(link_of(record));
    ngx_queue_insert_tail(&zone_->sh->expiry[(size_t)record->kind], link_of(record));
}

const dp::RecordHeader* ZoneStore::oldest(dp::Kind kind) {
    ngx_queue_t* q = &zone_->sh->expiry[(size_t)kind];
    if (!link_size(kind) || ngx_queue_empty(q)) return nullptr;
    return record_of_link(ngx_queue_head(q));
}

void ZoneStore::for_each(dp::Kind kind, const std::function<void(const dp::RecordHeader*)>& visit) {
    if (!kept_in_order(kind)) {  // in expiry order instead
        ngx_queue_t* q = &zone_->sh->expiry[(size_t)kind];
        for (ngx_queue_t* l = ngx_queue_head(q); l != ngx_queue_sentinel(q);) {
            ngx_queue_t* next = ngx_queue_next(l);  // the visitor may remove this one
            visit(record_of_link(l));
            l = next;
        }
        return;
    }
    ngx_rbtree_t* tree = &zone_->sh->trees[(size_t)kind];
    if (tree->root == tree->sentinel) return;
    visit_from(tree, ngx_rbtree_min(tree->root, tree->sentinel), SIZE_MAX,
               [&](ngx_rbtree_node_t* n) { visit(record_of(n)); });
}

size_t ZoneStore::visit_after(dp::Kind kind, const dp::Digest* after, size_t limit,
                              const std::function<void(const dp::RecordHeader*)>& visit) {
    ngx_rbtree_t* tree = &zone_->sh->trees[(size_t)kind];
    if (tree->root == tree->sentinel) return 0;  // also a kind not kept in order: nothing to page through
    ngx_rbtree_node_t* start =
        after ? first_after(tree, tree_key(after->data()),
                            [&](ngx_rbtree_node_t* n) { return ngx_memcmp(record_of(n)->key, after->data(), 32); })
              : ngx_rbtree_min(tree->root, tree->sentinel);
    return visit_from(tree, start, limit, [&](ngx_rbtree_node_t* n) { visit(record_of(n)); });
}

const dp::RecordHeader* ZoneStore::find_by(dp::Index index, std::string_view field) {
    ngx_rbtree_t* tree = &zone_->sh->indexes[(size_t)index];
    ngx_rbtree_key_t key = index_key(field);
    ngx_rbtree_node_t* n = first_after(tree, key, [&](ngx_rbtree_node_t* x) {
        return field_of(index, x).compare(field) >= 0 ? 1 : -1;
    });
    return n && field_of(index, n) == field ? reinterpret_cast<IndexNode*>(n)->record : nullptr;
}

size_t ZoneStore::visit_index_after(dp::Index index, std::string_view after, size_t limit,
                                    const std::function<void(const dp::RecordHeader*)>& visit) {
    ngx_rbtree_t* tree = &zone_->sh->indexes[(size_t)index];
    if (tree->root == tree->sentinel) return 0;
    ngx_rbtree_node_t* start =
        after.empty() ? ngx_rbtree_min(tree->root, tree->sentinel)
                      : first_after(tree, index_key(after), [&](ngx_rbtree_node_t* x) {
                            return field_of(index, x).compare(after);
                        });
    return visit_from(tree, start, limit,
                      [&](ngx_rbtree_node_t* n) { visit(reinterpret_cast<IndexNode*>(n)->record); });
}

namespace {

// A reload keeps the zone (same name and size). What the new configuration
// changes about the zone itself is checked here: redis= can be neither
// added nor removed (a replica and a standalone zone hold their state
// differently), and a moved or added state= is carried over (persist.cpp).
ngx_int_t reuse_zone(ZoneCtx* ctx, ZoneCtx* old, ngx_log_t* log) {
    ctx->sh = old->sh;
    ctx->shpool = old->shpool;
    if (!ctx->fleet != !old->fleet) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": redis= cannot be %s by a reload (the zone "
                      "%s a replica of Redis); restart nginx to change it", &ctx->shm_zone->shm.name,
                      ctx->fleet ? "added" : "removed", old->fleet ? "is" : "is not");
        return NGX_ERROR;
    }
    return carry_state_over(ctx, old->state_path, log);
}

// The zone's header, trees, queues and the gate's digest table, in a new
// slab pool.
ngx_int_t lay_out(ZoneCtx* ctx, ngx_shm_zone_t* shm_zone) {
    ctx->shpool = reinterpret_cast<ngx_slab_pool_t*>(shm_zone->shm.addr);
    // The gate's table rides in the header's allocation: a page-rounded
    // chunk of its own would cost a small zone a page of records.
    // So do the OAuth poll marks: one per 512 bytes of zone (a pending
    // device authorization's record), at most 16 384; none in a zone under
    // 256k, whose pages are better spent on records (no slow_down there).
    const size_t marks = shm_zone->shm.size < 256 * 1024 ? 0 : std::min<size_t>(shm_zone->shm.size / 512, 16384);
    const size_t record_bytes = shm_zone->shm.size - sizeof(SharedZone) - marks * sizeof(dp::PollMark);
    const uint64_t capacity = dp::DigestTable::capacity_for(record_bytes);
    const size_t table_bytes = ngx_align(capacity * sizeof(dp::DigestSlot), alignof(dp::PollMark));
    ctx->sh = static_cast<SharedZone*>(
        ngx_slab_calloc(ctx->shpool, sizeof(SharedZone) + table_bytes + marks * sizeof(dp::PollMark)));
    if (!ctx->sh) return NGX_ERROR;
    ctx->sh->by_digest.slots = reinterpret_cast<dp::DigestSlot*>(ctx->sh + 1);
    ctx->sh->by_digest.capacity = capacity;
    ctx->sh->poll_marks_offset = sizeof(SharedZone) + table_bytes;
    ctx->sh->poll_marks_count = marks;
    // The zone's name on what it writes: fleet feed entries, and the
    // journal's owner (a binary upgrade runs two zones on one state=).
    dp::Bytes origin = dp::random_bytes(sizeof ctx->sh->state.fleet_origin);
    memcpy(ctx->sh->state.fleet_origin, origin.data(), origin.size());
    if (ctx->fleet) ctx->sh->state.fleet_out_of_step_ms = now_ms();  // out of step until worker 0 has read Redis
    for (size_t k = 0; k < dp::kKindCount; k++) {
        ngx_rbtree_init(&ctx->sh->trees[k], &ctx->sh->sentinels[k], insert_ordered<record_key_less>);
        ngx_queue_init(&ctx->sh->expiry[k]);
    }
    ngx_rbtree_init(&ctx->sh->indexes[(size_t)dp::Index::DeviceId],
                    &ctx->sh->index_sentinels[(size_t)dp::Index::DeviceId], insert_ordered<field_less<dp::Index::DeviceId>>);
    ngx_rbtree_init(&ctx->sh->indexes[(size_t)dp::Index::CodeHash],
                    &ctx->sh->index_sentinels[(size_t)dp::Index::CodeHash], insert_ordered<field_less<dp::Index::CodeHash>>);
    ctx->shpool->data = ctx->sh;
    size_t len = sizeof(" in device_pairing_zone \"\"") + shm_zone->shm.name.len;
    ctx->shpool->log_ctx = static_cast<u_char*>(ngx_slab_alloc(ctx->shpool, len));
    if (!ctx->shpool->log_ctx) return NGX_ERROR;
    ngx_sprintf(ctx->shpool->log_ctx, " in device_pairing_zone \"%V\"%Z", &shm_zone->shm.name);
    ctx->shpool->log_nomem = 0;  // a full zone is reported by the module, once per failure
    return NGX_OK;
}

// On reload with a changed size nginx gives us a new, empty zone while the
// old one is still mapped: its records are copied, and it is retired in the
// same hold of its lock (a change made in it after the copy would be lost,
// so its workers refuse writes).
ngx_int_t take_over(ZoneStore& store, ZoneCtx* ctx, ZoneCtx* old, uint32_t now_s, ngx_log_t* log) {
    ZoneStore old_store(old);
    std::string snapshot, error;
    dp::SharedState old_state;
    {
        dp::StoreLock lock(old_store);
        snapshot = dp::serialize_state(old_store);
        old_state = old_store.shared();
        old_store.shared_for_persistence().retired = 1;
    }
    ctx->took_over = old->sh;
    if (!dp::load_state(store, snapshot, now_s, &error)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": cannot take over the old zone: %s",
                      &ctx->shm_zone->shm.name, error.c_str());
        return NGX_ERROR;
    }
    {
        dp::StoreLock old_lock(old_store), lock(store);
        dp::copy_remembered_proofs(old_store, store, now_s);
    }
    if (!copy_log_tree(old, ctx)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\" is too small for the pairing log's tree",
                      &ctx->shm_zone->shm.name);
        return NGX_ERROR;
    }
    {
        dp::StoreLock lock(store);
        dp::SharedState& state = store.shared_for_persistence();
        state.journal_seq = old_state.journal_seq;
        state.journal_bytes = old_state.journal_bytes;
        state.generation = old_state.generation + 1;
        std::copy(std::begin(old_state.fleet_origin), std::end(old_state.fleet_origin), std::begin(state.fleet_origin));
        std::copy(std::begin(old_state.counters), std::end(old_state.counters), std::begin(state.counters));
        ngx_log_error(NGX_LOG_NOTICE, log, 0, "device_pairing_zone \"%V\" resized, %uL devices kept",
                      &ctx->shm_zone->shm.name, (uint64_t)state.devices);
    }
    return carry_state_over(ctx, old->state_path, log);
}

}  // namespace

// The zone's life: reuse it on a reload, or lay it out and fill it (from
// the zone it replaces, or from state=), then index it. The OTP and its
// banner are made when the configuration starts (init_module), not here.
dp::PollMark* ZoneStore::poll_marks(size_t* count) {
    *count = zone_->sh->poll_marks_count;
    return reinterpret_cast<dp::PollMark*>(reinterpret_cast<u_char*>(zone_->sh) + zone_->sh->poll_marks_offset);
}

ngx_int_t init_zone(ngx_shm_zone_t* shm_zone, void* data) noexcept {
    auto* ctx = static_cast<ZoneCtx*>(shm_zone->data);
    ngx_log_t* log = shm_zone->shm.log;
    try {
        if (auto* old = static_cast<ZoneCtx*>(data)) return reuse_zone(ctx, old, log);
        if (shm_zone->shm.exists) {
            ctx->shpool = reinterpret_cast<ngx_slab_pool_t*>(shm_zone->shm.addr);
            ctx->sh = static_cast<SharedZone*>(ctx->shpool->data);
            return NGX_OK;
        }
        if (lay_out(ctx, shm_zone) != NGX_OK) return NGX_ERROR;
        ZoneStore store(ctx);
        store.defer_indexes();
        const uint32_t now_s = (uint32_t)(now_ms() / 1000);
        if (ZoneCtx* old = old_zone_with_same_name(shm_zone)) {
            if (take_over(store, ctx, old, now_s, log) != NGX_OK) return NGX_ERROR;
        } else if (ctx->state_path.len && recover_state(store, ctx, now_s, log) != NGX_OK) {
            return NGX_ERROR;
        }
        if (!store.build_indexes()) {
            ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\" is too small for the indexes of "
                          "its records", &shm_zone->shm.name);
            return NGX_ERROR;
        }
        // The master's heap held the whole file; give it back before workers
        // fork, or each would start with it resident.
        malloc_trim(0);
        return NGX_OK;
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone: %s", e.what());
    } catch (...) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone: unknown error");
    }
    return NGX_ERROR;
}

uint64_t zone_id(ZoneCtx* zone) {
    uint64_t id;
    memcpy(&id, zone->sh->state.fleet_origin, sizeof id);
    return id;
}

bool zone_retired(ZoneCtx* zone) {
    // One word read without the lock: set once, by the master, never unset
    // while this zone's workers run.
    return zone && zone->sh && ((volatile dp::SharedState&)zone->sh->state).retired;
}

ZoneCtx* zone_of(ngx_http_request_t* r) {
    auto* mcf = static_cast<MainConf*>(ngx_http_get_module_main_conf(r, ngx_http_device_pairing_module));
    return mcf->zone ? static_cast<ZoneCtx*>(mcf->zone->data) : nullptr;
}

}  // namespace dpngx
