#include "core/json.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace dp {

namespace {

size_t depth_of(const json_t* v) {
    size_t deepest = 0;
    if (json_is_object(v)) {
        const char* key;
        json_t* member;
        json_object_foreach(const_cast<json_t*>(v), key, member) deepest = std::max(deepest, depth_of(member));
        return deepest + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t* member;
        json_array_foreach(v, i, member) deepest = std::max(deepest, depth_of(member));
        return deepest + 1;
    }
    return 0;
}

// UTF-16 code unit order, as RFC 8785 section 3.2.3 requires for member names.
std::u16string utf16_of(const char* s) {
    std::u16string out;
    const unsigned char* p = (const unsigned char*)s;
    while (*p) {
        uint32_t cp;
        int extra;
        if (*p < 0x80) { cp = *p; extra = 0; }
        else if ((*p >> 5) == 6) { cp = *p & 0x1f; extra = 1; }
        else if ((*p >> 4) == 14) { cp = *p & 0x0f; extra = 2; }
        else { cp = *p & 0x07; extra = 3; }
        p++;
        for (int i = 0; i < extra && *p; i++) cp = cp << 6 | (*p++ & 0x3f);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            out += (char16_t)(0xd800 + (cp >> 10));
            out += (char16_t)(0xdc00 + (cp & 0x3ff));
        } else {
            out += (char16_t)cp;
        }
    }
    return out;
}

void canonical_string(std::string& out, const char* s, size_t len) {
    out += '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    snprintf(buf, sizeof(buf), "\\u%04x", c);
                    out += buf;
                } else {
                    out += (char)c;
                }
        }
    }
    out += '"';
}

// ECMAScript Number.prototype.toString, which RFC 8785 section 3.2.2.3 uses.
void canonical_number(std::string& out, double v) {
    if (!std::isfinite(v)) throw std::invalid_argument("non-finite number");
    if (v == 0) {
        out += '0';
        return;
    }
    if (v < 0) {
        out += '-';
        v = -v;
    }
    char buf[40];
    for (int precision = 0; precision < 17; precision++) {  // shortest round-trip digits
        snprintf(buf, sizeof(buf), "%.*e", precision, v);
        if (strtod(buf, nullptr) == v) break;
    }
    std::string digits;
    const char* p = buf;
    for (; *p != 'e'; p++)
        if (*p != '.') digits += *p;
    int n = atoi(p + 1) + 1;  // position of the decimal point
    while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
    int k = (int)digits.size();
    if (k <= n && n <= 21) {
        out += digits;
        out.append((size_t)(n - k), '0');
    } else if (0 < n && n <= 21) {
        out += digits.substr(0, (size_t)n) + "." + digits.substr((size_t)n);
    } else if (-6 < n && n <= 0) {
        out += "0.";
        out.append((size_t)(-n), '0');
        out += digits;
    } else {
        out += digits[0];
        if (k > 1) out += "." + digits.substr(1);
        out += n - 1 >= 0 ? "e+" : "e-";
        out += std::to_string(std::abs(n - 1));
    }
}

void canonical(std::string& out, const json_t* v) {
    switch (json_typeof(v)) {
        case JSON_OBJECT: {
            std::vector<std::pair<std::u16string, const char*>> keys;
            const char* key;
            json_t* member;
            json_object_foreach(const_cast<json_t*>(v), key, member) keys.emplace_back(utf16_of(key), key);
            std::sort(keys.begin(), keys.end());
            out += '{';
            for (size_t i = 0; i < keys.size(); i++) {
                if (i) out += ',';
                canonical_string(out, keys[i].second, strlen(keys[i].second));
                out += ':';
                canonical(out, json_object_get(v, keys[i].second));
            }
            out += '}';
            break;
        }
        case JSON_ARRAY: {
            out += '[';
            for (size_t i = 0; i < json_array_size(v); i++) {
                if (i) out += ',';
                canonical(out, json_array_get(v, i));
            }
            out += ']';
            break;
        }
        case JSON_STRING: canonical_string(out, json_string_value(v), json_string_length(v)); break;
        case JSON_INTEGER: canonical_number(out, (double)json_integer_value(v)); break;
        case JSON_REAL: canonical_number(out, json_real_value(v)); break;
        case JSON_TRUE: out += "true"; break;
        case JSON_FALSE: out += "false"; break;
        case JSON_NULL: out += "null"; break;
    }
}

}  // namespace

Json parse_json_object(std::string_view text, std::string* error, JsonLimits limits) {
    json_error_t err;
    Json root(json_loadb(text.data(), text.size(), JSON_REJECT_DUPLICATES, &err));
    if (!root) {
        *error = std::string("malformed JSON: ") + err.text;
        return nullptr;
    }
    if (!json_is_object(root.get())) {
        *error = "the body must be a JSON object";
        return nullptr;
    }
    if (depth_of(root.get()) > limits.max_depth) {
        *error = "JSON nested deeper than " + std::to_string(limits.max_depth) + " levels";
        return nullptr;
    }
    return root;
}

std::string json_compact(const json_t* value) {
    char* s = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (!s) throw std::bad_alloc();
    std::string out(s);
    free(s);
    return out;
}

std::string json_canonical(const json_t* value) {
    std::string out;
    canonical(out, value);
    return out;
}

bool json_ijson_exact(const json_t* value) {
    constexpr json_int_t kMaxExact = (json_int_t(1) << 53) - 1;
    if (json_is_integer(value)) return json_integer_value(value) >= -kMaxExact && json_integer_value(value) <= kMaxExact;
    if (json_is_object(value)) {
        const char* key;
        json_t* member;
        json_object_foreach(const_cast<json_t*>(value), key, member) if (!json_ijson_exact(member)) return false;
    }
    if (json_is_array(value)) {
        size_t i;
        json_t* member;
        json_array_foreach(value, i, member) if (!json_ijson_exact(member)) return false;
    }
    return true;
}

json_t* json_checked(json_t* value) {
    if (!value) throw std::runtime_error("a JSON value could not be built");
    return value;
}

void json_checked_append(json_t* array, json_t* value) {
    if (json_array_append_new(array, json_checked(value)) != 0) throw std::runtime_error("a JSON array could not grow");
}

std::optional<std::string> json_string_member(const json_t* object, const char* key) {
    const json_t* v = json_object_get(object, key);
    if (!json_is_string(v)) return std::nullopt;
    return std::string(json_string_value(v), json_string_length(v));
}

}  // namespace dp
