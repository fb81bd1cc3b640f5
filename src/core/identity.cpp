#include "core/identity.h"

#include "core/limiter.h"

#include <algorithm>

namespace dp {

namespace {

constexpr int64_t kFutureSkewMs = 30000;      // attestation clock skew allowed
constexpr int64_t kMaxAgeLimitMs = 86400000;  // largest maxAgeMs accepted
constexpr int64_t kDefaultMaxAgeMs = 300000;
// A nonce is kept as long as any verify could still accept its attestation:
// the largest maxAgeMs, plus the skew a timestamp may run ahead.
constexpr int64_t kNonceKeptMs = kMaxAgeLimitMs + kFutureSkewMs;
constexpr uint32_t kVerifiesPerMinute = 600;  // verifications one address may make a minute

Response identity_unavailable() {
    return problem(501, "identity_unavailable", "No device identity",
                   "device_pairing_identity is not configured for this server");
}

}  // namespace

Response identity(Call& call) {
    if (!call.settings.identity) return identity_unavailable();
    const Ed25519Identity& id = *call.settings.identity;
    return json_response(200, json_pack("{s:s, s:s, s:s}", "deviceId", id.device_id().c_str(), "publicKey",
                                        base64_encode(id.public_raw()).c_str(), "fingerprint",
                                        id.fingerprint().c_str()));
}

Response attest(Call& call) {
    const Request& req = call.req;
    const Settings& settings = call.settings;
    if (!settings.identity) return identity_unavailable();
    Result<Json> parsed = body_object(req);
    if (!parsed) return parsed.error();
    Json& body = *parsed;
    json_t* data = json_object_get(body.get(), "data");
    if (!json_is_object(data)) return bad_request("\"data\" must be a JSON object");
    if (!json_ijson_exact(data))
        return bad_request("\"data\" holds an integer beyond 2^53, which RFC 8785 cannot sign exactly");
    if (json_canonical(data).size() > settings.max_attest_data)
        return problem(413, "data_too_large", "Attestation data too large",
                       "\"data\" must be at most " + std::to_string(settings.max_attest_data) +
                           " bytes of canonical JSON");
    const Ed25519Identity& id = *settings.identity;
    std::string public_key = base64_encode(id.public_raw());
    std::string nonce = base64url_encode(random_bytes(16));
    std::string timestamp = iso8601(req.now_ms);
    Json signed_part(json_pack("{s:O, s:s, s:s, s:s, s:s}", "data", data, "deviceId",
                               id.device_id().c_str(), "nonce", nonce.c_str(), "publicKey",
                               public_key.c_str(), "timestamp", timestamp.c_str()));
    std::string signature = base64_encode(id.sign(json_canonical(signed_part.get())));
    return json_response(
        200, json_pack("{s:{s:s, s:s, s:{s:s, s:s, s:O, s:s}}}", "attestation", "deviceId",
                       id.device_id().c_str(), "publicKey", public_key.c_str(), "attestation",
                       "timestamp", timestamp.c_str(), "nonce", nonce.c_str(), "data", data,
                       "signature", signature.c_str()));
}

Response verify(Call& call) {
    const Request& req = call.req;
    Result<Json> parsed = body_object(req);
    if (!parsed) return parsed.error();
    Json& body = *parsed;
    const json_t* outer = json_object_get(body.get(), "attestation");
    const json_t* inner = json_object_get(outer, "attestation");
    auto device_id = json_string_member(outer, "deviceId");
    auto public_key = json_string_member(outer, "publicKey");
    auto timestamp = json_string_member(inner, "timestamp");
    auto nonce = json_string_member(inner, "nonce");
    auto signature = json_string_member(inner, "signature");
    json_t* data = json_object_get(inner, "data");
    if (!json_is_object(outer) || !json_is_object(inner) || !device_id || !public_key ||
        !timestamp || !nonce || !signature || !json_is_object(data) ||
        (json_object_get(body.get(), "expectedDeviceId") && !json_string_member(body.get(), "expectedDeviceId")))
        return problem(400, "invalid_attestation", "Malformed attestation",
                       "expected {attestation:{deviceId, publicKey, attestation:{timestamp, nonce, "
                       "data, signature}}}");
    int64_t max_age = kDefaultMaxAgeMs;
    if (const json_t* m = json_object_get(body.get(), "maxAgeMs")) {
        if (!json_is_integer(m) || json_integer_value(m) <= 0 || json_integer_value(m) > kMaxAgeLimitMs)
            return bad_request("maxAgeMs must be a whole number of milliseconds from 1 to 86400000");
        max_age = json_integer_value(m);
    }
    auto key = base64_decode_strict(*public_key);
    auto sig = base64_decode_strict(*signature);
    auto when = parse_iso8601(*timestamp);
    if (!key || key->size() != 32 || !sig || sig->size() != 64 || !when || nonce->empty() ||
        nonce->size() > 128)
        return problem(400, "invalid_attestation", "Malformed attestation",
                       "publicKey must be 32 bytes and signature 64 bytes of standard base64, "
                       "timestamp ISO-8601 UTC, nonce 1-128 characters");

    auto verdict = [](bool valid, const char* reason) {
        return json_response(200, json_pack("{s:b, s:s?}", "valid", valid, "reason", reason));
    };
    if (!json_ijson_exact(data))
        return bad_request("the attested data holds an integer beyond 2^53, which RFC 8785 cannot carry exactly");
    if (ed25519_device_id(*key) != *device_id) return verdict(false, "device_id_mismatch");
    auto expected = json_string_member(body.get(), "expectedDeviceId");
    if (expected && *expected != *device_id) return verdict(false, "device_id_mismatch");
    Json signed_part(json_pack("{s:O, s:s, s:s, s:s, s:s}", "data", data, "deviceId",
                               device_id->c_str(), "nonce", nonce->c_str(), "publicKey",
                               public_key->c_str(), "timestamp", timestamp->c_str()));
    if (!ed25519_public_key_ok(*key) || !ed25519_verify(*key, json_canonical(signed_part.get()), *sig))
        return verdict(false, "invalid_signature");
    if (*when > req.now_ms + kFutureSkewMs) return verdict(false, "future_timestamp");
    if (req.now_ms - *when > max_age) return verdict(false, "expired");

    StoreLock lock(call.store);
    Digest nonce_key = key_of("nonce", *device_id + "\n" + *nonce);
    const RecordHeader* seen = call.store.find(Kind::Nonce, nonce_key);
    if (seen && record_live(seen, to_s(req.now_ms))) return verdict(false, "replay");
    if (!within_budget(call.store, "verify-budget", call.addr, kVerifiesPerMinute, req.now_ms))
        return rate_limited((int)(kLimitWindowMs / 1000), nullptr);
    const uint32_t nonce_expires = to_s(std::max(*when, req.now_ms) + kNonceKeptMs) + 1;
    if (seen) {
        call.store.update(seen)->expires_s = nonce_expires;  // seen long ago: its window starts again
    } else if (!insert_record<NonceRecord>(call.store, Kind::Nonce, nonce_key, to_s(req.now_ms),
                                           [&](NonceRecord* n) { n->h.expires_s = nonce_expires; })) {
        return quota_full("attestation nonces");  // without its nonce no attestation is valid
    }
    return verdict(true, nullptr);
}

}  // namespace dp
