// The operator's console rules: token lifetimes and idle timeouts, the
// reasons a refused token is given, rotation, rename, revoke all but self,
// the device cap, the metrics exposition and the audit line.
#include <gtest/gtest.h>

#include "core/audit.h"
#include "core/metrics.h"
#include "core/persist/snapshot.h"
#include "harness.h"

using namespace dp;

namespace {

constexpr int64_t kMinute = 60000;

std::string code_of(const Response& r) { return field(r, "code"); }

// The id of the device a "Bearer" header belongs to, as the list shows it.
std::string id_of(Harness& h, const std::string& bearer) {
    Principal p = h.locked([&] { return Principal(); });
    p = authenticate_bearer(&h.store, h.settings, bearer, h.addr, (uint32_t)(kT0 / 1000));
    return p.device_id;
}

// A metric's sample line value ("name" or "name{label=\"v\"}"), or -1.
long long sample(const std::string& text, const std::string& series) {
    size_t at = text.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stoll(text.substr(at + series.size() + 2));
}

}  // namespace

TEST(Lifetimes, ATokenPastItsLifetimeIsRefusedAsExpiredAndRetired) {
    Harness h;
    h.settings.token_lifetime_s = 3600;
    std::string owner = h.owner(kT0);
    EXPECT_EQ(h.call("GET", "/api/devices", "", kT0 + 3599 * 1000LL, owner).status, 200);
    Response r = h.call("GET", "/api/devices", "", kT0 + 3600 * 1000LL, owner);
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(code_of(r), "token_expired");
    ASSERT_EQ(r.audit.size(), 1u) << "the first refusal retires the token and says so once";
    EXPECT_EQ(r.audit[0].event, "expired");
    EXPECT_EQ(h.store.state().devices, 0u) << "gone from the count (and the cap)";
    Response again = h.call("GET", "/api/devices", "", kT0 + 3601 * 1000LL, owner);
    EXPECT_EQ(code_of(again), "token_expired") << "the tombstone keeps the reason";
    EXPECT_TRUE(again.audit.empty()) << "and the event is not repeated";
}

TEST(Lifetimes, IdleTimeoutCountsFromLastSeenAndUseKeepsATokenAlive) {
    Harness h;
    h.settings.token_idle_timeout_s = 600;
    std::string owner = h.owner(kT0);
    // Used every 4 minutes for an hour: never idle for 10.
    for (int m = 4; m <= 60; m += 4)
        ASSERT_EQ(h.call("GET", "/api/devices", "", kT0 + m * kMinute, owner).status, 200) << m;
    // Last seen is kept to 1/8 of the timeout (75 s here): a device is
    // refused between 10 and 11.25 minutes after its last use, never before.
    EXPECT_EQ(h.call("GET", "/api/devices", "", kT0 + 60 * kMinute + 599 * 1000LL, owner).status, 200)
        << "9:59 idle";
    Response r = h.call("GET", "/api/devices", "", kT0 + 60 * kMinute + 599 * 1000LL + 675 * 1000LL, owner);
    EXPECT_EQ(code_of(r), "token_expired") << "11.25 minutes idle";
}

// Each step last seen moves is a write the journal (and the fleet) get, so a
// restart judges idleness on what the gate saw; within a step nothing is
// written.
TEST(Lifetimes, LastSeenMovesAStepAtATimeAndEachStepIsAJournalledWrite) {
    struct Count : ChangeLog {
        std::vector<RecordChange> changes;
        void committed(std::vector<RecordChange>&& c) override {
            for (RecordChange& x : c) changes.push_back(std::move(x));
        }
    } log;
    Harness h;
    h.settings.token_idle_timeout_s = 800;  // a step of 100 s
    std::string owner = h.owner(kT0);
    h.store.attach(&log);
    const int64_t base = kT0 - kT0 % 100000 + 100000;  // a step's start
    ASSERT_EQ(h.call("GET", "/api/devices", "", base + 5000, owner).status, 200);
    ASSERT_EQ(log.changes.size(), 1u) << "a new step: one write";
    EXPECT_EQ(log.changes[0].kind, Kind::Device);
    DeviceRecord after;
    memcpy(&after, log.changes[0].after.data(), sizeof after);
    EXPECT_EQ(after.last_seen_s, to_s(base)) << "the step's mark, never later than the use";
    for (int s = 10; s < 100; s += 10) ASSERT_EQ(h.call("GET", "/api/devices", "", base + s * 1000LL, owner).status, 200);
    EXPECT_EQ(log.changes.size(), 1u) << "within the step: nothing written";
    ASSERT_EQ(h.call("GET", "/api/devices", "", base + 100000, owner).status, 200);
    EXPECT_EQ(log.changes.size(), 2u) << "the next step: written again";
    // What a restart loads (the journalled image) still admits the device up
    // to the whole timeout after its last use.
    Harness restarted;
    restarted.settings = h.settings;
    memcpy(&after, log.changes.back().after.data(), sizeof after);
    EXPECT_FALSE(token_expired(&after, h.settings, to_s(base + 100000) + 799));
}

TEST(Lifetimes, LifetimeCountsFromTheLastRotationAndTheListShowsExpiry) {
    Harness h;
    h.settings.token_lifetime_s = 3600;
    std::string device = h.device(kT0);
    Response rotated = h.call("POST", "/api/devices/self/rotate", "", kT0 + 3000 * 1000LL, device);
    ASSERT_EQ(rotated.status, 200);
    std::string fresh = "Bearer " + field(rotated, "token");
    EXPECT_EQ(h.call("GET", "/api/devices", "", kT0 + 5000 * 1000LL, fresh).status, 200)
        << "a rotated token lives a whole lifetime from its rotation";
    Response list = h.call("GET", "/api/devices", "", kT0 + 5000 * 1000LL, kOperator);
    EXPECT_NE(list.body.find("\"expiresAt\":\"" + iso8601(kT0 + 6600 * 1000LL) + "\""), std::string::npos)
        << list.body;
}

TEST(Lifetimes, TheOperatorTokenNeverExpires) {
    Harness h;
    h.settings.token_lifetime_s = 1;
    h.settings.token_idle_timeout_s = 1;
    EXPECT_EQ(h.call("GET", "/api/devices", "", kT0 + 86400000LL, kOperator).status, 200);
}

TEST(Revocation, ARevokedTokenIsRefusedAsRevokedAndAnUnknownOneAsInvalid) {
    Harness h;
    std::string device = h.device();
    std::string id = id_of(h, device);
    Response revoked = h.call("DELETE", "/api/devices/" + id, "", kT0, kOperator);
    ASSERT_EQ(revoked.status, 204);
    ASSERT_EQ(revoked.audit.size(), 1u);
    EXPECT_EQ(revoked.audit[0].event, "revoked");
    EXPECT_EQ(revoked.audit[0].device_id, id);
    EXPECT_EQ(revoked.audit[0].actor, "operator");
    EXPECT_EQ(code_of(h.call("GET", "/api/devices", "", kT0, device)), "token_revoked");
    EXPECT_EQ(code_of(h.call("GET", "/api/devices", "", kT0, "Bearer dp_tok_never-issued")), "invalid_token");
    // The tombstone's key is compared whole: one differing last byte is not it.
    Principal p = authenticate_bearer(&h.store, h.settings, "Bearer dp_tok_never-issued", h.addr, kT0 / 1000);
    EXPECT_EQ(p.reason, Principal::Unknown);
}

TEST(Rotation, TheOldTokenDiesAtOnceAndTheDeviceKeepsItsIdNameAndRole) {
    Harness h;
    std::string device = h.device();
    std::string id = id_of(h, device);
    ASSERT_EQ(h.call("PATCH", "/api/devices/" + id, "{\"name\":\"Tablet\"}", kT0, kOperator).status, 200);
    Response r = h.call("POST", "/api/devices/self/rotate", "", kT0, device);
    ASSERT_EQ(r.status, 200);
    EXPECT_TRUE(r.durable);
    EXPECT_EQ(field(r, "id"), id);
    std::string fresh = "Bearer " + field(r, "token");
    EXPECT_NE(fresh, device);
    EXPECT_EQ(code_of(h.call("GET", "/api/devices", "", kT0, device)), "token_revoked");
    Principal p = authenticate_bearer(&h.store, h.settings, fresh, h.addr, kT0 / 1000);
    EXPECT_EQ(p.status, Principal::Ok);
    EXPECT_STREQ(p.device_id, id.c_str());
    EXPECT_STREQ(p.device_name, "Tablet");
    EXPECT_EQ(p.role, Role::Device);
    EXPECT_EQ(h.store.state().devices, 1u);
    ASSERT_EQ(r.audit.size(), 1u);
    EXPECT_EQ(r.audit[0].event, "rotated");
    EXPECT_EQ(h.call("POST", "/api/devices/self/rotate", "", kT0, kOperator).status, 400)
        << "the operator token is a file, not a record";
}

// A rotation whose answer was lost: the device retries with the old token
// and gets the same new token, within the grace only; the old token opens
// nothing else, and the zone holds no usable copy of the new one.
TEST(Rotation, ARetryWithTheOldTokenWithinTheGraceGetsTheSameNewToken) {
    Harness h;
    std::string device = h.device();
    Response first = h.call("POST", "/api/devices/self/rotate", "", kT0, device);
    ASSERT_EQ(first.status, 200);
    const std::string token = field(first, "token");
    Response again = h.call("POST", "/api/devices/self/rotate", "", kT0 + (kRetryGraceS - 1) * 1000LL, device);
    ASSERT_EQ(again.status, 200);
    EXPECT_EQ(field(again, "token"), token);
    EXPECT_EQ(field(again, "id"), field(first, "id"));
    EXPECT_FALSE(again.durable) << "nothing changed";
    EXPECT_TRUE(again.audit.empty());
    EXPECT_EQ(h.store.state().devices, 1u);
    EXPECT_EQ(code_of(h.call("GET", "/api/devices", "", kT0 + 1000, device)), "token_revoked")
        << "the old token admits nothing else";
    EXPECT_EQ(code_of(h.call("GET", "/api/devices", "", kT0 + 1000, "Bearer " + token + "x")), "invalid_token");
    const std::string snapshot = h.locked([&] { return serialize_state(h.store); });
    EXPECT_EQ(snapshot.find(token.substr(7, 20)), std::string::npos);
    EXPECT_EQ(code_of(h.call("POST", "/api/devices/self/rotate", "", kT0 + (kRetryGraceS + 1) * 1000LL, device)),
              "token_revoked")
        << "past the grace the old token is only revoked";

    // Once the new token has rotated too, the first one gets nothing back.
    Response second = h.call("POST", "/api/devices/self/rotate", "", kT0 + 2000, "Bearer " + token);
    ASSERT_EQ(second.status, 200);
    EXPECT_EQ(code_of(h.call("POST", "/api/devices/self/rotate", "", kT0 + 3000, device)), "token_revoked");
    EXPECT_EQ(field(h.call("POST", "/api/devices/self/rotate", "", kT0 + 3000, "Bearer " + token), "token"),
              field(second, "token"));
}

TEST(Rename, OwnersRenameAnyDeviceADeviceOnlyItself) {
    Harness h;
    std::string owner = h.owner(), device = h.device();
    std::string owner_id = id_of(h, owner), device_id = id_of(h, device);
    EXPECT_EQ(h.call("PATCH", "/api/devices/" + owner_id, "{\"name\":\"x\"}", kT0, device).status, 403);
    EXPECT_EQ(h.call("PATCH", "/api/devices/" + device_id, "{\"name\":\"Mine\"}", kT0, device).status, 200);
    Response r = h.call("PATCH", "/api/devices/" + device_id, "{\"name\":\"Owner's pick\"}", kT0, owner);
    EXPECT_EQ(r.status, 200);
    ASSERT_EQ(r.audit.size(), 1u);
    EXPECT_EQ(r.audit[0].detail, "Owner's pick");
    EXPECT_EQ(r.audit[0].actor, owner_id);
    EXPECT_EQ(h.call("PATCH", "/api/devices/" + device_id, "{\"name\":\"\"}", kT0, owner).status, 400);
    EXPECT_EQ(h.call("PATCH", "/api/devices/" + device_id, "{\"name\":7}", kT0, owner).status, 400);
    EXPECT_STREQ(authenticate_bearer(&h.store, h.settings, device, h.addr, kT0 / 1000).device_name, "Owner's pick")
        << "the refused renames changed nothing";
}

TEST(RevokeOthers, EveryDeviceButTheCallerGoesAndOnlyAnOwnerMayAsk) {
    Harness h;
    std::string owner = h.owner();
    std::vector<std::string> devices;
    for (int i = 0; i < 5; i++) devices.push_back(h.device());
    EXPECT_EQ(h.call("DELETE", "/api/devices?all_but_self=1", "", kT0, devices[0]).status, 403);
    EXPECT_EQ(h.call("DELETE", "/api/devices", "", kT0, owner).status, 400);
    Response r = h.call("DELETE", "/api/devices?all_but_self=1", "", kT0, owner);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(field(r, "revoked"), "5");
    EXPECT_EQ(r.audit.size(), 5u);
    EXPECT_EQ(h.store.state().devices, 1u);
    EXPECT_EQ(h.call("GET", "/api/devices", "", kT0, owner).status, 200) << "the caller stays";
    for (const std::string& d : devices) EXPECT_EQ(code_of(h.call("GET", "/api/devices", "", kT0, d)), "token_revoked");
}

TEST(DeviceCap, PairingBeyondTheCapIs409AndSpendsNothing) {
    Harness h;
    h.settings.max_devices = 2;
    h.owner();
    h.device();
    std::string otp = h.new_otp(kT0);
    Response r = h.pair(otp, kT0);
    EXPECT_EQ(r.status, 409);
    EXPECT_EQ(code_of(r), "device_limit");
    EXPECT_NE(field(r, "detail").find("2"), std::string::npos);
    EXPECT_EQ(h.store.state().devices, 2u);
    // A code approval is refused when the token would be issued, too.
    Response req = h.call("POST", "/api/devices/pairing/request", "", kT0);
    h.call("POST", "/api/devices/pairing/approve", "{\"code\":\"" + field(req, "code") + "\"}", kT0, kOperator);
    EXPECT_EQ(h.call("GET", "/api/devices/pairing/status/" + field(req, "requestId"), "", kT0).status, 409);
    // After a revocation the same OTP pairs: the refusal did not spend it.
    std::string device_id = h.locked([&] {
        std::string id;
        h.store.visit_index_after(Index::DeviceId, "", 10, [&](const RecordHeader* rec) {
            if (as<DeviceRecord>(rec)->role == Role::Device) id = device_id_text(as<DeviceRecord>(rec)->id);
        });
        return id;
    });
    ASSERT_EQ(h.call("DELETE", "/api/devices/" + device_id, "", kT0, kOperator).status, 204);
    EXPECT_EQ(h.pair(otp, kT0).status, 200);
}

TEST(Metrics, CountersMoveWithEventsAndTheTextFollowsTheFormat) {
    Harness h;
    std::string owner = h.owner();
    h.pair("000000", kT0);  // a wrong OTP
    h.device();
    std::string text = metrics_text(h.store, kT0 / 1000);
    EXPECT_EQ(sample(text, "device_pairing_pairings_total{method=\"otp\"}"), 1);
    EXPECT_EQ(sample(text, "device_pairing_pairings_total{method=\"code\"}"), 1);
    EXPECT_EQ(sample(text, "device_pairing_otp_failures_total"), 1);
    EXPECT_EQ(sample(text, "device_pairing_codes_total{event=\"requested\"}"), 1);
    EXPECT_EQ(sample(text, "device_pairing_codes_total{event=\"approved\"}"), 1);
    EXPECT_EQ(sample(text, "device_pairing_devices{role=\"owner\"}"), 1);
    EXPECT_EQ(sample(text, "device_pairing_devices{role=\"device\"}"), 1);
    EXPECT_EQ(sample(text, "device_pairing_oldest_last_seen_timestamp_seconds"), kT0 / 1000);
    EXPECT_NE(text.find("# TYPE device_pairing_pairings_total counter\n"), std::string::npos);
    EXPECT_NE(text.find("# TYPE device_pairing_devices gauge\n"), std::string::npos);
    // Every sample line belongs to the family whose TYPE line came last.
    std::string family;
    size_t start = 0;
    for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
        std::string line = text.substr(start, end - start);
        if (line.rfind("# TYPE ", 0) == 0) {
            family = line.substr(7, line.find(' ', 7) - 7);
        } else if (line[0] != '#') {
            EXPECT_EQ(line.rfind(family, 0), 0u) << line;
        }
    }
    // Counters are summed over the process slots.
    MemoryStore two_processes;
    Store& slots = two_processes;
    slots.count(Counter::Revocations);
    two_processes.process_slot = 7;
    slots.count(Counter::Revocations, 2);
    EXPECT_EQ(slots.counted(Counter::Revocations), 3u);
}

TEST(Audit, TheLineCarriesTheEventAndNeverASecret) {
    Harness h;
    Response r = h.pair(h.new_otp(kT0), kT0);
    ASSERT_EQ(r.audit.size(), 1u);
    const AuditEvent& e = r.audit[0];
    EXPECT_EQ(e.event, "paired");
    EXPECT_EQ(e.role, "owner");
    EXPECT_EQ(e.method, "otp");
    std::string line = audit_line(e, kT0, h.addr, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)");
    EXPECT_EQ(line.back(), '\n');
    std::string err;
    Json j = parse_json_object(line, &err);
    ASSERT_TRUE(j) << err;
    EXPECT_STREQ(json_string_value(json_object_get(j.get(), "time")), iso8601(kT0).c_str());
    EXPECT_STREQ(json_string_value(json_object_get(j.get(), "address")), "127.0.0.1");
    EXPECT_STREQ(json_string_value(json_object_get(j.get(), "user_agent")), "iPhone");
    EXPECT_STREQ(json_string_value(json_object_get(j.get(), "device_id")), e.device_id.c_str());
    EXPECT_EQ(line.find(field(r, "token")), std::string::npos);
    // Five wrong OTPs from one address: one lockout event, on the fifth.
    h.new_otp(kT0);
    size_t lockouts = 0;
    for (int i = 0; i < 5; i++)
        for (const AuditEvent& ev : h.pair("000000", kT0 + i).audit) lockouts += ev.event == "lockout";
    EXPECT_EQ(lockouts, 1u);
}

TEST(Inspect, AnOwnerSeesWhoAsksAndFromWhereAndNothingIsDecided) {
    Harness h;
    std::string device = h.device();
    h.addr.bytes[3] = 9;  // the requester's address
    Response req = h.call("POST", "/api/devices/pairing/request", "{\"requesterId\":\"hall\"}", kT0);
    h.addr.bytes[3] = 1;
    std::string body = "{\"code\":\"" + field(req, "code") + "\"}";
    EXPECT_EQ(h.call("POST", "/api/devices/pairing/inspect", body, kT0, device).status, 403) << "owners only";
    Response seen = h.call("POST", "/api/devices/pairing/inspect", body, kT0, kOperator);
    EXPECT_EQ(seen.status, 200);
    EXPECT_EQ(field(seen, "requesterId"), "hall");
    EXPECT_EQ(field(seen, "address"), "127.0.0.9");
    Response status = h.call("POST", "/api/devices/pairing/status", "{\"requestId\":\"" + field(req, "requestId") + "\"}", kT0);
    EXPECT_EQ(field(status, "status"), "pending") << "inspecting decides nothing";
    Response wrong = h.call("POST", "/api/devices/pairing/inspect", "{\"code\":\"AAA-AAA-AAA\"}", kT0, kOperator);
    EXPECT_EQ(wrong.status, 404);
    EXPECT_EQ(h.call("POST", "/api/devices/pairing/approve", body, kT0, kOperator).status, 200);
}

TEST(Page, TheCspAdmitsExactlyThePageScriptAndStyle) {
    const std::string& html = pair_page_html();
    auto between = [&](const std::string& open, const std::string& close) {
        size_t a = html.find(open) + open.size();
        return html.substr(a, html.find(close, a) - a);
    };
    auto hash = [](const std::string& text) {
        Digest d = sha256(text);
        return "'sha256-" + base64_encode(std::string_view((const char*)d.data(), d.size())) + "'";
    };
    const std::string& csp = pair_page_csp();
    EXPECT_NE(csp.find("script-src " + hash(between("<script>", "</script>")) + ";"), std::string::npos) << csp;
    EXPECT_NE(csp.find("style-src " + hash(between("<style>", "</style>")) + ";"), std::string::npos) << csp;
    EXPECT_EQ(html.find("<script>", html.find("</script>")), std::string::npos) << "one script";
    EXPECT_NE(csp.find("default-src 'none'"), std::string::npos);
    Harness h;
    Response page = h.call("GET", "/pair", "", kT0);
    bool sent = false;
    for (auto& hd : page.headers) sent = sent || (hd.first == "Content-Security-Policy" && hd.second == csp);
    EXPECT_TRUE(sent);
}

TEST(Metrics, ExpiredCodesAndMailboxesAreCountedWhenTheZoneDropsThem) {
    Harness h;
    h.settings.code_ttl_s = 60;
    h.settings.mailbox_ttl_s = 60;
    h.settings.device_keys.push_back(DeviceKey{sha256("dk_alice"), "alice"});
    h.call("POST", "/api/devices/pairing/request", "", kT0);
    Response decided = h.call("POST", "/api/devices/pairing/request", "", kT0);
    h.call("POST", "/api/devices/pairing/reject", "{\"code\":\"" + field(decided, "code") + "\"}", kT0, kOperator);
    h.call("POST", "/api/v1/device-pairing", "", kT0, "", "dk_alice");
    const int64_t later = kT0 + 86400000LL;
    {
        StoreLock lock(h.store);
        h.store.expire_some(Kind::CodeRequest, (uint32_t)(later / 1000), 10);
        h.store.expire_some(Kind::Mailbox, (uint32_t)(later / 1000), 10);
    }
    EXPECT_EQ(h.store.counted(Counter::CodesExpired), 1u) << "only the request still pending";
    EXPECT_EQ(h.store.counted(Counter::CodesRejected), 1u);
    EXPECT_EQ(h.store.counted(Counter::MailboxesExpired), 1u);
    EXPECT_EQ(h.store.counted(Counter::MailboxesMinted), 1u);
}

TEST(Inspect, RequesterAddressesKeepTheirFamilyIn16Bytes) {
    ClientAddr v6;
    v6.len = 16;
    for (int i = 0; i < 16; i++) v6.bytes[i] = (uint8_t)(0x20 + i);
    ClientAddr v4;
    v4.len = 4;
    v4.bytes[0] = 192, v4.bytes[1] = 0, v4.bytes[2] = 2, v4.bytes[3] = 7;
    uint8_t packed[16];
    for (const ClientAddr& a : {v6, v4, ClientAddr()}) {
        addr_to16(a, packed);
        ClientAddr back = addr_from16(packed);
        EXPECT_EQ(back.len, a.len);
        EXPECT_EQ(addr_text(back), addr_text(a));
    }
}
