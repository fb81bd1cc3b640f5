// The gate (access.cpp): the access-phase handler, its variables, the deny
// filter, the subrequest guard and device_pairing_check.
#pragma once

#include "ngx/conf.h"

namespace dpngx {

ngx_int_t access_handler(ngx_http_request_t* r) noexcept;
ngx_int_t subrequest_guard(ngx_http_request_t* r) noexcept;
ngx_int_t check_handler(ngx_http_request_t* r) noexcept;
ngx_int_t add_variables(ngx_conf_t* cf) noexcept;
ngx_int_t init_deny_filter() noexcept;

}  // namespace dpngx
