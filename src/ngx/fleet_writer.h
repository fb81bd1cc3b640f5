// Each worker's writer in fleet mode (fleet_writer.cpp): the changes its
// requests commit go to Redis through the compare-and-set script of
// core/fleet.h, in batches (group commit), and a request's answer waits for
// Redis's verdict.
#pragma once

#include <functional>
#include <memory>
#include <list>
#include <vector>

#include "ngx/durable.h"
#include "ngx/fleet_replica.h"
#include "ngx/redis_link.h"

namespace dpngx {

class FleetWriter final : public DurableWriter {
   public:
    FleetWriter(ZoneCtx* zone, ngx_cycle_t* cycle);
    void start() { link_.open(); }
    void stop() { link_.close(); }

    void committed(std::vector<dp::RecordChange>&& changes) override;
    void wait(ngx_http_request_t* r) override;
    void forget(ngx_http_request_t* r) override;
    void post() override;

    // Changes made outside any request (the gate retiring a token, the OTP
    // at start), with their outcome: undone unless Redis took them.
    void send_changes(std::vector<dp::RecordChange> changes, std::function<void(bool)> done);
    std::vector<dp::RecordChange>* collect_ = nullptr;  // set: committed changes go here

    bool up() const { return link_.up(); }
    // A read of this worker's link (the pairing log's entries): false when
    // the link is down (done is not called).
    bool read(const std::vector<std::string>& argv, Reply done) { return link_.send(argv, std::move(done)); }

   private:
    // Unknown: the link failed or Redis erred; the change may have landed.
    // NotSent: the link was down; Redis never saw it.
    enum class Outcome { Committed, Conflict, CapReached, Unknown, NotSent };
    using Done = std::function<void(Outcome, const Images&)>;  // on a conflict: Redis's records for the keys

    struct Queued {
        dp::FleetTransaction tx;
        Done done;
    };

    // A batch's WAIT (redis_replicas=): which of its transactions committed
    // and wait for it; unsent: the WAIT could not be queued.
    struct Replication {
        int target = 0;  // replicas WAIT asks for
        std::vector<size_t> committed;
        bool unsent = false;
    };

    bool send(const std::vector<dp::RecordChange>& changes, uint32_t account_cap, Done done);
    void send_batch();
    void answered(std::vector<Queued>& batch, redisReply* reply, Replication* replication);
    void replicated(std::vector<Queued>& batch, const Replication& replication, redisReply* reply);
    void end_batch();

    void finish(ngx_http_request_t* r, Outcome outcome, const Images& images);

    ZoneCtx* zone_;
    RedisLink link_;
    const std::string prefix_;
    std::list<std::shared_ptr<ngx_http_request_t*>> waiters_;
    std::vector<dp::RecordChange> background_;
    std::vector<Queued> queued_;  // waiting for the batch in flight to be answered
    bool batch_in_flight_ = false;
    bool conflict_master_current();
    time_t last_error_log_ = 0;  // Redis's refusals are logged once a minute
};

}  // namespace dpngx
