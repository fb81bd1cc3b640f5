// Text that reaches URLs, QR codes and names: code normalisation, the app
// URL template, Host validation, UTF-8 sanitising.
#include "core/codes.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto f = dpfuzz::fields(data, size, 3);  // template, code, host
    std::string code = dp::normalize_code(f[1]);
    if (code.find_first_of("- ") != std::string::npos) abort();
    if (code.size() >= 9) dp::format_code(code, '-');
    std::string url = dp::expand_app_url(f[0], f[1], f[2]);
    // One pass: the result grows by at most 3 bytes per inserted byte per placeholder.
    if (url.size() > f[0].size() + (f[0].size() / 5 + 1) * 3 * (f[1].size() + f[2].size())) abort();
    if (dp::valid_host(f[2]) && f[2].find_first_of("$/?#@ \r\n") != std::string::npos) abort();
    std::string clean = dp::sanitize_utf8(f[0], 20);
    if (clean.size() > 20 || dp::sanitize_utf8(clean, 20) != clean) abort();
    return 0;
}
