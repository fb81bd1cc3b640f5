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

TEST(Codes, CodeDigestDifferingInItsLastByteIsUnknown) {
    Harness h;
    Response r = h.call("POST", "/api/devices/pairing/request", "", kT0);
    std::string id = field(r, "requestId"), code = field(r, "code");
    h.locked([&] {
        auto* rec = as<CodeRequestRecord>(h.store.find(Kind::CodeRequest, key_of("request", id)));
        Digest almost = last_byte_flipped(key_of("code", normalize_code(code)));
        memcpy(update_record(h.store, rec)->code_hash, almost.data(), 32);
        return 0;
    });
    Response approve = h.call("POST", "/api/devices/pairing/approve", "{\"code\":\"" + code + "\"}", kT0, kOperator);
    EXPECT_EQ(approve.status, 404);
    EXPECT_EQ(field(approve, "code"), "code_not_found");
}

TEST(Codes, CaseAndSeparatorsDoNotMatterAndRejectIsFinal) {
    Harness h;
    Response r = h.call("POST", "/api/devices/pairing/request", "{\"requesterId\":\"phone\"}", kT0);
    std::string id = field(r, "requestId"), code = normalize_code(field(r, "code"));
    std::string lower;
    for (char c : code) lower += (char)tolower((unsigned char)c);
    lower.insert(3, " ");
    EXPECT_EQ(h.call("POST", "/api/devices/pairing/reject", "{\"code\":\"" + lower + "\"}", kT0, kOperator).status, 200);
    EXPECT_EQ(field(h.call("GET", "/api/devices/pairing/status/" + id, "", kT0), "status"), "rejected");
    EXPECT_EQ(h.call("POST", "/api/devices/pairing/approve", "{\"code\":\"" + code + "\"}", kT0, kOperator).status, 409);
}

TEST(Codes, UnknownCodesAreRateLimitedPerAddress) {
    Harness h;
    for (int i = 0; i < 5; i++)
        EXPECT_EQ(h.call("POST", "/api/devices/pairing/approve", "{\"code\":\"AAA-AAA-AAA\"}", kT0 + i, kOperator).status, 404);
    Response r = h.call("POST", "/api/devices/pairing/approve", "{\"code\":\"AAA-AAA-AAA\"}", kT0 + 10, kOperator);
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(field(r, "code"), "rate_limited");
}

TEST(Codes, ExpiredRequestsSayExpiredAndCleanupRemovesThem) {
    Harness h;
    h.settings.code_ttl_s = 60;
    std::string id = field(h.call("POST", "/api/devices/pairing/request", "", kT0), "requestId");
    EXPECT_EQ(field(h.call("GET", "/api/devices/pairing/status/" + id, "", kT0 + 61000), "status"), "expired");
    EXPECT_EQ(field(h.call("POST", "/api/devices/pairing/cleanup", "", kT0 + 61000, kOperator), "removed"), "1");
    EXPECT_EQ(h.call("GET", "/api/devices/pairing/status/" + id, "", kT0 + 61000).status, 404);
}
