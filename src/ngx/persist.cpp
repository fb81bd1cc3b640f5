// state=PATH: the journal and its compaction. Each worker collects the
// record changes its requests commit and appends them to PATH.journal in a
// thread of nginx's thread pool, one batch (one fdatasync) at a time: the
// requests that came in while a batch was written share the next one (group
// commit). A durable answer waits for its batch; when the batch fails, its
// changes are undone and the client gets 503. When the journal has grown
// past compact=SIZE, one worker writes a new snapshot in slices (the zone
// lock held for one slice at a time) and the journal starts again.
#include <signal.h>

#include <memory>

#include "core/persist/disk.h"
#include "core/persist/journal.h"
#include "core/persist/snapshot.h"
#include "ngx/durable.h"
#include "ngx/identity.h"
#include "ngx/persist.h"
#include "ngx/threads.h"

namespace dpngx {

namespace {

constexpr size_t kSliceRecords = 2048;     // records copied per hold of the zone lock
constexpr size_t kSnapshotChunk = 1 << 20; // bytes handed to a thread per write
constexpr ngx_msec_t kSliceGapMs = 1;      // the event loop runs between slices

void alert_rate_limited(ngx_log_t* log, const char* what, const std::string& error) {
    static time_t last;
    if (ngx_time() - last < 60) return;
    last = ngx_time();
    ngx_log_error(NGX_LOG_ALERT, log, 0, "device_pairing: %s: %s", what, error.c_str());
}

}  // namespace

class JournalWriter final : public DurableWriter {
   public:
    JournalWriter(ZoneCtx* zone, ngx_thread_pool_t* pool, ngx_cycle_t* cycle)
        : zone_(zone), pool_(pool), log_(cycle->log), paths_(to_string(zone->state_path)), leaves_(zone) {
        append_task_ = new_thread_task(cycle, &append_step_);
        compact_task_ = new_thread_task(cycle, &compact_step_);
        slice_timer_.handler = [](ngx_event_t* ev) noexcept {
            try {
                static_cast<JournalWriter*>(ev->data)->copy_slice();
            } catch (const std::exception& e) {
                ngx_log_error(NGX_LOG_ALERT, ev->log, 0, "device_pairing: compaction: %s", e.what());
            }
        };
        slice_timer_.data = this;
        slice_timer_.log = log_;
        slice_timer_.cancelable = 1;
    }
    bool ready() const { return append_task_ && compact_task_; }

    // Called with the zone lock held: whatever can fail (allocate) happens
    // before anything is taken, so a failure leaves the changes to the
    // store, which undoes them.
    void committed(std::vector<dp::RecordChange>&& changes) override {
        const std::string bytes = dp::encode_journal(changes);
        std::vector<dp::RecordChange>* held = nullptr;
        if (current) {
            if (!current->durable) current->durable = std::make_unique<RequestCtx::Durable>();
            held = &current->durable->changes;
            held->reserve(held->size() + changes.size());
        }
        pending_.reserve(pending_.size() + bytes.size());
        size_t leaf_count = 0;
        for (const dp::RecordChange& c : changes) leaf_count += c.kind == dp::Kind::LogLeaf;
        leaves_.pending.reserve(leaves_.pending.size() + leaf_count);
        pending_ += bytes;
        for (dp::RecordChange& c : changes) {
            pending_max_seq_ = std::max(pending_max_seq_, c.seq);
            // Moved, not copied (no allocation); an undo never reads a leaf.
            if (c.kind == dp::Kind::LogLeaf) leaves_.pending.push_back(std::move(c.after));
        }
        if (held)
            for (dp::RecordChange& c : changes) held->push_back(std::move(c));
    }

    void wait(ngx_http_request_t* r) override {
        r->main->count++;
        pending_waiters_.push_back(r);
        post();
    }
    void forget(ngx_http_request_t* r) override {
        for (auto* list : {&pending_waiters_, &writing_waiters_})
            for (auto& w : *list)
                if (w == r) w = nullptr;
    }

    // Hands the collected entries to a thread unless a batch is in flight
    // (then they go with the next one, when it completes).
    void post() override {
        if (in_flight_ || (pending_.empty() && leaves_.pending.empty())) return;
        writing_.swap(pending_);
        pending_.clear();
        leaves_.writing.swap(leaves_.pending);
        leaves_.pending.clear();
        writing_waiters_.swap(pending_waiters_);
        pending_waiters_.clear();
        const uint64_t max_seq = pending_max_seq_;
        pending_max_seq_ = 0;
        in_flight_ = true;
        keep_worker(true);
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log_, 0, "device_pairing journal: appending %uz bytes, %uz answers wait",
                       writing_.size(), writing_waiters_.size());
        // A reload moved state= away from this worker's path: what the new
        // path's snapshot covers is durable there; anything later would be
        // journalled where no restart reads it, so it is undone (503).
        if (path_moved())
            return appended(max_seq <= zone_->sh->state.moved_at_seq,
                            "state= was moved by a reload; this worker's path is no longer read");
        append_step_.work = [this](std::string* error) {
            return dp::append_journal(paths_, writing_, error, &outcome_, zone_id(zone_), &leaves_);
        };
        append_step_.done = [this](bool ok, const std::string& error) { appended(ok, error); };
        if (ngx_thread_task_post(pool_, append_task_) != NGX_OK) appended(false, "the thread pool refused the task");
    }

    // Worker exit: what is still collected is written here, blocking.
    void flush_at_exit() override {
        if (in_flight_ || (pending_.empty() && leaves_.pending.empty()) || path_moved()) return;
        std::string error;
        leaves_.writing.swap(leaves_.pending);
        if (!dp::append_journal(paths_, pending_, &error, nullptr, zone_id(zone_), &leaves_))
            alert_rate_limited(log_, "the last journal write", error);
        pending_.clear();
        leaves_.writing.clear();
    }

   private:
    // A reload moved state= away from the path this worker was configured
    // with (carry_state_over bumped the zone's epoch): it may no longer
    // journal or compact there. One word, read without the lock.
    bool path_moved() const {
        return zone_->state_epoch != ((volatile const dp::SharedState&)zone_->sh->state).state_epoch;
    }

    void appended(bool ok, const std::string& error) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log_, 0, "device_pairing journal: append %s%s", ok ? "synced" : "failed: ",
                       ok ? "" : error.c_str());
        in_flight_ = false;
        keep_worker(false);
        const size_t written = writing_.size();
        writing_.clear();
        leaves_.writing.clear();
        std::vector<ngx_http_request_t*> waiters;
        waiters.swap(writing_waiters_);
        const bool superseded = outcome_.superseded;
        if (superseded && !zone_->sh->state.superseded) {
            zone_->sh->state.superseded = 1;
            ngx_log_error(NGX_LOG_NOTICE, log_, 0, "device_pairing: a newer nginx generation owns \"%s\": this "
                          "generation's writes are refused (503) until it exits", paths_.journal.c_str());
        } else if (!ok) {
            alert_rate_limited(log_, "the journal write failed; its changes were undone and answered 503", error);
        }
        if (outcome_.repaired) {
            ngx_log_error(NGX_LOG_WARN, log_, 0, "device_pairing: %uL bytes of an entry left by a writer that died "
                          "mid-append were cut off \"%s\" before this append", outcome_.repaired, paths_.journal.c_str());
        }
        outcome_ = dp::AppendOutcome{};
        const WriteResult result = ok ? WriteResult{WriteResult::Durable}
                                   : superseded ? WriteResult{WriteResult::Failed, "a newer nginx generation (a binary upgrade) "
                                                              "holds the pairing state now; the change was undone; try again"}
                                                : WriteResult{WriteResult::Failed, "the change could not be written to disk and "
                                                              "was undone; try again"};
        for (ngx_http_request_t* r : waiters)
            if (r) settle(zone_, r, result);
        if (ok && !path_moved()) {
            ZoneStore store(zone_);
            dp::StoreLock lock(store);
            store.shared_for_persistence().journal_bytes += written;
        }
        maybe_compact();
        post();
    }

    // --- compaction ---

    void maybe_compact() {
        if (compacting_) return;
        ZoneStore store(zone_);
        {
            dp::StoreLock lock(store);
            dp::SharedState& sh = store.shared_for_persistence();
            if (sh.retired || sh.superseded || path_moved() || sh.journal_bytes < zone_->compact_after)
                return;
            // The older generation of a binary upgrade still runs: the
            // journal is not set aside under it (its entries up to this
            // zone's registration are all here; it appends no more).
            if (sh.predecessor_pid && kill((pid_t)sh.predecessor_pid, 0) == 0) return;
            if (sh.compactor_pid && sh.compactor_pid != (uint32_t)ngx_pid && kill((pid_t)sh.compactor_pid, 0) == 0)
                return;  // another worker is at it
            sh.compactor_pid = (uint32_t)ngx_pid;
        }
        compacting_ = true;
        file_ = std::make_unique<dp::SnapshotFile>();
        compact_step_.work = [this](std::string* error) {
            return dp::rotate_journal(paths_, error) && file_->create(paths_, error);
        };
        compact_step_.done = [this](bool ok, const std::string& error) {
            if (!ok) return end_compaction(false, error);
            ZoneStore store(zone_);
            dp::StoreLock lock(store);
            dp::SharedState& sh = store.shared_for_persistence();
            info_ = dp::SnapshotInfo{sh.journal_seq, sh.generation};
            sh.journal_bytes = 0;  // the journal was set aside: a new one starts
            snapshot_ = std::make_unique<dp::SnapshotWriter>(info_);
            kind_ = 0;
            has_cursor_ = false;
            ngx_add_timer(&slice_timer_, kSliceGapMs);
        };
        if (ngx_thread_task_post(pool_, compact_task_) != NGX_OK) end_compaction(false, "the thread pool refused the task");
    }

    // One slice: the lock held while kSliceRecords records are copied.
    void copy_slice() {
        ZoneStore store(zone_);
        bool last = false, retired = false;
        {
            dp::StoreLock lock(store);
            retired = store.shared().retired;
            size_t budget = retired ? 0 : kSliceRecords;
            while (budget > 0 && kind_ < dp::kKindCount) {
                const dp::Digest* after = has_cursor_ ? &cursor_ : nullptr;
                size_t n = store.visit_after((dp::Kind)kind_, after, budget, [&](const dp::RecordHeader* h) {
                    snapshot_->add(h);
                    memcpy(cursor_.data(), h->key, 32);
                    has_cursor_ = true;
                });
                budget -= n;
                if (budget > 0) {  // this kind is done
                    kind_++;
                    has_cursor_ = false;
                }
            }
            last = kind_ >= dp::kKindCount;
        }
        if (retired) return end_compaction(false, "the zone was retired by a resize");  // its new zone compacts
        if (!last && snapshot_->pending() < kSnapshotChunk) {
            ngx_add_timer(&slice_timer_, kSliceGapMs);
            return;
        }
        chunk_ = snapshot_->take();
        if (last) chunk_ += snapshot_->finish();
        compact_step_.work = [this, last](std::string* error) {
            // The set-aside journal's leaves are durable in PATH.log before
            // the commit drops it: compaction never drops a leaf.
            return file_->write(chunk_, error) &&
                   (!last || ((!zone_->log_on || dp::settle_log_file(paths_, error)) && file_->commit(info_, error)));
        };
        compact_step_.done = [this, last](bool ok, const std::string& error) {
            chunk_.clear();
            if (!ok || last) return end_compaction(ok, error);
            ngx_add_timer(&slice_timer_, kSliceGapMs);
        };
        if (ngx_thread_task_post(pool_, compact_task_) != NGX_OK) end_compaction(false, "the thread pool refused the task");
    }

    void end_compaction(bool ok, const std::string& error) {
        if (!ok) {
            alert_rate_limited(log_, "journal compaction failed (the journal is kept and replayed)", error);
            if (file_) file_->abandon();
        } else {
            ngx_log_error(NGX_LOG_INFO, log_, 0, "device_pairing: journal compacted into a new snapshot");
        }
        file_.reset();
        snapshot_.reset();
        ZoneStore store(zone_);
        {
            dp::StoreLock lock(store);
            dp::SharedState& sh = store.shared_for_persistence();
            if (sh.compactor_pid == (uint32_t)ngx_pid) sh.compactor_pid = 0;
        }
        compacting_ = false;
    }

    ZoneCtx* zone_;
    ngx_thread_pool_t* pool_;
    ngx_log_t* log_;
    dp::StatePaths paths_;

    std::string pending_, writing_;
    JournalLeaves leaves_;          // the pairing log's leaves, collected and in flight beside them
    uint64_t pending_max_seq_ = 0;  // the newest change among pending_
    std::vector<ngx_http_request_t*> pending_waiters_, writing_waiters_;
    bool in_flight_ = false;
    dp::AppendOutcome outcome_;  // set by the thread: a dead writer's partial entry it cut, a newer owner
    ThreadStep append_step_;
    ngx_thread_task_t* append_task_;

    bool compacting_ = false;
    ThreadStep compact_step_;
    ngx_thread_task_t* compact_task_;
    ngx_event_t slice_timer_{};
    std::unique_ptr<dp::SnapshotFile> file_;
    std::unique_ptr<dp::SnapshotWriter> snapshot_;
    dp::SnapshotInfo info_;
    size_t kind_ = 0;
    dp::Digest cursor_{};
    bool has_cursor_ = false;
    std::string chunk_;
};

// Worker 0's: whether a newer generation (a binary upgrade) owns the
// journal. While one does, what it appends is applied to this zone too, so
// the gate here refuses what the owner revoked and admits what it paired;
// if the owner's master goes (the upgrade was rolled back), this zone takes
// the journal back, in step, and its writes resume.
class JournalFollower {
   public:
    JournalFollower(ZoneCtx* zone, ngx_thread_pool_t* pool, ngx_cycle_t* cycle)
        : zone_(zone), pool_(pool), log_(cycle->log), paths_(to_string(zone->state_path)),
          task_(new_thread_task(cycle, &step_)) {
        timer_.handler = [](ngx_event_t* ev) noexcept { static_cast<JournalFollower*>(ev->data)->tick(); };
        timer_.data = this;
        timer_.log = log_;
        timer_.cancelable = 1;
        step_.work = [this](std::string* error) {
            // Not following yet: the owner record alone (no bytes past the end).
            dp::JournalOwner me{zone_id(zone_), (uint64_t)getppid(), 0};
            return dp::read_journal_tail(paths_, following_ ? from_ : UINT64_MAX, &tail_, error,
                                         following_ ? &me : nullptr);
        };
        step_.done = [this](bool ok, const std::string& error) {
            in_flight_ = false;
            try {
                if (ok) read(); else alert_rate_limited(log_, "following the journal", error);
            } catch (const std::exception& e) {
                alert_rate_limited(log_, "following the journal", e.what());
            }
            schedule();
        };
        schedule();
    }

   private:
    static constexpr ngx_msec_t kCheckMs = 1000, kFollowMs = 200;

    void schedule() {
        if (!ngx_exiting && !ngx_quit && !ngx_terminate) ngx_add_timer(&timer_, following_ ? kFollowMs : kCheckMs);
    }
    void tick() {
        if (in_flight_ || !task_) return;
        in_flight_ = true;
        if (ngx_thread_task_post(pool_, task_) != NGX_OK) step_.done(false, "the thread pool refused the task");
    }

    void read() {
        const dp::JournalOwner& owner = tail_.owner;
        const uint64_t me = zone_id(zone_);
        if (!owner.zone_id || (owner.zone_id == me && !tail_.took_back)) return;
        if (!following_) {  // a newer generation registered: follow it from where it began
            following_ = true;
            zone_->sh->state.superseded = 1;
            from_ = owner.journal_end;
            ngx_log_error(NGX_LOG_NOTICE, log_, 0, "device_pairing: a newer nginx generation (master %uL) owns \"%s\": "
                          "this generation follows it and refuses writes", owner.master_pid, paths_.journal.c_str());
            return;  // the bytes read were from an older offset
        }
        dp::JournalScan scan;
        std::string error;
        if (!dp::parse_journal(tail_.bytes, &scan, &error)) return alert_rate_limited(log_, "following the journal", error);
        from_ += scan.valid_bytes;
        ZoneStore store(zone_);
        store.attach(nullptr);  // the owner journalled these
        uint64_t last = 0;
        if (!scan.entries.empty() && !dp::apply_journal(store, scan.entries, 0, (uint32_t)ngx_time(), &last, &error))
            alert_rate_limited(log_, "following the journal", error);
        if (zone_->log_on) follow_log_leaves(zone_, scan.leaves);
        followed_seq_ = std::max(followed_seq_, last);
        if (!tail_.took_back) return;
        {
            dp::StoreLock lock(store);
            dp::SharedState& sh = store.shared_for_persistence();
            sh.journal_seq = std::max(sh.journal_seq, followed_seq_);
            sh.superseded = 0;
            sh.predecessor_pid = 0;
        }
        following_ = false;
        ngx_log_error(NGX_LOG_NOTICE, log_, 0, "device_pairing: the newer generation's master (%uL) is gone: this "
                      "generation owns \"%s\" again and takes writes", owner.master_pid, paths_.journal.c_str());
    }

    ZoneCtx* zone_;
    ngx_thread_pool_t* pool_;
    ngx_log_t* log_;
    dp::StatePaths paths_;
    ThreadStep step_;
    ngx_thread_task_t* task_;
    ngx_event_t timer_{};
    bool in_flight_ = false, following_ = false;
    uint64_t from_ = 0, followed_seq_ = 0;
    dp::JournalTail tail_;
};

namespace {

// The zone registered as the journal's owner before nginx became a daemon:
// the master's pid is known only now, to its workers. A newer generation
// checks it to learn whether this one still runs.
void name_owner_master(ZoneCtx* zone, ngx_log_t* log) {
    const dp::StatePaths paths(to_string(zone->state_path));
    std::string error;
    dp::StateLock lock(paths, &error);
    dp::JournalOwner owner;
    if (!lock.held() || !dp::read_journal_owner(lock, &owner) || owner.zone_id != zone_id(zone) ||
        owner.master_pid == (uint64_t)getppid())
        return;
    owner.master_pid = (uint64_t)getppid();
    if (!dp::write_journal_owner(lock, owner, &error))
        ngx_log_error(NGX_LOG_WARN, log, 0, "device_pairing: %s", error.c_str());
}

}  // namespace

ngx_int_t start_journal(ngx_cycle_t* cycle, ZoneCtx* zone) {
    if (!zone || zone->state_path.len == 0) return NGX_OK;
    ngx_thread_pool_t* pool = default_thread_pool(cycle);
    if (!pool) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "device_pairing: no thread pool \"default\"");
        return NGX_ERROR;
    }
    try {
        auto* journal = new JournalWriter(zone, pool, cycle);
        if (!journal->ready()) return NGX_ERROR;
        set_worker_writer(zone, journal);
        if (ngx_worker == 0) {
            name_owner_master(zone, cycle->log);
            new JournalFollower(zone, pool, cycle);
        }
    } catch (...) {
        return NGX_ERROR;
    }
    return NGX_OK;
}

// Recovery: the snapshot, then the journal set aside by an unfinished
// compaction and the journal, entries newer than the snapshot in sequence
// order. A torn tail (a crash mid-append) is cut off with a notice; a corrupt
// entry before good ones stops the start with the file and offset.
namespace {

// A state file the master made (the lock file, a moved state's snapshot)
// belongs to the workers' user, who append, compact and take the lock.
void hand_to_workers(ZoneCtx* ctx, const std::string& path) {
    if (geteuid() != 0 || !ctx->cycle) return;
    auto* ccf = reinterpret_cast<ngx_core_conf_t*>(ngx_get_conf(ctx->cycle->conf_ctx, ngx_core_module));
    if (ccf && ccf->user != (ngx_uid_t)NGX_CONF_UNSET_UINT && ccf->user != 0)
        (void)!chown(path.c_str(), ccf->user, (gid_t)-1);
}

}  // namespace

ngx_int_t recover_state(ZoneStore& store, ZoneCtx* ctx, uint32_t now_s, ngx_log_t* log) {
    const dp::StatePaths paths(to_string(ctx->state_path));
    ngx_str_t* name = &ctx->shm_zone->shm.name;
    std::string bytes, error;
    dp::SnapshotInfo info;
    // Held throughout: another generation's workers (a binary upgrade) may
    // be appending, and the tail is cut only where no append is under way.
    dp::StateLock file_lock(paths, &error);
    if (!file_lock.held()) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": %s", name, error.c_str());
        return NGX_ERROR;
    }
    if (!ngx_test_config) hand_to_workers(ctx, paths.lock);
    if (dp::read_file(paths.state, &bytes, &error)) {
        if (!dp::load_state(store, bytes, now_s, &error, &info)) {
            ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": state file \"%s\": %s", name,
                          paths.state.c_str(), error.c_str());
            return NGX_ERROR;
        }
    } else if (errno != ENOENT) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": state file \"%s\": %s", name,
                      paths.state.c_str(), error.c_str());
        return NGX_ERROR;
    }
    std::string().swap(bytes);
    std::vector<dp::JournalEntry> entries;
    uint64_t journal_bytes = 0;
    for (const std::string* path : {&paths.rotated, &paths.journal}) {
        std::string text;
        if (!dp::read_file(*path, &text, &error)) {
            if (errno == ENOENT) continue;
            ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": journal \"%s\": %s", name,
                          path->c_str(), error.c_str());
            return NGX_ERROR;
        }
        dp::JournalScan scan;
        if (!dp::parse_journal(text, &scan, &error)) {
            ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": journal \"%s\": %s", name,
                          path->c_str(), error.c_str());
            return NGX_ERROR;
        }
        if (scan.torn) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "device_pairing_zone \"%V\": journal \"%s\": an incomplete last entry at offset %uz "
                          "(an append cut off by a crash) is dropped", name, path->c_str(), scan.valid_bytes);
            if (!ngx_test_config && path == &paths.rotated && truncate(path->c_str(), (off_t)scan.valid_bytes) != 0)
                ngx_log_error(NGX_LOG_EMERG, log, ngx_errno, "device_pairing_zone \"%V\": truncate \"%s\"", name,
                              path->c_str());
        }
        if (!ngx_test_config && path == &paths.journal && !dp::settle_journal(file_lock, paths, scan.valid_bytes, &error))
            ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": %s", name, error.c_str());
        journal_bytes += scan.valid_bytes;
        for (dp::JournalEntry& e : scan.entries) entries.push_back(std::move(e));
    }
    uint64_t last_seq = info.covers_seq;
    if (!dp::apply_journal(store, entries, info.covers_seq, now_s, &last_seq, &error)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": %s", name, error.c_str());
        return NGX_ERROR;
    }
    if (ctx->log_on && !ngx_test_config && !load_pairing_log(ctx, paths, &error)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": the pairing log \"%s\": %s", name,
                      paths.log.c_str(), error.c_str());
        return NGX_ERROR;
    }
    if (ctx->log_on && !ngx_test_config) hand_to_workers(ctx, paths.log);
    if (!load_identity(ctx, paths, &error)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": the rotated identity \"%s\": %s", name,
                      identity_path(paths).c_str(), error.c_str());
        return NGX_ERROR;
    }
    // This zone owns the journal from now on: an older generation still
    // running (a binary upgrade) has its later appends refused, so it
    // acknowledges nothing this zone did not just read.
    dp::JournalOwner previous;
    const bool had_owner = dp::read_journal_owner(file_lock, &previous);
    if (!ngx_test_config &&
        !dp::write_journal_owner(file_lock, {zone_id(ctx), (uint64_t)ngx_pid, dp::journal_size(paths)}, &error)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": %s", name, error.c_str());
        return NGX_ERROR;
    }
    dp::StoreLock lock(store);
    dp::SharedState& state = store.shared_for_persistence();
    state.journal_seq = last_seq;
    state.generation = info.generation;
    state.journal_bytes = journal_bytes;
    if (had_owner && previous.master_pid && previous.master_pid != (uint64_t)ngx_pid &&
        kill((pid_t)previous.master_pid, 0) == 0) {
        state.predecessor_pid = (uint32_t)previous.master_pid;
        ngx_log_error(NGX_LOG_NOTICE, log, 0, "device_pairing_zone \"%V\": the journal's previous owner (master %uL) "
                      "still runs: its workers' writes are refused from now on", name, previous.master_pid);
    }
    return NGX_OK;
}


namespace {

bool state_files_exist(const dp::StatePaths& paths) {
    for (const std::string* p : {&paths.state, &paths.journal, &paths.rotated})
        if (access(p->c_str(), F_OK) == 0) return true;
    return false;
}

}  // namespace

ngx_int_t carry_state_over(ZoneCtx* ctx, const ngx_str_t& old_state_path, ngx_log_t* log) {
    ngx_str_t* name = &ctx->shm_zone->shm.name;
    ctx->state_epoch = ctx->sh->state.state_epoch;
    const std::string from = to_string(old_state_path), to = to_string(ctx->state_path);
    if (from == to || ctx->fleet) return NGX_OK;
    if (to.empty()) {
        ngx_log_error(NGX_LOG_WARN, log, 0, "device_pairing_zone \"%V\": state= was removed: the zone's devices "
                      "are kept in memory only from now on and are lost at the next restart", name);
        return NGX_OK;
    }
    const dp::StatePaths paths(to);
    if (state_files_exist(paths)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": state=%s already holds a state file or "
                      "journal; the zone's devices would be mixed with them: remove them, or keep state=%s",
                      name, to.c_str(), from.empty() ? "(none)" : from.c_str());
        return NGX_ERROR;
    }
    if (ngx_test_config) return NGX_OK;
    std::string error;
    dp::SnapshotFile file;
    if (!file.create(paths, &error)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": state=%s: %s", name, to.c_str(), error.c_str());
        return NGX_ERROR;
    }
    // One hold of the zone lock: the snapshot and the new epoch. A change
    // the old workers commit after it is refused by their writer (503)
    // rather than journalled where no restart reads it.
    ZoneStore store(ctx);
    std::string snapshot;
    dp::SnapshotInfo info;
    {
        dp::StoreLock lock(store);
        dp::SharedState& sh = store.shared_for_persistence();
        info = dp::SnapshotInfo{sh.journal_seq, sh.generation};
        snapshot = dp::serialize_state(store, info);
        sh.moved_at_seq = sh.journal_seq;
        sh.journal_bytes = 0;
        ctx->state_epoch = ++sh.state_epoch;
        ctx->moved_state = true;
    }
    // The pairing log moves whole (its old journals' leaves first): the new
    // path's journal starts empty and numbers on from the copy's last leaf.
    if (ctx->log_on && !from.empty() && !dp::copy_log_file(dp::StatePaths(from), paths, &error)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": state=%s: %s", name, to.c_str(), error.c_str());
        return NGX_ERROR;
    }
    std::string identity;  // a rotated identity moves with the state
    if (!from.empty() && dp::read_file(identity_path(dp::StatePaths(from)), &identity, &error) &&
        !dp::write_file_durably(identity_path(paths), identity, &error)) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": state=%s: %s", name, to.c_str(), error.c_str());
        return NGX_ERROR;
    }
    if (!file.write(snapshot, &error) || !file.commit(info, &error)) {
        ctx->sh->state.state_epoch = ctx->state_epoch - 1;
        ctx->moved_state = false;
        ngx_log_error(NGX_LOG_EMERG, log, 0, "device_pairing_zone \"%V\": state=%s: %s", name, to.c_str(), error.c_str());
        return NGX_ERROR;
    }
    hand_to_workers(ctx, paths.state);
    hand_to_workers(ctx, paths.lock);
    if (ctx->log_on) hand_to_workers(ctx, paths.log);
    if (!identity.empty()) hand_to_workers(ctx, identity_path(paths));
    ngx_log_error(NGX_LOG_NOTICE, log, 0, "device_pairing_zone \"%V\": state=%s now holds the zone's %uL devices%s%s",
                  name, to.c_str(), (uint64_t)ctx->sh->state.devices, from.empty() ? "" : "; it was ",
                  from.empty() ? "" : from.c_str());
    return NGX_OK;
}

}  // namespace dpngx
