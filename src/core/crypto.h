// Secrets and signatures: CSPRNG, SHA-256, constant-time compare, Ed25519,
// P-256 point validation. Every function reports failure by value or throws
// dp::CryptoError; none of them logs.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "core/encoding.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace dp {

struct CryptoError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

using Digest = std::array<uint8_t, 32>;

Bytes random_bytes(size_t n);                // RAND_bytes or throws
uint32_t random_below(uint32_t bound);       // uniform in [0, bound), no modulo bias
std::string random_token(std::string_view prefix, size_t nbytes);  // prefix + base64url
// HMAC-SHA-256(key, label || 0 || value): a stored low-entropy secret that
// only a holder of the key can test guesses against.
Digest hmac_labeled(const Digest& key, std::string_view label, std::string_view value);

// SHA-256 with the EVP_MD fetched once and a per-thread reused context: the
// access-phase gate hashes every presented token.
Digest sha256(std::string_view data);
// Hash of a label and a value: distinct record kinds never share a key.
Digest sha256_labeled(std::string_view label, std::string_view value);

// SHA-256 over data given in pieces (a snapshot written in slices).
class Sha256Stream {
   public:
    Sha256Stream();
    ~Sha256Stream();
    Sha256Stream(const Sha256Stream&) = delete;
    Sha256Stream& operator=(const Sha256Stream&) = delete;
    void update(std::string_view data);
    Digest finish();

   private:
    void* ctx_;  // EVP_MD_CTX
};

bool ct_equal(const void* a, const void* b, size_t len);
inline bool ct_equal(const Digest& a, const Digest& b) { return ct_equal(a.data(), b.data(), 32); }

// 32 raw bytes that are a canonical Ed25519 point of large order.
bool ed25519_public_key_ok(std::string_view raw);
// 65 raw bytes: 0x04 || X || Y, a point on P-256 that passes OpenSSL's check.
bool p256_public_key_ok(std::string_view raw);

bool ed25519_verify(std::string_view public_raw, std::string_view message,
                    std::string_view signature);

class Ed25519Identity {
   public:
    // Reads the PEM private key at path, or generates one and writes it with
    // mode 0600 when the file does not exist. Null with *error set on failure.
    static std::shared_ptr<Ed25519Identity> load_or_create(const std::string& path, std::string* error);
    static std::shared_ptr<Ed25519Identity> generate();
    // From a 32-byte private seed (RFC 8032), e.g. a known-answer test's.
    static std::shared_ptr<Ed25519Identity> from_seed(std::string_view seed);
    ~Ed25519Identity();

    const Bytes& public_raw() const { return public_raw_; }
    std::string device_id() const;    // "dev_" + 16 hex of SHA-256(public key)
    std::string fingerprint() const;  // "sha256:" + hex of SHA-256(public key)
    Bytes sign(std::string_view message) const;
    Bytes seed() const;  // the 32-byte private seed, to keep a rotated key in the state directory

   private:
    explicit Ed25519Identity(EVP_PKEY* key);
    EVP_PKEY* key_;
    Bytes public_raw_;
};

std::string ed25519_device_id(std::string_view public_raw);

// ECDSA P-256 with SHA-256 (JWS "ES256"): the key as 65 raw bytes
// (0x04 || X || Y), the signature as R || S (64 bytes).
bool es256_verify(std::string_view public_raw, std::string_view message, std::string_view signature);
// A JWS ECDSA signature R || S (two 32-byte integers) as the DER
// ECDSA-Sig-Value OpenSSL verifies; returns its length (at most 72).
size_t es256_der_signature(std::string_view rs, unsigned char out[72]);

}  // namespace dp
