// The operator's OTP (banner.cpp).
#pragma once

#include <string>
#include <vector>

#include "ngx/zone.h"

namespace dpngx {

// A new OTP for the operator: the error log (notice), the banner file, and
// the terminal that started nginx when there is one.
void show_banner(ZoneCtx* zone, const std::vector<std::string>& lines, ngx_log_t* log);
// A starting configuration's OTP: a new one with its banner, or where the
// live one's banner is (a reload). Standalone zones only: a fleet's OTP is
// made by worker 0 once in step.
void show_otp_at_start(ZoneCtx* zone, ngx_log_t* log);

}  // namespace dpngx
