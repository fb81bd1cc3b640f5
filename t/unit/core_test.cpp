// Unit tests of the pure C++ core: no nginx, time injected through Request::now_ms.
#include <gtest/gtest.h>

#include <cstring>

#include "core/encoding.h"
#include "core/crypto.h"
#include "core/files.h"
#include "core/json.h"
#include "core/qr.h"
#include "core/router.h"
#include "core/service.h"
#include "core/state_file.h"
#include "memory_store.h"

using namespace dp;

namespace {

constexpr int64_t kT0 = 1800000000000;  // a fixed "now"

std::string field(const Response& r, const char* name) {
    std::string err;
    Json j = parse_json_object(r.body, &err);
    if (!j) return "<no json>";
    json_t* v = json_object_get(j.get(), name);
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_integer(v)) return std::to_string(json_integer_value(v));
    if (json_is_boolean(v)) return json_is_true(v) ? "true" : "false";
    return v ? "<other>" : "<absent>";
}

struct Harness {
    MemoryStore store;
    Settings settings;
    Service service{store, settings};
    ClientAddr addr;
    Harness() { addr.len = 4, addr.bytes[0] = 127, addr.bytes[3] = 1; }

    Response call(const char* method, const std::string& path, const std::string& body, int64_t now,
                  const std::string& auth = "", const std::string& key = "") {
        Request req;
        req.method = method;
        req.path = path.substr(0, path.find('?'));
        if (path.find('?') != std::string::npos) req.query = path.substr(path.find('?') + 1);
        req.body = body;
        req.now_ms = now;
        req.authorization = auth;
        req.device_key = key;
        req.host = "gw.local";
        RouteMatch m = match_route(req.method, req.path);
        EXPECT_EQ(m.outcome, RouteMatch::Found) << path;
        Response r = service.handle(m, req, addr);
        EXPECT_EQ(store.locked(), 0) << "lock leaked by " << path;
        return r;
    }
    Response pair(const std::string& otp, int64_t now) {
        return call("POST", "/pair", "{\"otp\":\"" + otp + "\"}", now);
    }
};

}  // namespace

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
}

TEST(Encoding, HexAndTime) {
    EXPECT_EQ(hex_encode("\x01\xab"), "01ab");
    EXPECT_EQ(*hex_decode("01AB"), "\x01\xab");
    EXPECT_FALSE(hex_decode("0g"));
    EXPECT_EQ(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(iso8601_ms(1773309600123), "2026-03-12T10:00:00.123Z");
    EXPECT_EQ(*parse_iso8601_ms("2026-03-12T10:00:00Z"), 1773309600000);
    EXPECT_EQ(*parse_iso8601_ms("2026-03-12T10:00:00.1Z"), 1773309600100);
    EXPECT_EQ(*parse_iso8601_ms(iso8601_ms(kT0)), kT0);
    EXPECT_FALSE(parse_iso8601_ms("2026-03-12 10:00:00Z"));
    EXPECT_FALSE(parse_iso8601_ms("2026-03-12T10:00:00+01:00"));
    EXPECT_FALSE(parse_iso8601_ms("2026-13-12T10:00:00Z"));
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

TEST(Router, MethodsAndParams) {
    auto m = match_route("PUT", "/api/v1/device-pairing/abc_DEF-1");
    EXPECT_EQ(m.outcome, RouteMatch::Found);
    EXPECT_EQ(m.route, Route::MailboxDeposit);
    EXPECT_EQ(m.param, "abc_DEF-1");
    EXPECT_TRUE(m.has_body);
    m = match_route("PATCH", "/api/v1/device-pairing/abc");
    EXPECT_EQ(m.outcome, RouteMatch::MethodNotAllowed);
    EXPECT_EQ(m.allow, "PUT, GET, DELETE");
    EXPECT_EQ(match_route("GET", "/api/v1/device-pairing/a/b").outcome, RouteMatch::NotFound);
    EXPECT_EQ(match_route("GET", "/api/v1/device-pairing/a%2e").outcome, RouteMatch::NotFound);
    EXPECT_EQ(match_route("GET", "/api/devices/identity").route, Route::Identity);
    EXPECT_EQ(match_route("DELETE", "/api/devices/dev_1").route, Route::DeviceRevoke);
    EXPECT_EQ(match_route("DELETE", "/api/devices/dev_1").auth, RouteAuth::Bearer);
    EXPECT_EQ(match_route("GET", "/api/v1/device-pairing/x").auth, RouteAuth::DeviceKey);
    EXPECT_EQ(match_route("PUT", "/api/v1/device-pairing/x").auth, RouteAuth::None);  // write token, in the handler
    EXPECT_EQ(match_route("GET", "/api/devices/pairing/status/x").auth, RouteAuth::None);  // the id is the capability
}

TEST(Crypto, RandomAndKeys) {
    for (int i = 0; i < 1000; i++) EXPECT_LT(random_below(7), 7u);
    EXPECT_NE(random_token("p_", 32), random_token("p_", 32));
    EXPECT_EQ(random_token("p_", 32).size(), 2u + 43u);
    auto id = Ed25519Identity::generate();
    EXPECT_TRUE(ed25519_public_key_ok(id->public_raw()));
    Bytes sig = id->sign("message");
    EXPECT_TRUE(ed25519_verify(id->public_raw(), "message", sig));
    EXPECT_FALSE(ed25519_verify(id->public_raw(), "messagE", sig));
    EXPECT_FALSE(ed25519_public_key_ok(*hex_decode("0100000000000000000000000000000000000000000000000000000000000000")));
    EXPECT_FALSE(ed25519_public_key_ok(*hex_decode("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")));
    EXPECT_FALSE(ed25519_public_key_ok(Bytes(31, 'a')));
    // y = 2 is not on the curve: no x satisfies the equation.
    EXPECT_FALSE(ed25519_public_key_ok(*hex_decode("0200000000000000000000000000000000000000000000000000000000000000")));
    // The base point (x positive) is fine.
    EXPECT_TRUE(ed25519_public_key_ok(*hex_decode("5866666666666666666666666666666666666666666666666666666666666666")));
    EXPECT_FALSE(p256_public_key_ok(Bytes(65, '\x04')));
    EXPECT_FALSE(p256_public_key_ok(Bytes(33, '\x02')));
    EXPECT_TRUE(ct_equal(sha256("a"), sha256("a")));
    EXPECT_FALSE(ct_equal(sha256_labeled("x", "a"), sha256_labeled("y", "a")));
}

TEST(Qr, TerminalAndSvg) {
    auto lines = qr_terminal_lines("http://gw.local/pair#otp=123456");
    ASSERT_GT(lines.size(), 10u);
    EXPECT_NE(lines[0].find("\u2588"), std::string::npos);
    EXPECT_EQ(qr_svg("x").rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
}

TEST(Files, DeviceKeysNameTheLine) {
    std::vector<DeviceKey> keys;
    std::string err;
    std::string good = "alice " + std::string(64, 'a');
    EXPECT_TRUE(parse_device_keys("# c\n\n" + good + "\n", &keys, &err));
    ASSERT_EQ(keys.size(), 1u);
    EXPECT_EQ(keys[0].account, "alice");
    EXPECT_FALSE(parse_device_keys(good + "\nbob 1234\n", &keys, &err));
    EXPECT_EQ(err.rfind("line 2:", 0), 0u);
    EXPECT_FALSE(parse_device_keys("bad/name " + std::string(64, 'a'), &keys, &err));
    EXPECT_FALSE(parse_device_keys(good + " extra", &keys, &err));
}

TEST(Codes, NormalizeAndFormat) {
    EXPECT_EQ(normalize_code("abc-123 xyz"), "ABC123XYZ");
    EXPECT_EQ(format_code("ABC123XYZ", '-'), "ABC-123-XYZ");
}

TEST(Otp, SingleUseAndExpiry) {
    Harness h;
    h.settings.otp_ttl_ms = 600000;
    std::string otp = h.service.new_otp(kT0);
    ASSERT_EQ(otp.size(), 6u);
    Response r = h.pair(otp, kT0 + 1000);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(field(r, "token").rfind("dp_tok_", 0), 0u);
    EXPECT_TRUE(r.durable);
    EXPECT_EQ(h.pair(otp, kT0 + 2000).status, 401);
    otp = h.service.new_otp(kT0);
    EXPECT_EQ(h.pair(otp, kT0 + 600000).status, 401) << "expired after the TTL";
    EXPECT_EQ(h.store.shared().devices, 1u);
}

TEST(Otp, LockoutWindowRestartsOnEveryFailure) {
    Harness h;
    std::string otp = h.service.new_otp(kT0);
    std::string wrong = otp == "000000" ? "111111" : "000000";
    for (int i = 0; i < 5; i++) EXPECT_EQ(h.pair(wrong, kT0 + i).status, 401);
    Response r = h.pair(otp, kT0 + 10);
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>("Retry-After", "60")));
    // 59 s after the locked attempt: still locked, and that attempt restarts the window.
    EXPECT_EQ(h.pair(otp, kT0 + 10 + 59000).status, 429);
    EXPECT_EQ(h.pair(otp, kT0 + 10 + 59000 + 59000).status, 429);
    // 60 s of quiet lifts it.
    EXPECT_EQ(h.pair(otp, kT0 + 10 + 59000 + 59000 + 60000).status, 200);
}

TEST(Otp, FailuresSpacedOverAMinuteDoNotLockOut) {
    Harness h;
    std::string otp = h.service.new_otp(kT0);
    std::string wrong = otp == "000000" ? "111111" : "000000";
    for (int i = 0; i < 8; i++) EXPECT_EQ(h.pair(wrong, kT0 + i * 61000LL).status, 401);
    EXPECT_EQ(h.pair(otp, kT0 + 9 * 61000LL).status, 200);
}

TEST(Otp, BurnedAfterTenFailuresFromAnyAddress) {
    Harness h;
    std::string otp = h.service.new_otp(kT0);
    std::string wrong = otp == "000000" ? "111111" : "000000";
    Response last;
    for (int i = 0; i < 10; i++) {
        h.addr.bytes[3] = (uint8_t)(10 + i);  // a new address each time: no lockout
        last = h.pair(wrong, kT0 + i);
        EXPECT_EQ(last.status, 401);
    }
    EXPECT_EQ(last.notices.size(), 1u);
    h.addr.bytes[3] = 99;
    EXPECT_EQ(h.pair(otp, kT0 + 100).status, 401) << "burned";
    EXPECT_FALSE(h.service.otp_live(kT0 + 100));
    EXPECT_EQ(h.pair(h.service.new_otp(kT0 + 200), kT0 + 300).status, 200);
}

TEST(Otp, FullStoreAnswers503AndKeepsTheOtp) {
    Harness h;
    std::string otp = h.service.new_otp(kT0);
    h.store.capacity = 0;
    Response r = h.pair(otp, kT0 + 1);
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(field(r, "code"), "zone_full");
    h.store.capacity = SIZE_MAX;
    EXPECT_EQ(h.pair(otp, kT0 + 2).status, 200) << "the failed attempt changed nothing";
}

TEST(Mailbox, ExpiresAfterTtl) {
    Harness h;
    h.settings.mailbox_ttl_s = 300;
    std::string key = "desktop-key";
    h.settings.device_keys.push_back({sha256(key), "alice"});
    Response r = h.call("POST", "/api/v1/device-pairing", "", kT0, "", key);
    ASSERT_EQ(r.status, 201);
    std::string id = field(r, "pairing_id");
    EXPECT_EQ(field(r, "expires_in_secs"), "300");
    EXPECT_EQ(h.call("GET", "/api/v1/device-pairing/" + id, "", kT0 + 299000, "", key).status, 200);
    EXPECT_EQ(h.call("GET", "/api/v1/device-pairing/" + id, "", kT0 + 300000, "", key).status, 404);
    Response wait = h.call("GET", "/api/v1/device-pairing/" + id + "?wait=5", "", kT0, "", key);
    EXPECT_EQ(wait.poll_until_ms, kT0 + 5000);
}

TEST(Codes, ApproveDeliversTheTokenOnce) {
    Harness h;
    h.settings.operator_token_hash = sha256("dp_op_operator-token-for-tests");
    std::string op = "Bearer dp_op_operator-token-for-tests";
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

TEST(StateFile, RoundTripAndCorruption) {
    Harness h;
    std::string otp = h.service.new_otp(kT0);
    ASSERT_EQ(h.pair(otp, kT0).status, 200);
    std::string bytes = serialize_state(h.store);

    MemoryStore copy;
    std::string err;
    ASSERT_TRUE(load_state(copy, bytes, (uint32_t)(kT0 / 1000), &err)) << err;
    EXPECT_EQ(copy.shared().devices, 1u);
    EXPECT_EQ(copy.count(), h.store.count());

    std::string corrupt = bytes;
    corrupt[40] ^= 1;
    MemoryStore other;
    EXPECT_FALSE(load_state(other, corrupt, 0, &err));
    EXPECT_NE(err.find("checksum"), std::string::npos);
    EXPECT_FALSE(load_state(other, bytes.substr(0, bytes.size() - 1), 0, &err));
    std::string future = bytes;
    future[8] = 9;
    EXPECT_FALSE(load_state(other, future, 0, &err));
    EXPECT_NE(err.find("version 9"), std::string::npos);
}

TEST(StateFile, DropsExpiredRecordsOnLoad) {
    Harness h;
    h.settings.device_keys.push_back({sha256("k"), "alice"});
    ASSERT_EQ(h.call("POST", "/api/v1/device-pairing", "", kT0, "", "k").status, 201);
    MemoryStore copy;
    std::string err;
    ASSERT_TRUE(load_state(copy, serialize_state(h.store), (uint32_t)(kT0 / 1000) + 301, &err));
    EXPECT_EQ(copy.count(), 0u);
}

TEST(Mailbox, AccountCapFollowsCancelExpiryAndReload) {
    Harness h;
    h.settings.max_pairings_per_account = 2;
    h.settings.mailbox_ttl_s = 10;
    h.settings.device_keys.push_back({sha256("ka"), "alice"});
    h.settings.device_keys.push_back({sha256("kb"), "bob"});
    auto mint = [&](const char* key, int64_t now) { return h.call("POST", "/api/v1/device-pairing", "", now, "", key); };
    std::string first = field(mint("ka", kT0), "pairing_id");
    EXPECT_EQ(mint("ka", kT0).status, 201);
    EXPECT_EQ(mint("ka", kT0).status, 429);
    EXPECT_EQ(mint("kb", kT0).status, 201) << "the cap is per account";
    EXPECT_EQ(h.call("DELETE", "/api/v1/device-pairing/" + first, "", kT0, "", "ka").status, 204);
    EXPECT_EQ(mint("ka", kT0).status, 201) << "a cancel frees a slot";
    EXPECT_EQ(mint("ka", kT0).status, 429);

    MemoryStore reloaded;
    std::string err;
    ASSERT_TRUE(load_state(reloaded, serialize_state(h.store), (uint32_t)(kT0 / 1000), &err)) << err;
    Service again(reloaded, h.settings);
    Request req;
    req.method = "POST";
    req.device_key = "ka";
    req.now_ms = kT0;
    EXPECT_EQ(again.handle(match_route("POST", "/api/v1/device-pairing"), req, h.addr).status, 429)
        << "the count is rebuilt from the loaded mailboxes";

    EXPECT_EQ(mint("ka", kT0 + 11000).status, 201) << "expired mailboxes free their slots";
}
