// Shared by the libFuzzer harnesses: the in-memory store aborts on a lock
// violation (a finding), and inputs are split into fields on NUL bytes.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#define DP_STORE_VIOLATION(what) abort()
#include "memory_store.h"

namespace dpfuzz {

inline std::vector<std::string> fields(const uint8_t* data, size_t size, size_t count) {
    std::vector<std::string> out(count);
    std::string_view in((const char*)data, size);
    for (size_t i = 0; i < count && !in.empty(); i++) {
        size_t nul = i + 1 < count ? in.find('\0') : std::string_view::npos;
        out[i] = std::string(in.substr(0, nul));
        in = nul == std::string_view::npos ? std::string_view() : in.substr(nul + 1);
    }
    return out;
}

}  // namespace dpfuzz
