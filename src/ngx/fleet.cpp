// Fleet mode (redis=): Redis holds the pairing state and every host's zone
// is a replica. Each worker commits its requests' changes to Redis
// (fleet_writer.cpp) and answers only when Redis took them; worker 0 of each
// host follows the change feed into the zone and resynchronises the whole
// replica whenever its link (re)connects (fleet_follower.cpp). The gate
// reads only the zone. hiredis's async API runs on nginx's event loop
// through connections of our own (redis_link.h): no worker ever blocks on
// Redis. This file starts the parts and holds what both change in the zone.
#include "ngx/fleet.h"

#include "core/encoding.h"
#include "ngx/fleet_follower.h"
#include "ngx/fleet_writer.h"

namespace dpngx {

std::string origin_of(ZoneCtx* zone) {
    return dp::hex_encode(std::string_view((const char*)zone->sh->state.fleet_origin, 8));
}

bool apply_images(ZoneCtx* zone, const Images& images, const char* from) {
    std::vector<dp::LogLeafEntry> leaves;
    const bool records_valid = apply_records(zone, images, from, &leaves);
    // The pairing log's leaves, in the fleet's order: one past the replica's
    // tree is a gap (a rebuild reads the log again).
    if (zone->log_on && !follow_log_leaves(zone, leaves)) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "device_pairing: redis %V: %s: the pairing log's leaves do not "
                      "follow this host's tree", &zone->fleet->text, from);
        return false;
    }
    return records_valid;
}

bool apply_records(ZoneCtx* zone, const Images& images, const char* from, std::vector<dp::LogLeafEntry>* leaves) {
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
        uint64_t index;
        if (dp::parse_fleet_log_field(prefix, key, &index)) {
            leaves->push_back(dp::LogLeafEntry{index, std::string(image)});
            continue;
        }
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

void request_resync(ZoneCtx* zone) {
    ZoneStore store(zone);
    dp::StoreLock lock(store);
    store.shared_for_persistence().fleet_resync = 1;
}

namespace {
FleetWriter* fleet_writer;
}  // namespace

ngx_int_t start_fleet(ngx_cycle_t* cycle, ZoneCtx* zone) {
    if (!zone || !zone->fleet || ngx_process != NGX_PROCESS_WORKER) return NGX_OK;
    try {
        fleet_writer = new FleetWriter(zone, cycle);
        set_worker_writer(zone, fleet_writer);
        fleet_writer->start();
        if (ngx_worker == 0) start_follower(zone, cycle, fleet_writer);
    } catch (...) {
        return NGX_ERROR;
    }
    return NGX_OK;
}

void stop_fleet() {
    stop_follower();
    if (fleet_writer) fleet_writer->stop();
}

bool fleet_out_of_step(ZoneCtx* zone) {
    if (!zone || !zone->fleet) return false;
    const int64_t since = ((volatile dp::SharedState&)zone->sh->state).fleet_out_of_step_ms;
    return since != 0 && now_ms() - since >= (int64_t)zone->mcf->redis_stale;
}

}  // namespace dpngx
