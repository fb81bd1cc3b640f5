// Fleet mode (redis=): Redis holds the pairing state and every host's zone
// is a replica. fleet.cpp starts the parts: the link to Redis on nginx's
// event loop (redis_link.h), each worker's group-commit writer
// (fleet_writer.cpp) and worker 0's follower of the change feed
// (fleet_follower.cpp).
#pragma once

#include "ngx/zone.h"

namespace dpngx {

ngx_int_t start_fleet(ngx_cycle_t* cycle, ZoneCtx* zone);
void stop_fleet();
// The gate refuses when the replica has been out of step longer than allowed.
bool fleet_out_of_step(ZoneCtx* zone);

}  // namespace dpngx
