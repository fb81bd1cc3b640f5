// Fleet mode's follower (fleet_follower.cpp): worker 0 keeps the host's
// replica zone in step with Redis.
#pragma once

#include "ngx/zone.h"

namespace dpngx {

class FleetWriter;

// The follower uses the writer for what it commits itself (the fleet's OTP).
void start_follower(ZoneCtx* zone, ngx_cycle_t* cycle, FleetWriter* writer);
void stop_follower();

}  // namespace dpngx
