// Fleet mode's follower: worker 0's, on each host. It keeps the replica zone
// in step with Redis: a rebuild from Redis's records on every (re)connect,
// then the change feed. An explicit state machine: every reply is read by
// the state that sent its command (step()), and a reply it cannot read moves
// it to OutOfStep and a rebuild, logged and counted, never a silent stop.
#include "ngx/fleet_follower.h"

#include "core/otp.h"
#include "core/tlog.h"
#include "ngx/banner.h"
#include "ngx/console.h"
#include "ngx/fleet_writer.h"

namespace dpngx {

namespace {

constexpr size_t kScanCount = 1000;
constexpr size_t kSweepSlice = 2048;  // records checked per hold of the zone lock
constexpr uint64_t kLogPage = 1000;   // pairing log leaves per LRANGE of a rebuild

// Worker 0's: the feed into the replica, and the replica rebuilt from
// Redis's records on every (re)connect.
class FleetFollower {
   public:
    FleetFollower(ZoneCtx* zone, ngx_cycle_t* cycle, FleetWriter* writer)
        : zone_(zone), writer_(writer), link_(zone->fleet, cycle->log, "feed"), prefix_(to_string(zone->fleet->prefix)) {
        link_.on_up = [this] {
            set_link_up(true);
            connected();
        };
        link_.on_down = [this] {
            state_ = State::Down;
            set_link_up(false);
            set_out_of_step(zone_, true);
        };
        link_.on_master = [this](const dp::RedisAddress& master) { master_named(master); };
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
    enum class State { Down, ReadingSeq, Migrating, Scanning, Fetching, ReadingOtp, CheckingLog, ReadingLog, Following,
                       OutOfStep };
    static const char* name(State s) {
        switch (s) {
            case State::Down: return "the link is down";
            case State::ReadingSeq: return "reading the feed's sequence";
            case State::Migrating: return "moving the keys to their hash-tagged names";
            case State::Scanning: return "scanning the records";
            case State::Fetching: return "reading the records";
            case State::ReadingOtp: return "reading the OTP";
            case State::CheckingLog: return "checking the pairing log's last leaf";
            case State::ReadingLog: return "reading the pairing log";
            case State::Following: return "reading the feed";
            case State::OutOfStep: return "out of step";
        }
        return "";
    }

    bool writers_moved_on() {
        const std::string mine = link_.master_text();
        if (mine.empty()) return false;
        ZoneStore store(zone_);
        dp::StoreReadLock lock(store);
        const dp::SharedState& sh = store.shared();
        const std::string writes_to = fixed_text(sh.fleet_writes_to);
        return !writes_to.empty() && writes_to != mine && sh.fleet_writes_to_ms > link_.named_at();
    }

    void set_link_up(bool up) {
        ZoneStore store(zone_);
        dp::StoreLock lock(store);
        store.shared_for_persistence().fleet_link_up = up;
    }

    // The sentinels named the master: a change from the one named before
    // (kept in the zone, so a reload does not count one) is a failover, for
    // the error log, the metrics and the audit log.
    void master_named(const dp::RedisAddress& master) {
        const std::string now = master.text();
        std::string before;
        {
            ZoneStore store(zone_);
            dp::StoreLock lock(store);
            char (&named)[sizeof(dp::SharedState::fleet_master)] = store.shared_for_persistence().fleet_master;
            zone_->sh->fleet_master_named_ms = ngx_current_msec;
            before = fixed_text(named);
            if (before == now) return;
            set_fixed_text(named, now);
        }
        if (before.empty()) return;  // the first one this zone knows
        ZoneStore(zone_).count(dp::Counter::FleetMasterChanges);
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0, "device_pairing: the sentinels name a new redis master for "
                      "\"%s\": %s (was %s)", zone_->fleet->ha->master_name.c_str(), now.c_str(), before.c_str());
        write_audit_everywhere(zone_->mcf, dp::AuditEvent{"redis_master_changed", "", "", "", "", before + " -> " + now},
                               ngx_cycle->log);
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
            case State::Migrating:
                argv = dp::fleet_migration(to_string(zone_->fleet->untagged_prefix), prefix_, cursor_);
                break;
            case State::Scanning:
                argv = {"SCAN", cursor_, "MATCH", dp::fleet_scan_pattern(prefix_), "COUNT", std::to_string(kScanCount)};
                break;
            case State::Fetching:
                argv = {"MGET"};
                argv.insert(argv.end(), keys_.begin(), keys_.end());
                break;
            case State::ReadingOtp: argv = {"GET", dp::fleet_otp_key(prefix_)}; break;
            case State::CheckingLog: argv = {"LINDEX", dp::fleet_log_key(prefix_), std::to_string(log_from_ - 1)}; break;
            case State::ReadingLog:
                argv = {"LRANGE", dp::fleet_log_key(prefix_), std::to_string(log_from_),
                        std::to_string(log_from_ + kLogPage - 1)};
                break;
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
            if (sent == State::Migrating && reply->type == REDIS_REPLY_ERROR) {  // e.g. an ACL without EVAL
                // A new fleet with the documented ACL: nothing to move, said quietly.
                const std::string said = error_text(reply);
                const ngx_uint_t level = said.substr(0, 6) == "NOPERM" ? NGX_LOG_INFO : NGX_LOG_ERR;
                ngx_log_error(level, ngx_cycle->log, 0, "device_pairing: redis %V: the keys of the layout before "
                              "hash tags (%V...) could not be moved: %s; the fleet starts from what the tagged names "
                              "hold", &zone_->fleet->text, &zone_->fleet->untagged_prefix, said.c_str());
                return enter(State::ReadingSeq);
            }
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
                // No tagged sequence yet: a fleet of an earlier version may
                // hold its keys under the untagged names; moved once.
                if (start_seq_ == 0 && zone_->fleet->untagged_prefix.len && !migrated_) {
                    migrated_ = true;
                    enter(State::Migrating);
                    return true;
                }
                enter(State::Scanning);
                return true;
            case State::Migrating:
                if (reply->type != REDIS_REPLY_STRING) return false;
                cursor_.assign(reply->str, reply->len);
                enter(cursor_ == "0" ? State::ReadingSeq : State::Migrating);
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
                if (!zone_->log_on) {
                    in_step();
                    return true;
                }
                // The pairing log: the tree kept in the zone goes on from its
                // size if Redis holds the same last leaf, else it is made again.
                log_from_ = log_tree_size(zone_, &last_leaf_);
                enter(log_from_ ? State::CheckingLog : State::ReadingLog);
                return true;
            case State::CheckingLog:
                if (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL) return false;
                if (reply->type == REDIS_REPLY_NIL || dp::tlog_leaf_hash(text_of(reply)) != last_leaf_) {
                    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0, "device_pairing: redis %V: the pairing log does not "
                                  "hold this host's leaf %uL as it was: the tree is made again from redis",
                                  &zone_->fleet->text, log_from_ - 1);
                    reset_log_tree(zone_);
                    log_from_ = 0;
                }
                enter(State::ReadingLog);
                return true;
            case State::ReadingLog: {
                if (!is_array(reply)) return false;
                std::vector<dp::LogLeafEntry> leaves;
                for (size_t i = 0; i < reply->elements; i++) {
                    if (reply->element[i]->type != REDIS_REPLY_STRING) return false;
                    leaves.push_back(dp::LogLeafEntry{log_from_ + i, std::string(text_of(reply->element[i]))});
                }
                if (!follow_log_leaves(zone_, leaves)) return false;
                log_from_ += leaves.size();
                if (leaves.size() == kLogPage) {
                    enter(State::ReadingLog);
                } else {
                    in_step();
                }
                return true;
            }
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
                // A failover: this host's writers were sent to a newer master
                // than the one this feed comes from (the old one still
                // answers until it is demoted). The replica follows them.
                if (writers_moved_on()) {
                    link_.rediscover("this host's writes go to another master");
                    return true;
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
        request_resync(zone_);
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
            if (kind == dp::Kind::AccountCount || dp::local_kind(kind)) continue;  // derived, or this host's own
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
            // Another host made one first, or Redis did not take it (a
            // failover): looked at again when the replica is next in step.
            otp_checked_ = false;
            if (ngx_time() - otp_log_at_ < kDownLogEveryS) return;
            otp_log_at_ = ngx_time();
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "device pairing: this host's OTP was not stored (another host made the fleet's OTP first, or "
                          "Redis did not take it); looked at again after the next rebuild");
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
    uint64_t log_from_ = 0;         // CheckingLog, ReadingLog: the next leaf to read
    dp::Digest last_leaf_{};        // CheckingLog: the hash of the tree's last leaf
    dp::FleetKeySet seen_;
    bool otp_checked_ = false;
    bool connected_before_ = false;
    bool migrated_ = false;
    time_t otp_log_at_ = 0;  // the untagged keys were moved (or found none) once by this worker
    ngx_event_t resync_timer_{};
};
FleetFollower* follower;

}  // namespace

void start_follower(ZoneCtx* zone, ngx_cycle_t* cycle, FleetWriter* writer) {
    follower = new FleetFollower(zone, cycle, writer);
    follower->start();
}

void stop_follower() {
    if (follower) follower->stop();
}

}  // namespace dpngx
