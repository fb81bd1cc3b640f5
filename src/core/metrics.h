// The Prometheus text exposition (format 0.0.4) of the zone's counters and
// gauges, for `device_pairing_metrics;`.
#pragma once

#include <string>

#include "core/store.h"

namespace dp {

constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Counters are sums over the process slots; gauges come from the zone's
// counts, except the pending codes (a walk of the code requests, bounded by
// their quota) and the oldest last-seen (a walk of the devices in slices of
// the id index, each under a read lock).
std::string metrics_text(Store& store, uint32_t now_s);

}  // namespace dp
