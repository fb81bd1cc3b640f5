// JSON on top of jansson: bounded parsing of request bodies, RFC 8785 (JCS)
// canonical serialisation for signatures, compact output for responses.
#pragma once

#include <jansson.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace dp {

struct JsonDeleter {
    void operator()(json_t* j) const { json_decref(j); }
};
using Json = std::unique_ptr<json_t, JsonDeleter>;

struct JsonLimits {
    size_t max_depth = 16;
};

// A body that is one JSON object, duplicate keys rejected, nesting bounded.
// On failure returns null and sets *error to a sentence fit for "detail".
Json parse_json_object(std::string_view text, std::string* error, JsonLimits limits = {});

std::string json_compact(const json_t* value);  // keys in insertion order
std::string json_canonical(const json_t* value);  // RFC 8785
// True when every integer in value is within +-(2^53 - 1): what RFC 8785
// (an IEEE double per number) can carry exactly.
bool json_ijson_exact(const json_t* value);

// jansson answers NULL when it cannot build a value (memory, invalid UTF-8):
// an error the handler must not skip. These throw, and the API answers 500.
json_t* json_checked(json_t* value);
void json_checked_append(json_t* array, json_t* value);  // steals value

// A string member, or nullopt when absent or not a string.
std::optional<std::string> json_string_member(const json_t* object, const char* key);

}  // namespace dp
