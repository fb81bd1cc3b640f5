// Secrets, keys, QR codes and the operator's files.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>

#include "core/crypto.h"
#include "core/files.h"
#include "core/qr.h"
#include "harness.h"

using namespace dp;

namespace {

// The eight small-order points and their sign-flipped twins, written out
// here apart from the table under test (a deleted entry there must fail).
const char* const kSmallOrderPoints[] = {
    "0100000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000080",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
};

}  // namespace

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

TEST(Crypto, EverySmallOrderEd25519EncodingIsRejected) {
    for (const char* hex : kSmallOrderPoints) EXPECT_FALSE(ed25519_public_key_ok(*hex_decode(hex))) << hex;
    // Non-canonical encodings of 0 and 1 (y >= p).
    EXPECT_FALSE(ed25519_public_key_ok(*hex_decode("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")));
    EXPECT_FALSE(ed25519_public_key_ok(*hex_decode("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")));
}

namespace {

// An independent reference for the decompression rule, in OpenSSL's
// BIGNUMs: y below p, and (y^2 - 1)(d y^2 + 1) a square (or y^2 = 1 with
// the sign bit clear).
bool reference_decompresses(const Bytes& enc) {
    unsigned char be[32];
    for (int i = 0; i < 32; i++) be[i] = (unsigned char)enc[31 - i];
    const bool negative = be[0] & 0x80;
    be[0] &= 0x7f;
    BN_CTX* ctx = BN_CTX_new();
    BIGNUM *p = BN_new(), *d = BN_new(), *t = BN_new(), *y = BN_bin2bn(be, 32, nullptr), *u = BN_new(), *v = BN_new();
    BN_set_bit(p, 255);
    BN_sub_word(p, 19);
    BN_set_word(t, 121666);
    BN_mod_inverse(d, t, p, ctx);
    BN_set_word(t, 121665);
    BN_mod_sub(t, p, t, p, ctx);
    BN_mod_mul(d, d, t, p, ctx);
    bool ok;
    if (BN_cmp(y, p) >= 0) {
        ok = false;
    } else {
        BN_mod_sqr(t, y, p, ctx);
        BN_mod_sub(u, t, BN_value_one(), p, ctx);
        BN_mod_mul(v, d, t, p, ctx);
        BN_mod_add(v, v, BN_value_one(), p, ctx);
        if (BN_is_zero(u)) {
            ok = !negative;
        } else {
            BN_mod_mul(t, u, v, p, ctx);
            ok = BN_kronecker(t, p, ctx) == 1;
        }
    }
    for (BIGNUM* b : {p, d, t, y, u, v}) BN_free(b);
    BN_CTX_free(ctx);
    return ok;
}

bool small_order(const Bytes& enc) {
    for (const char* hex : kSmallOrderPoints)
        if (enc == *hex_decode(hex)) return true;
    return false;
}

}  // namespace

TEST(Crypto, Ed25519DecompressionAgreesWithABigNumberReference) {
    // Random encodings (about half are points), and every encoding within a
    // few units of p and of 2^255 with either sign bit.
    std::vector<Bytes> cases;
    for (int i = 0; i < 4000; i++) cases.push_back(random_bytes(32));
    for (int below = 0; below < 40; below++) {
        for (int sign = 0; sign < 2; sign++) {
            Bytes near_p(32, '\xff');  // 2^255 - 1 - below
            near_p[0] = (char)(0xff - below);
            near_p[31] = sign ? '\xff' : '\x7f';
            cases.push_back(near_p);
            Bytes small(32, '\0');
            small[0] = (char)below;
            small[31] = sign ? '\x80' : '\0';
            cases.push_back(small);
        }
    }
    int points = 0;
    for (const Bytes& enc : cases) {
        const bool expected = reference_decompresses(enc) && !small_order(enc);
        points += expected;
        ASSERT_EQ(ed25519_public_key_ok(enc), expected) << hex_encode(enc);
    }
    EXPECT_GT(points, 1500) << "about half of all encodings are points";
    EXPECT_LT(points, 2700);
    for (int i = 0; i < 200; i++) EXPECT_TRUE(ed25519_public_key_ok(Ed25519Identity::generate()->public_raw()));
}

TEST(Crypto, P256PointsOnTheCurveOnly) {
    // The point of private key 1 (the generator) and its neighbours.
    Bytes g = *hex_decode(
        "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
        "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
    EXPECT_TRUE(p256_public_key_ok(g));
    for (size_t byte : {1u, 20u, 32u, 33u, 50u, 64u}) {
        Bytes off = g;
        off[byte] ^= 1;
        EXPECT_FALSE(p256_public_key_ok(off)) << "byte " << byte;
    }
    Bytes compressed = g.substr(0, 33);
    compressed[0] = 0x03;
    EXPECT_FALSE(p256_public_key_ok(compressed));
    Bytes hybrid = g;
    hybrid[0] = 0x07;
    EXPECT_FALSE(p256_public_key_ok(hybrid));
    // x = p (not reduced): refused even though p = 0 mod p.
    Bytes x_is_p = *hex_decode(
        "04ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"
        "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
    EXPECT_FALSE(p256_public_key_ok(x_is_p));
}

TEST(Crypto, Es256SignaturesAsDerAgreeWithOpenSsl) {
    // R || S with every shape DER cares about: leading zero bytes, the top
    // bit set (a zero byte added), zero itself, all ones; against i2d.
    std::vector<std::string> halves = {std::string(32, '\0'), std::string(32, '\xff'), std::string(32, '\x7f'),
                                       std::string(31, '\0') + '\x80', std::string(31, '\0') + '\x01'};
    std::string leading = std::string(5, '\0') + std::string(27, '\x9c');
    halves.push_back(leading);
    for (int i = 0; i < 50; i++) halves.push_back(random_bytes(32));
    for (const std::string& r : halves)
        for (const std::string& s : {halves[0], halves[1], halves[3], halves[5], halves.back()}) {
            ECDSA_SIG* sig = ECDSA_SIG_new();
            ECDSA_SIG_set0(sig, BN_bin2bn((const unsigned char*)r.data(), 32, nullptr),
                           BN_bin2bn((const unsigned char*)s.data(), 32, nullptr));
            unsigned char expected[80], *end = expected;
            const int expected_len = i2d_ECDSA_SIG(sig, &end);
            ECDSA_SIG_free(sig);
            unsigned char der[72];
            const size_t len = es256_der_signature(r + s, der);
            ASSERT_EQ(std::string((char*)der, len), std::string((char*)expected, expected_len)) << hex_encode(r + s);
        }
}

TEST(Qr, TerminalAndSvg) {
    auto lines = QrCode("http://gw.local/pair#otp=123456").terminal_lines();
    ASSERT_GT(lines.size(), 10u);
    EXPECT_NE(lines[0].find("\u2588"), std::string::npos) << "light-on-dark: the quiet zone is drawn";
    auto inverse = QrCode("http://gw.local/pair#otp=123456").terminal_lines(QrColors::DarkOnLight);
    ASSERT_EQ(inverse.size(), lines.size());
    EXPECT_EQ(inverse[0].find_first_not_of(' '), std::string::npos) << "dark-on-light: the quiet zone is blank";
    EXPECT_NE(inverse[3], lines[3]);
    EXPECT_EQ(QrCode("x").svg().rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
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
