// Encodings and JSON: strict base64, hex, timestamps, bounded parsing, RFC 8785.
#include <gtest/gtest.h>

#include "core/encoding.h"
#include "core/json.h"
#include "harness.h"

using namespace dp;

TEST(Base64, StrictStandardOnly) {
    EXPECT_EQ(base64_encode("hello"), "aGVsbG8=");
    EXPECT_EQ(*base64_decode_strict("aGVsbG8="), "hello");
    EXPECT_EQ(*base64_decode_strict(""), "");
    EXPECT_FALSE(base64_decode_strict("aGVsbG8"));       // missing padding
    EXPECT_FALSE(base64_decode_strict("aGVs bG8="));     // whitespace
    EXPECT_FALSE(base64_decode_strict("+_8="));          // URL-safe alphabet
    EXPECT_FALSE(base64_decode_strict("aGVsbG9="));      // non-zero trailing bits
    EXPECT_FALSE(base64_decode_strict("aG=sbG8="));      // padding in the middle
    EXPECT_FALSE(base64_decode_strict("aGVsbG8=\n"));
    std::string all;
    for (int i = 0; i < 256; i++) all += (char)i;
    EXPECT_EQ(*base64_decode_strict(base64_encode(all)), all);
    EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
    EXPECT_EQ(*base64url_decode("-_8"), "\xfb\xff");
    EXPECT_EQ(*base64url_decode(base64url_encode(all)), all);
    EXPECT_EQ(*base64_decode_strict("aGk="), "hi");
    EXPECT_EQ(*base64_decode_strict("aA=="), "h");
    EXPECT_FALSE(base64url_decode("-_8="));     // no padding in the URL form
    EXPECT_FALSE(base64url_decode("+/8"));      // standard alphabet
    EXPECT_FALSE(base64url_decode("-_9"));      // non-zero trailing bits
    EXPECT_FALSE(base64url_decode("aGVsb"));    // a length no byte string has
    EXPECT_FALSE(base64_decode_strict("a==="));  // three pads
    EXPECT_FALSE(base64_decode_strict("===="));
}

TEST(Encoding, HexAndTime) {
    EXPECT_EQ(hex_encode("\x01\xab"), "01ab");
    EXPECT_EQ(*hex_decode("01AB"), "\x01\xab");
    EXPECT_FALSE(hex_decode("0g"));
    EXPECT_EQ(iso8601(0), "1970-01-01T00:00:00Z");
    EXPECT_EQ(iso8601(1773309600123), "2026-03-12T10:00:00Z") << "whole seconds, as seed 002 shows";
    EXPECT_EQ(*parse_iso8601("2026-03-12T10:00:00Z"), 1773309600000);
    EXPECT_EQ(*parse_iso8601("2026-03-12T10:00:00.1Z"), 1773309600100);
    EXPECT_EQ(*parse_iso8601(iso8601(kT0)), kT0);
    EXPECT_FALSE(parse_iso8601("2026-03-12 10:00:00Z"));
    EXPECT_FALSE(parse_iso8601("2026-03-12T10:00:00+01:00"));
    EXPECT_FALSE(parse_iso8601("2026-13-12T10:00:00Z"));
}

TEST(Json, RejectsDuplicatesDepthAndNonObjects) {
    std::string err;
    EXPECT_TRUE(parse_json_object("{\"a\":1}", &err));
    EXPECT_FALSE(parse_json_object("{\"a\":1,\"a\":2}", &err));
    EXPECT_FALSE(parse_json_object("[1]", &err));
    EXPECT_FALSE(parse_json_object("{\"a\":", &err));
    EXPECT_FALSE(parse_json_object(std::string(20, '[') + std::string(20, ']'), &err));
    std::string deep = "{\"a\":" + std::string(20, '[') + std::string(20, ']') + "}";
    EXPECT_FALSE(parse_json_object(deep, &err));
    EXPECT_NE(err.find("deeper"), std::string::npos);
}

TEST(Json, CanonicalRfc8785) {
    std::string err;
    Json j = parse_json_object(
        "{\"b\":[1.5,1e21,1e-7,0.000001,-0.0,100,\"x\\u0001\\n\\\"\"],\"a\":{\"\\u00e9\":true,\"z\":null},"
        "\"\\ud83d\\ude00\":1,\"\\ufb01\":2}", &err);
    ASSERT_TRUE(j) << err;
    EXPECT_EQ(json_canonical(j.get()),
              "{\"a\":{\"z\":null,\"\xc3\xa9\":true},\"b\":[1.5,1e+21,1e-7,0.000001,0,100,\"x\\u0001\\n\\\"\"],"
              "\"\xf0\x9f\x98\x80\":1,\"\xef\xac\x81\":2}");
}

TEST(Encoding, HostsUrlValuesAndNames) {
    for (const char* ok : {"gw.local", "gw.local:3001", "127.0.0.1:80", "[::1]:8080", "[fe80::1]", "a-b.example"})
        EXPECT_TRUE(valid_host(ok)) << ok;
    for (const char* bad : {"", "\xff", "x$hostx", "a b", "gw/x", "gw:", "gw:123456", "[::1", "[::1]x", "gw:80:80",
                            "user@gw", "gw?x", "gw#x"})
        EXPECT_FALSE(valid_host(bad)) << bad;
    EXPECT_EQ(percent_encode("127.0.0.1:3001"), "127.0.0.1:3001");
    EXPECT_EQ(percent_encode("a&b=c d#%$\xc3\xa9"), "a%26b%3Dc%20d%23%25%24%C3%A9");
    // Cut at 20 bytes inside a character: the character goes, not half of it.
    EXPECT_EQ(sanitize_utf8("A\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9-App", 20),
              "A\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    EXPECT_EQ(sanitize_utf8("ok\xff\xc3(\x01\x7f\xed\xa0\x80\xc0\xaf!", 64), "ok(!") << "invalid, control, surrogate, overlong";
    EXPECT_EQ(sanitize_utf8("\xf0\x9f\x98\x80", 3), "");
}

TEST(Json, IntegersBeyond2To53AreNotExact) {
    std::string err;
    EXPECT_TRUE(json_ijson_exact(parse_json_object("{\"a\":[9007199254740991,-9007199254740991,1.5]}", &err).get()));
    EXPECT_FALSE(json_ijson_exact(parse_json_object("{\"a\":9007199254740993}", &err).get()));
    EXPECT_FALSE(json_ijson_exact(parse_json_object("{\"a\":{\"b\":[-9007199254740992]}}", &err).get()));
}
