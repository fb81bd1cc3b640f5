// Fleet mode (redis=): Redis holds the pairing state and every host's zone
// is a replica. Each worker commits its requests' changes to Redis (the
// compare-and-set script of core/fleet.h) and answers only when Redis took
// them; worker 0 of each host follows the change feed into the zone and
// resynchronises the whole replica whenever its link (re)connects. The gate
// reads only the zone. hiredis's async API runs on nginx's event loop
// through connections of our own: no worker ever blocks on Redis.
#include <list>
#include <memory>

#include "core/encoding.h"
#include "core/fleet.h"
#include "core/mailbox.h"
#include "core/otp.h"
#include "ngx/glue.h"
#include "ngx/redis_link.h"

namespace dpngx {

namespace {

constexpr int kMaxAttempts = 4;                // runs of a route that keeps meeting newer state
constexpr size_t kScanCount = 1000;
constexpr size_t kSweepSlice = 2048;  // records checked per hold of the zone lock

std::string origin_of(ZoneCtx* zone) {
    return dp::hex_encode(std::string_view((const char*)zone->sh->state.fleet_origin, 8));
}

// Records as Redis holds them: (Redis key, image), views into a reply that
// live as long as its callback.
using Images = dp::FleetImages;

// Applies Redis's images of some records to the replica. False when one of
// them is not a valid record (logged with its key, the rest applied): the
// replica no longer matches Redis and must be rebuilt.
bool apply_images(ZoneCtx* zone, const Images& images, const char* from) {
    ZoneStore store(zone);
    store.attach(nullptr);  // from Redis: nothing to send back
    dp::StoreLock lock(store);
    const uint32_t now_s = (uint32_t)ngx_time();
    const std::string_view prefix((const char*)zone->fleet->prefix.data, zone->fleet->prefix.len);
    bool all_valid = true;
    std::string problem;
    for (const auto& [key, image] : images) {
        dp::Kind kind;
        dp::Digest digest;
        if (!dp::parse_fleet_record_key(prefix, key, &kind, &digest)) continue;
        if (dp::fleet_apply(store, kind, digest, image, now_s, &problem)) continue;
        if (problem.empty()) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "device_pairing_zone \"%V\" is full: a record from redis was not replicated",
                          &zone->shm_zone->shm.name);
            continue;
        }
        all_valid = false;
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "device_pairing: redis %V: %s: key \"%*s\" is refused: %s", &zone->fleet->text, from,
                      key.size(), key.data(), problem.c_str());
    }
    return all_valid;
}

void set_out_of_step(ZoneCtx* zone, bool out) {
    ZoneStore store(zone);
    dp::StoreLock lock(store);
    int64_t& since = store.shared_for_persistence().fleet_out_of_step_ms;
    if (!out)
        since = 0;
    else if (!since)
        since = now_ms();
}

bool out_of_step(ZoneCtx* zone) {
    return ((volatile dp::SharedState&)zone->sh->state).fleet_out_of_step_ms != 0;
}

}  // namespace

class FleetWriter final : public DurableWriter {
   public:
    FleetWriter(ZoneCtx* zone, ngx_cycle_t* cycle)
        : zone_(zone), link_(zone->fleet, cycle->log, "commit"), prefix_(to_string(zone->fleet->prefix)) {

        // A restarted Redis has forgotten the script: loaded ahead of any
        // commit on every connection.
        link_.preamble = {"SCRIPT", "LOAD", dp::kCommitScript};
    }
    void start() { link_.open(); }
    void stop() { link_.close(); }

    void committed(std::vector<dp::RecordChange>&& changes) override {
        std::vector<dp::RecordChange>* into = collect_ ? collect_ : &background_;
        if (current && !collect_) {
            if (!current->durable) current->durable = std::make_unique<RequestCtx::Durable>();
            into = &current->durable->changes;
        }
        into->reserve(into->size() + changes.size());  // may throw: nothing taken yet
        for (dp::RecordChange& c : changes) into->push_back(std::move(c));
    }

    void wait(ngx_http_request_t* r) override {
        r->main->count++;
        RequestCtx* ctx = find_ctx(r);
        // A replica being rebuilt takes no writes: what it would build on may be gone.
        if (out_of_step(zone_)) return answer_held(zone_, r, false, kUnreachable);
        auto waiter = std::make_shared<ngx_http_request_t*>(r);
        waiters_.push_back(waiter);
        const uint32_t cap = srv_conf(r)->settings->max_pairings_per_account;
        const bool sent = send(ctx->durable->changes, cap, [this, waiter](Outcome outcome, const Images& images) {
            waiters_.remove(waiter);
            if (*waiter) finish(*waiter, outcome, images);
        });
        if (!sent) {
            waiters_.remove(waiter);
            answer_held(zone_, r, false, kUnreachable);
        }
    }

    void forget(ngx_http_request_t* r) override {
        for (auto& w : waiters_)
            if (*w == r) *w = nullptr;
    }

    void post() override {
        if (background_.empty()) return;
        std::vector<dp::RecordChange> changes;
        changes.swap(background_);
        send_changes(std::move(changes), nullptr);
    }

    // Changes made outside any request (the gate retiring a token, the OTP
    // at start), with their outcome: undone unless Redis took them.
    void send_changes(std::vector<dp::RecordChange> changes, std::function<void(bool)> done) {
        auto held = std::make_shared<std::vector<dp::RecordChange>>(std::move(changes));
        const bool sent = send(*held, 0, [this, held, done](Outcome outcome, const Images& images) {
            if (outcome != Outcome::Committed) undo_changes(zone_, *held);
            if (outcome == Outcome::Conflict && !apply_images(zone_, images, "a commit's conflict")) request_resync();
            if (outcome == Outcome::Unknown) request_resync();
            if (done) done(outcome == Outcome::Committed);
        });
        if (!sent) {
            undo_changes(zone_, *held);
            if (done) done(false);
        }
    }
    std::vector<dp::RecordChange>* collect_ = nullptr;  // set: committed changes go here

    bool up() const { return link_.up(); }

   private:

    // Unknown: the link failed or Redis erred; the change may have landed.
    // NotSent: the link was down; Redis never saw it.
    enum class Outcome { Committed, Conflict, CapReached, Unknown, NotSent };
    using Done = std::function<void(Outcome, const Images&)>;  // on a conflict: Redis's records for the keys
    static constexpr const char* kUnreachable = "the fleet's Redis is unreachable; the change was undone; try again";

    struct Queued {
        dp::FleetTransaction tx;
        Done done;
    };

    // One transaction. It goes at once when no batch is in flight, else with
    // the next batch, sent when that one is answered (group commit, as the
    // journal's): under load, one EVALSHA, one feed entry and one round trip
    // carry many requests' changes. False when the link is down; a link
    // still connecting (a new worker) takes it, queued behind the script.
    bool send(const std::vector<dp::RecordChange>& changes, uint32_t account_cap, Done done) {
        if (changes.empty() || !link_.up_or_connecting()) return false;
        queued_.push_back({dp::fleet_transaction(prefix_, changes, account_cap), std::move(done)});
        if (!batch_in_flight_) send_batch();
        return true;
    }

    void send_batch() {
        auto batch = std::make_shared<std::vector<Queued>>();
        const size_t n = std::min(queued_.size(), dp::kMaxBatch);
        std::move(queued_.begin(), queued_.begin() + n, std::back_inserter(*batch));
        queued_.erase(queued_.begin(), queued_.begin() + n);
        std::vector<const dp::FleetTransaction*> txs;
        for (const Queued& q : *batch) txs.push_back(&q.tx);
        const std::vector<std::string> argv =
            dp::fleet_commit(prefix_, dp::fleet_script_sha(), origin_of(zone_), txs);
        if (!link_.send(argv, [this, batch](redisReply* reply) { answered(*batch, reply); }, /*while_connecting=*/true)) {
            std::move(queued_.begin(), queued_.end(), std::back_inserter(*batch));
            queued_.clear();
            for (Queued& q : *batch) q.done(Outcome::NotSent, {});
            return;
        }
        batch_in_flight_ = true;
        keep_worker(true);
    }

    // batch_in_flight_ stays set while the answers run: what they send (a
    // request run again) waits for the next batch.
    void answered(std::vector<Queued>& batch, redisReply* reply) {
        const bool valid = is_array(reply) && reply->elements == batch.size() + 1 && is_int(reply->element[0]);
        if (!valid && reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "device_pairing: redis commit: %*s", (size_t)reply->len,
                          reply->str);
            if (std::string_view(reply->str, reply->len).substr(0, 8) == "NOSCRIPT")
                link_.send(link_.preamble, [](redisReply*) {});
        }
        for (size_t i = 0; i < batch.size(); i++) {
            const redisReply* outcome = valid ? reply->element[i + 1] : nullptr;
            Images images;
            if (!outcome)
                batch[i].done(Outcome::Unknown, images);
            else if (is_int(outcome))
                batch[i].done(outcome->integer == dp::kCapReached ? Outcome::CapReached : Outcome::Committed, images);
            else {
                const std::vector<std::string>& keys = batch[i].tx.keys;
                for (size_t k = 0; is_array(outcome) && k < keys.size() && k + 1 < outcome->elements; k++)
                    images.emplace_back(keys[k], text_of(outcome->element[k + 1]));
                batch[i].done(Outcome::Conflict, images);
            }
        }
        batch_in_flight_ = false;
        if (!queued_.empty())
            send_batch();
        else
            keep_worker(false);
    }

    void finish(ngx_http_request_t* r, Outcome outcome, const Images& images) {
        if (outcome == Outcome::NotSent) return answer_held(zone_, r, false, kUnreachable);
        if (outcome == Outcome::Unknown) {
            request_resync();
            return answer_held(zone_, r, false, "the fleet's Redis did not confirm the change; it was undone; try again");
        }
        if (outcome == Outcome::Committed) return answer_held(zone_, r, true, nullptr);
        if (outcome == Outcome::CapReached) {  // other hosts hold the account's other pairings
            const dp::Response refusal = dp::too_many_pairings(srv_conf(r)->settings->max_pairings_per_account);
            return answer_held(zone_, r, false, nullptr, &refusal);
        }
        // Another host changed what this request read: undo, take Redis's
        // records, and run the request again on them.
        RequestCtx* ctx = find_ctx(r);
        if (!ctx || !ctx->durable || ctx->attempts >= kMaxAttempts) {
            if (ctx && ctx->durable) {
                undo_changes(zone_, ctx->durable->changes);
                ctx->durable->changes.clear();
            }
            if (!apply_images(zone_, images, "a commit's conflict")) request_resync();
            return answer_held(zone_, r, false, "the records kept changing on other hosts; try again");
        }
        undo_changes(zone_, ctx->durable->changes);
        ctx->durable->changes.clear();
        ctx->durable->waiting = false;
        if (!apply_images(zone_, images, "a commit's conflict")) {
            request_resync();
            return answer_held(zone_, r, false, "the fleet's Redis holds a record this host refuses; try again");
        }
        ngx_connection_t* c = r->connection;
        ngx_int_t rc;
        try {
            rc = run_route(r, ctx, ctx->body);
        } catch (const std::exception& e) {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0, "device_pairing: %s", e.what());
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        ngx_http_finalize_request(r, rc);  // the reference wait() took
        ngx_http_run_posted_requests(c);
    }

    void request_resync() {
        ZoneStore store(zone_);
        dp::StoreLock lock(store);
        store.shared_for_persistence().fleet_resync = 1;
    }

    ZoneCtx* zone_;
    RedisLink link_;
    const std::string prefix_;
    std::list<std::shared_ptr<ngx_http_request_t*>> waiters_;
    std::vector<dp::RecordChange> background_;
    std::vector<Queued> queued_;  // waiting for the batch in flight to be answered
    bool batch_in_flight_ = false;
};

// Worker 0's: the feed into the replica, and the replica rebuilt from
// Redis's records on every (re)connect.
class FleetFollower {
   public:
    FleetFollower(ZoneCtx* zone, ngx_cycle_t* cycle, FleetWriter* writer)
        : zone_(zone), writer_(writer), link_(zone->fleet, cycle->log, "feed"), prefix_(to_string(zone->fleet->prefix)) {
        link_.on_up = [this] { connected(); };
        link_.on_down = [this] {
            state_ = State::Down;
            set_out_of_step(zone_, true);
        };
        resync_timer_.handler = [](ngx_event_t* ev) noexcept {
            auto* follower = static_cast<FleetFollower*>(ev->data);
            if (follower->state_ == State::OutOfStep) follower->enter(State::ReadingSeq);
        };
        resync_timer_.data = this;
        resync_timer_.log = ngx_cycle->log;
        resync_timer_.cancelable = 1;
    }
    void start() { link_.open(); }
    void stop() {
        if (resync_timer_.timer_set) ngx_del_timer(&resync_timer_);
        link_.close();
    }

   private:
    // What the follower is waiting for. A rebuild goes ReadingSeq ->
    // (Scanning <-> Fetching)* -> ReadingOtp -> Following; Following reads
    // the feed for ever. A reply it cannot read (or an exception reading
    // it) moves it to OutOfStep: the replica is marked out of step
    // (device_pairing_redis_stale applies, and the metrics show it) and a
    // rebuild starts after a pause. Down: the link is down; its reconnect
    // decides (connected()).
    enum class State { Down, ReadingSeq, Scanning, Fetching, ReadingOtp, Following, OutOfStep };
    static const char* name(State s) {
        switch (s) {
            case State::Down: return "the link is down";
            case State::ReadingSeq: return "reading the feed's sequence";
            case State::Scanning: return "scanning the records";
            case State::Fetching: return "reading the records";
            case State::ReadingOtp: return "reading the OTP";
            case State::Following: return "reading the feed";
            case State::OutOfStep: return "out of step";
        }
        return "";
    }

    // A new worker of a reload finds the replica the old one kept in step:
    // it goes on from there (a rebuild would refuse writes meanwhile). A
    // reconnect, or a zone nobody kept in step, is rebuilt.
    void connected() {
        const bool first = !connected_before_;
        connected_before_ = true;
        bool in_step;
        {
            ZoneStore store(zone_);
            dp::StoreLock lock(store);
            const dp::SharedState& sh = store.shared();
            in_step = sh.fleet_applied_seq > 0 && !sh.fleet_resync && !sh.fleet_out_of_step_ms;
        }
        if (!first || !in_step) return enter(State::ReadingSeq);
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0, "device_pairing: the replica is in step; following the feed");
        if (!otp_checked_) start_otp();
        enter(State::Following);
    }

    // Moves to a state and sends the command whose reply it waits for.
    void enter(State next) {
        state_ = next;
        std::vector<std::string> argv;
        switch (next) {
            case State::ReadingSeq:
                ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0, "device_pairing redis %V: rebuilding the replica",
                               &zone_->fleet->text);
                ZoneStore(zone_).count(dp::Counter::FleetRebuilds);
                set_out_of_step(zone_, true);
                seen_.clear();
                argv = {"GET", dp::fleet_seq_key(prefix_)};
                break;
            case State::Scanning:
                argv = {"SCAN", cursor_, "MATCH", dp::fleet_scan_pattern(prefix_), "COUNT", std::to_string(kScanCount)};
                break;
            case State::Fetching:
                argv = {"MGET"};
                argv.insert(argv.end(), keys_.begin(), keys_.end());
                break;
            case State::ReadingOtp: argv = {"GET", dp::fleet_otp_key(prefix_)}; break;
            case State::Following: {
                uint64_t after;
                bool resync_wanted;
                {
                    ZoneStore store(zone_);
                    dp::StoreLock lock(store);
                    after = store.shared().fleet_applied_seq;
                    resync_wanted = store.shared().fleet_resync;
                }
                if (resync_wanted) return enter(State::ReadingSeq);  // a commit's outcome was unknown
                following_after_ = after;
                argv = {"XREAD", "COUNT", "512", "BLOCK", std::to_string(kFeedBlockMs),
                        "STREAMS", dp::fleet_feed_key(prefix_), std::to_string(after) + "-1"};
                break;
            }
            case State::Down:
            case State::OutOfStep: return;
        }
        const State sent = next;
        link_.send(argv, [this, sent](redisReply* reply) {
            if (!reply || state_ != sent) return;  // the link failed: its reconnect decides
            bool ok = false;
            try {
                ok = reply->type != REDIS_REPLY_ERROR && step(reply);
            } catch (const std::exception& e) {
                ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "device_pairing: redis %V: %s: %s", &zone_->fleet->text,
                              name(sent), e.what());
            }
            if (!ok) lose_step(reply);
        });
    }

    // The reply to the current state's command: false when it cannot be read.
    bool step(redisReply* reply) {
        switch (state_) {
            case State::ReadingSeq:
                if (!dp::parse_feed_sequence(view_of(reply), &start_seq_)) return false;
                cursor_ = "0";
                enter(State::Scanning);
                return true;
            case State::Scanning:
                if (!dp::parse_scan(view_of(reply), &cursor_, &keys_)) return false;
                enter(!keys_.empty() ? State::Fetching : cursor_ == "0" ? State::ReadingOtp : State::Scanning);
                return true;
            case State::Fetching: {
                if (!is_array(reply) || reply->elements != keys_.size()) return false;
                Images images;
                for (size_t i = 0; i < keys_.size(); i++) {
                    if (reply->element[i]->type != REDIS_REPLY_STRING) continue;  // gone since the scan
                    images.emplace_back(keys_[i], text_of(reply->element[i]));
                    dp::Kind kind;
                    dp::Digest key;
                    if (dp::parse_fleet_record_key(prefix_, keys_[i], &kind, &key)) seen_.add(kind, key);
                }
                if (!apply_images(zone_, images, "a record")) return false;
                enter(cursor_ == "0" ? State::ReadingOtp : State::Scanning);
                return true;
            }
            case State::ReadingOtp:
                if (!apply_images(zone_, {{dp::fleet_otp_key(prefix_), text_of(reply)}}, "the OTP")) return false;
                in_step();
                return true;
            case State::Following: {
                // This host's own entries are applied too: its replica may
                // have taken an older image since it made the change
                // (another host's entry, read after a conflict had shown
                // this host the newer record), and a skipped entry would
                // leave that image standing, a revoked device alive here.
                Images images;
                uint64_t last;
                if (!dp::parse_feed_entries(view_of(reply), following_after_, &images, &last)) return false;
                if (last != following_after_) {
                    if (!apply_images(zone_, images, "a feed entry")) return false;
                    ZoneStore store(zone_);
                    dp::StoreLock lock(store);
                    store.shared_for_persistence().fleet_applied_seq = last;
                }
                enter(State::Following);
                return true;
            }
            case State::Down:
            case State::OutOfStep: return true;  // a late reply: nothing waits for it
        }
        return false;
    }

    // The rebuild's end: what Redis no longer has leaves the replica, which
    // is in step from the feed sequence read first.
    void in_step() {
        sweep();
        {
            ZoneStore store(zone_);
            dp::StoreLock lock(store);
            dp::SharedState& sh = store.shared_for_persistence();
            sh.fleet_applied_seq = start_seq_;
            sh.fleet_resync = 0;
        }
        set_out_of_step(zone_, false);
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0, "device_pairing redis %V: replica rebuilt",
                       &zone_->fleet->text);
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0, "device_pairing: replica in step with redis %V at %uL",
                      &zone_->fleet->text, start_seq_);
        if (!otp_checked_) start_otp();
        enter(State::Following);
    }

    void lose_step(const redisReply* reply) {
        const std::string_view text = reply && reply->type == REDIS_REPLY_ERROR ? std::string_view(reply->str, reply->len)
                                                                                  : std::string_view("an unexpected reply");
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "device_pairing: redis %V: %s: %*s; the replica is out of step and is rebuilt",
                      &zone_->fleet->text, name(state_), text.size(), text.data());
        state_ = State::OutOfStep;
        set_out_of_step(zone_, true);
        {
            ZoneStore store(zone_);
            dp::StoreLock lock(store);
            store.shared_for_persistence().fleet_resync = 1;
        }
        if (!resync_timer_.timer_set) ngx_add_timer(&resync_timer_, kFirstRetryMs * 10);
    }

    // Records the replica holds that Redis no longer has go: a slice of
    // records per hold of the zone lock (other workers write between).
    void sweep() {
        ZoneStore store(zone_);
        store.attach(nullptr);
        seen_.seal();
        for (size_t k = 0; k < dp::kKindCount; k++) {
            const dp::Kind kind = (dp::Kind)k;
            if (kind == dp::Kind::AccountCount) continue;  // derived from the mailboxes
            dp::Digest last{};
            bool first = true;
            size_t visited;
            do {
                dp::StoreLock lock(store);
                std::vector<dp::Digest> gone;
                visited = store.visit_after(kind, first ? nullptr : &last, kSweepSlice, [&](const dp::RecordHeader* h) {
                    memcpy(last.data(), h->key, 32);
                    if (!seen_.contains(kind, last)) gone.push_back(last);
                });
                first = false;
                for (const dp::Digest& key : gone)
                    if (const dp::RecordHeader* h = store.find(kind, key)) store.remove(h);
            } while (visited == kSweepSlice);
        }
        seen_.clear();
    }

    // The fleet's OTP: made by the first host that finds none live; the
    // others use it (its banner is in that host's log).
    void start_otp() {
        otp_checked_ = true;
        MainConf* mcf = zone_->mcf;
        if (!mcf->first_pairing_srv) return;
        std::vector<dp::RecordChange> changes;
        std::vector<std::string> banner;
        {
            ZoneStore store(zone_);
            writer_->collect_ = &changes;
            try {
                banner = dp::otp_at_start(store, *mcf->first_pairing_srv->settings, now_ms());
            } catch (...) {
            }
            writer_->collect_ = nullptr;
        }
        if (banner.empty()) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "device pairing: the fleet's OTP is live; another host made it and wrote it to its banner file");
            return;
        }
        writer_->send_changes(std::move(changes), [this, banner](bool ok) {
            if (ok) return show_banner(zone_, banner, ngx_cycle->log);
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "device pairing: another host made the fleet's OTP first; it is in that host's banner file");
        });
    }

    ZoneCtx* zone_;
    FleetWriter* writer_;
    RedisLink link_;
    std::string prefix_;
    State state_ = State::Down;
    uint64_t start_seq_ = 0;        // a rebuild: the feed's sequence when it began
    uint64_t following_after_ = 0;  // Following: the sequence the XREAD in flight reads after
    std::string cursor_;            // Scanning, Fetching: the SCAN cursor
    std::vector<std::string> keys_; // Fetching: the keys the last SCAN found
    dp::FleetKeySet seen_;
    bool otp_checked_ = false;
    bool connected_before_ = false;
    ngx_event_t resync_timer_{};
};

namespace {
FleetWriter* fleet_writer;
FleetFollower* fleet_follower;
}  // namespace

ngx_int_t start_fleet(ngx_cycle_t* cycle, ZoneCtx* zone) {
    if (!zone || !zone->fleet || ngx_process != NGX_PROCESS_WORKER) return NGX_OK;
    try {
        fleet_writer = new FleetWriter(zone, cycle);
        extern DurableWriter* worker_writer;
        worker_writer = fleet_writer;
        zone->journal = fleet_writer;
        fleet_writer->start();
        if (ngx_worker == 0) {
            fleet_follower = new FleetFollower(zone, cycle, fleet_writer);
            fleet_follower->start();
        }
    } catch (...) {
        return NGX_ERROR;
    }
    return NGX_OK;
}

void stop_fleet() {
    if (fleet_follower) fleet_follower->stop();
    if (fleet_writer) fleet_writer->stop();
}

bool fleet_out_of_step(ZoneCtx* zone) {
    if (!zone || !zone->fleet) return false;
    const int64_t since = ((volatile dp::SharedState&)zone->sh->state).fleet_out_of_step_ms;
    return since != 0 && now_ms() - since >= (int64_t)zone->mcf->redis_stale;
}

}  // namespace dpngx
