// DPoP (RFC 9449): device tokens bound to a key the device holds. A proof is
// a JWT the client signs per request; the gate (and every bearer route)
// accepts a bound token only with a fresh proof by that key, and the routes
// that issue tokens bind them to the key of the proof they come with.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/call.h"

namespace dp {

constexpr const char* kDpopAlgs = "ES256 EdDSA Ed25519";  // what proofs may be signed with (Ed25519: RFC 9864's name)

// Why a proof (or a token's use of one) is refused; each is counted.
enum class DpopFailure : uint8_t {
    None,
    Missing,      // a bound token without a proof, or sent as Bearer
    Multiple,     // more than one DPoP header
    Malformed,    // not a JWT, or a claim missing or of the wrong type
    Header,       // typ, alg, or jwk (unsupported, or a private key)
    Signature,
    Request,      // htm or htu is not this request
    Time,         // iat outside the window
    TokenHash,    // ath is not this token's
    Key,          // signed by another key than the token is bound to
    Replay,       // this jti was seen within its window
    Nonce,        // a server nonce is required and the proof has no fresh one
    Full,         // the replay cache has no room: refused rather than unchecked
    Unbound,      // a DPoP credential with a token that is not bound, or device_pairing_dpop required
    Count
};
const char* dpop_failure_name(DpopFailure f);  // for the metrics and the debug log

// A proof that passed every check but replay and the key match.
struct DpopProof {
    Digest jkt{};     // RFC 7638 thumbprint of its key
    std::string jti;
    uint32_t iat = 0;
};

// RFC 3986 6.2.2 normalisation of an http(s) URI, without query and
// fragment: scheme and host in lower case, no default port, percent-escapes
// upper case and unreserved ones decoded, dot segments removed, "/" for an
// empty path. None when it is not an absolute http(s) URI.
std::optional<std::string> normalize_http_uri(std::string_view uri);
// RFC 7638 thumbprint of a public JWK (EC P-256 or OKP Ed25519); none for
// another key type or a malformed one.
std::optional<Digest> jwk_thumbprint(const json_t* jwk);

// The claims a proof's checks read, each present only with the type it
// must have (a jti that is a number reads as no jti). Views into the
// decoded claims text, or into the parsed tree kept beside them.
struct ProofClaims {
    std::optional<std::string_view> jti, htm, htu, ath, nonce;
    std::optional<int64_t> iat;
    bool operator==(const ProofClaims& o) const {
        return jti == o.jti && htm == o.htm && htu == o.htu && ath == o.ath && nonce == o.nonce && iat == o.iat;
    }
};
// The usual claims text — one flat object of exactly these members, ASCII
// strings without escapes, integers of at most 18 digits, no duplicates —
// read without building a tree; false for anything else, which
// parse_proof_claims gives to jansson. Where it says true, jansson reads
// the same (t/fuzz/dpop_claims.cpp checks that).
bool scan_flat_claims(std::string_view text, ProofClaims* out);
// The claims of a parsed object (views into it).
ProofClaims claims_of(const json_t* object);
// A proof's claims: the flat scan, else jansson into *tree (which the
// views then point into). False: not a JSON object.
bool parse_proof_claims(std::string_view text, ProofClaims* out, Json* tree);

// RFC 9449 4.3 for the request's one DPoP header: typ, alg, public jwk,
// signature, htm, htu (against device_pairing_url or the request's
// scheme://Host, and its path), iat within the window, ath when a token is
// given, and the nonce when device_pairing_dpop_nonce is on. Replay is the
// caller's (remember_proof).
DpopFailure check_proof(const Request& req, const Settings& settings, std::string_view token, DpopProof* out);
// Remembers a proof's jti for its window (caller holds the StoreLock):
// Replay when it was seen, Full when there is no room.
DpopFailure remember_proof(Store& store, const Settings& settings, const DpopProof& proof, uint32_t now_s);

// A resizing reload's new zone keeps the proofs the old one still
// remembers (the replay cache is in no state file). Both stores locked.
void copy_remembered_proofs(Store& from, Store& to, uint32_t now_s);

// A server nonce (RFC 9449 8, 9): this host's, for the window; any other
// host refuses it, so a proof replayed to another host of a fleet fails.
std::string dpop_nonce(const Settings& settings, uint64_t host_id, int64_t now_s);
bool dpop_nonce_fresh(const Settings& settings, uint64_t host_id, std::string_view nonce, int64_t now_s);

// Issuance: the key to bind a new token to (none: no proof, and binding is
// not required), or the refusal; the proof's jti is remembered.
Result<std::optional<Digest>> issuance_binding(Call& call);
// Binds a device to a key (caller holds the StoreLock); false: no room.
bool bind_device(Store& store, const DeviceRecord* device, const Digest& jkt, uint32_t now_s);
// The key a bound device's token is bound to (caller holds a lock).
std::optional<Digest> device_binding(Store& store, const DeviceRecord* device);
inline Digest binding_key(std::string_view device_id) { return sha256_labeled("binding", device_id); }

// A token's use at the gate or a bearer route: a bound token needs its
// proof (scheme DPoP, exactly one proof, by its key, not replayed); an
// unbound one is refused under the DPoP scheme, and under
// device_pairing_dpop required. Fills p's DPoP facts; None: accepted.
DpopFailure check_token_use(Store& store, const Request& req, const Settings& settings, Principal& p, uint32_t now_s);

// The 401 for a refusal: WWW-Authenticate: DPoP with error
// invalid_dpop_proof, invalid_token or use_dpop_nonce, and algs.
Response dpop_unauthorized(DpopFailure f);
// A refusal as the route answers it (the OAuth token endpoint's form, or
// the 401), with a fresh DPoP-Nonce when a nonce is what is missing.
Response dpop_refusal(DpopFailure f, const Request& req, const Settings& settings, bool token_endpoint);
// Counts a DPoP check for the metrics (None: accepted).
void count_dpop(Store& store, DpopFailure f);
// The OAuth token endpoint's form of a refusal (RFC 9449 5): 400
// invalid_dpop_proof or use_dpop_nonce.
Response dpop_token_error(DpopFailure f);

}  // namespace dp
