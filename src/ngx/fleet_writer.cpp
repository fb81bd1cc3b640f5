// Fleet mode's writer: one per worker. A route's changes wait for Redis to
// take them (the compare-and-set script), and the writer settles the request
// with what Redis said; the content side answers.
#include "ngx/fleet_writer.h"

namespace dpngx {

namespace {
constexpr const char* kUnreachable = "the fleet's Redis is unreachable; the change was undone; try again";
}  // namespace

FleetWriter::FleetWriter(ZoneCtx* zone, ngx_cycle_t* cycle)
    : zone_(zone), link_(zone->fleet, cycle->log, "commit"), prefix_(to_string(zone->fleet->prefix)) {
    // A restarted Redis has forgotten the script: loaded ahead of any
    // commit on every connection.
    link_.preamble = {"SCRIPT", "LOAD", dp::kCommitScript};
    // Where writes go now, for worker 0's follower (fleet_follower.cpp): in a
    // failover the links learn of the new master one by one.
    link_.on_master = [this](const dp::RedisAddress& master) {
        ZoneStore store(zone_);
        dp::StoreLock lock(store);
        dp::SharedState& sh = store.shared_for_persistence();
        set_fixed_text(sh.fleet_writes_to, master.text());
        sh.fleet_writes_to_ms = ngx_current_msec;
    };
}

void FleetWriter::committed(std::vector<dp::RecordChange>&& changes) {
    std::vector<dp::RecordChange>* into = collect_ ? collect_ : &background_;
    if (current && !collect_) {
        if (!current->durable) current->durable = std::make_unique<RequestCtx::Durable>();
        into = &current->durable->changes;
    }
    into->reserve(into->size() + changes.size());  // may throw: nothing taken yet
    for (dp::RecordChange& c : changes) into->push_back(std::move(c));
}

void FleetWriter::wait(ngx_http_request_t* r) {
    r->main->count++;
    RequestCtx* ctx = find_ctx(r);
    // A replica being rebuilt takes no writes: what it would build on may be gone.
    if (out_of_step(zone_)) return settle(zone_, r, {WriteResult::Failed, kUnreachable});
    auto waiter = std::make_shared<ngx_http_request_t*>(r);
    waiters_.push_back(waiter);
    const uint32_t cap = srv_conf(r)->settings->max_pairings_per_account;
    const bool sent = send(ctx->durable->changes, cap, [this, waiter](Outcome outcome, const Images& images) {
        waiters_.remove(waiter);
        if (*waiter) finish(*waiter, outcome, images);
    });
    if (!sent) {
        waiters_.remove(waiter);
        settle(zone_, r, {WriteResult::Failed, kUnreachable});
    }
}

void FleetWriter::forget(ngx_http_request_t* r) {
    for (auto& w : waiters_)
        if (*w == r) *w = nullptr;
}

void FleetWriter::post() {
    if (background_.empty()) return;
    std::vector<dp::RecordChange> changes;
    changes.swap(background_);
    send_changes(std::move(changes), nullptr);
}

void FleetWriter::send_changes(std::vector<dp::RecordChange> changes, std::function<void(bool)> done) {
    auto held = std::make_shared<std::vector<dp::RecordChange>>(std::move(changes));
    const bool sent = send(*held, 0, [this, held, done](Outcome outcome, const Images& images) {
        if (outcome == Outcome::Conflict && !conflict_master_current()) outcome = Outcome::NotSent;
        if (outcome != Outcome::Committed) undo_changes(zone_, *held);
        if (outcome == Outcome::Conflict && !apply_images(zone_, images, "a commit's conflict")) request_resync(zone_);
        if (outcome == Outcome::Unknown) request_resync(zone_);
        if (done) done(outcome == Outcome::Committed);
    });
    if (!sent) {
        undo_changes(zone_, *held);
        if (done) done(false);
    }
}

// One transaction. It goes at once when no batch is in flight, else with
// the next batch, sent when that one is answered (group commit, as the
// journal's): under load, one EVALSHA, one feed entry and one round trip
// carry many requests' changes. False when the link is down; a link
// still connecting (a new worker) takes it, queued behind the script.
bool FleetWriter::send(const std::vector<dp::RecordChange>& changes, uint32_t account_cap, Done done) {
    if (changes.empty() || !link_.up_or_connecting()) return false;
    queued_.push_back({dp::fleet_transaction(prefix_, changes, account_cap), std::move(done)});
    if (!batch_in_flight_) send_batch();
    return true;
}

void FleetWriter::send_batch() {
    auto batch = std::make_shared<std::vector<Queued>>();
    const size_t n = std::min(queued_.size(), dp::kMaxBatch);
    std::move(queued_.begin(), queued_.begin() + n, std::back_inserter(*batch));
    queued_.erase(queued_.begin(), queued_.begin() + n);
    std::vector<const dp::FleetTransaction*> txs;
    for (const Queued& q : *batch) txs.push_back(&q.tx);
    const std::vector<std::string> argv = dp::fleet_commit(prefix_, dp::fleet_script_sha(), origin_of(zone_), txs);
    // redis_replicas=N: a WAIT right behind the script, on the same
    // connection (one per batch); the committed transactions are answered
    // when it confirms.
    const FleetHa* ha = zone_->fleet->ha;
    auto replication = ha && ha->replicas ? std::make_shared<Replication>() : nullptr;
    if (replication) replication->target = link_.wait_target(ha->replicas);
    if (!link_.send(argv, [this, batch, replication](redisReply* reply) { answered(*batch, reply, replication.get()); },
                    /*while_connecting=*/true)) {
        std::move(queued_.begin(), queued_.end(), std::back_inserter(*batch));
        queued_.clear();
        for (Queued& q : *batch) q.done(Outcome::NotSent, {});
        return;
    }
    batch_in_flight_ = true;
    keep_worker(true);
    if (replication &&
        !link_.send({"WAIT", std::to_string(replication->target), std::to_string(ha->replicas_timeout)},
                    [this, batch, replication](redisReply* reply) { replicated(*batch, *replication, reply); }, true))
        replication->unsent = true;
    // The replicas as they are now, for the next batch's WAIT (with sentinels).
    if (replication && link_.sentinel_mode()) link_.send({"ROLE"}, [this](redisReply* r) { if (r) link_.note_role(r); }, true);
}

// batch_in_flight_ stays set while the answers run: what they send (a
// request run again) waits for the next batch. With a WAIT behind the
// script, the committed transactions wait for it (replication); the rest
// (refused: nothing was written) are answered now.
void FleetWriter::answered(std::vector<Queued>& batch, redisReply* reply, Replication* replication) {
    const bool valid = is_array(reply) && reply->elements == batch.size() + 1 && is_int(reply->element[0]);
    if (!valid && reply && reply->type == REDIS_REPLY_ERROR) {
        if (ngx_time() - last_error_log_ >= kDownLogEveryS) {  // a wrong ACL would say it on every write
            last_error_log_ = ngx_time();
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "device_pairing: redis commit: %*s", (size_t)reply->len,
                          reply->str);
        }
        if (std::string_view(reply->str, reply->len).substr(0, 8) == "NOSCRIPT")
            link_.send(link_.preamble, [](redisReply*) {});
    }
    for (size_t i = 0; i < batch.size(); i++) {
        const redisReply* outcome = valid ? reply->element[i + 1] : nullptr;
        Images images;
        if (!outcome) {
            batch[i].done(Outcome::Unknown, images);
        } else if (is_int(outcome) && outcome->integer == dp::kCapReached) {
            batch[i].done(Outcome::CapReached, images);
        } else if (is_int(outcome)) {
            if (replication && !replication->unsent) {
                replication->committed.push_back(i);
            } else {
                batch[i].done(replication ? Outcome::Unknown : Outcome::Committed, images);
            }
        } else {
            const std::vector<std::string>& keys = batch[i].tx.keys;
            for (size_t k = 0; is_array(outcome) && k < keys.size() && k + 1 < outcome->elements; k++)
                images.emplace_back(keys[k], text_of(outcome->element[k + 1]));
            batch[i].done(Outcome::Conflict, images);
        }
    }
    if (!replication || replication->committed.empty()) end_batch();
}

// WAIT's answer: the committed transactions are durable on the replicas
// asked for, or of unknown outcome (503; the replica is rebuilt).
void FleetWriter::replicated(std::vector<Queued>& batch, const Replication& replication, redisReply* reply) {
    if (replication.committed.empty()) return;  // the script's answer ended the batch
    const bool confirmed = dp::wait_confirmed(view_of(reply), replication.target);
    if (!confirmed && reply) {
        const std::string said = is_int(reply) ? std::to_string(reply->integer) + " replicas acknowledged"
                                 : reply->type == REDIS_REPLY_ERROR ? error_text(reply)
                                                                    : "an unexpected reply";
        if (ngx_time() - last_error_log_ >= kDownLogEveryS) {
            last_error_log_ = ngx_time();
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "device_pairing: redis WAIT %d within %M ms: %s; the writes "
                          "were answered 503 (their outcome is unknown)", replication.target,
                          zone_->fleet->ha->replicas_timeout, said.c_str());
        }
    }
    for (size_t i : replication.committed) batch[i].done(confirmed ? Outcome::Committed : Outcome::Unknown, {});
    // Short: a replica is gone, or promoted (a failover under way: the old
    // master takes writes until the sentinels demote it). Asked again, the
    // sentinels name the master to write to, and its ROLE the replicas.
    if (!confirmed && link_.up()) link_.rediscover("WAIT fell short");
    end_batch();
}

void FleetWriter::end_batch() {
    batch_in_flight_ = false;
    if (!queued_.empty())
        send_batch();
    else
        keep_worker(false);
}

// A conflict met on a master the follower has left (the old one, in a
// failover) says nothing of the fleet: its records are not taken, the
// change is undone and answered 503, and this link asks the sentinels again.
bool FleetWriter::conflict_master_current() {
    std::string followed;
    ngx_msec_t followed_named_ms;
    {
        ZoneStore store(zone_);
        dp::StoreReadLock lock(store);
        followed = fixed_text(store.shared().fleet_master);
        followed_named_ms = zone_->sh->fleet_master_named_ms;
    }
    if (dp::conflict_master_current(link_.master_text(), link_.named_at(), followed, followed_named_ms)) return true;
    if (link_.up()) link_.rediscover("the follower reads a newer master");
    return false;
}

// A request's batch was answered. On a conflict (another host changed what
// the route read) its changes are undone and Redis's records taken, so the
// content side can run the route again on them.
void FleetWriter::finish(ngx_http_request_t* r, Outcome outcome, const Images& images) {
    if (outcome == Outcome::Conflict && !conflict_master_current()) outcome = Outcome::NotSent;
    switch (outcome) {
        case Outcome::Committed: return settle(zone_, r, {WriteResult::Durable});
        case Outcome::CapReached: return settle(zone_, r, {WriteResult::AccountFull});
        case Outcome::NotSent: return settle(zone_, r, {WriteResult::Failed, kUnreachable});
        case Outcome::Unknown:
            request_resync(zone_);
            return settle(zone_, r, {WriteResult::Failed, "the fleet's Redis did not confirm the change; it was undone; try again"});
        case Outcome::Conflict: break;
    }
    if (RequestCtx* ctx = find_ctx(r); ctx && ctx->durable) {
        undo_changes(zone_, ctx->durable->changes);  // before Redis's newer records go in
        ctx->durable->changes.clear();
    }
    if (!apply_images(zone_, images, "a commit's conflict")) {
        request_resync(zone_);
        return settle(zone_, r, {WriteResult::Failed, "the fleet's Redis holds a record this host refuses; try again"});
    }
    settle(zone_, r, {WriteResult::Conflict});
}

}  // namespace dpngx
