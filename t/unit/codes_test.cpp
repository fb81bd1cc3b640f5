// Seed 002: pairing codes.
#include <gtest/gtest.h>

#include "core/codes.h"
#include "harness.h"

using namespace dp;

TEST(Codes, NormalizeAndFormat) {
    EXPECT_EQ(normalize_code("abc-123 xyz"), "ABC123XYZ");
    EXPECT_EQ(format_code("ABC123XYZ", '-'), "ABC-123-XYZ");
}

TEST(Codes, ApproveDeliversTheTokenOnce) {
    Harness h;
    const std::string op = kOperator;
    Response r = h.call("POST", "/api/devices/pairing/request", "", kT0);
    ASSERT_EQ(r.status, 200);
    std::string id = field(r, "requestId"), code = field(r, "code");
    EXPECT_EQ(h.call("POST", "/api/devices/pairing/approve", "{\"code\":\"" + code + "\"}", kT0, op).status, 200);
    r = h.call("GET", "/api/devices/pairing/status/" + id, "", kT0 + 1);
    EXPECT_EQ(field(r, "status"), "approved");
    EXPECT_EQ(field(r, "token").rfind("dp_tok_", 0), 0u);
    r = h.call("GET", "/api/devices/pairing/status/" + id, "", kT0 + 2);
    EXPECT_EQ(field(r, "token"), "<absent>");
}
