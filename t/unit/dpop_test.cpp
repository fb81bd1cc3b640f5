// DPoP (RFC 9449) on the core alone: the thumbprint, the URI rule, each
// check of a proof, replay, nonces, binding at issuance and a bound token's use.
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "core/dpop.h"
#include "harness.h"

// The proofs below name only what differs from a valid one.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

using namespace dp;

namespace {

std::string b64(std::string_view raw) { return base64url_encode(raw); }

// A client's key: Ed25519 (the identity class signs) or P-256 (OpenSSL here).
struct ClientKey {
    std::string alg;
    std::shared_ptr<Ed25519Identity> ed;
    EVP_PKEY* ec = nullptr;
    explicit ClientKey(const std::string& a) : alg(a) {
        if (alg == "EdDSA" || alg == "Ed25519") ed = Ed25519Identity::generate();
        else ec = EVP_EC_gen("P-256");
    }
    ~ClientKey() { EVP_PKEY_free(ec); }
    std::string jwk(bool with_private = false) const {
        if (ed) return "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"" + b64(ed->public_raw()) + "\"" +
                       (with_private ? ",\"d\":\"AAAA\"" : "") + "}";
        unsigned char pub[65];
        size_t len = sizeof pub;
        EVP_PKEY_get_octet_string_param(ec, "pub", pub, sizeof pub, &len);
        return "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" + b64(std::string((char*)pub + 1, 32)) + "\",\"y\":\"" +
               b64(std::string((char*)pub + 33, 32)) + "\"" + (with_private ? ",\"d\":\"AAAA\"" : "") + "}";
    }
    std::string sign(const std::string& input) const {
        if (ed) return ed->sign(input);
        EVP_MD_CTX* ctx = EVP_MD_CTX_new();
        unsigned char der[80];
        size_t der_len = sizeof der;
        EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, ec);
        EVP_DigestSign(ctx, der, &der_len, (const unsigned char*)input.data(), input.size());
        EVP_MD_CTX_free(ctx);
        const unsigned char* p = der;
        ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, (long)der_len);
        unsigned char rs[64];
        BN_bn2binpad(ECDSA_SIG_get0_r(sig), rs, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(sig), rs + 32, 32);
        ECDSA_SIG_free(sig);
        return std::string((char*)rs, 64);
    }
};

struct ProofSpec {
    std::string typ = "dpop+jwt", alg, htm = "GET", htu = "http://gw.local/api/x", jti = "j1", token, ath, nonce;
    int64_t iat = kT0 / 1000;
    bool private_key = false, bad_signature = false;
};

std::string proof(const ClientKey& key, ProofSpec s) {
    if (s.alg.empty()) s.alg = key.alg;
    std::string claims = "{\"jti\":\"" + s.jti + "\",\"htm\":\"" + s.htm + "\",\"htu\":\"" + s.htu +
                         "\",\"iat\":" + std::to_string(s.iat);
    if (!s.token.empty()) claims += ",\"ath\":\"" + b64(std::string((const char*)sha256(s.token).data(), 32)) + "\"";
    if (!s.ath.empty()) claims += ",\"ath\":\"" + s.ath + "\"";
    if (!s.nonce.empty()) claims += ",\"nonce\":\"" + s.nonce + "\"";
    claims += "}";
    const std::string input = b64("{\"typ\":\"" + s.typ + "\",\"alg\":\"" + s.alg + "\",\"jwk\":" + key.jwk(s.private_key) + "}") +
                              "." + b64(claims);
    std::string sig = s.alg == "none" ? std::string() : key.sign(input);
    if (s.bad_signature) sig[5] ^= 1;
    return input + "." + b64(sig);
}

Request gate_request(const std::string& token, std::vector<std::string> proofs) {
    Request req;
    req.method = "GET";
    req.path = "/api/x";
    req.host = "gw.local";
    req.now_ms = kT0;
    req.authorization = "DPoP " + token;
    req.dpop = std::move(proofs);
    req.host_id = 7;
    return req;
}

// POST /pair with the zone's OTP, to which a test adds its proof.
Request pair_request(Harness& h) {
    Request pair;
    pair.method = "POST";
    pair.path = "/pair";
    pair.host = "gw.local";
    pair.now_ms = kT0;
    pair.body = "{\"otp\":\"" + h.new_otp(kT0) + "\"}";
    return pair;
}

DpopFailure check(const Settings& settings, const std::string& jwt, const std::string& token = "",
                  Request req = gate_request("", {})) {
    req.dpop = {jwt};
    DpopProof out;
    return check_proof(req, settings, token, &out);
}

}  // namespace

TEST(DpopThumbprint, TheRfc7638Example) {
    Json jwk = parse_json_object(
        "{\"kty\":\"RSA\",\"n\":\"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
        "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZ"
        "gnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF4"
        "4-csFCur-kEgU8awapJzKnqDKgw\",\"e\":\"AQAB\",\"alg\":\"RS256\",\"kid\":\"2011-04-29\"}",
        nullptr);
    auto t = jwk_thumbprint(jwk.get());
    ASSERT_TRUE(t);
    EXPECT_EQ(b64(std::string((const char*)t->data(), 32)), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

TEST(DpopUri, NormalisedAsRfc3986Says) {
    EXPECT_EQ(*normalize_http_uri("HTTPS://Gw.Example:443/a/./b/../c?q=1#f"), "https://gw.example/a/c");
    EXPECT_EQ(*normalize_http_uri("http://gw:80"), "http://gw/");
    EXPECT_EQ(*normalize_http_uri("http://gw:8080/%7euser/%2f"), "http://gw:8080/~user/%2F");
    EXPECT_NE(*normalize_http_uri("http://gw/a"), *normalize_http_uri("http://gw/b"));
    EXPECT_FALSE(normalize_http_uri("ftp://gw/"));
    EXPECT_FALSE(normalize_http_uri("/relative"));
    EXPECT_FALSE(normalize_http_uri("http://gw/%zz"));
}

class DpopProofs : public ::testing::TestWithParam<const char*> {};
INSTANTIATE_TEST_SUITE_P(Algs, DpopProofs, ::testing::Values("ES256", "EdDSA", "Ed25519"));

TEST_P(DpopProofs, EveryCheckOfSection43) {
    Settings settings;
    ClientKey key(GetParam());
    EXPECT_EQ(check(settings, proof(key, {})), DpopFailure::None);
    EXPECT_EQ(check(settings, proof(key, {.htu = "http://gw.local/api/x?ignored=1"})), DpopFailure::None) << "query ignored";
    EXPECT_EQ(check(settings, proof(key, {.htu = "http://GW.local:80/api/./x"})), DpopFailure::None) << "normalised";
    EXPECT_EQ(check(settings, proof(key, {.typ = "JWT"})), DpopFailure::Header);
    EXPECT_EQ(check(settings, proof(key, {.alg = "none"})), DpopFailure::Header);
    EXPECT_EQ(check(settings, proof(key, {.alg = "HS256"})), DpopFailure::Header);
    EXPECT_EQ(check(settings, proof(key, {.private_key = true})), DpopFailure::Header);
    EXPECT_EQ(check(settings, proof(key, {.bad_signature = true})), DpopFailure::Signature);
    EXPECT_EQ(check(settings, proof(key, {.htm = "POST"})), DpopFailure::Request);
    EXPECT_EQ(check(settings, proof(key, {.htu = "http://gw.local/api/y"})), DpopFailure::Request) << "other path";
    EXPECT_EQ(check(settings, proof(key, {.htu = "http://evil.example/api/x"})), DpopFailure::Request) << "other host";
    EXPECT_EQ(check(settings, proof(key, {.iat = kT0 / 1000 - 61})), DpopFailure::Time) << "old";
    EXPECT_EQ(check(settings, proof(key, {.iat = kT0 / 1000 + 61})), DpopFailure::Time) << "future";
    EXPECT_EQ(check(settings, proof(key, {.iat = kT0 / 1000 - 60})), DpopFailure::None) << "at the window's edge";
    EXPECT_EQ(check(settings, proof(key, {}), "dp_tok_x"), DpopFailure::TokenHash) << "no ath";
    EXPECT_EQ(check(settings, proof(key, {.token = "dp_tok_y"}), "dp_tok_x"), DpopFailure::TokenHash) << "another token's";
    EXPECT_EQ(check(settings, proof(key, {.token = "dp_tok_x"}), "dp_tok_x"), DpopFailure::None);
    Request two = gate_request("", {proof(key, {}), proof(key, {.jti = "j2"})});
    DpopProof out;
    EXPECT_EQ(check_proof(two, settings, "", &out), DpopFailure::Multiple);
    EXPECT_EQ(check(settings, "not.a.jwt.at-all"), DpopFailure::Malformed);
    EXPECT_EQ(check(settings, "a.b"), DpopFailure::Malformed);
}

TEST(DpopClaims, TheFlatScanReadsTheUsualShapeAndLeavesTheRestToJansson) {
    ProofClaims c;
    ASSERT_TRUE(scan_flat_claims(" {\"jti\":\"a-1\", \"htm\":\"GET\",\"htu\":\"http://gw/x\",\n\"iat\":1800000000,"
                                 "\"ath\":\"h\",\"nonce\":\"n\"} ", &c));
    EXPECT_EQ(*c.jti, "a-1");
    EXPECT_EQ(*c.htm, "GET");
    EXPECT_EQ(*c.htu, "http://gw/x");
    EXPECT_EQ(*c.iat, 1800000000);
    EXPECT_EQ(*c.ath, "h");
    EXPECT_EQ(*c.nonce, "n");
    ASSERT_TRUE(scan_flat_claims("{\"iat\":-0}", &c));
    EXPECT_EQ(*c.iat, 0);
    EXPECT_FALSE(c.jti);
    ASSERT_TRUE(scan_flat_claims("{}", &c));
    // Every shape the scan leaves to jansson, and what jansson then makes of it.
    struct Case {
        const char* text;
        bool object;   // jansson reads an object
        const char* jti;  // what it reads as the jti, or null
    };
    for (const Case& k : std::vector<Case>{
             {"{\"jti\":\"a\\u0062\"}", true, "ab"},            // an escape
             {"{\"jti\":\"\xc3\xa9\"}", true, "\xc3\xa9"},      // not ASCII
             {"{\"jti\":\"a\",\"x\":[1]}", true, "a"},          // another member
             {"{\"jti\":1}", true, nullptr},                    // the wrong type
             {"{\"iat\":1.5,\"jti\":\"a\"}", true, "a"},        // a fraction
             {"{\"iat\":1e3,\"jti\":\"a\"}", true, "a"},        // an exponent
             {"{\"iat\":01,\"jti\":\"a\"}", false, nullptr},     // a leading zero
             {"{\"iat\":1234567890123456789}", true, nullptr},  // 19 digits
             {"{\"jti\":\"a\",\"jti\":\"b\"}", false, nullptr},  // a duplicate
             {"{\"jti\":\"a\"} x", false, nullptr},             // trailing text
             {"{\"jti\":\"a\",}", false, nullptr},
             {"{\"jti\":\"a\"", false, nullptr},
             {"[1]", false, nullptr},
         }) {
        EXPECT_FALSE(scan_flat_claims(k.text, &c)) << k.text;
        Json tree;
        ProofClaims parsed;
        EXPECT_EQ(parse_proof_claims(k.text, &parsed, &tree), k.object) << k.text;
        if (k.object) {
            EXPECT_EQ(parsed.jti ? std::string(*parsed.jti) : "<none>", k.jti ? k.jti : "<none>") << k.text;
        }
    }
    // A scanned text reads the same through jansson.
    const char* flat = "{\"jti\":\"q\",\"htm\":\"POST\",\"htu\":\"https://a/b\",\"iat\":-17}";
    ProofClaims scanned, through_jansson;
    ASSERT_TRUE(scan_flat_claims(flat, &scanned));
    std::string why;
    Json tree = parse_json_object(flat, &why);
    ASSERT_TRUE(tree);
    EXPECT_EQ(claims_of(tree.get()), scanned);
}

TEST(DpopReplay, AJtiIsAcceptedOncePerKeyWithinItsWindow) {
    MemoryStore store;
    Settings settings;
    DpopProof p{sha256("key"), "j1", (uint32_t)(kT0 / 1000)};
    const uint32_t now = (uint32_t)(kT0 / 1000);
    auto remember = [&](const DpopProof& proof, uint32_t at) {
        StoreLock lock(store);
        return remember_proof(store, settings, proof, at);
    };
    EXPECT_EQ(remember(p, now), DpopFailure::None);
    EXPECT_EQ(remember(p, now + 30), DpopFailure::Replay);
    DpopProof other_key = p;
    other_key.jkt = sha256("other");
    EXPECT_EQ(remember(other_key, now + 30), DpopFailure::None) << "keyed by key and jti";
    EXPECT_EQ(remember(p, now + 62), DpopFailure::None) << "past the window the proof's iat fails anyway";
    EXPECT_EQ(store.count(Kind::DpopJti), 2u);
}

TEST(DpopReplay, NoRoomIsFullNotAReplay) {
    MemoryStore store;
    store.capacity = 1;
    Settings settings;
    const uint32_t now = (uint32_t)(kT0 / 1000);
    auto remember = [&](const char* jti, uint32_t at) {
        StoreLock lock(store);
        return remember_proof(store, settings, DpopProof{sha256("key"), jti, at}, at);
    };
    EXPECT_EQ(remember("j1", now), DpopFailure::None);
    EXPECT_EQ(remember("j2", now + 1), DpopFailure::Full) << "refused rather than unchecked";
    EXPECT_EQ(remember("j1", now + 1), DpopFailure::Replay);
    EXPECT_EQ(remember("j1", now + 62), DpopFailure::None) << "its window over: the old record gives way";
    EXPECT_EQ(store.count(Kind::DpopJti), 1u);
}

TEST(DpopReplay, AResizedZoneRemembersWhatTheOldOneSaw) {
    MemoryStore old_zone, new_zone;
    Settings settings;
    const uint32_t now = (uint32_t)(kT0 / 1000);
    auto remember = [&](Store& store, const char* jti, uint32_t at) {
        StoreLock lock(store);
        return remember_proof(store, settings, DpopProof{sha256("key"), jti, at}, at);
    };
    EXPECT_EQ(remember(old_zone, "early", now - 100), DpopFailure::None);  // its window is over
    EXPECT_EQ(remember(old_zone, "seen", now), DpopFailure::None);
    {
        StoreLock a(old_zone), b(new_zone);
        copy_remembered_proofs(old_zone, new_zone, now + 1);
    }
    EXPECT_EQ(new_zone.count(Kind::DpopJti), 1u) << "only the live one";
    EXPECT_EQ(remember(new_zone, "seen", now + 2), DpopFailure::Replay);
    EXPECT_EQ(remember(new_zone, "seen", now + 62), DpopFailure::None) << "and only for its window";
}

TEST(DpopNonce, FreshOnlyOnTheHostThatMadeIt) {
    Settings settings;
    settings.secret_key = sha256("zone key");
    const std::string n = dpop_nonce(settings, 7, kT0 / 1000);
    EXPECT_TRUE(dpop_nonce_fresh(settings, 7, n, kT0 / 1000 + 59));
    EXPECT_FALSE(dpop_nonce_fresh(settings, 8, n, kT0 / 1000)) << "another host";
    EXPECT_FALSE(dpop_nonce_fresh(settings, 7, n, kT0 / 1000 + 61)) << "stale";
    std::string forged = n;
    forged[40] = forged[40] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(dpop_nonce_fresh(settings, 7, forged, kT0 / 1000));
    settings.dpop_nonce = true;
    ClientKey key("EdDSA");
    EXPECT_EQ(check(settings, proof(key, {})), DpopFailure::Nonce);
    EXPECT_EQ(check(settings, proof(key, {.nonce = n})), DpopFailure::None);
}

TEST(DpopBinding, IssuanceBindsAndTheTokenNeedsItsProof) {
    Harness h;
    ClientKey key("ES256");
    ClientKey thief("ES256");
    // POST /pair with a proof: the owner's token is bound.
    Request pair = pair_request(h);
    pair.dpop = {proof(key, {.htm = "POST", .htu = "http://gw.local/pair"})};
    Response r = api_handle(h.store, h.settings, api_route("POST", "/pair"), pair, h.addr);
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string token = field(r, "token");
    Response list = h.call("GET", "/api/devices", "", kT0, kOperator);
    EXPECT_NE(list.body.find("\"dpopBound\":true"), std::string::npos) << list.body;
    ASSERT_EQ(r.audit.size(), 1u);
    EXPECT_EQ(r.audit[0].detail.rfind("dpop jkt=", 0), 0u);

    const uint32_t now = (uint32_t)(kT0 / 1000);
    auto use = [&](const std::string& authorization, std::vector<std::string> proofs) {
        Request req = gate_request("", std::move(proofs));
        req.authorization = authorization;
        return authenticate_bearer(&h.store, h.settings, authorization, h.addr, now, &req);
    };
    Principal ok = use("DPoP " + token, {proof(key, {.jti = "g1", .token = token})});
    EXPECT_EQ(ok.status, Principal::Ok);
    EXPECT_TRUE(ok.dpop_checked);
    EXPECT_EQ(use("DPoP " + token, {proof(key, {.jti = "g1", .token = token})}).dpop_failure, (uint8_t)DpopFailure::Replay);
    EXPECT_EQ(use("Bearer " + token, {proof(key, {.jti = "g2", .token = token})}).dpop_failure, (uint8_t)DpopFailure::Missing)
        << "a bound token sent as Bearer";
    EXPECT_EQ(use("DPoP " + token, {}).dpop_failure, (uint8_t)DpopFailure::Missing);
    EXPECT_EQ(use("DPoP " + token, {proof(thief, {.jti = "g3", .token = token})}).dpop_failure, (uint8_t)DpopFailure::Key)
        << "a proof by another key";
    EXPECT_EQ(authenticate_bearer(&h.store, h.settings, "DPoP " + token, h.addr, now).status, Principal::Invalid)
        << "no request: a bound token cannot be checked";

    // An unbound token: Bearer as before; "DPoP" claims a binding it lacks; required refuses it.
    const std::string plain = h.device();
    EXPECT_EQ(use(plain, {}).status, Principal::Ok);
    EXPECT_EQ(use("DPoP " + plain.substr(7), {proof(key, {.jti = "g4", .token = plain.substr(7)})}).dpop_failure,
              (uint8_t)DpopFailure::Unbound);
    Request required = gate_request("", {});
    required.dpop_mode = DpopMode::Required;
    EXPECT_EQ(authenticate_bearer(&h.store, h.settings, plain, h.addr, now, &required).dpop_failure,
              (uint8_t)DpopFailure::Unbound);
}

TEST(DpopBinding, RequiredRefusesIssuanceWithoutAProofAndRotationBindsAnew) {
    Harness h;
    Request pair = pair_request(h);
    pair.dpop_mode = DpopMode::Required;
    Response refused = api_handle(h.store, h.settings, api_route("POST", "/pair"), pair, h.addr);
    EXPECT_EQ(refused.status, 401);
    EXPECT_EQ(h.store.count(Kind::Device), 0u) << "nothing issued";

    const std::string plain = h.device();  // unbound, by code
    ClientKey key("EdDSA");
    Request rotate;
    rotate.method = "POST";
    rotate.path = "/api/devices/self/rotate";
    rotate.host = "gw.local";
    rotate.now_ms = kT0 + 1000;
    rotate.authorization = plain;
    rotate.dpop = {proof(key, {.htm = "POST", .htu = "http://gw.local/api/devices/self/rotate", .iat = kT0 / 1000 + 1})};
    Response r = api_handle(h.store, h.settings, api_route("POST", "/api/devices/self/rotate"), rotate, h.addr);
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string fresh = field(r, "token");
    Request use = gate_request("", {proof(key, {.jti = "u1", .token = fresh, .iat = kT0 / 1000 + 1})});
    use.authorization = "DPoP " + fresh;
    use.now_ms = kT0 + 1000;
    EXPECT_EQ(authenticate_bearer(&h.store, h.settings, use.authorization, h.addr, (uint32_t)(kT0 / 1000) + 1, &use).status,
              Principal::Ok)
        << "the rotated token is bound to the rotation's proof";
    EXPECT_EQ(authenticate_bearer(&h.store, h.settings, "Bearer " + fresh, h.addr, (uint32_t)(kT0 / 1000) + 1, &use)
                  .dpop_failure,
              (uint8_t)DpopFailure::Missing);
}
