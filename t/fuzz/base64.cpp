// Strict base64 and hex: whatever decodes has exactly one encoding.
#include "core/encoding.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text((const char*)data, size);
    if (auto raw = dp::base64_decode_strict(text))
        if (dp::base64_encode(*raw) != text) abort();
    if (dp::base64_decode_strict(dp::base64_encode(text)) != std::string(text)) abort();
    if (auto raw = dp::hex_decode(text))
        if (raw->size() * 2 != text.size()) abort();
    if (auto ms = dp::parse_iso8601(text)) dp::iso8601(*ms);
    return 0;
}
