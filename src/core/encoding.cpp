#include "core/encoding.h"

#include <cctype>

#include <cstdio>
#include <ctime>

namespace dp {

namespace {

const char kStd[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const char kUrl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string encode(std::string_view raw, const char* alphabet, bool pad) {
    std::string out;
    out.reserve((raw.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < raw.size(); i += 3) {
        uint32_t v = (uint8_t)raw[i] << 16 | (uint8_t)raw[i + 1] << 8 | (uint8_t)raw[i + 2];
        out += alphabet[v >> 18];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += alphabet[v & 63];
    }
    size_t rest = raw.size() - i;
    if (rest) {
        uint32_t v = (uint8_t)raw[i] << 16 | (rest == 2 ? (uint8_t)raw[i + 1] << 8 : 0);
        out += alphabet[v >> 18];
        out += alphabet[(v >> 12) & 63];
        if (rest == 2) out += alphabet[(v >> 6) & 63];
        if (pad) out.append(rest == 1 ? "==" : "=");
    }
    return out;
}

// Each byte's 6-bit value in an alphabet, -1 for a byte outside it.
struct DecodeTable {
    int8_t value[256];
    explicit DecodeTable(const char* alphabet) {
        for (int8_t& v : value) v = -1;
        for (int i = 0; i < 64; i++) value[(unsigned char)alphabet[i]] = (int8_t)i;
    }
};

// One decoder for both alphabets: padding, when the form has it, is one or
// two '=' at the end only; the bits a short last group drops must be zero
// (one canonical text per value).
std::optional<Bytes> decode(std::string_view text, const DecodeTable& table, bool padded) {
    size_t len = text.size();
    if (padded) {
        if (len % 4 != 0) return std::nullopt;
        for (int pads = 0; pads < 2 && len > 0 && text[len - 1] == '='; pads++) len--;
    }
    if (len % 4 == 1) return std::nullopt;
    Bytes out;
    out.reserve(len / 4 * 3 + 2);
    uint32_t bits = 0;
    int held = 0;
    for (size_t i = 0; i < len; i++) {
        const int v = table.value[(unsigned char)text[i]];
        if (v < 0) return std::nullopt;
        bits = (bits << 6 | (uint32_t)v) & 0xffffff;
        held += 6;
        if (held >= 8) {
            held -= 8;
            out += (char)(bits >> held);
        }
    }
    if (bits & ((1u << held) - 1)) return std::nullopt;
    return out;
}

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

}  // namespace

std::string base64_encode(std::string_view raw) { return encode(raw, kStd, true); }
std::string base64url_encode(std::string_view raw) { return encode(raw, kUrl, false); }

std::optional<Bytes> base64_decode_strict(std::string_view text) {
    static const DecodeTable table(kStd);
    return decode(text, table, true);
}

std::optional<Bytes> base64url_decode(std::string_view text) {
    static const DecodeTable table(kUrl);
    return decode(text, table, false);
}

std::string hex_encode(std::string_view raw) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(raw.size() * 2);
    for (unsigned char c : raw) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

int hex_digit_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int percent_escape_value(std::string_view text, size_t pos) {
    if (pos + 2 >= text.size() || text[pos] != '%') return -1;
    const int hi = hex_digit_value(text[pos + 1]), lo = hex_digit_value(text[pos + 2]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

bool hex_decode_to(std::string_view text, uint8_t* out, size_t len) {
    if (text.size() != 2 * len) return false;
    for (size_t i = 0; i < len; i++) {
        int hi = hex_digit_value(text[2 * i]), lo = hex_digit_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

std::optional<Bytes> hex_decode(std::string_view text) {
    if (text.size() % 2) return std::nullopt;
    Bytes out(text.size() / 2, '\0');
    if (!hex_decode_to(text, reinterpret_cast<uint8_t*>(out.data()), out.size())) return std::nullopt;
    return out;
}

std::string iso8601(int64_t epoch_ms) {
    time_t secs = (time_t)(epoch_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char buf[96];
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

std::optional<int64_t> parse_iso8601(std::string_view t) {
    // YYYY-MM-DDTHH:MM:SS then optional .f{1,9} then Z
    if (t.size() < 20) return std::nullopt;
    auto num = [&](size_t pos, size_t len, int& out) {
        out = 0;
        for (size_t i = pos; i < pos + len; i++) {
            if (t[i] < '0' || t[i] > '9') return false;
            out = out * 10 + (t[i] - '0');
        }
        return true;
    };
    int y, mo, d, h, mi, s;
    if (!num(0, 4, y) || t[4] != '-' || !num(5, 2, mo) || t[7] != '-' || !num(8, 2, d) ||
        t[10] != 'T' || !num(11, 2, h) || t[13] != ':' || !num(14, 2, mi) || t[16] != ':' ||
        !num(17, 2, s))
        return std::nullopt;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59) return std::nullopt;
    size_t pos = 19;
    int ms = 0;
    if (t[pos] == '.') {
        size_t start = ++pos;
        while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') {
            if (pos - start < 3) ms = ms * 10 + (t[pos] - '0');
            pos++;
        }
        size_t digits = pos - start;
        if (digits == 0 || digits > 9) return std::nullopt;
        for (size_t k = digits; k < 3; k++) ms *= 10;
    }
    if (pos + 1 != t.size() || t[pos] != 'Z') return std::nullopt;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    return ((days * 24 + h) * 60 + mi) * 60000LL + s * 1000LL + ms;
}

bool valid_host(std::string_view host) {
    if (host.empty() || host.size() > 255) return false;
    std::string_view name = host, port;
    if (host.front() == '[') {
        size_t close = host.find(']');
        if (close == std::string_view::npos || close < 3) return false;
        for (char c : host.substr(1, close - 1))
            if (!isxdigit((unsigned char)c) && c != ':' && c != '.') return false;
        name = host.substr(0, close + 1);
        port = host.substr(close + 1);
        if (!port.empty() && port.front() != ':') return false;
    } else {
        size_t colon = host.find(':');
        if (colon != std::string_view::npos) {
            name = host.substr(0, colon);
            port = host.substr(colon);
        }
        if (name.empty()) return false;
        for (char c : name)
            if (!isalnum((unsigned char)c) && c != '.' && c != '-') return false;
    }
    if (!port.empty()) {
        port.remove_prefix(1);
        if (port.empty() || port.size() > 5) return false;
        for (char c : port)
            if (!isdigit((unsigned char)c)) return false;
    }
    return true;
}

std::string percent_encode(std::string_view value) {
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : value) {
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == ':') {
            out += (char)c;
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

namespace {

// The length of the UTF-8 character at text[i] and its code point, or 0
// when none starts there (overlong forms, surrogates and values past
// U+10FFFF are not UTF-8).
size_t utf8_char_at(std::string_view text, size_t i, uint32_t* cp) {
    unsigned char c = (unsigned char)text[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + len <= text.size();
    *cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t k = 1; ok && k < len; k++) {
        unsigned char cc = (unsigned char)text[i + k];
        ok = (cc & 0xc0) == 0x80;
        *cp = *cp << 6 | (cc & 0x3f);
    }
    static const uint32_t min_of[] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && *cp >= min_of[len] && *cp <= 0x10ffff && !(*cp >= 0xd800 && *cp <= 0xdfff);
    return ok ? len : 0;
}

}  // namespace

bool valid_utf8(std::string_view text) {
    uint32_t cp;
    for (size_t i = 0, len; i < text.size(); i += len)
        if (!(len = utf8_char_at(text, i, &cp))) return false;
    return true;
}

std::string sanitize_utf8(std::string_view text, size_t max_bytes) {
    std::string out;
    size_t i = 0;
    while (i < text.size()) {
        uint32_t cp;
        const size_t len = utf8_char_at(text, i, &cp);
        if (!len) {
            i++;
            continue;
        }
        const bool control = cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0);
        if (!control) {
            if (out.size() + len > max_bytes) break;
            out.append(text.data() + i, len);
        }
        i += len;
    }
    return out;
}

}  // namespace dp
