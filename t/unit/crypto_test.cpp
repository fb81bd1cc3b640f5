// Secrets, keys, QR codes and the operator's files.
#include <gtest/gtest.h>

#include "core/crypto.h"
#include "core/files.h"
#include "core/qr.h"
#include "harness.h"

using namespace dp;

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
    // The eight small-order points and their sign-flipped twins.
    const char* const small_order[] = {
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
    for (const char* hex : small_order) EXPECT_FALSE(ed25519_public_key_ok(*hex_decode(hex))) << hex;
    // Non-canonical encodings of 0 and 1 (y >= p).
    EXPECT_FALSE(ed25519_public_key_ok(*hex_decode("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")));
    EXPECT_FALSE(ed25519_public_key_ok(*hex_decode("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")));
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
