// Credentials: bearer tokens (operator and device), device keys, roles, and
// the comparisons that decide them: every digest compared in full.
#include <gtest/gtest.h>

#include "core/auth.h"
#include "harness.h"

using namespace dp;

namespace {

Principal bearer(Harness& h, const std::string& token, uint32_t now_s = kT0 / 1000) {
    return authenticate_bearer(&h.store, h.settings, "Bearer " + token, h.addr, now_s);
}

}  // namespace

TEST(Auth, CtEqualComparesEveryByte) {
    Digest a = sha256("x");
    EXPECT_TRUE(ct_equal(a, a));
    EXPECT_FALSE(ct_equal(a, last_byte_flipped(a)));
    Digest first = a;
    first[0] ^= 0x80;
    EXPECT_FALSE(ct_equal(a, first));
}

TEST(Auth, OperatorTokenDigestDifferingInItsLastByteIsRejected) {
    Harness h;
    h.settings.operator_token_hash = last_byte_flipped(sha256(kOperatorToken));
    EXPECT_EQ(bearer(h, kOperatorToken).status, Principal::Invalid);
    h.settings.operator_token_hash = sha256(kOperatorToken);
    Principal p = bearer(h, kOperatorToken);
    EXPECT_EQ(p.status, Principal::Ok);
    EXPECT_EQ(p.role, Role::Owner);
    EXPECT_STREQ(p.device_id, "operator");
}

TEST(Auth, DeviceTokenRecordDifferingInItsLastByteIsNotTheToken) {
    Harness h;
    const std::string token = "dp_tok_some-device-token";
    h.locked([&] {
        return insert_record<DeviceRecord>(h.store, Kind::Device, last_byte_flipped(sha256(token)), kT0 / 1000,
                                           [](DeviceRecord* d) { d->role = Role::Owner; });
    });
    EXPECT_EQ(bearer(h, token).status, Principal::Invalid);
}

TEST(Auth, DeviceKeyDigestDifferingInItsLastByteIsAnotherAccount) {
    Harness h;
    Digest alice = sha256("alice-key");
    h.settings.device_keys.push_back({last_byte_flipped(alice), "bob"});  // listed first, 31 bytes in common
    EXPECT_EQ(authenticate_device_key(h.settings, "alice-key").status, Principal::Invalid);
    h.settings.device_keys.push_back({alice, "alice"});
    Principal p = authenticate_device_key(h.settings, "alice-key");
    ASSERT_EQ(p.status, Principal::Ok);
    EXPECT_EQ(*p.account, "alice");
}

TEST(Auth, MissingMalformedAndUnknownCredentials) {
    Harness h;
    EXPECT_EQ(authenticate_bearer(&h.store, h.settings, "", h.addr, 0).status, Principal::Missing);
    EXPECT_EQ(authenticate_bearer(&h.store, h.settings, "Basic abc", h.addr, 0).status, Principal::Invalid);
    EXPECT_EQ(authenticate_bearer(&h.store, h.settings, "Bearer   ", h.addr, 0).status, Principal::Invalid);
    EXPECT_EQ(bearer(h, "dp_tok_unknown").status, Principal::Invalid);
    EXPECT_EQ(authenticate_device_key(h.settings, "").status, Principal::Missing);
    const Response& missing = unauthorized(Principal(), false);
    EXPECT_EQ(missing.status, 401);
    EXPECT_EQ(field(missing, "code"), "authentication_required");
    Principal bad;
    bad.status = Principal::Invalid;
    EXPECT_EQ(unauthorized(bad, false).headers[0].second, "Bearer realm=\"device-pairing\", error=\"invalid_token\"");
    EXPECT_EQ(field(unauthorized(bad, true), "code"), "invalid_device_key");
}

TEST(Auth, PairedDevicesKeepTheirRoleAndLastSeenMovesByTheHour) {
    Harness h;
    std::string owner = h.owner().substr(7);
    std::string device = h.device().substr(7);
    EXPECT_EQ(bearer(h, owner).role, Role::Owner);
    EXPECT_EQ(bearer(h, device).role, Role::Device);
    EXPECT_FALSE(bearer(h, device).owner());
    auto last_seen = [&] {
        return h.locked([&] { return as<DeviceRecord>(h.store.find(Kind::Device, sha256(owner)))->last_seen_s; });
    };
    const uint64_t before = h.store.state().dirty;
    const uint32_t next_hour = (uint32_t)(kT0 / 1000 / 3600 + 1) * 3600;
    bearer(h, owner, next_hour - 1);
    EXPECT_EQ(last_seen(), kT0 / 1000) << "without an idle timeout, last seen moves once an hour";
    EXPECT_EQ(h.store.state().dirty, before) << "and within the hour the gate writes nothing";
    bearer(h, owner, next_hour + 61);
    EXPECT_EQ(last_seen(), next_hour) << "the hour's mark";
    EXPECT_EQ(h.store.state().dirty, before + 1) << "a durable write";
}
