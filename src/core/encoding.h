// Text encodings used on the wire: strict standard base64, base64url, hex,
// ISO-8601 UTC timestamps. Pure C++, no nginx headers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dp {

using Bytes = std::string;  // raw octets; std::string keeps it simple and movable

// RFC 4648 section 4 with '=' padding. Decoding is strict: no whitespace,
// no URL-safe alphabet, padding required, non-zero trailing bits rejected,
// so every accepted input has exactly one encoding.
std::string base64_encode(std::string_view raw);
std::optional<Bytes> base64_decode_strict(std::string_view text);

// RFC 4648 section 5 without padding: used for tokens and ids in URLs.
std::string base64url_encode(std::string_view raw);
// Strict: no padding, only the URL-safe alphabet, zero trailing bits.
std::optional<Bytes> base64url_decode(std::string_view text);

std::string hex_encode(std::string_view raw);
std::optional<Bytes> hex_decode(std::string_view text);
// The value of a hex digit (either case), or -1.
int hex_digit_value(char c);
// The byte a "%XX" escape at text[pos] stands for, or -1 when it is not one.
int percent_escape_value(std::string_view text, size_t pos);
// Exactly len bytes from 2 * len hex digits into out; false otherwise.
bool hex_decode_to(std::string_view text, uint8_t* out, size_t len);

// A Host header fit to build a URL from: host[:port], where host is a DNS
// name or IPv4 address ([A-Za-z0-9.-]) or a bracketed IPv6 literal.
bool valid_host(std::string_view host);

// RFC 3986 percent-encoding of a query value: unreserved characters and ':'
// stay, everything else (& = # % space, bytes >= 0x80) becomes %XX.
std::string percent_encode(std::string_view value);

// Valid UTF-8 of at most max_bytes: invalid sequences and control characters
// dropped, cut on a character boundary.
std::string sanitize_utf8(std::string_view text, size_t max_bytes);
// Whether text is well-formed UTF-8 (control characters included).
bool valid_utf8(std::string_view text);

// "2026-03-12T10:00:00Z" (seed 002's form: whole seconds, which Swift's
// default ISO8601DateFormatter also reads) from milliseconds since the epoch.
std::string iso8601(int64_t epoch_ms);
// Accepts "YYYY-MM-DDTHH:MM:SS[.fff]Z"; nothing else.
std::optional<int64_t> parse_iso8601(std::string_view text);

}  // namespace dp
