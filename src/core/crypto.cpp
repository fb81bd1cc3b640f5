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

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
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
struct BnDeleter {
    void operator()(BIGNUM* b) const { BN_free(b); }
};
using BnPtr = std::unique_ptr<BIGNUM, BnDeleter>;

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

// Curve constants of edwards25519, computed once per thread (workers are
// single-threaded): p = 2^255 - 19, d = -121665/121666, e = (p - 1) / 2.
struct Ed25519Field {
    std::unique_ptr<BN_CTX, BnCtxDeleter> bn{BN_CTX_new()};
    BnPtr p{BN_new()}, d{BN_new()}, e{BN_new()};
    std::unique_ptr<BN_MONT_CTX, void (*)(BN_MONT_CTX*)> mont{BN_MONT_CTX_new(), BN_MONT_CTX_free};

    Ed25519Field() {
        BnPtr t(BN_new());
        if (!bn || !p || !d || !e || !t || !mont) throw CryptoError("BN alloc failed");
        BN_set_bit(p.get(), 255);
        BN_sub_word(p.get(), 19);
        BN_set_word(t.get(), 121666);
        BN_mod_inverse(d.get(), t.get(), p.get(), bn.get());
        BN_set_word(t.get(), 121665);
        BN_mod_sub(t.get(), p.get(), t.get(), p.get(), bn.get());
        BN_mod_mul(d.get(), d.get(), t.get(), p.get(), bn.get());
        BN_copy(e.get(), p.get());
        BN_sub_word(e.get(), 1);
        BN_rshift1(e.get(), e.get());
        if (BN_MONT_CTX_set(mont.get(), p.get(), bn.get()) != 1) throw CryptoError("BN_MONT_CTX_set failed");
    }
};

// True when y (little-endian, sign bit cleared) is below p and some x
// satisfies -x^2 + y^2 = 1 + d x^2 y^2, i.e. the point decompresses.
bool ed25519_decompresses(const unsigned char* enc) {
    thread_local Ed25519Field f;
    unsigned char be[32];
    for (int i = 0; i < 32; i++) be[i] = enc[31 - i];
    const bool x_negative = be[0] & 0x80;
    be[0] &= 0x7f;

    BnPtr y(BN_bin2bn(be, 32, nullptr)), t(BN_new()), u(BN_new()), v(BN_new());
    if (!y || !t || !u || !v) throw CryptoError("BN alloc failed");
    if (BN_cmp(y.get(), f.p.get()) >= 0) return false;  // non-canonical y
    // x^2 = u / v with u = y^2 - 1, v = d y^2 + 1
    BN_mod_sqr(t.get(), y.get(), f.p.get(), f.bn.get());
    BN_mod_sub(u.get(), t.get(), BN_value_one(), f.p.get(), f.bn.get());
    BN_mod_mul(v.get(), f.d.get(), t.get(), f.p.get(), f.bn.get());
    BN_mod_add(v.get(), v.get(), BN_value_one(), f.p.get(), f.bn.get());
    if (BN_is_zero(v.get())) return false;
    if (BN_is_zero(u.get())) return !x_negative;  // x = 0 has no "negative" twin
    // u/v is a square iff u*v is (Legendre symbols multiply; v^-1 has v's):
    // Euler's criterion, (u v)^((p-1)/2) == 1, one exponentiation.
    BN_mod_mul(t.get(), u.get(), v.get(), f.p.get(), f.bn.get());
    BN_mod_exp_mont(u.get(), t.get(), f.e.get(), f.p.get(), f.bn.get(), f.mont.get());
    return BN_is_one(u.get());
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
    // One fromdata context per thread: fetching the EC provider costs more than the check.
    thread_local std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    thread_local bool ready = ctx && EVP_PKEY_fromdata_init(ctx.get()) == 1;
    if (!ready) throw CryptoError("EC context failed");
    char group[] = "prime256v1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void*)raw.data(), raw.size()),
        OSSL_PARAM_construct_end()};
    EVP_PKEY* key = nullptr;
    if (EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) != 1 || !key) return false;
    std::unique_ptr<EVP_PKEY, PkeyDeleter> owned(key);
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter> check(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
    // On the curve is enough: P-256 has cofactor 1, so every such point but
    // infinity (which 0x04 || X || Y cannot encode) has prime order.
    return check && EVP_PKEY_public_check_quick(check.get()) == 1;
}

bool ed25519_verify(std::string_view public_raw, std::string_view message,
                    std::string_view signature) {
    if (public_raw.size() != 32 || signature.size() != 64) return false;
    std::unique_ptr<EVP_PKEY, PkeyDeleter> key(EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr, (const unsigned char*)public_raw.data(), 32));
    if (!key) return false;
    std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1)
        return false;
    return EVP_DigestVerify(ctx.get(), (const unsigned char*)signature.data(), 64,
                            (const unsigned char*)message.data(), message.size()) == 1;
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
