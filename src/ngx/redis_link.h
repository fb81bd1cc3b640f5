// The hiredis adapter: one connection to Redis on nginx's event loop
// (hiredis's async API driven by an ngx_connection_t of our own, level-
// triggered), reconnecting with backoff, dropping a link that stops
// answering, and queuing a preamble (AUTH, SELECT, ROLE, SCRIPT LOAD) ahead
// of every connection's commands. With sentinels (redis_sentinel=) it first
// asks them for the master, in turn, and asks again after any disconnect,
// timeout, READONLY, LOADING or MASTERDOWN, or a ROLE that is not master
// (the Redis Sentinel client protocol). Fleet mode's writer and follower
// each hold one.
#pragma once

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/fleet.h"
#include "core/redis_ha.h"
#include "ngx/conf.h"

namespace dpngx {

constexpr ngx_msec_t kReplyTimeoutMs = 3000;   // a link silent this long with work pending is dropped
constexpr ngx_msec_t kFeedBlockMs = 1000;      // XREAD BLOCK: the feed is read at least once a second
constexpr ngx_msec_t kFirstRetryMs = 100;
constexpr ngx_msec_t kMaxRetryMs = 5000;
constexpr ngx_msec_t kMaxSentinelRetryMs = 250;  // a failover is being waited out: ask again soon
constexpr time_t kDownLogEveryS = 60;

using Reply = std::function<void(redisReply*)>;  // null: the link failed before a reply

inline bool is_int(const redisReply* r) { return r && r->type == REDIS_REPLY_INTEGER; }
inline bool is_array(const redisReply* r) { return r && r->type == REDIS_REPLY_ARRAY; }
inline std::string_view text_of(const redisReply* r) {
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) ? std::string_view(r->str, r->len)
                                                                                   : std::string_view();
}

// An error reply's text for a log line, at most 200 bytes; empty otherwise.
inline std::string error_text(const redisReply* r) {
    return r && r->type == REDIS_REPLY_ERROR ? std::string(r->str, std::min<size_t>(r->len, 200)) : std::string();
}

inline dp::ReplyView view_of(const redisReply* r);

// One connection to Redis on the event loop, reconnecting with backoff.
class RedisLink {
   public:
    RedisLink(FleetConf* conf, ngx_log_t* log, const char* role) : conf_(conf), log_(log), role_(role) {
        init_timer(&retry_, [](ngx_event_t* ev) noexcept { static_cast<RedisLink*>(ev->data)->open(); });
        init_timer(&watchdog_, [](ngx_event_t* ev) noexcept { static_cast<RedisLink*>(ev->data)->check(); });
    }
    std::function<void()> on_up, on_down;
    std::function<void(const dp::RedisAddress&)> on_master;  // the sentinels named the master (each time)
    std::vector<std::string> preamble;  // sent first on every connection (after AUTH, SELECT, ROLE)

    bool up() const { return ac_ && connected_ && !asking_sentinel_; }
    bool sentinel_mode() const { return conf_->ha && !conf_->ha->sentinels.empty(); }
    // How many replicas WAIT asks for (dp::wait_target): with sentinels,
    // every one this master was seen with that they do not hold down.
    int wait_target(int configured) const { return dp::wait_target(configured, seen_replicas_, down_replicas_); }
    // A master's ROLE reply (at connect, and with each batch's WAIT).
    void note_role(const redisReply* reply) {
        for (std::string& r : dp::role_replicas(view_of(reply)))
            if (std::find(seen_replicas_.begin(), seen_replicas_.end(), r) == seen_replicas_.end())
                seen_replicas_.push_back(std::move(r));
    }
    // With sentinels: the master this link was sent to ("host:port", empty
    // while asking), and when the sentinels named it (ngx_current_msec).
    std::string master_text() const { return master_ ? master_->text() : std::string(); }
    ngx_msec_t named_at() const { return named_at_; }
    // From a reply callback: drops this connection; the sentinels are asked
    // again before the next (the master may have changed).
    void rediscover(const char* why) { drop(why, true); }
    bool up_or_connecting() const { return ac_ != nullptr; }

    void open() {
        if (ac_ || closing_) return;
        asking_sentinel_ = sentinel_mode() && !master_;
        const FleetHa* ha = conf_->ha;
        if (asking_sentinel_) {
            const dp::RedisAddress& s = ha->sentinels[sentinel_];
            ac_ = redisAsyncConnect(s.host.c_str(), s.port);
        } else if (sentinel_mode()) {
            ac_ = redisAsyncConnect(master_->host.c_str(), master_->port);
        } else {
            ac_ = conf_->unix_path.len ? redisAsyncConnectUnix(conf_->unix_path_z)
                                       : redisAsyncConnect(conf_->host_z, (int)conf_->port);
        }
        if (!ac_ || ac_->err) {
            if (ac_) redisAsyncFree(ac_);
            ac_ = nullptr;
            return failed("cannot connect");
        }
        conn_ = ngx_get_connection(ac_->c.fd, log_);
        if (!conn_) {
            redisAsyncFree(ac_);
            ac_ = nullptr;
            return failed("no free nginx connection");
        }
        conn_->data = this;
        conn_->read->log = conn_->write->log = log_;
        conn_->read->handler = [](ngx_event_t* ev) noexcept {
            auto* link = static_cast<RedisLink*>(static_cast<ngx_connection_t*>(ev->data)->data);
            if (link->ac_) redisAsyncHandleRead(link->ac_);
        };
        conn_->write->handler = [](ngx_event_t* ev) noexcept {
            auto* link = static_cast<RedisLink*>(static_cast<ngx_connection_t*>(ev->data)->data);
            if (link->ac_) redisAsyncHandleWrite(link->ac_);
        };
        ac_->data = this;
        ac_->ev.data = this;
        ac_->ev.addRead = [](void* p) { static_cast<RedisLink*>(p)->watch(static_cast<RedisLink*>(p)->conn_->read, true); };
        ac_->ev.delRead = [](void* p) { static_cast<RedisLink*>(p)->watch(static_cast<RedisLink*>(p)->conn_->read, false); };
        ac_->ev.addWrite = [](void* p) { static_cast<RedisLink*>(p)->watch(static_cast<RedisLink*>(p)->conn_->write, true); };
        ac_->ev.delWrite = [](void* p) { static_cast<RedisLink*>(p)->watch(static_cast<RedisLink*>(p)->conn_->write, false); };
        ac_->ev.cleanup = [](void* p) { static_cast<RedisLink*>(p)->release(); };
        redisAsyncSetConnectCallback(ac_, [](const redisAsyncContext* ac, int status) {
            auto* link = static_cast<RedisLink*>(ac->data);
            if (status == REDIS_OK) return link->connected();
            link->ac_ = nullptr;  // hiredis frees it
            link->failed(ac->errstr);
        });
        redisAsyncSetDisconnectCallback(ac_, [](const redisAsyncContext* ac, int) {
            auto* link = static_cast<RedisLink*>(ac->data);
            link->ac_ = nullptr;
            const std::string why = !link->drop_reason_.empty() ? link->drop_reason_
                                    : ac->errstr[0]               ? ac->errstr
                                                                  : "disconnected";
            link->drop_reason_.clear();
            link->failed(why.c_str());
        });
        started_ = last_reply_ = ngx_current_msec;
        if (!watchdog_.timer_set) ngx_add_timer(&watchdog_, kReplyTimeoutMs / 3);
        // Queued now, sent first once connected.
        if (asking_sentinel_) {
            if (ha->sentinel_auth) send_now(dp::auth_command(*ha->sentinel_auth), checked("AUTH"));
            send_now({"SENTINEL", "replicas", ha->master_name},
                     [this](redisReply* r) { if (r) down_replicas_ = dp::sentinel_down_replicas(view_of(r)); });
            send_now({"SENTINEL", "get-master-addr-by-name", ha->master_name},
                     [this](redisReply* r) { if (r) sentinel_answered(r); });
            return;
        }
        if (ha && ha->auth) send_now(dp::auth_command(*ha->auth), checked("AUTH"));
        if (conf_->db) send_now({"SELECT", std::to_string(conf_->db)}, checked("SELECT"));
        if (sentinel_mode()) send_now({"ROLE"}, [this](redisReply* r) { if (r) role_answered(r); });
        if (!preamble.empty()) send_now(preamble, [](redisReply*) {});
        // What came while the sentinels were asked goes now, behind the preamble.
        Held held;
        held.swap(held_);
        for (auto& [argv, done] : held)
            if (!send_now(argv, done)) done(nullptr);
    }

    // The address this link writes to, for log lines.
    std::string target() const {
        if (sentinel_mode()) return master_ ? "master " + master_->text() : "the sentinels";
        return std::string((const char*)conf_->text.data, conf_->text.len);
    }

    // Sends a command; false (and done is not called) when the link is down.
    // while_connecting: queued behind the preamble on a link not yet up.
    bool send(const std::vector<std::string>& argv, Reply done, bool while_connecting = false) {
        if (!ac_ || (!connected_ && !while_connecting)) return false;
        if (asking_sentinel_) {  // held for the master's connection
            if (!while_connecting) return false;
            held_.emplace_back(argv, std::move(done));
            return true;
        }
        return send_now(argv, std::move(done));
    }

    bool send_now(const std::vector<std::string>& argv, Reply done) {
        if (!ac_) return false;
        std::vector<const char*> ptrs;
        std::vector<size_t> lens;
        for (const std::string& a : argv) {
            ptrs.push_back(a.data());
            lens.push_back(a.size());
        }
        auto* cb = new Reply(std::move(done));
        if (redisAsyncCommandArgv(ac_, on_reply, cb, (int)argv.size(), ptrs.data(), lens.data()) != REDIS_OK) {
            delete cb;
            return false;
        }
        pending_++;
        return true;
    }

    void close() {
        closing_ = true;
        fail_held();
        if (retry_.timer_set) ngx_del_timer(&retry_);
        if (watchdog_.timer_set) ngx_del_timer(&watchdog_);
        if (ac_) {
            redisAsyncContext* ac = ac_;
            ac_ = nullptr;
            redisAsyncFree(ac);
        }
    }

   private:
    void init_timer(ngx_event_t* ev, ngx_event_handler_pt handler) {
        ev->handler = handler;
        ev->data = this;
        ev->log = ngx_cycle->log;
        ev->cancelable = 1;  // a worker shutting down does not wait for them
    }

    static void on_reply(redisAsyncContext* ac, void* reply, void* privdata) {
        auto* link = static_cast<RedisLink*>(ac->data);
        std::unique_ptr<Reply> cb(static_cast<Reply*>(privdata));
        if (link) {
            link->pending_--;
            if (reply) link->last_reply_ = ngx_current_msec;
            if (reply && static_cast<redisReply*>(reply)->type != REDIS_REPLY_ERROR && !link->asking_sentinel_)
                link->healthy();
        }
        try {
            (*cb)(static_cast<redisReply*>(reply));
        } catch (const std::exception& e) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0, "device_pairing: redis reply: %s", e.what());
        }
        // Not the master (any more): READONLY, LOADING, MASTERDOWN.
        const auto* r = static_cast<redisReply*>(reply);
        if (link && r && r->type == REDIS_REPLY_ERROR && dp::error_means_rediscover(std::string_view(r->str, r->len)))
            link->drop(error_text(r), true);
    }

    void fail_held() {
        Held held;
        held.swap(held_);
        for (auto& h : held) h.second(nullptr);
    }

    // A reply callback that logs an error reply (AUTH refused, SELECT not
    // allowed) and drops the link: nothing after it can work.
    Reply checked(const char* what) {
        return [this, what](redisReply* r) {
            if (!r || r->type != REDIS_REPLY_ERROR) return;
            ngx_log_error(NGX_LOG_ERR, log_, 0, "device_pairing: redis %s refused %s (%s link): %s", target().c_str(),
                          what, role_, error_text(r).c_str());
            drop(std::string(what) + " refused", false);
        };
    }

    // Closes this connection from a reply callback (hiredis frees it when
    // the callback returns; its disconnect callback then runs failed()).
    // ask_sentinels: the master is looked up again before the next connect.
    void drop(std::string why, bool ask_sentinels) {
        if (!ac_) return;
        if (ask_sentinels) master_.reset();
        drop_reason_ = std::move(why);
        redisAsyncFree(ac_);
    }

    void sentinel_answered(redisReply* reply) {
        const auto master = dp::parse_sentinel_master(view_of(reply));
        const dp::RedisAddress& s = conf_->ha->sentinels[sentinel_];
        if (!master) {
            const std::string said = error_text(reply);
            return drop("sentinel " + s.text() + " does not name master \"" + conf_->ha->master_name + "\"" +
                            (said.empty() ? "" : ": " + said),
                        true);
        }
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log_, 0, "device_pairing redis: sentinel %s names %s (%s link)", s.text().c_str(),
                       master->text().c_str(), role_);
        if (!(master == last_master_)) seen_replicas_.clear();  // another master: its own replicas
        last_master_ = *master;
        master_ = master;
        named_at_ = ngx_current_msec;
        sentinels_tried_ = 0;
        if (on_master) on_master(*master);
        switching_ = true;  // to the master, at once
        drop("", false);
    }

    void role_answered(redisReply* reply) {
        if (dp::reply_says_master(view_of(reply))) return note_role(reply);
        const std::string what = reply->type == REDIS_REPLY_ERROR ? error_text(reply) : "not the master (a replica)";
        ngx_log_error(NGX_LOG_WARN, log_, 0, "device_pairing: redis %s: ROLE: %s (%s link); asking the sentinels again",
                      target().c_str(), what.c_str(), role_);
        drop("ROLE: " + what, true);
    }

    void watch(ngx_event_t* ev, bool on) {
        // Level-triggered: hiredis reads one buffer per call, so an edge
        // would strand the rest of a large reply.
        if (on && !ev->active) ngx_add_event(ev, ev->write ? NGX_WRITE_EVENT : NGX_READ_EVENT, NGX_LEVEL_EVENT);
        if (!on && ev->active) ngx_del_event(ev, ev->write ? NGX_WRITE_EVENT : NGX_READ_EVENT, 0);
    }

    void release() {  // hiredis is about to close the socket: as ngx_close_connection, but not the fd
        ngx_connection_t* c = conn_;
        if (!c) return;
        conn_ = nullptr;
        if (c->read->active || c->write->active) {
            if (ngx_del_conn)
                ngx_del_conn(c, 0);
            else {
                if (c->read->active) ngx_del_event(c->read, NGX_READ_EVENT, 0);
                if (c->write->active) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
            }
        }
        c->read->closed = c->write->closed = 1;
        ngx_free_connection(c);
        c->fd = (ngx_socket_t)-1;
    }

    void connected() {
        connected_ = true;
        if (asking_sentinel_) return;  // not up: it only asks for the master
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log_, 0, "device_pairing redis %s: %s link up", target().c_str(), role_);
        announced_ = true;
        if (on_up) on_up();
    }

    // A reply that is not an error: this connection works (AUTH taken).
    // Only now is the backoff reset, so a refused password is retried
    // ever more slowly, not at once.
    void healthy() {
        if (!connected_) return;
        backoff_ = kFirstRetryMs;
        if (down_since_) {
            ngx_log_error(NGX_LOG_NOTICE, log_, 0, "device_pairing: redis %s is reachable again (%s link)",
                          target().c_str(), role_);
            down_since_ = 0;
        }
    }

    void failed(const char* why) {
        const bool was_up = announced_;
        connected_ = announced_ = false;
        if (closing_) return;  // this worker let it go (exit, reload): nothing failed
        const bool exiting = ngx_exiting || ngx_terminate || ngx_quit;
        if (switching_) {  // the sentinels named the master: connect to it now
            switching_ = false;
            if (!exiting && !retry_.timer_set) ngx_add_timer(&retry_, 1);
            return;
        }
        std::string reason = why;
        if (asking_sentinel_) {
            reason = "sentinel " + conf_->ha->sentinels[sentinel_].text() + ": " + reason;
            sentinel_ = dp::next_sentinel(sentinel_, conf_->ha->sentinels.size());
            if (++sentinels_tried_ < conf_->ha->sentinels.size()) {  // the next one, at once
                ngx_log_error(NGX_LOG_INFO, log_, 0, "device_pairing: %s (%s link); asking the next", reason.c_str(), role_);
                if (!exiting && !retry_.timer_set) ngx_add_timer(&retry_, 1);
                return;
            }
            sentinels_tried_ = 0;
            fail_held();  // no sentinel named a master: what waited fails, as on a link that is down
        } else if (sentinel_mode()) {
            master_.reset();  // any disconnect or timeout: ask the sentinels again
        }
        if (!down_since_) down_since_ = ngx_time();
        if (ngx_time() - last_down_log_ >= kDownLogEveryS) {
            last_down_log_ = ngx_time();
            ngx_log_error(NGX_LOG_ERR, log_, 0, "device_pairing: redis %V unreachable (%s link): %s",
                          &conf_->text, role_, reason.c_str());
        }
        if (was_up && on_down) on_down();
        if (exiting) return;
        if (!retry_.timer_set) ngx_add_timer(&retry_, backoff_);
        backoff_ = std::min(backoff_ * 2, sentinel_mode() ? kMaxSentinelRetryMs : kMaxRetryMs);
    }

    // A link that stopped answering (a partition, a stopped server) is
    // dropped, which fails what it held.
    void check() {
        ngx_add_timer(&watchdog_, kReplyTimeoutMs / 3);
        if (!ac_) return;
        const bool stuck = connected_ ? pending_ > 0 && ngx_current_msec - last_reply_ > kReplyTimeoutMs + kFeedBlockMs
                                      : ngx_current_msec - started_ > kReplyTimeoutMs;
        if (!stuck) return;
        redisAsyncContext* ac = ac_;
        redisAsyncFree(ac);  // calls the disconnect callback, or none when never connected
        if (ac_ == ac) {
            ac_ = nullptr;
            failed("timed out");
        }
    }

    FleetConf* conf_;
    ngx_log_t* log_;
    const char* role_;
    redisAsyncContext* ac_ = nullptr;
    ngx_connection_t* conn_ = nullptr;
    bool connected_ = false, closing_ = false;
    // The master's replicas as seen (ROLE), kept while the sentinels name the
    // same master; and those the sentinels hold down.
    std::vector<std::string> seen_replicas_, down_replicas_;
    bool announced_ = false;        // on_up ran for this connection
    bool asking_sentinel_ = false;  // this connection asks a sentinel for the master
    bool switching_ = false;        // dropped to connect to the master the sentinels named
    size_t sentinel_ = 0, sentinels_tried_ = 0;
    std::optional<dp::RedisAddress> master_;  // the master the sentinels named last (sentinel mode); reset to ask again
    dp::RedisAddress last_master_;            // the one named before, kept
    ngx_msec_t named_at_ = 0;
    std::string drop_reason_;
    using Held = std::vector<std::pair<std::vector<std::string>, Reply>>;
    Held held_;  // sent while the sentinels are asked
    size_t pending_ = 0;
    ngx_msec_t started_ = 0, last_reply_ = 0, backoff_ = kFirstRetryMs;
    time_t down_since_ = 0, last_down_log_ = 0;
    ngx_event_t retry_{}, watchdog_{};
};


// A hiredis reply as the core's parsers read it: views into it, valid while
// its callback runs.
inline dp::ReplyView view_of(const redisReply* r) {
    dp::ReplyView v;
    if (!r) return v;
    switch (r->type) {
        case REDIS_REPLY_NIL: v.type = dp::ReplyView::Nil; break;
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_STATUS:
            v.type = dp::ReplyView::String;
            v.text = std::string_view(r->str, r->len);
            break;
        case REDIS_REPLY_ERROR:
            v.type = dp::ReplyView::Error;
            v.text = std::string_view(r->str, r->len);
            break;
        case REDIS_REPLY_INTEGER:
            v.type = dp::ReplyView::Integer;
            v.integer = r->integer;
            break;
        case REDIS_REPLY_ARRAY:
            v.type = dp::ReplyView::Array;
            v.elements.reserve(r->elements);
            for (size_t i = 0; i < r->elements; i++) v.elements.push_back(view_of(r->element[i]));
            break;
        default: v.type = dp::ReplyView::Other; break;
    }
    return v;
}

}  // namespace dpngx
