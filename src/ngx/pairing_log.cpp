#include "ngx/pairing_log.h"

#include <memory>

#include "core/api.h"
#include "core/pairing_log.h"
#include "core/fleet.h"
#include "ngx/content.h"
#include "ngx/durable.h"
#include "ngx/fleet_writer.h"
#include "ngx/threads.h"
#include "ngx/zone.h"

namespace dpngx {

namespace {

constexpr size_t kChunkBytes = 32768;  // 1 024 hashes, 4 096 hints

u_char* element(const ShmChunks& a, uint64_t i, size_t size) {
    const uint64_t per = kChunkBytes / size;
    return a.chunks[i / per] + (i % per) * size;
}

// Chunks for `count` elements; false when the slab has no room (what was
// allocated stays for the next try).
bool ensure(ngx_slab_pool_t* pool, ShmChunks& a, uint64_t count, size_t size) {
    const uint64_t per = kChunkBytes / size, need = (count + per - 1) / per;
    if (need > a.slots) {
        const uint64_t slots = std::max<uint64_t>({need, a.slots * 2, 16});
        auto** dir = static_cast<u_char**>(ngx_slab_alloc_locked(pool, slots * sizeof(u_char*)));
        if (!dir) return false;
        ngx_memzero(dir, slots * sizeof(u_char*));
        if (a.chunks) {
            ngx_memcpy(dir, a.chunks, a.slots * sizeof(u_char*));
            ngx_slab_free_locked(pool, a.chunks);
        }
        a.chunks = dir;
        a.slots = slots;
    }
    for (uint64_t k = need; k-- > 0 && !a.chunks[k];) {
        a.chunks[k] = static_cast<u_char*>(ngx_slab_alloc_locked(pool, kChunkBytes));
        if (!a.chunks[k]) return false;
    }
    return true;
}

ShmLog& log_of(ZoneCtx* zone) { return zone->sh->log; }

}  // namespace

uint64_t ZoneLogTree::size() { return log_of(zone_).size; }

dp::Digest ZoneLogTree::kept(int level, uint64_t index) {
    dp::Digest d;
    ngx_memcpy(d.data(), element(log_of(zone_).levels[level], index, 32), 32);
    return d;
}

void ZoneLogTree::keep(int level, uint64_t index, const dp::Digest& hash) {
    ShmChunks& a = log_of(zone_).levels[level];
    ngx_memcpy(element(a, index, 32), hash.data(), 32);
    a.count = index + 1;
}

void ZoneLogTree::grew(uint64_t size) { log_of(zone_).size = size; }

bool ZoneLogTree::reserve(uint64_t count) {
    ShmLog& log = log_of(zone_);
    const uint64_t size = log.size + count;
    for (int level = 0; level < kLogLevels && size >> level; level++)
        if (dp::tlog_level_kept(level) && !ensure(zone_->shpool, log.levels[level], dp::tlog_kept_count(level, size), 32))
            return false;
    return ensure(zone_->shpool, log.hints, (size + kLogHintEvery - 1) / kLogHintEvery, 8);
}

void ZoneLogTree::add(uint64_t first, const std::vector<std::string>& leaves, uint64_t offset) {
    for (const std::string& leaf : leaves) {
        add(first++, leaf, offset);
        if (offset != kNoOffset) offset += dp::log_record_bytes(leaf.size());
    }
}

void ZoneLogTree::add(uint64_t index, std::string_view leaf, uint64_t offset) {
    ShmLog& log = log_of(zone_);
    if (index % kLogHintEvery == 0) {
        ngx_memcpy(element(log.hints, index / kLogHintEvery, 8), &offset, 8);
        log.hints.count = index / kLogHintEvery + 1;
    }
    dp::tlog_append(*this, dp::tlog_leaf_hash(leaf));
    // Keys are sorted and strings escaped: this is only ever the member.
    if (leaf.find("\"event\":\"identity_rotated\"") != std::string_view::npos) note_rotation_leaf(zone_, index + 1);
}

uint64_t ZoneLogTree::read_start(uint64_t first, uint64_t* from) {
    ShmLog& log = log_of(zone_);
    for (uint64_t block = first / kLogHintEvery; block > 0; block--) {
        uint64_t offset;
        ngx_memcpy(&offset, element(log.hints, block, 8), 8);
        if (offset != kNoOffset) {
            *from = block * kLogHintEvery;
            return offset;
        }
    }
    *from = 0;
    return 0;
}

namespace {

// Under the state lock: leaves PATH.log holds past the zone's tree (appended
// by another zone on this state=: a resized zone's workers finishing their
// last batch) go into the tree first, so numbering goes on from the file.
bool catch_up_tree(ZoneCtx* zone, const dp::StatePaths& paths, uint64_t file_next, std::string* error) {
    uint64_t size, from = 0, offset = 0;
    {
        ZoneStore store(zone);
        dp::StoreLock lock(store);
        ZoneLogTree tree(zone);
        size = tree.size();
        if (size >= file_next) return true;
        if (size) offset = tree.read_start(size - 1, &from);
    }
    std::vector<std::string> leaves;
    if (!dp::read_log_leaves(paths.log, offset, from, file_next - from, &leaves, error)) return false;
    for (uint64_t i = from; i < size; i++) offset += dp::log_record_bytes(leaves[i - from].size());
    leaves.erase(leaves.begin(), leaves.begin() + (ptrdiff_t)(size - from));
    ZoneStore store(zone);
    dp::StoreLock lock(store);
    ZoneLogTree tree(zone);
    if (!tree.reserve(leaves.size())) {
        *error = "the zone has no room for the pairing log's hashes (device_pairing_zone size=)";
        return false;
    }
    tree.add(size, leaves, offset);
    return true;
}

}  // namespace

bool JournalLeaves::next_index(uint64_t file_next, size_t count, uint64_t* first, std::string* error) {
    if (!catch_up_tree(zone_, dp::StatePaths(to_string(zone_->state_path)), file_next, error)) return false;
    ZoneStore store(zone_);
    dp::StoreLock lock(store);
    ZoneLogTree tree(zone_);
    if (log_of(zone_).stalled || !tree.reserve(count)) {
        *error = "the zone has no room for the pairing log's hashes (device_pairing_zone size=)";
        return false;
    }
    *first = tree.size();
    return true;
}

void JournalLeaves::durable(uint64_t first, const std::vector<std::string>& leaves, uint64_t file_offset) {
    ZoneStore store(zone_);
    dp::StoreLock lock(store);
    ZoneLogTree(zone_).add(first, leaves, file_offset);
}

bool load_pairing_log(ZoneCtx* zone, const dp::StatePaths& paths, std::string* error) {
    uint64_t next = 0, end = 0;
    if (!dp::catch_up_log_file(paths, &next, &end, error)) return false;
    ZoneStore store(zone);
    dp::StoreLock lock(store);
    ZoneLogTree tree(zone);
    bool room = true, torn = false;
    const bool ok = dp::scan_log_file(
        paths.log,
        [&](uint64_t index, uint64_t offset, std::string_view leaf) {
            if (room && (room = tree.reserve(1))) tree.add(index, leaf, offset);
        },
        &end, &torn, error);
    if (ok && !room) *error = "the zone is too small for the pairing log's " + std::to_string(next) + " leaves";
    return ok && room;
}

bool follow_log_leaves(ZoneCtx* zone, const std::vector<dp::LogLeafEntry>& leaves) {
    if (leaves.empty()) return true;
    ZoneStore store(zone);
    dp::StoreLock lock(store);
    ZoneLogTree tree(zone);
    for (const dp::LogLeafEntry& leaf : leaves) {
        if (leaf.index < tree.size()) continue;  // had it (a rebuild read it already)
        if (leaf.index > tree.size() || log_of(zone).stalled) return false;
        if (!tree.reserve(1)) {
            log_of(zone).stalled = 1;
            return false;
        }
        tree.add(leaf.index, leaf.bytes, kNoOffset);
    }
    return true;
}

uint64_t log_tree_size(ZoneCtx* zone, dp::Digest* last_leaf) {
    ZoneStore store(zone);
    dp::StoreReadLock lock(store);
    ZoneLogTree tree(zone);
    const uint64_t size = tree.size();
    if (size) *last_leaf = tree.kept(0, size - 1);
    return size;
}

bool copy_log_tree(ZoneCtx* from, ZoneCtx* to) {
    ZoneStore old_store(from), new_store(to);
    dp::StoreLock old_lock(old_store);
    dp::StoreLock new_lock(new_store);
    const ShmLog& src = log_of(from);
    ShmLog& dst = log_of(to);
    auto copy = [&](const ShmChunks& s, ShmChunks& d, size_t size) {
        if (!s.count) return true;
        if (!ensure(to->shpool, d, s.count, size)) return false;
        const uint64_t per = kChunkBytes / size;
        for (uint64_t k = 0; k * per < s.count; k++) ngx_memcpy(d.chunks[k], s.chunks[k], kChunkBytes);
        d.count = s.count;
        return true;
    };
    for (int level = 0; level < kLogLevels; level++)
        if (!copy(src.levels[level], dst.levels[level], 32)) return false;
    if (!copy(src.hints, dst.hints, 8)) return false;
    dst.size = src.size;
    dst.stalled = src.stalled;
    to->sh->identity = from->sh->identity;
    return true;
}

void reset_log_tree(ZoneCtx* zone) {
    ZoneStore store(zone);
    dp::StoreLock lock(store);
    ShmLog& log = log_of(zone);
    log.size = 0;
    log.stalled = 0;
    for (ShmChunks& level : log.levels) level.count = 0;  // the chunks stay for the new tree
    log.hints.count = 0;
}

namespace {

// One entries read: its thread step and what it found.
struct LogRead {
    ThreadStep step;
    std::vector<std::string> leaves;
};

}  // namespace

namespace {

void answer_and_finalize(ngx_http_request_t* r, bool ok, uint64_t first, const std::vector<std::string>& leaves) {
    ngx_connection_t* c = r->connection;
    ngx_int_t rc;
    try {
        rc = send_response(r, ok ? dp::log_entries_answer(first, leaves) : dp::unavailable("the pairing log could not be read"));
    } catch (const std::exception&) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}

// Fleet mode: the leaves are a list in Redis, read on this worker's link.
ngx_int_t answer_fleet_log_entries(ngx_http_request_t* r, ZoneCtx* zone, uint64_t first, uint64_t end) {
    auto* writer = dynamic_cast<FleetWriter*>(zone_writer(zone));
    const std::vector<std::string> argv = {"LRANGE", dp::fleet_log_key(to_string(zone->fleet->prefix)),
                                           std::to_string(first), std::to_string(end - 1)};
    r->main->count++;
    const bool sent = writer && writer->read(argv, [r, first, end](redisReply* reply) {
        std::vector<std::string> leaves;
        bool ok = is_array(reply) && reply->elements == end - first;
        for (size_t i = 0; ok && i < reply->elements; i++) {
            ok = reply->element[i]->type == REDIS_REPLY_STRING;
            if (ok) leaves.emplace_back(text_of(reply->element[i]));
        }
        if (!ok) ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "device_pairing: the pairing log's leaves %uL to %uL "
                               "could not be read from redis", first, end - 1);
        answer_and_finalize(r, ok, first, leaves);
    });
    if (sent) return NGX_DONE;
    r->main->count--;
    return send_response(r, dp::unavailable("the pairing log could not be read: redis is not connected"));
}

}  // namespace

ngx_int_t answer_log_entries(ngx_http_request_t* r, RequestCtx* ctx, uint64_t first, uint64_t end) {
    ZoneCtx* zone = zone_of(r);
    if (zone->fleet) return answer_fleet_log_entries(r, zone, first, end);
    uint64_t from = 0, offset = 0;
    {
        ZoneStore store(zone);
        dp::StoreReadLock lock(store);
        offset = ZoneLogTree(zone).read_start(first, &from);
    }
    auto read = std::make_shared<LogRead>();
    ctx->pending_read = read;
    const std::string path = dp::StatePaths(to_string(zone->state_path)).log;
    LogRead* job = read.get();
    read->step.work = [job, path, offset, from, first, end](std::string* error) {
        if (!dp::read_log_leaves(path, offset, from, end - from, &job->leaves, error)) return false;
        job->leaves.erase(job->leaves.begin(), job->leaves.begin() + (ptrdiff_t)(first - from));
        return true;
    };
    read->step.done = [r, job, first](bool ok, const std::string& error) {
        if (!ok) ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "device_pairing: the pairing log: %s", error.c_str());
        answer_and_finalize(r, ok, first, job->leaves);
    };
    if (post_request_step(r, &read->step)) return NGX_DONE;
    return send_response(r, dp::unavailable("the pairing log could not be read"));
}

}  // namespace dpngx
