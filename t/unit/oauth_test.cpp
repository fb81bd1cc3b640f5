// The OAuth device grant's rules (RFC 8628, 8414, 7009) on the core alone.
#include <gtest/gtest.h>

#include "core/codes.h"
#include "core/devices.h"
#include "core/oauth.h"
#include "harness.h"

using namespace dp;

namespace {

constexpr char kGrant[] = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code";

struct OAuth : Harness {
    OAuth() {
        settings.oauth_clients = {{"cli", "Deploy CLI"}, {"tv", "TV"}};
        settings.oauth_interval_s = 5;
        content_type = "application/x-www-form-urlencoded";
    }
    Response authorize(int64_t now = kT0, const std::string& extra = "") {
        return call("POST", "/oauth/device_authorization", "client_id=cli" + extra, now);
    }
    Response poll(const std::string& device_code, int64_t now, const std::string& client = "cli") {
        return call("POST", "/oauth/token", std::string(kGrant) + "&client_id=" + client + "&device_code=" + device_code, now);
    }
    Response decide(const char* what, const std::string& user_code, int64_t now) {
        content_type = "application/json";
        Response r = call("POST", std::string("/api/devices/pairing/") + what, "{\"code\":\"" + user_code + "\"}", now, kOperator);
        content_type = "application/x-www-form-urlencoded";
        return r;
    }
};

std::string error_of(const Response& r) { return field(r, "error"); }

}  // namespace

TEST(OAuthCodes, UserCodesAreEightOfBaseTwentyAndTypedLoosely) {
    OAuth h;
    for (int i = 0; i < 50; i++) {
        const std::string code = field(h.authorize(kT0 + i * 60000), "user_code");
        ASSERT_EQ(code.size(), 9u) << code;
        EXPECT_EQ(code[4], '-');
        for (size_t k = 0; k < code.size(); k++)
            if (k != 4) {
                EXPECT_NE(std::string("BCDFGHJKLMNPQRSTVWXZ").find(code[k]), std::string::npos) << code;
            }
    }
    EXPECT_EQ(normalize_code("bcdf-ghjk"), "BCDFGHJK");
    EXPECT_EQ(normalize_code(" b.c d_f-g h/j k "), "BCDFGHJK") << "punctuation and spaces are ignored";
    EXPECT_EQ(format_user_code("BCDFGHJK"), "BCDF-GHJK");
}

TEST(OAuthCodes, TheApprovalFindsAUserCodeHoweverItIsTyped) {
    OAuth h;
    Response a = h.authorize();
    std::string typed = field(a, "user_code");
    for (char& c : typed) c = (char)tolower((unsigned char)c);
    typed.replace(4, 1, " . ");
    EXPECT_EQ(h.decide("approve", typed, kT0).status, 200);
    EXPECT_EQ(h.poll(field(a, "device_code"), kT0 + 1000).status, 200);
}

TEST(OAuthAuthorization, OnlyAllowlistedClientsAndValidScopes) {
    OAuth h;
    EXPECT_EQ(error_of(h.call("POST", "/oauth/device_authorization", "client_id=nobody", kT0)), "invalid_client");
    EXPECT_EQ(error_of(h.call("POST", "/oauth/device_authorization", "scope=a", kT0)), "invalid_request");
    EXPECT_EQ(error_of(h.authorize(kT0, "&scope=a%20%20b")), "invalid_scope") << "two spaces";
    EXPECT_EQ(error_of(h.authorize(kT0, "&scope=" + std::string(kMaxScopeLen + 1, 'a'))), "invalid_scope");
    EXPECT_EQ(h.store.count(Kind::CodeRequest), 0u) << "a refused request stores nothing";
    Response ok = h.authorize(kT0, "&scope=read+write");
    EXPECT_EQ(ok.status, 200);
    EXPECT_EQ(field(ok, "interval"), "5");
    EXPECT_GE(field(ok, "device_code").size(), 43u) << "256 random bits";
    EXPECT_EQ(field(ok, "verification_uri"), "http://gw.local/pair");
    h.content_type = "application/json";
    EXPECT_EQ(error_of(h.call("POST", "/oauth/device_authorization", "{\"client_id\":\"cli\"}", kT0)), "invalid_request");
}

TEST(OAuthAuthorization, TheGrantIsOffWithoutClients) {
    OAuth h;
    h.settings.oauth_clients.clear();
    EXPECT_EQ(h.authorize().status, 404);
    EXPECT_EQ(h.call("GET", "/.well-known/oauth-authorization-server", "", kT0).status, 404);
    EXPECT_EQ(h.poll("x", kT0).status, 404);
}

TEST(OAuthAuthorization, DeviceCodesCountAgainstTheAnonymousBudget) {
    OAuth h;
    int refused = 0;
    for (int i = 0; i < 12; i++) refused += h.authorize(kT0 + i).status == 429;
    EXPECT_EQ(refused, 2) << "ten a minute per address, shared with seed 002's code requests";
}

TEST(OAuthToken, ErrorsComeInTheirOrder) {
    OAuth h;
    const std::string dc = field(h.authorize(), "device_code");
    EXPECT_EQ(error_of(h.call("POST", "/oauth/token", "client_id=cli&device_code=" + dc, kT0)), "invalid_request");
    EXPECT_EQ(error_of(h.call("POST", "/oauth/token", "grant_type=password&client_id=nobody", kT0)), "unsupported_grant_type");
    EXPECT_EQ(error_of(h.poll(dc, kT0, "nobody")), "invalid_client");
    EXPECT_EQ(error_of(h.call("POST", "/oauth/token", std::string(kGrant) + "&client_id=cli", kT0)), "invalid_request");
    EXPECT_EQ(error_of(h.poll("not-a-code", kT0)), "invalid_grant");
    EXPECT_EQ(error_of(h.poll(dc, kT0, "tv")), "invalid_grant") << "another client's code";
    EXPECT_EQ(error_of(h.poll(dc, kT0)), "authorization_pending");
    EXPECT_EQ(h.call("POST", "/oauth/token", std::string(kGrant) + "&client_id=cli&client_id=tv", kT0).status, 400)
        << "a parameter twice";
}

TEST(OAuthToken, SlowDownGrowsTheIntervalForEveryLaterPoll) {
    OAuth h;
    const std::string dc = field(h.authorize(), "device_code");
    EXPECT_EQ(error_of(h.poll(dc, kT0)), "authorization_pending");
    EXPECT_EQ(error_of(h.poll(dc, kT0 + 4900)), "authorization_pending") << "within the leeway";
    EXPECT_EQ(error_of(h.poll(dc, kT0 + 6000)), "slow_down") << "1.1 s after the last poll";
    EXPECT_EQ(error_of(h.poll(dc, kT0 + 6000 + 9000)), "slow_down") << "the interval is 10 s now";
    EXPECT_EQ(error_of(h.poll(dc, kT0 + 15000 + 15000)), "authorization_pending") << "15 s: on time";
    EXPECT_EQ(error_of(h.poll(dc, kT0 + 30000 + 14000)), "slow_down") << "and it stays 15 s";
}

TEST(OAuthToken, ADeviceCodeIsExchangedOnceAndALatePollHearsItExpired) {
    OAuth h;
    Response a = h.authorize(kT0, "&scope=read");
    const std::string dc = field(a, "device_code");
    EXPECT_EQ(h.decide("approve", field(a, "user_code"), kT0).status, 200);
    Response t = h.poll(dc, kT0 + 1000);
    ASSERT_EQ(t.status, 200);
    EXPECT_EQ(field(t, "token_type"), "Bearer");
    EXPECT_EQ(field(t, "scope"), "read");
    EXPECT_EQ(field(t, "access_token").rfind("dp_tok_", 0), 0u);
    EXPECT_TRUE(t.durable) << "on disk before the 200";
    EXPECT_EQ(error_of(h.poll(dc, kT0 + 7000)), "invalid_grant") << "a second exchange";
    EXPECT_EQ(error_of(h.poll(dc, kT0 + 601000)), "expired_token") << "after the code's life";
    EXPECT_EQ(h.store.count(Kind::Device), 1u) << "one device, however often the code is polled";
}

TEST(OAuthToken, DeniedAndExpired) {
    OAuth h;
    Response a = h.authorize();
    EXPECT_EQ(h.decide("reject", field(a, "user_code"), kT0).status, 200);
    EXPECT_EQ(error_of(h.poll(field(a, "device_code"), kT0 + 5000)), "access_denied");
    Response b = h.authorize(kT0 + 10);
    EXPECT_EQ(error_of(h.poll(field(b, "device_code"), kT0 + 600010)), "expired_token");
    EXPECT_EQ(error_of(h.poll(field(b, "device_code"), kT0 + 600010 + 599000)), "expired_token") << "still recognised";
}

TEST(OAuthToken, AUserCodeDiesAfterTenWrongCodes) {
    OAuth h;
    Response a = h.authorize();
    for (uint32_t i = 0; i < kUserCodeDiesAfter; i++) {
        h.addr.bytes[3] = (uint8_t)(10 + i);  // each address has its own limit first
        EXPECT_EQ(h.decide("approve", "BBBB-BBBB", kT0).status, 404);
    }
    EXPECT_EQ(h.decide("approve", field(a, "user_code"), kT0).status, 404);
    EXPECT_EQ(error_of(h.poll(field(a, "device_code"), kT0)), "expired_token");
    Response fresh = h.authorize(kT0 + 1);
    EXPECT_EQ(h.decide("approve", field(fresh, "user_code"), kT0 + 1).status, 200) << "a later code starts afresh";
}

TEST(OAuthToken, TheDeviceKeepsItsClientAndScope) {
    OAuth h;
    Response a = h.authorize(kT0, "&scope=sensors%3Aread");
    h.decide("approve", field(a, "user_code"), kT0);
    const std::string token = field(h.poll(field(a, "device_code"), kT0 + 1000), "access_token");
    h.content_type.clear();
    Response list = h.call("GET", "/api/devices", "", kT0 + 2000, kOperator);
    EXPECT_NE(list.body.find("\"method\":\"oauth\""), std::string::npos) << list.body;
    EXPECT_NE(list.body.find("\"name\":\"Deploy CLI\""), std::string::npos) << list.body;
    EXPECT_NE(list.body.find("\"scope\":\"sensors:read\""), std::string::npos) << list.body;
    Principal p = authenticate_bearer(&h.store, h.settings, "Bearer " + token, h.addr, (uint32_t)(kT0 / 1000) + 2);
    ASSERT_EQ(p.status, Principal::Ok);
    EXPECT_EQ(h.locked([&] { return granted_scope(h.store, p.device_id); }), "sensors:read");
}

TEST(OAuthRevoke, ADeviceRevokesItsOwnTokenAndUnknownTokensAreFine) {
    OAuth h;
    Response a = h.authorize();
    h.decide("approve", field(a, "user_code"), kT0);
    const std::string token = field(h.poll(field(a, "device_code"), kT0 + 1000), "access_token");
    EXPECT_EQ(h.call("POST", "/oauth/revoke", "token=dp_tok_nothing", kT0).status, 200);
    EXPECT_EQ(error_of(h.call("POST", "/oauth/revoke", "client_id=nobody&token=" + token, kT0)), "invalid_client");
    EXPECT_EQ(error_of(h.call("POST", "/oauth/revoke", "client_id=cli", kT0)), "invalid_request");
    Response r = h.call("POST", "/oauth/revoke", "client_id=cli&token=" + token, kT0 + 2000);
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.durable);
    ASSERT_EQ(r.audit.size(), 1u);
    EXPECT_EQ(r.audit[0].event, "revoked");
    EXPECT_EQ(authenticate_bearer(&h.store, h.settings, "Bearer " + token, h.addr, (uint32_t)(kT0 / 1000) + 3).status,
              Principal::Invalid);
}

TEST(OAuthMetadata, DiscoveryNamesEveryEndpoint) {
    OAuth h;
    Response m = h.call("GET", "/.well-known/oauth-authorization-server", "", kT0);
    EXPECT_EQ(field(m, "issuer"), "http://gw.local");
    EXPECT_EQ(field(m, "token_endpoint"), "http://gw.local/oauth/token");
    EXPECT_EQ(field(m, "device_authorization_endpoint"), "http://gw.local/oauth/device_authorization");
    EXPECT_EQ(field(m, "revocation_endpoint"), "http://gw.local/oauth/revoke");
}

TEST(OAuthForm, ParsesAndRefusesMalformedOrRepeated) {
    std::string why;
    auto f = parse_form("a=1&b=x+y%21&c=&d", &why);
    ASSERT_TRUE(f);
    EXPECT_EQ((*f)["b"], "x y!");
    EXPECT_EQ((*f)["c"], "");
    EXPECT_TRUE(f->count("d"));
    EXPECT_FALSE(parse_form("a=%4", &why));
    EXPECT_FALSE(parse_form("a=%zz", &why));
    EXPECT_FALSE(parse_form("a=1&a=2", &why));
    EXPECT_TRUE(valid_scope("read write:all"));
    EXPECT_FALSE(valid_scope(" read"));
    EXPECT_FALSE(valid_scope("a\\b"));
}
