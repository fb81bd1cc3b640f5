// Request bodies: bounded parsing, RFC 8785 canonicalisation, I-JSON checks.
#include "core/json.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string error;
    dp::Json root = dp::parse_json_object(std::string_view((const char*)data, size), &error);
    if (!root) {
        if (error.empty()) abort();
        return 0;
    }
    dp::json_ijson_exact(root.get());
    std::string canonical = dp::json_canonical(root.get());
    // Canonical JSON is JSON, and canonicalising it again changes nothing.
    // (Re-read with integers as doubles: "1e20" canonicalises to 21 digits,
    // past what jansson's integers hold.)
    json_error_t err;
    dp::Json again(json_loadb(canonical.data(), canonical.size(), JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES, &err));
    if (!again || dp::json_canonical(again.get()) != canonical) abort();
    dp::json_compact(root.get());
    return 0;
}
