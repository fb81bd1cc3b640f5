// The nginx side of ngx_http_device_pairing_module: configuration, the
// shared-memory zone, and the handlers. Everything nginx calls is noexcept
// and catches all exceptions; the pairing logic lives in src/core.
#pragma once

extern "C" {
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
}

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/api.h"
#include "core/digest_table.h"
#include "core/http.h"
#include "core/settings.h"
#include "core/store.h"

extern "C" ngx_module_t ngx_http_device_pairing_module;

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
    dp::SharedState state;
    // The readers-writer protocol beside the slab mutex (see ZoneStore).
    ngx_atomic_t writer;                      // pid of the process writing, 0: none
    ngx_atomic_t reader_slots;                // process slots that have ever read
    ngx_atomic_t readers[NGX_MAX_PROCESSES];  // per process slot: pid while it reads, else 0
};
static_assert(dp::kShmSafe<SharedZone>);

struct MainConf;

// redis=HOST:PORT | redis=unix:PATH, redis_prefix=, redis_db=
struct FleetConf {
    ngx_str_t text;         // as configured, for log lines
    char* host_z;           // null-terminated, for hiredis
    ngx_int_t port;
    ngx_str_t unix_path;
    char* unix_path_z;
    ngx_str_t prefix;
    ngx_int_t db;
};

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
    void report_full(dp::Kind kind) override;
    size_t footprint(dp::Kind kind) override;
    size_t counter_slot() override { return (size_t)ngx_process_slot; }

   private:
    dp::DigestTable by_digest();  // the zone's (kind, key) table: one probe per lookup
    ZoneCtx* zone_;
    bool defer_indexes_ = false;
};

// device_pairing_audit_log: one of nginx's open files, or a syslog peer.
struct AuditLog {
    ngx_open_file_t* file;
    ngx_syslog_peer_t* syslog;
};

struct SrvConf {
    ngx_str_t token_file;
    ngx_str_t device_keys;
    ngx_str_t identity;
    ngx_str_t url;
    ngx_str_t app_url;
    ngx_msec_t otp_ttl;
    time_t mailbox_ttl;
    time_t code_ttl;
    ngx_uint_t max_pairings;
    size_t max_body;
    ngx_uint_t qr_colors;
    ngx_uint_t approvers;  // device_pairing_approvers: 0 any, 1 owner
    time_t token_idle_timeout;  // 0: off
    time_t token_lifetime;      // 0: off
    ngx_uint_t max_devices;     // 0: off
    AuditLog* audit;            // null: off
    bool identity_created;      // this configuration made the identity key: an audit event at start
    ngx_http_core_srv_conf_t* core;  // its server{}: listen addresses and names for the start-up URL
    dp::Settings* settings;  // built in merge; destroyed by a pool cleanup
};

struct MainConf {
    ngx_shm_zone_t* zone;
    SrvConf* first_pairing_srv;  // whose URL the startup banner shows
    ngx_array_t pairing_srvs;    // SrvConf* of every server with `device_pairing on`
    ngx_flag_t pairing_used;
    ngx_msec_t redis_stale;      // device_pairing_redis_stale: the gate serves a replica out of step this long
    ngx_str_t secret_key_file;   // device_pairing_secret_key (empty: beside the token file)
};

enum AuthMode : ngx_uint_t { kAuthOff = 0, kAuthBearer, kAuthDeviceKey, kAuthAny };

struct LocConf {
    ngx_flag_t enable;
    ngx_uint_t auth;               // device_pairing_auth: the access-phase gate
    ngx_uint_t check;              // device_pairing_check: a content handler for auth_request
    ngx_flag_t pass_credentials;   // keep Authorization / X-DEVICE-KEY for the upstream
    ngx_flag_t metrics;            // device_pairing_metrics: the Prometheus exposition
};

// Per request: the gate's verdict (for the variables) and the API call state.
// It lives in a pool cleanup, so it is found again after an internal
// redirect has zeroed the module contexts (as realip finds its own).
struct RequestCtx {
    ngx_http_request_t* owner = nullptr;  // subrequests share the pool: whose this is
    dp::Principal principal;
    bool authenticated = false;
    // A denial by the gate: nginx answers it (error_page, satisfy, auth_delay
    // apply); when that answer is nginx's own page for this very location,
    // the deny filter puts the problem+json body in its place.
    const dp::Response* denial = nullptr;
    void* denied_in = nullptr;            // the LocConf that denied
    ngx_uint_t denied_status = 0;
    bool replacing_body = false;
    bool body_replaced = false;
    dp::RouteMatch route;
    ngx_msec_t poll_deadline = 0;         // monotonic (ngx_current_msec); 0: not polling yet
    bool polling = false;
    uint64_t poll_changes_seen = 0;       // the zone's change count when the poll last ran
    ngx_event_t poll_timer;
    // The record changes this request's route committed (for an undo), and
    // the answer held until they are durable; made only for API routes with
    // state=, so the gate's per-request context stays small.
    struct Durable {
        std::vector<dp::RecordChange> changes;
        dp::Response held;
        bool waiting = false;
    };
    std::unique_ptr<Durable> durable;
    std::string body;          // the request body, for a route run again (fleet: after a conflict)
    int attempts = 0;          // runs of the route so far
};

RequestCtx* request_ctx(ngx_http_request_t* r);  // created on first use; null on error
RequestCtx* find_ctx(ngx_http_request_t* r);     // existing one (after redirects too), or null

inline std::string to_string(const ngx_str_t& s) {
    return std::string(reinterpret_cast<const char*>(s.data), s.len);
}

// The first element of an ngx_list_t that satisfies pred, or null.
template <typename T, typename Pred>
T* find_in_list(ngx_list_t* list, Pred&& pred) {
    for (ngx_list_part_t* part = &list->part; part; part = part->next) {
        T* elts = static_cast<T*>(part->elts);
        for (ngx_uint_t i = 0; i < part->nelts; i++)
            if (pred(elts[i])) return &elts[i];
    }
    return nullptr;
}

int64_t now_ms();
dp::ClientAddr client_addr(ngx_http_request_t* r);
std::string header_value(ngx_http_request_t* r, const char* lowercase_name);
SrvConf* srv_conf(ngx_http_request_t* r);

// content.cpp: the API's content handler and the answer it sends.
ngx_int_t content_handler(ngx_http_request_t* r) noexcept;
ngx_int_t send_response(ngx_http_request_t* r, const dp::Response& resp);
// Sends a response from a phase that is not the content phase and ends the request.
ngx_int_t answer_now(ngx_http_request_t* r, const dp::Response& resp);
// Runs the matched route with the body read so far and answers, or parks a long poll.
ngx_int_t run_route(ngx_http_request_t* r, RequestCtx* ctx, std::string body);

// poll.cpp: GET ...?wait=N asks the zone again on a timer until ready or due.
ngx_int_t park_poll(ngx_http_request_t* r, RequestCtx* ctx);

// access.cpp: the gate, its variables, the deny filter, the subrequest
// guard and device_pairing_check.
ngx_int_t access_handler(ngx_http_request_t* r) noexcept;
ngx_int_t subrequest_guard(ngx_http_request_t* r) noexcept;
ngx_int_t check_handler(ngx_http_request_t* r) noexcept;
ngx_int_t add_variables(ngx_conf_t* cf) noexcept;
ngx_int_t init_deny_filter() noexcept;

// console.cpp: metrics and the audit log.
ngx_int_t metrics_handler(ngx_http_request_t* r) noexcept;
char* audit_log_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf) noexcept;
// The events of an answer that stands, with the request's address and User-Agent.
void write_audit(ngx_http_request_t* r, const std::vector<dp::AuditEvent>& events);
void write_audit_at_start(AuditLog* log, const dp::AuditEvent& event, ngx_log_t* error_log);

// zone.cpp
ngx_int_t init_zone(ngx_shm_zone_t* shm_zone, void* data) noexcept;
// A new OTP for the operator: the error log (notice), the banner file, and
// the terminal that started nginx when there is one.
void show_banner(ZoneCtx* zone, const std::vector<std::string>& lines, ngx_log_t* log);
// A starting configuration's OTP: a new one with its banner, or where the
// live one's banner is (a reload). Standalone zones only: a fleet's OTP is
// made by worker 0 once in step.
void show_otp_at_start(ZoneCtx* zone, ngx_log_t* log);
ZoneCtx* zone_of(ngx_http_request_t* r);

// Where a worker's committed changes go before their answer: the journal
// (state=) or the fleet's Redis (redis=). A durable answer waits for it.
class DurableWriter : public dp::ChangeLog {
   public:
    RequestCtx* current = nullptr;  // the request whose route runs now
    // Holds r until its changes are durable, then sends ctx->durable->held (or 503).
    virtual void wait(ngx_http_request_t* r) = 0;
    // A request that goes away is no longer answered.
    virtual void forget(ngx_http_request_t* r) = 0;
    // Sends what was committed outside a request (the gate retiring a token).
    virtual void post() = 0;
    virtual void flush_at_exit() {}

   protected:
    // A worker shutting down gracefully exits once only cancelable timers
    // are left: while writes are in flight this one keeps it for their
    // answers (a reload under load).
    void keep_worker(bool in_flight);

   private:
    ngx_event_t keep_worker_timer_{};
};
// Answers a held request: its answer when its changes are durable, else
// (after undoing them) refusal, or 503 with failure_detail.
void answer_held(ZoneCtx* zone, ngx_http_request_t* r, bool durable, const char* failure_detail,
                 const dp::Response* refusal = nullptr);
// Undoes a request's changes that nothing has changed since.
void undo_changes(ZoneCtx* zone, std::vector<dp::RecordChange>& changes);

// persist.cpp: a blocking step run in nginx's thread pool, with its
// completion in the event loop.
struct ThreadStep {
    std::function<bool(std::string*)> work;  // thread: no nginx calls, no zone access
    std::function<void(bool, const std::string&)> done;
    bool ok = false;
    std::string error;
};
ngx_thread_task_t* new_thread_task(ngx_cycle_t* cycle, ThreadStep* step);
ngx_thread_pool_t* default_thread_pool(ngx_cycle_t* cycle);

// persist.cpp: the journal (group commit in a thread, undo on failure) and
// its compaction.
ngx_int_t start_journal(ngx_cycle_t* cycle, ZoneCtx* zone);
// A new zone's records from state=: the snapshot, then the journals, under
// the state's lock; the zone then owns the journal (a binary upgrade's older
// generation stops appending).
ngx_int_t recover_state(ZoneStore& store, ZoneCtx* ctx, uint32_t now_s, ngx_log_t* log);
// A configuration that keeps a zone (reload, resize) with another state=
// than the one before: writes the zone's whole state at the new path before
// any worker journals there, or refuses a path that already holds state.
ngx_int_t carry_state_over(ZoneCtx* ctx, const ngx_str_t& old_state_path, ngx_log_t* log);
// fleet.cpp: redis=, this worker's link to Redis, and (worker 0) the feed.
ngx_int_t start_fleet(ngx_cycle_t* cycle, ZoneCtx* zone);
void stop_fleet();
// The gate refuses when the replica has been out of step longer than allowed.
bool fleet_out_of_step(ZoneCtx* zone);
// The request whose route runs now collects the changes it commits.
void journal_current(ZoneCtx* zone, RequestCtx* ctx);
// A durable answer with changes is held until they are on disk (true: the
// request now waits); anything else is answered now.
bool journal_hold(ngx_http_request_t* r, ZoneCtx* zone, RequestCtx* ctx, dp::Response&& resp);
void journal_forget(ngx_http_request_t* r, ZoneCtx* zone);
// Changes committed outside an API route (the gate retiring an expired
// token) go to disk with the next batch, started now if none is in flight.
void journal_flush_soon(ZoneCtx* zone);
void flush_at_exit(ngx_cycle_t* cycle, ZoneCtx* zone);
// zone.cpp: a resize retired the zone this worker uses: no more writes.
bool zone_retired(ZoneCtx* zone);
// The zone's name as the journal's owner (and on fleet feed entries).
uint64_t zone_id(ZoneCtx* zone);
// The zone's count of committed changes (one word, read without the lock).
inline uint64_t zone_changes(ZoneCtx* zone) {
    return zone && zone->sh ? ((volatile dp::SharedState&)zone->sh->state).dirty : 0;
}

}  // namespace dpngx
