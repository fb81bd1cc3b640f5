// state=PATH (persist.cpp): recovery at start, the journal writer and its
// follower, compaction, and carrying the state over to a moved path.
#pragma once

#include "ngx/zone.h"

namespace dpngx {

ngx_int_t start_journal(ngx_cycle_t* cycle, ZoneCtx* zone);
// A new zone's records from state=: the snapshot, then the journals, under
// the state's lock; the zone then owns the journal (a binary upgrade's older
// generation stops appending).
ngx_int_t recover_state(ZoneStore& store, ZoneCtx* ctx, uint32_t now_s, ngx_log_t* log);
// A configuration that keeps a zone (reload, resize) with another state=
// than the one before: writes the zone's whole state at the new path before
// any worker journals there, or refuses a path that already holds state.
ngx_int_t carry_state_over(ZoneCtx* ctx, const ngx_str_t& old_state_path, ngx_log_t* log);

}  // namespace dpngx
