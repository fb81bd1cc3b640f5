// The device-keys file parser: a bad line is named, never half-accepted.
#include "core/files.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<dp::DeviceKey> keys;
    std::string error;
    bool ok = dp::parse_device_keys(std::string((const char*)data, size), &keys, &error);
    if (!ok && error.rfind("line ", 0) != 0) abort();
    for (const dp::DeviceKey& k : keys)
        if (k.account.empty() || k.account.size() > 64) abort();
    return 0;
}
