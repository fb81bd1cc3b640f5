// Seed 002: pairing codes.
#include <gtest/gtest.h>

#include "core/codes.h"
#include "core/persist/snapshot.h"
#include "harness.h"

using namespace dp;

TEST(Codes, NormalizeAndFormat) {
    EXPECT_EQ(normalize_code("abc-123 xyz"), "ABC123XYZ");
    EXPECT_EQ(format_code("ABC123XYZ", '-'), "ABC-123-XYZ");
}

TEST(Codes, ApprovedTokenIsDeliveredAgainOnlyWithinTheGrace) {
    Harness h;
    const std::string op = kOperator;
    Response r = h.call("POST", "/api/devices/pairing/request", "", kT0);
    ASSERT_EQ(r.status, 200);
    std::string id = field(r, "requestId"), code = field(r, "code");
    EXPECT_EQ(h.call("POST", "/api/devices/pairing/approve", "{\"code\":\"" + code + "\"}", kT0, op).status, 200);
    r = h.call("GET", "/api/devices/pairing/status/" + id, "", kT0 + 1);
    EXPECT_EQ(field(r, "status"), "approved");
    EXPECT_EQ(field(r, "token").rfind("dp_tok_", 0), 0u);
    std::string token = field(r, "token");
    r = h.call("GET", "/api/devices/pairing/status/" + id, "", kT0 + 30000);
    EXPECT_EQ(field(r, "token"), token) << "a retry within the grace gets the same token";
    r = h.call("GET", "/api/devices/pairing/status/" + id, "", kT0 + 61000);
    EXPECT_EQ(field(r, "status"), "approved");
    EXPECT_EQ(field(r, "token"), "<absent>") << "after the grace only the hash remains";
    EXPECT_EQ(h.store.count(Kind::Device), 1u) << "one device, however often it was asked";
    std::string bytes = h.locked([&] { return serialize_state(h.store); });
    EXPECT_EQ(bytes.find(token.substr(7)), std::string::npos);
}

TEST(Codes, CodeDigestDifferingInItsLastByteIsUnknown) {
    Harness h;
    Response r = h.call("POST", "/api/devices/pairing/request", "", kT0);
    std::string id = field(r, "requestId"), code = field(r, "code");
    h.locked([&] {
        auto* rec = as<CodeRequestRecord>(h.store.find(Kind::CodeRequest, key_of("request", id)));
        Digest almost = last_byte_flipped(guessable_key(h.settings, "code", normalize_code(code)));
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

TEST(Codes, TheAppUrlIsExpandedOncePerPlaceholder) {
    EXPECT_EQ(expand_app_url("app://p?code=$code&host=$host", "ABC-123-XYZ", "gw:1"), "app://p?code=ABC-123-XYZ&host=gw:1");
    // Inserted text is never scanned again: no growth, no loop.
    EXPECT_EQ(expand_app_url("x?h=$host$host", "C", "$host"), "x?h=%24host%24host");
    EXPECT_EQ(expand_app_url("$codex$", "a&b", "h"), "a%26bx$");
}

TEST(Codes, QrWithAHostThatCannotBeAUrlIs400AndMakesNothing) {
    Harness h;
    for (const char* host : {"x$hostx", "\xff", "$host"}) {
        Request req;
        req.method = "GET";
        req.path = "/api/devices/pairing/qr";
        req.host = host;
        req.now_ms = kT0;
        Response r = api_handle(h.store, h.settings, api_route("GET", req.path), req, h.addr);
        EXPECT_EQ(r.status, 400) << host;
        EXPECT_EQ(field(r, "code"), "invalid_host");
    }
    EXPECT_EQ(h.store.count(Kind::CodeRequest), 0u);
    h.settings.public_url = "https://gw.example:8443/base";
    Response r = h.call("GET", "/api/devices/pairing/qr", "", kT0);
    EXPECT_NE(field(r, "pairingUrl").find("&host=gw.example:8443"), std::string::npos) << r.body;
}

TEST(Codes, StatusByPostKeepsTheIdOutOfTheUrl) {
    Harness h;
    Response req = h.call("POST", "/api/devices/pairing/request", "", kT0);
    std::string id = field(req, "requestId");
    Response r = h.call("POST", "/api/devices/pairing/status", "{\"requestId\":\"" + id + "\"}", kT0);
    EXPECT_EQ(field(r, "status"), "pending");
    h.call("POST", "/api/devices/pairing/approve", "{\"code\":\"" + field(req, "code") + "\"}", kT0, kOperator);
    r = h.call("POST", "/api/devices/pairing/status", "{\"requestId\":\"" + id + "\"}", kT0);
    EXPECT_EQ(field(r, "token").rfind("dp_tok_", 0), 0u);
    EXPECT_EQ(h.call("POST", "/api/devices/pairing/status", "{\"requestId\":\"pair_nope\"}", kT0).status, 404);
    EXPECT_EQ(h.call("POST", "/api/devices/pairing/status", "{}", kT0).status, 400);
}

TEST(Codes, AnAddressMayRequestTenCodesAMinute) {
    Harness h;
    for (int i = 0; i < 10; i++) EXPECT_EQ(h.call("POST", "/api/devices/pairing/request", "", kT0 + i).status, 200);
    Response r = h.call("GET", "/api/devices/pairing/qr", "", kT0 + 20);
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(field(r, "code"), "rate_limited");
    h.addr.bytes[3] = 2;
    EXPECT_EQ(h.call("POST", "/api/devices/pairing/request", "", kT0 + 30).status, 200) << "per address";
    h.addr.bytes[3] = 1;
    EXPECT_EQ(h.call("POST", "/api/devices/pairing/request", "", kT0 + 61000).status, 200) << "a new minute";
}

TEST(Codes, CodeRequestsKeepToTheirShareOfTheZone) {
    Harness h;
    h.store.capacity = 64;  // 64 x 128 bytes: code requests (384 bytes each) may hold 1/8
    int made = 0;
    for (int i = 0; i < 40; i++) {
        h.addr.bytes[3] = (uint8_t)(10 + i);  // many addresses: past the per-address budget
        Response r = h.call("POST", "/api/devices/pairing/request", "", kT0);
        if (r.status != 200) {
            EXPECT_EQ(field(r, "code"), "quota_exceeded");
            break;
        }
        made++;
    }
    EXPECT_GE(made, 1);
    EXPECT_LE(made * sizeof(CodeRequestRecord), 64 * 128 / 8u);
    h.addr.bytes[3] = 200;
    std::string otp = h.new_otp(kT0);
    EXPECT_EQ(h.pair(otp, kT0).status, 200) << "devices still find room";
}

namespace {

// The device list entry whose token is `bearer`.
json_t* listed(Harness& h, Json& list, const std::string& bearer) {
    Principal p = authenticate_bearer(&h.store, h.settings, bearer, h.addr, (uint32_t)(kT0 / 1000));
    json_t* devices = json_object_get(list.get(), "devices");
    for (size_t i = 0; i < json_array_size(devices); i++)
        if (std::string(json_string_value(json_object_get(json_array_get(devices, i), "id"))) == p.device_id)
            return json_array_get(devices, i);
    return nullptr;
}

std::string approved_by(Harness& h, const std::string& bearer) {
    std::string err;
    Json list = parse_json_object(h.call("GET", "/api/devices", "", kT0, kOperator).body, &err);
    json_t* entry = listed(h, list, bearer);
    json_t* by = entry ? json_object_get(entry, "approvedBy") : nullptr;
    return !entry ? "<unlisted>" : json_is_null(by) ? "<null>" : json_string_value(by);
}

// A code approved by `approver`; the device's bearer header, or "" and *status.
std::string paired_by(Harness& h, const std::string& approver, int* status, Response* delivered = nullptr) {
    Response req = h.call("POST", "/api/devices/pairing/request", "", kT0);
    Response decided = h.call("POST", "/api/devices/pairing/approve", "{\"code\":\"" + field(req, "code") + "\"}", kT0, approver);
    *status = decided.status;
    if (decided.status != 200) return "";
    Response s = h.call("GET", "/api/devices/pairing/status/" + field(req, "requestId"), "", kT0);
    if (delivered) *delivered = s;
    return "Bearer " + field(s, "token");
}

}  // namespace

TEST(Approvers, TheListAndTheAuditLogSayWhoApprovedEachDevice) {
    Harness h;
    const std::string owner = h.owner();
    int status;
    Response delivered;
    const std::string by_operator = paired_by(h, kOperator, &status, &delivered);
    ASSERT_EQ(status, 200);
    EXPECT_EQ(approved_by(h, by_operator), "operator");
    ASSERT_EQ(delivered.audit.size(), 1u);
    EXPECT_EQ(delivered.audit[0].event, "paired");
    EXPECT_EQ(delivered.audit[0].actor, "operator");
    const std::string by_device = paired_by(h, by_operator, &status, &delivered);
    ASSERT_EQ(status, 200) << "device_pairing_approvers any (the default): a device approves";
    Principal approver = authenticate_bearer(&h.store, h.settings, by_operator, h.addr, (uint32_t)(kT0 / 1000));
    EXPECT_EQ(approved_by(h, by_device), approver.device_id);
    EXPECT_EQ(delivered.audit[0].actor, approver.device_id);
    EXPECT_EQ(approved_by(h, owner), "<null>") << "paired by the OTP: nobody approved it";

    // A rotation keeps the device, and who approved it; a revocation takes both.
    Response rotated = h.call("POST", "/api/devices/self/rotate", "", kT0, by_device);
    ASSERT_EQ(rotated.status, 200);
    EXPECT_EQ(approved_by(h, "Bearer " + field(rotated, "token")), approver.device_id);
    EXPECT_EQ(h.store.count(Kind::Approval), 2u);
    ASSERT_EQ(h.call("DELETE", "/api/devices/" + field(rotated, "id"), "", kT0, kOperator).status, 204);
    EXPECT_EQ(h.store.count(Kind::Approval), 1u) << "the approval leaves with its device";
}

TEST(Approvers, WithOwnerOnlyADeviceCannotApproveOrReject) {
    Harness h;
    h.settings.approvers_owner_only = true;
    const std::string owner = h.owner();
    int status;
    const std::string device = paired_by(h, owner, &status);
    ASSERT_EQ(status, 200) << "an owner approves";
    Response req = h.call("POST", "/api/devices/pairing/request", "", kT0);
    const std::string body = "{\"code\":\"" + field(req, "code") + "\"}";
    for (const char* route : {"/api/devices/pairing/approve", "/api/devices/pairing/reject"}) {
        Response r = h.call("POST", route, body, kT0, device);
        EXPECT_EQ(r.status, 403) << route;
        EXPECT_EQ(field(r, "code"), "forbidden") << route;
    }
    EXPECT_EQ(h.call("POST", "/api/devices/pairing/approve", "{\"code\":\"ZZZ-999-ZZZ\"}", kT0, device).status, 403)
        << "refused before the code is looked up: no oracle";
    EXPECT_EQ(h.call("POST", "/api/devices/pairing/approve", body, kT0, kOperator).status, 200)
        << "the operator token is an owner";
}

// A code request whose requester id is not UTF-8 (a cut character, from a
// damaged or hostile image) made the owner's pending list fail to encode (a
// record fuzzer finding): such an image is refused where it is read.
TEST(Codes, ARequesterThatIsNotUtf8IsRefusedWhereARecordIsRead) {
    Harness h;
    Response req = h.call("POST", "/api/devices/pairing/request", "{\"requesterId\":\"caf\xc3\xa9\"}", kT0);
    ASSERT_EQ(req.status, 200);
    std::string image = h.locked([&] {
        const RecordHeader* r = h.store.find(Kind::CodeRequest, key_of("request", field(req, "requestId")));
        return std::string((const char*)r, sizeof(CodeRequestRecord));
    });
    EXPECT_EQ(record_image_problem(Kind::CodeRequest, image), "");
    CodeRequestRecord cut;
    memcpy(&cut, image.data(), sizeof cut);
    cut.requester_len = 4;  // "caf" and half of the "é"
    EXPECT_EQ(record_image_problem(Kind::CodeRequest, std::string((const char*)&cut, sizeof cut)),
              "a requester that is not UTF-8");
    EXPECT_EQ(h.call("GET", "/api/devices/pairing/pending", "", kT0, kOperator).status, 200);
}
