// A DPoP proof's claims: wherever the flat scan reads a text, jansson reads
// the same claims from it (the scan is a shortcut, never a second meaning).
#include "core/dpop.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text((const char*)data, size);
    dp::ProofClaims scanned;
    if (!dp::scan_flat_claims(text, &scanned)) return 0;
    std::string why;
    dp::Json tree = dp::parse_json_object(text, &why);
    if (!tree || !(dp::claims_of(tree.get()) == scanned)) abort();
    return 0;
}
