// Seed 002 identity: attest, verify, replay, binding, age.
#include <gtest/gtest.h>

#include "harness.h"

using namespace dp;

namespace {

struct Signer : Harness {
    Signer() { settings.identity = Ed25519Identity::generate(); }
    // An attestation from POST /api/devices/attest, as verify expects it.
    std::string attest(const std::string& data, int64_t now = kT0) {
        Response r = call("POST", "/api/devices/attest", "{\"data\":" + data + "}", now, kOperator);
        EXPECT_EQ(r.status, 200) << r.body;
        std::string err;
        Json j = parse_json_object(r.body, &err);
        return json_compact(json_object_get(j.get(), "attestation"));
    }
    Response verify(const std::string& attestation, int64_t now, const std::string& extra = "") {
        return call("POST", "/api/devices/verify", "{\"attestation\":" + attestation + extra + "}", now);
    }
};

}  // namespace

TEST(Identity, AttestationVerifiesOnceThenIsAReplay) {
    Signer h;
    std::string a = h.attest("{\"purpose\":\"pairing\"}");
    Response first = h.verify(a, kT0 + 1000);
    EXPECT_EQ(field(first, "valid"), "true") << first.body;
    Response second = h.verify(a, kT0 + 2000);
    EXPECT_EQ(field(second, "valid"), "false");
    EXPECT_EQ(field(second, "reason"), "replay");
}

TEST(Identity, TamperedDataOrForeignKeyOrAgeFail) {
    Signer h;
    std::string a = h.attest("{\"amount\":1}");
    std::string tampered = a;
    tampered.replace(tampered.find("\"amount\":1"), 10, "\"amount\":2");
    EXPECT_EQ(field(h.verify(tampered, kT0), "reason"), "invalid_signature");

    std::string other_key = a;
    std::string pk = base64_encode(h.settings.identity->public_raw());
    other_key.replace(other_key.find(pk), pk.size(), base64_encode(Ed25519Identity::generate()->public_raw()));
    EXPECT_EQ(field(h.verify(other_key, kT0), "reason"), "device_id_mismatch");

    EXPECT_EQ(field(h.verify(a, kT0 + 300001), "reason"), "expired") << "default maxAgeMs is 5 minutes";
    EXPECT_EQ(field(h.verify(h.attest("{}", kT0 + 31000), kT0), "reason"), "future_timestamp");
    EXPECT_EQ(h.verify(a, kT0, ",\"maxAgeMs\":0").status, 400);
    EXPECT_EQ(h.verify(a, kT0, ",\"maxAgeMs\":86400001").status, 400);
}

TEST(Identity, WithoutAnIdentityTheRoutesAnswer501) {
    Harness h;
    EXPECT_EQ(h.call("GET", "/api/devices/identity", "", kT0).status, 501);
    EXPECT_EQ(h.call("POST", "/api/devices/attest", "{\"data\":{}}", kT0, kOperator).status, 501);
}
