// Where a worker's committed changes go before their answer (durable.cpp):
// the journal (state=, persist.cpp) or the fleet's Redis (redis=,
// fleet_writer.cpp). A durable answer is held until the writer reports what
// became of its changes; the content side then decides what to answer, so
// the writers never call back into the content handler.
#pragma once

#include <vector>

#include "core/store.h"
#include "ngx/request.h"
#include "ngx/zone.h"

namespace dpngx {

// What became of a held request's changes. Anything but Durable: they were
// undone before the handler runs.
struct WriteResult {
    enum Kind {
        Durable,      // on disk, or taken by the fleet's Redis
        Failed,       // not written (or not known to be): 503 with `reason`
        AccountFull,  // fleet: other hosts hold the account's other pairings
        Conflict,     // fleet: another host changed what the route read; the replica has the newer records
    } kind;
    const char* reason = nullptr;  // Failed: for the 503's detail
};

class DurableWriter : public dp::ChangeLog {
   public:
    RequestCtx* current = nullptr;  // the request whose route runs now
    // Holds r (one reference) until its changes are durable, then settles it.
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

// This worker's writer, for the zone of the running cycle (set at its start).
void set_worker_writer(ZoneCtx* zone, DurableWriter* writer);
DurableWriter* zone_writer(ZoneCtx* zone);  // null: none (no state=, no redis=)

// A held request's outcome: undoes its changes unless durable, then calls
// the handler its route installed, which answers and releases the reference
// wait() took.
void settle(ZoneCtx* zone, ngx_http_request_t* r, const WriteResult& result);
// Undoes changes that nothing has changed since.
void undo_changes(ZoneCtx* zone, std::vector<dp::RecordChange>& changes);

// The request whose route runs now collects the changes it commits (null: none).
void collect_changes(ZoneCtx* zone, RequestCtx* ctx);
// For a scope: the request collects its changes until the scope ends, also
// when it ends by an exception (else the writer would keep a pointer to a
// request that is gone, and give it other work's changes).
struct CollectingChanges {
    CollectingChanges(ZoneCtx* zone, RequestCtx* ctx) : zone_(zone) { collect_changes(zone, ctx); }
    ~CollectingChanges() { collect_changes(zone_, nullptr); }
    CollectingChanges(const CollectingChanges&) = delete;
    CollectingChanges& operator=(const CollectingChanges&) = delete;

   private:
    ZoneCtx* zone_;
};
// A durable answer with changes is held until they are written (true: the
// request now waits, and `settled` answers it); anything else is answered now.
bool hold_until_durable(ngx_http_request_t* r, ZoneCtx* zone, RequestCtx* ctx, dp::Response&& resp,
                        void (*settled)(ngx_http_request_t*, const WriteResult&));
void forget_held(ngx_http_request_t* r, ZoneCtx* zone);
// Changes committed outside an API route (the gate retiring an expired
// token) go with the next batch, started now if none is in flight.
void write_soon(ZoneCtx* zone);
void flush_at_exit(ngx_cycle_t* cycle, ZoneCtx* zone);

}  // namespace dpngx
