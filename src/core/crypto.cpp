// SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP, but
// they are the same code (SHA-NI where the CPU has it) without the provider
// dispatch: ~60 ns for a token instead of ~100-150 ns through EVP, on the
// gate's path of every request.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "core/crypto.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

#include <openssl/hmac.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

namespace dp {

Bytes random_bytes(size_t n) {
    Bytes out(n, '\0');
    if (n && RAND_bytes(reinterpret_cast<unsigned char*>(&out[0]), (int)n) != 1)
        throw CryptoError("RAND_bytes failed");
    return out;
}

uint32_t random_below(uint32_t bound) {
    // Reject the top partial range so every residue is equally likely.
    const uint32_t limit = UINT32_MAX - UINT32_MAX % bound;
    for (;;) {
        Bytes b = random_bytes(4);
        uint32_t v;
        memcpy(&v, b.data(), 4);
        if (v < limit) return v % bound;
    }
}

std::string random_token(std::string_view prefix, size_t nbytes) {
    return std::string(prefix) + base64url_encode(random_bytes(nbytes));
}

namespace {

struct MdCtxDeleter {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

const EVP_MD* sha256_md() {
    static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (!md) throw CryptoError("SHA256 unavailable");
    return md;
}

Digest digest_parts(std::string_view a, std::string_view b) {
    SHA256_CTX ctx;
    Digest out;
    if (SHA256_Init(&ctx) != 1 || SHA256_Update(&ctx, a.data(), a.size()) != 1 ||
        (!b.empty() && SHA256_Update(&ctx, b.data(), b.size()) != 1) || SHA256_Final(out.data(), &ctx) != 1)
        throw CryptoError("SHA-256 failed");
    return out;
}

struct PkeyDeleter {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct PkeyCtxDeleter {
    void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct BnCtxDeleter {
    void operator()(BN_CTX* c) const { BN_CTX_free(c); }
};
struct EcGroupDeleter {
    void operator()(EC_GROUP* g) const { EC_GROUP_free(g); }
};
struct EcPointDeleter {
    void operator()(EC_POINT* p) const { EC_POINT_free(p); }
};

// Encodings of the eight small-order points (and their sign-flipped twins),
// which OpenSSL accepts as public keys but which make signatures meaningless.
const char* const kSmallOrder[] = {
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

// Arithmetic mod p = 2^255 - 19 in five 51-bit limbs, just enough to tell
// whether an encoding decompresses: about 4 us, where OpenSSL's BIGNUM
// exponentiation took 10 (deposits check one key each).
using Fe = uint64_t[5];
constexpr uint64_t kLimb = (1ULL << 51) - 1;

void fe_carry(Fe h) {
    for (int i = 0; i < 4; i++) {
        h[i + 1] += h[i] >> 51;
        h[i] &= kLimb;
    }
    h[0] += 19 * (h[4] >> 51);
    h[4] &= kLimb;
}

using u128 = unsigned __int128;

// Carries the five 128-bit column sums of a product into limbs.
void fe_reduce(Fe out, u128 t[5]) {
    for (int i = 0; i < 4; i++) {
        t[i + 1] += (uint64_t)(t[i] >> 51);
        out[i] = (uint64_t)t[i] & kLimb;
    }
    out[4] = (uint64_t)t[4] & kLimb;
    out[0] += 19 * (uint64_t)(t[4] >> 51);
    out[1] += out[0] >> 51;
    out[0] &= kLimb;
}

void fe_mul(Fe out, const Fe a, const Fe b) {
    const uint64_t b1 = 19 * b[1], b2 = 19 * b[2], b3 = 19 * b[3], b4 = 19 * b[4];
    u128 t[5];
    t[0] = (u128)a[0] * b[0] + (u128)a[1] * b4 + (u128)a[2] * b3 + (u128)a[3] * b2 + (u128)a[4] * b1;
    t[1] = (u128)a[0] * b[1] + (u128)a[1] * b[0] + (u128)a[2] * b4 + (u128)a[3] * b3 + (u128)a[4] * b2;
    t[2] = (u128)a[0] * b[2] + (u128)a[1] * b[1] + (u128)a[2] * b[0] + (u128)a[3] * b4 + (u128)a[4] * b3;
    t[3] = (u128)a[0] * b[3] + (u128)a[1] * b[2] + (u128)a[2] * b[1] + (u128)a[3] * b[0] + (u128)a[4] * b4;
    t[4] = (u128)a[0] * b[4] + (u128)a[1] * b[3] + (u128)a[2] * b[2] + (u128)a[3] * b[1] + (u128)a[4] * b[0];
    fe_reduce(out, t);
}

// a^2 with the symmetric products once (15 multiplications, not 25): the
// exponentiation below is almost all squarings.
void fe_sq(Fe out, const Fe a) {
    const uint64_t d0 = 2 * a[0], d1 = 2 * a[1], d2 = 38 * a[2], d419 = 19 * a[4], d4 = 2 * d419;
    u128 t[5];
    t[0] = (u128)a[0] * a[0] + (u128)d4 * a[1] + (u128)d2 * a[3];
    t[1] = (u128)d0 * a[1] + (u128)d4 * a[2] + (u128)a[3] * (19 * a[3]);
    t[2] = (u128)d0 * a[2] + (u128)a[1] * a[1] + (u128)d4 * a[3];
    t[3] = (u128)d0 * a[3] + (u128)d1 * a[2] + (u128)a[4] * d419;
    t[4] = (u128)d0 * a[4] + (u128)d1 * a[3] + (u128)a[2] * a[2];
    fe_reduce(out, t);
}

// out = in^(2^n)
void fe_square_times(Fe out, const Fe in, int n) {
    memcpy(out, in, sizeof(Fe));
    while (n--) fe_sq(out, out);
}

// z^((p - 1) / 2) = z^(2^254 - 10): 1 when z is a non-zero square, p - 1
// when it is not, 0 for 0 (Euler's criterion). The addition chain of
// ref10's pow22523 to z^(2^250 - 1), then four squarings and z^6.
void fe_euler(Fe out, const Fe z) {
    Fe z2, z9, z11, a, b, c;
    fe_sq(z2, z);
    fe_square_times(a, z2, 2);
    fe_mul(z9, a, z);
    fe_mul(z11, z9, z2);
    fe_sq(a, z11);
    fe_mul(a, a, z9);                 // 2^5 - 1
    fe_square_times(b, a, 5);
    fe_mul(a, b, a);                  // 2^10 - 1
    fe_square_times(b, a, 10);
    fe_mul(b, b, a);                  // 2^20 - 1
    fe_square_times(c, b, 20);
    fe_mul(b, c, b);                  // 2^40 - 1
    fe_square_times(b, b, 10);
    fe_mul(a, b, a);                  // 2^50 - 1
    fe_square_times(b, a, 50);
    fe_mul(b, b, a);                  // 2^100 - 1
    fe_square_times(c, b, 100);
    fe_mul(b, c, b);                  // 2^200 - 1
    fe_square_times(b, b, 50);
    fe_mul(a, b, a);                  // 2^250 - 1
    fe_square_times(a, a, 4);         // 2^254 - 16
    fe_mul(b, z2, z);
    fe_sq(b, b);                      // z^6
    fe_mul(out, a, b);                // 2^254 - 10
}

// The canonical value (below p) in limbs.
void fe_freeze(Fe h) {
    fe_carry(h);
    fe_carry(h);
    uint64_t q = (h[0] + 19) >> 51;
    for (int i = 1; i < 5; i++) q = (h[i] + q) >> 51;
    h[0] += 19 * q;
    for (int i = 0; i < 4; i++) {
        h[i + 1] += h[i] >> 51;
        h[i] &= kLimb;
    }
    h[4] &= kLimb;
}

bool fe_is(const Fe h, uint64_t small) {
    Fe c;
    memcpy(c, h, sizeof(Fe));
    fe_freeze(c);
    return c[0] == small && (c[1] | c[2] | c[3] | c[4]) == 0;
}

// True when y (little-endian, sign bit cleared) is below p and some x
// satisfies -x^2 + y^2 = 1 + d x^2 y^2, i.e. the point decompresses.
bool ed25519_decompresses(const unsigned char* enc) {
    bool all_ff = true;
    for (int i = 1; i < 31; i++) all_ff = all_ff && enc[i] == 0xff;
    if (all_ff && enc[0] >= 0xed && (enc[31] & 0x7f) == 0x7f) return false;  // non-canonical y
    const bool x_negative = enc[31] & 0x80;
    uint64_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = 0;
        for (int j = 7; j >= 0; j--) w[i] = w[i] << 8 | enc[8 * i + j];
    }
    Fe y = {w[0] & kLimb, (w[0] >> 51 | w[1] << 13) & kLimb, (w[1] >> 38 | w[2] << 26) & kLimb,
            (w[2] >> 25 | w[3] << 39) & kLimb, (w[3] >> 12) & kLimb};
    // d = -121665 / 121666
    static const Fe d = {929955233495203, 466365720129213, 1662059464998953, 2033849074728123, 1442794654840575};
    // x^2 = u / v with u = y^2 - 1, v = d y^2 + 1
    Fe y2, u, v, uv, e;
    fe_sq(y2, y);
    memcpy(u, y2, sizeof(Fe));
    u[0] += 2 * ((1ULL << 51) - 19) - 1;  // + 2p - 1 keeps every limb positive
    for (int i = 1; i < 5; i++) u[i] += 2 * kLimb;
    fe_carry(u);
    fe_mul(v, d, y2);
    v[0] += 1;
    if (fe_is(v, 0)) return false;
    if (fe_is(u, 0)) return !x_negative;  // x = 0 has no "negative" twin
    // u/v is a square iff u*v is (Legendre symbols multiply; v^-1 has v's).
    fe_mul(uv, u, v);
    fe_euler(e, uv);
    return fe_is(e, 1);
}

}  // namespace

Digest sha256(std::string_view data) { return digest_parts(data, {}); }

Sha256Stream::Sha256Stream() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex2(static_cast<EVP_MD_CTX*>(ctx_), sha256_md(), nullptr) != 1) {
        EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
        throw CryptoError("SHA-256 failed");
    }
}

Sha256Stream::~Sha256Stream() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256Stream::update(std::string_view data) {
    if (EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size()) != 1)
        throw CryptoError("SHA-256 failed");
}

Digest Sha256Stream::finish() {
    Digest out;
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out.data(), &len) != 1) throw CryptoError("SHA-256 failed");
    return out;
}

Digest hmac_labeled(const Digest& key, std::string_view label, std::string_view value) {
    std::string message(label);
    message += '\0';
    message.append(value);
    Digest out;
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key.data(), (int)key.size(), reinterpret_cast<const unsigned char*>(message.data()),
              message.size(), out.data(), &len) ||
        len != out.size())
        throw std::runtime_error("HMAC-SHA-256 failed");
    return out;
}

Digest sha256_labeled(std::string_view label, std::string_view value) {
    std::string prefix(label);
    prefix += '\0';
    return digest_parts(prefix, value);
}

// Word by word with no early exit: the time depends on the length only.
// (CRYPTO_memcmp goes byte by byte: ~230 instructions for a digest, twice
// on the gate's path.)
bool ct_equal(const void* a, const void* b, size_t len) {
    const unsigned char* x = static_cast<const unsigned char*>(a);
    const unsigned char* y = static_cast<const unsigned char*>(b);
    uint64_t diff = 0;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t u, v;
        memcpy(&u, x + i, 8);
        memcpy(&v, y + i, 8);
        diff |= u ^ v;
    }
    for (; i < len; i++) diff |= (uint64_t)(x[i] ^ y[i]);
    return diff == 0;
}

bool ed25519_public_key_ok(std::string_view raw) {
    if (raw.size() != 32) return false;
    std::string hex = hex_encode(raw);
    for (const char* bad : kSmallOrder)
        if (hex == bad) return false;
    return ed25519_decompresses(reinterpret_cast<const unsigned char*>(raw.data()));
}

bool p256_public_key_ok(std::string_view raw) {
    if (raw.size() != 65 || (uint8_t)raw[0] != 0x04) return false;
    // The group and a point per thread: an EVP_PKEY built from parameters
    // costs ~20 us of provider work, the point check itself under 1 us.
    thread_local std::unique_ptr<EC_GROUP, EcGroupDeleter> group(EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1));
    thread_local std::unique_ptr<EC_POINT, EcPointDeleter> point(group ? EC_POINT_new(group.get()) : nullptr);
    thread_local std::unique_ptr<BN_CTX, BnCtxDeleter> bn(BN_CTX_new());
    if (!group || !point || !bn) throw CryptoError("EC context failed");
    // On the curve is enough: P-256 has cofactor 1, so every such point but
    // infinity (which 0x04 || X || Y cannot encode) has prime order.
    return EC_POINT_oct2point(group.get(), point.get(), (const unsigned char*)raw.data(), raw.size(), bn.get()) == 1 &&
           EC_POINT_is_on_curve(group.get(), point.get(), bn.get()) == 1;
}


namespace {

// A public key ready to verify with, kept per thread by its raw bytes: a
// bound device proves with the same key on every request, and building the
// key and initialising a verification cost OpenSSL 3 about as much as the
// verification itself. Bounded: many keys only cost the build again.
struct VerifyKey {
    std::unique_ptr<EVP_PKEY, PkeyDeleter> key;
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter> p256;  // EVP_PKEY_verify over a SHA-256 digest
    std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ed25519;   // one-shot EVP_DigestVerify, reusable
};

VerifyKey* verify_key(std::string_view public_raw, bool p256) {
    using Cache = std::unordered_map<std::string, VerifyKey>;
    thread_local Cache cache;
    thread_local std::string id;  // reused: a hit allocates nothing
    id.assign(public_raw);
    id += p256 ? 'p' : 'e';
    auto it = cache.find(id);
    if (it != cache.end()) return &it->second;
    VerifyKey k;
    if (p256) {
        if (!p256_public_key_ok(public_raw)) return nullptr;
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char*)"P-256", 0),
            OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void*)public_raw.data(), public_raw.size()),
            OSSL_PARAM_construct_end()};
        std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
        EVP_PKEY* key = nullptr;
        if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
            EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
            return nullptr;
        k.key.reset(key);
        k.p256.reset(EVP_PKEY_CTX_new(key, nullptr));
        if (!k.p256 || EVP_PKEY_verify_init(k.p256.get()) != 1 ||
            EVP_PKEY_CTX_set_signature_md(k.p256.get(), sha256_md()) != 1)
            return nullptr;
    } else {
        if (public_raw.size() != 32) return nullptr;
        k.key.reset(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, (const unsigned char*)public_raw.data(), 32));
        k.ed25519.reset(EVP_MD_CTX_new());
        if (!k.key || !k.ed25519 || EVP_DigestVerifyInit(k.ed25519.get(), nullptr, nullptr, nullptr, k.key.get()) != 1)
            return nullptr;
    }
    if (cache.size() >= 1024) cache.clear();
    return &cache.emplace(id, std::move(k)).first->second;
}

}  // namespace

bool ed25519_verify(std::string_view public_raw, std::string_view message,
                    std::string_view signature) {
    if (signature.size() != 64) return false;
    VerifyKey* k = verify_key(public_raw, false);
    return k && EVP_DigestVerify(k->ed25519.get(), (const unsigned char*)signature.data(), 64,
                                 (const unsigned char*)message.data(), message.size()) == 1;
}

namespace {

// One DER INTEGER of a 32-byte big-endian unsigned value: no leading zero
// bytes but one, and a zero byte first when the top bit is set.
size_t der_integer(const unsigned char* value, unsigned char* out) {
    size_t skip = 0;
    while (skip < 31 && value[skip] == 0) skip++;
    const size_t pad = value[skip] & 0x80 ? 1 : 0, len = 32 - skip + pad;
    out[0] = 0x02;
    out[1] = (unsigned char)len;
    out[2] = 0;
    memcpy(out + 2 + pad, value + skip, 32 - skip);
    return 2 + len;
}

}  // namespace

size_t es256_der_signature(std::string_view rs, unsigned char out[72]) {
    const auto* raw = (const unsigned char*)rs.data();
    size_t len = der_integer(raw, out + 2);
    len += der_integer(raw + 32, out + 2 + len);
    out[0] = 0x30;  // SEQUENCE; at most 70 bytes of content: the short length form
    out[1] = (unsigned char)len;
    return 2 + len;
}

bool es256_verify(std::string_view public_raw, std::string_view message, std::string_view signature) {
    if (signature.size() != 64) return false;
    VerifyKey* k = verify_key(public_raw, true);
    if (!k) return false;
    // JWS carries R || S (RFC 7518 3.4); OpenSSL verifies DER, written here
    // directly (two BIGNUMs and i2d_ECDSA_SIG cost ~1.5 us a proof).
    unsigned char der[72];
    const size_t der_len = es256_der_signature(signature, der);
    const Digest digest = sha256(message);
    return EVP_PKEY_verify(k->p256.get(), der, der_len, digest.data(), digest.size()) == 1;
}

std::string ed25519_device_id(std::string_view public_raw) {
    Digest d = sha256(public_raw);
    return "dev_" + hex_encode(std::string_view((const char*)d.data(), 8));
}

Ed25519Identity::Ed25519Identity(EVP_PKEY* key) : key_(key) {
    size_t len = 32;
    public_raw_.assign(32, '\0');
    if (EVP_PKEY_get_raw_public_key(key_, (unsigned char*)&public_raw_[0], &len) != 1 || len != 32) {
        EVP_PKEY_free(key_);
        throw CryptoError("not an Ed25519 key");
    }
}

Ed25519Identity::~Ed25519Identity() { EVP_PKEY_free(key_); }

std::shared_ptr<Ed25519Identity> Ed25519Identity::from_seed(std::string_view seed) {
    EVP_PKEY* key = seed.size() == 32 ? EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                                                     (const unsigned char*)seed.data(), 32)
                                      : nullptr;
    if (!key) throw CryptoError("not an Ed25519 seed");
    return std::shared_ptr<Ed25519Identity>(new Ed25519Identity(key));
}

Bytes Ed25519Identity::seed() const {
    size_t len = 32;
    Bytes out(32, '\0');
    if (EVP_PKEY_get_raw_private_key(key_, (unsigned char*)out.data(), &len) != 1 || len != 32)
        throw CryptoError("the Ed25519 seed could not be read");
    return out;
}

std::shared_ptr<Ed25519Identity> Ed25519Identity::generate() {
    EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (!key) throw CryptoError("Ed25519 key generation failed");
    return std::shared_ptr<Ed25519Identity>(new Ed25519Identity(key));
}

std::shared_ptr<Ed25519Identity> Ed25519Identity::load_or_create(const std::string& path, std::string* error) {
    FILE* f = fopen(path.c_str(), "r");
    if (f) {
        EVP_PKEY* key = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
        fclose(f);
        if (!key || EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519) {
            EVP_PKEY_free(key);
            *error = "not a PEM Ed25519 private key";
            return nullptr;
        }
        return std::shared_ptr<Ed25519Identity>(new Ed25519Identity(key));
    }
    if (errno != ENOENT) {
        *error = std::string("cannot read: ") + strerror(errno);
        return nullptr;
    }

    auto identity = generate();
    BIO* mem = BIO_new(BIO_s_mem());
    if (!mem || PEM_write_bio_PrivateKey(mem, identity->key_, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
        BIO_free(mem);
        *error = "cannot encode key";
        return nullptr;
    }
    char* pem = nullptr;
    long pem_len = BIO_get_mem_data(mem, &pem);
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    bool ok = fd >= 0 && write(fd, pem, (size_t)pem_len) == pem_len && fsync(fd) == 0;
    int saved = errno;
    if (fd >= 0) close(fd);
    BIO_free(mem);
    if (!ok) {
        if (fd >= 0) unlink(path.c_str());
        *error = std::string("cannot create: ") + strerror(saved);
        return nullptr;
    }
    return identity;
}

std::string Ed25519Identity::device_id() const { return ed25519_device_id(public_raw_); }

std::string Ed25519Identity::fingerprint() const {
    Digest d = sha256(public_raw_);
    return "sha256:" + hex_encode(std::string_view((const char*)d.data(), 32));
}

Bytes Ed25519Identity::sign(std::string_view message) const {
    std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
    Bytes sig(64, '\0');
    size_t len = 64;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_) != 1 ||
        EVP_DigestSign(ctx.get(), (unsigned char*)&sig[0], &len,
                       (const unsigned char*)message.data(), message.size()) != 1)
        throw CryptoError("Ed25519 signing failed");
    return sig;
}

}  // namespace dp
