#include "core/identity.h"

#include "core/limiter.h"
#include "core/pairing_log.h"

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

std::string handover_text(std::string_view origin, std::string_view old_public, std::string_view new_public,
                          uint64_t tree_size) {
    return std::string(origin) + " identity hand-over\nold " + base64_encode(old_public) + "\nnew " +
           base64_encode(new_public) + "\nsize " + std::to_string(tree_size) + "\n";
}

std::string encode_identity_file(const IdentityFile& f) {
    Json o(json_pack("{s:s, s:[]}", "key", base64_encode(f.seed).c_str(), "handovers"));
    if (!f.previous.empty()) json_object_set_new(o.get(), "previous", json_string(base64_encode(f.previous).c_str()));
    for (const std::string& note : f.handovers) json_array_append_new(json_object_get(o.get(), "handovers"), json_string(note.c_str()));
    return json_compact(o.get()) + "\n";
}

bool parse_identity_file(std::string_view text, IdentityFile* f, std::string* error) {
    Json o(json_loadb(text.data(), text.size(), 0, nullptr));
    auto key = json_string_member(o.get(), "key");
    auto seed = key ? base64_decode_strict(*key) : std::nullopt;
    const json_t* notes = json_object_get(o.get(), "handovers");
    if (!seed || seed->size() != 32 || !json_is_array(notes)) {
        *error = "not a rotated identity (expected {\"key\", \"previous\", \"handovers\"})";
        return false;
    }
    f->seed = *seed;
    if (auto previous = json_string_member(o.get(), "previous")) {
        auto raw = base64_decode_strict(*previous);
        if (!raw || raw->size() != 32) {
            *error = "\"previous\" is not an Ed25519 seed";
            return false;
        }
        f->previous = *raw;
    }
    size_t i;
    json_t* note;
    json_array_foreach(notes, i, note) {
        if (!json_is_string(note)) {
            *error = "a hand-over note is not a string";
            return false;
        }
        f->handovers.emplace_back(json_string_value(note));
    }
    return true;
}

std::string handover_field(std::string_view note, std::string_view name) {
    const std::string mark = "\n" + std::string(name) + " ";
    const size_t at = note.find(mark);
    const size_t end = at == std::string_view::npos ? at : note.find('\n', at + mark.size());
    return end == std::string_view::npos ? std::string() : std::string(note.substr(at + mark.size(), end - at - mark.size()));
}

std::vector<std::string> retired_keys(const std::vector<std::string>& handovers) {
    std::vector<std::string> keys;
    for (const std::string& note : handovers) {
        auto raw = base64_decode_strict(handover_field(note, "old"));
        keys.push_back(raw ? *raw : std::string());
    }
    return keys;
}

Response identity(Call& call) {
    if (!call.settings.identity) return identity_unavailable();
    const Ed25519Identity& id = *call.settings.identity;
    json_t* handovers = json_array();
    for (const std::string& note : call.settings.identity_handovers) json_array_append_new(handovers, json_string(note.c_str()));
    return json_response(200, json_pack("{s:s, s:s, s:s, s:o}", "deviceId", id.device_id().c_str(), "publicKey",
                                        base64_encode(id.public_raw()).c_str(), "fingerprint",
                                        id.fingerprint().c_str(), "handovers", handovers));
}

Response identity_rotate(Call& call) {
    const Settings& settings = call.settings;
    if (!settings.identity) return identity_unavailable();
    if (!settings.identity_rotatable)
        return problem(501, "rotation_unavailable", "Identity rotation unavailable",
                       "a rotated identity is kept in the state directory: device_pairing_zone needs state=");
    uint64_t size = 0;
    if (TlogStorage* tree = call.store.log_tree()) {
        StoreReadLock lock(call.store);
        size = tree->size();
    }
    auto rotation = std::make_shared<IdentityRotation>();
    rotation->previous = settings.identity;
    rotation->next = Ed25519Identity::generate();
    rotation->from_generation = settings.identity_generation;
    rotation->actor = call.who.device_id;
    const std::string& origin = settings.log_origin;
    rotation->handover = sign_note(handover_text(origin, settings.identity->public_raw(), rotation->next->public_raw(), size),
                                   {NoteSigner{origin, settings.identity.get()}, NoteSigner{origin, rotation->next.get()}});
    Response r = json_response(200, json_pack("{s:s, s:s, s:s}", "publicKey",
                                              base64_encode(rotation->next->public_raw()).c_str(), "fingerprint",
                                              rotation->next->fingerprint().c_str(), "handover",
                                              rotation->handover.c_str()));
    r.audit.push_back(AuditEvent{"identity_rotated", "", "", "", call.who.device_id, rotation->next->fingerprint()});
    r.rotation = std::move(rotation);
    r.durable = true;  // its leaf, once the key is kept
    return r;
}

void log_identity_rotation(Store& store, const IdentityRotation& rotation, int64_t now_ms) {
    StoreLock lock(store);
    log_event(store, AuditEvent{"identity_rotated", "", "", "", rotation.actor, rotation.handover}, now_ms);
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
    // A valid one says which key made it: this gateway's current identity,
    // one it had before a rotation (the hand-over that retired it), or another.
    auto valid = [&]() {
        const Settings& s = call.settings;
        const auto& earlier = s.earlier_identity_keys;
        const auto it = std::find(earlier.begin(), earlier.end(), *key);
        json_t* o = json_pack("{s:b, s:n}", "valid", 1, "reason");
        const bool current = s.identity && *key == s.identity->public_raw();
        json_object_set_new(o, "signer", json_string(current ? "current" : it != earlier.end() ? "earlier" : "other"));
        if (!current && it != earlier.end())
            json_object_set_new(o, "retiredBy", json_integer((json_int_t)(it - earlier.begin())));
        return json_response(200, o);
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
    return valid();
}

}  // namespace dp
