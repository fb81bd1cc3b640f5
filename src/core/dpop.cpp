#include "core/dpop.h"

#include <cstring>
#include <memory>
#include <unordered_map>
#include <utility>

#include "core/json.h"

namespace dp {

namespace {

const char* const kFailureNames[] = {"accepted", "missing",   "multiple", "malformed", "header", "signature", "request",
                                     "time",     "token_hash", "key",     "replay",    "nonce",  "full",      "unbound"};
static_assert(sizeof(kFailureNames) / sizeof(kFailureNames[0]) == (size_t)DpopFailure::Count);

bool unreserved(char c) {
    return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_' || c == '~';
}

// RFC 3986 5.2.4.
std::string remove_dot_segments(std::string_view in) {
    std::string out;
    while (!in.empty()) {
        if (in.rfind("../", 0) == 0) in.remove_prefix(3);
        else if (in.rfind("./", 0) == 0) in.remove_prefix(2);
        else if (in.rfind("/./", 0) == 0) in.remove_prefix(2);
        else if (in == "/.") in = "/";
        else if (in.rfind("/../", 0) == 0 || in == "/..") {
            in = in.size() == 3 ? std::string_view("/") : in.substr(3);
            const size_t slash = out.rfind('/');
            out.erase(slash == std::string::npos ? 0 : slash);
        } else if (in == "." || in == "..") in = {};
        else {
            const size_t next = in.find('/', 1);
            const size_t n = next == std::string_view::npos ? in.size() : next;
            out.append(in.substr(0, n));
            in.remove_prefix(n);
        }
    }
    return out;
}

const json_t* member_of(const json_t* o, const char* name, json_type type) {
    const json_t* v = json_object_get(o, name);
    return v && json_typeof(v) == type ? v : nullptr;
}

std::string b64_member(const json_t* o, const char* name, size_t bytes) {
    const json_t* v = member_of(o, name, JSON_STRING);
    if (!v) return {};
    auto raw = base64url_decode(json_string_value(v));
    return raw && raw->size() == bytes ? *raw : std::string();
}

// The proof's public key in the form its verifier takes, for its alg.
std::optional<std::string> public_key(const json_t* jwk, const std::string& alg) {
    const json_t* kty = member_of(jwk, "kty", JSON_STRING);
    const json_t* crv = member_of(jwk, "crv", JSON_STRING);
    if (!kty || !crv) return std::nullopt;
    if (alg == "ES256" && !strcmp(json_string_value(kty), "EC") && !strcmp(json_string_value(crv), "P-256")) {
        const std::string x = b64_member(jwk, "x", 32), y = b64_member(jwk, "y", 32);
        if (x.empty() || y.empty()) return std::nullopt;
        return "\x04" + x + y;
    }
    if ((alg == "EdDSA" || alg == "Ed25519") && !strcmp(json_string_value(kty), "OKP") &&
        !strcmp(json_string_value(crv), "Ed25519")) {
        const std::string x = b64_member(jwk, "x", 32);
        if (x.empty() || !ed25519_public_key_ok(x)) return std::nullopt;
        return x;
    }
    return std::nullopt;
}

std::string nonce_payload(uint64_t t, uint64_t host_id) {
    std::string p(16, '\0');
    for (int i = 0; i < 8; i++) {
        p[i] = (char)(t >> (56 - 8 * i));
        p[8 + i] = (char)(host_id >> (56 - 8 * i));
    }
    return p;
}

std::string nonce_mac(const Settings& settings, const std::string& payload) {
    const Digest mac = hmac_labeled(settings.secret_key, "dpop-nonce", payload);
    return std::string((const char*)mac.data(), 16);
}

// What a proof's header says, once checked: a client signs every proof
// with the same header (typ, alg, its public jwk), so it is parsed and
// judged once per thread and header text.
struct ProofHeader {
    bool valid = false;   // typ, alg and a public jwk of that alg's type
    bool es256 = false;
    std::string key;      // the verifier's form of the public key
    Digest jkt{};
};

std::optional<ProofHeader> judge_header(std::string_view encoded) {
    auto text = base64url_decode(encoded);
    if (!text) return std::nullopt;
    std::string why;
    Json header = parse_json_object(*text, &why);
    if (!header) return std::nullopt;
    ProofHeader h;
    const json_t* typ = member_of(header.get(), "typ", JSON_STRING);
    const json_t* alg = member_of(header.get(), "alg", JSON_STRING);
    const json_t* jwk = member_of(header.get(), "jwk", JSON_OBJECT);
    if (!typ || strcmp(json_string_value(typ), "dpop+jwt") != 0 || !alg || !jwk) return h;
    const std::string alg_name = json_string_value(alg);
    // Ed25519 is EdDSA's fully-specified name (RFC 9864), which newer clients send.
    if (alg_name != "ES256" && alg_name != "EdDSA" && alg_name != "Ed25519") return h;
    if (json_object_get(jwk, "d")) return h;  // a private key
    auto key = public_key(jwk, alg_name);
    auto jkt = jwk_thumbprint(jwk);
    if (!key || !jkt) return h;
    h.valid = true;
    h.es256 = alg_name == "ES256";
    h.key = *key;
    h.jkt = *jkt;
    return h;
}

const ProofHeader* proof_header(std::string_view encoded) {
    // Keyed by views of the owned texts: a hit builds no string.
    struct Entry {
        std::string text;
        std::optional<ProofHeader> header;
    };
    thread_local std::unordered_map<std::string_view, std::unique_ptr<Entry>> cache;
    auto it = cache.find(encoded);
    if (it == cache.end()) {
        if (cache.size() >= 1024) cache.clear();  // bounded: many keys only cost the parse again
        auto entry = std::make_unique<Entry>(Entry{std::string(encoded), judge_header(encoded)});
        const std::string_view key = entry->text;
        it = cache.emplace(key, std::move(entry)).first;
    }
    return it->second->header ? &*it->second->header : nullptr;
}

// The normalised URI a proof must name for this request: the same location
// is asked for again and again, so the last answer is kept.
std::optional<std::string> expected_htu(const Settings& settings, const Request& req) {
    Result<std::string> base = base_url(settings, req);
    if (!base) return std::nullopt;
    thread_local std::string last_uri;
    thread_local std::optional<std::string> last_normal;
    std::string uri = std::move(*base);
    uri += req.path;
    if (uri != last_uri) {
        last_normal = normalize_http_uri(uri);
        last_uri = std::move(uri);
    }
    return last_normal;
}

}  // namespace

namespace {

void skip_space(std::string_view text, size_t* at) {
    while (*at < text.size() && (text[*at] == ' ' || text[*at] == '\t' || text[*at] == '\n' || text[*at] == '\r')) ++*at;
}

// A string of printable ASCII without escapes, after its opening quote.
bool scan_plain_string(std::string_view text, size_t* at, std::string_view* out) {
    const size_t start = *at;
    while (*at < text.size() && text[*at] != '"') {
        const unsigned char c = (unsigned char)text[*at];
        if (c < 0x20 || c >= 0x80 || c == '\\') return false;
        ++*at;
    }
    if (*at == text.size()) return false;
    *out = text.substr(start, *at - start);
    ++*at;
    return true;
}

// -?(0|[1-9][0-9]*), at most 18 digits, not followed by a fraction or exponent.
bool scan_plain_integer(std::string_view text, size_t* at, int64_t* out) {
    const bool negative = *at < text.size() && text[*at] == '-';
    if (negative) ++*at;
    const size_t start = *at;
    int64_t value = 0;
    const auto digit_at = [&](size_t i) { return i < text.size() && text[i] >= '0' && text[i] <= '9'; };
    while (digit_at(*at) && *at - start < 18) value = value * 10 + (text[(*at)++] - '0');
    const size_t digits = *at - start;
    if (digits == 0 || digit_at(*at) || (digits > 1 && text[start] == '0')) return false;  // a 19th digit: refused unread
    if (*at < text.size() && (text[*at] == '.' || text[*at] == 'e' || text[*at] == 'E')) return false;
    *out = negative ? -value : value;
    return true;
}

// The string claims, named once for the scan and for jansson's reading.
constexpr std::pair<const char*, std::optional<std::string_view> ProofClaims::*> kStringClaims[] = {
    {"jti", &ProofClaims::jti}, {"htm", &ProofClaims::htm}, {"htu", &ProofClaims::htu},
    {"ath", &ProofClaims::ath}, {"nonce", &ProofClaims::nonce}};

std::optional<std::string_view>* string_claim(ProofClaims* c, std::string_view name) {
    for (const auto& [claim, member] : kStringClaims)
        if (name == claim) return &(c->*member);
    return nullptr;
}

std::optional<std::string_view> string_member(const json_t* o, const char* name) {
    const json_t* v = member_of(o, name, JSON_STRING);
    if (!v) return std::nullopt;
    return std::string_view(json_string_value(v), json_string_length(v));
}

}  // namespace

bool scan_flat_claims(std::string_view text, ProofClaims* out) {
    ProofClaims c;
    size_t at = 0;
    skip_space(text, &at);
    if (at == text.size() || text[at++] != '{') return false;
    skip_space(text, &at);
    if (at < text.size() && text[at] == '}') {
        ++at;
    } else {
        for (;;) {
            std::string_view name;
            if (at == text.size() || text[at++] != '"' || !scan_plain_string(text, &at, &name)) return false;
            skip_space(text, &at);
            if (at == text.size() || text[at++] != ':') return false;
            skip_space(text, &at);
            if (name == "iat") {
                int64_t iat;
                if (c.iat || !scan_plain_integer(text, &at, &iat)) return false;
                c.iat = iat;
            } else {
                std::optional<std::string_view>* slot = string_claim(&c, name);
                std::string_view value;
                if (!slot || *slot || at == text.size() || text[at++] != '"' || !scan_plain_string(text, &at, &value))
                    return false;
                *slot = value;
            }
            skip_space(text, &at);
            if (at == text.size()) return false;
            const char next = text[at++];
            if (next == '}') break;
            if (next != ',') return false;
            skip_space(text, &at);
        }
    }
    skip_space(text, &at);
    if (at != text.size()) return false;
    *out = c;
    return true;
}

ProofClaims claims_of(const json_t* object) {
    ProofClaims c;
    for (const auto& [claim, member] : kStringClaims) c.*member = string_member(object, claim);
    if (const json_t* iat = member_of(object, "iat", JSON_INTEGER)) c.iat = json_integer_value(iat);
    return c;
}

bool parse_proof_claims(std::string_view text, ProofClaims* out, Json* tree) {
    if (scan_flat_claims(text, out)) return true;
    std::string why;
    *tree = parse_json_object(text, &why);
    if (!*tree) return false;
    *out = claims_of(tree->get());
    return true;
}

const char* dpop_failure_name(DpopFailure f) { return kFailureNames[(size_t)f < (size_t)DpopFailure::Count ? (size_t)f : 0]; }

std::optional<std::string> normalize_http_uri(std::string_view uri) {
    const size_t colon = uri.find("://");
    if (colon == std::string_view::npos) return std::nullopt;
    std::string scheme(uri.substr(0, colon));
    for (char& c : scheme) c = (char)tolower((unsigned char)c);
    if (scheme != "http" && scheme != "https") return std::nullopt;
    std::string_view rest = uri.substr(colon + 3);
    rest = rest.substr(0, rest.find_first_of("?#"));
    const size_t slash = rest.find('/');
    std::string authority(rest.substr(0, slash));
    const std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    if (authority.empty() || authority.find('@') != std::string::npos) return std::nullopt;
    for (char& c : authority) c = (char)tolower((unsigned char)c);
    const std::string default_port = scheme == "http" ? ":80" : ":443";
    if (authority.size() > default_port.size() &&
        authority.compare(authority.size() - default_port.size(), default_port.size(), default_port) == 0 &&
        authority.find(']', authority.size() - default_port.size()) == std::string::npos)
        authority.erase(authority.size() - default_port.size());
    std::string decoded;  // percent-escapes: unreserved decoded, the rest upper case
    for (size_t i = 0; i < path.size(); i++) {
        if (path[i] != '%') {
            decoded += path[i];
            continue;
        }
        const int octet = percent_escape_value(path, i);
        if (octet < 0) return std::nullopt;
        const char c = (char)octet;
        if (unreserved(c)) {
            decoded += c;
        } else {
            decoded += '%';
            decoded += (char)toupper((unsigned char)path[i + 1]);
            decoded += (char)toupper((unsigned char)path[i + 2]);
        }
        i += 2;
    }
    std::string normal_path = remove_dot_segments(decoded);
    return scheme + "://" + authority + (normal_path.empty() ? "/" : normal_path);
}

std::optional<Digest> jwk_thumbprint(const json_t* jwk) {
    const json_t* kty = member_of(jwk, "kty", JSON_STRING);
    if (!kty) return std::nullopt;
    const std::string type = json_string_value(kty);
    const json_t* crv = member_of(jwk, "crv", JSON_STRING);
    const json_t* x = member_of(jwk, "x", JSON_STRING);
    // RFC 7638 3.2: the required members only, in lexicographic order, no
    // whitespace (their values are base64url and curve names: nothing to escape).
    std::string text;
    if (type == "RSA") {  // never a proof's key here, but the RFC's own example is one
        const json_t* e = member_of(jwk, "e", JSON_STRING);
        const json_t* n = member_of(jwk, "n", JSON_STRING);
        if (!e || !n) return std::nullopt;
        text = std::string("{\"e\":\"") + json_string_value(e) + "\",\"kty\":\"RSA\",\"n\":\"" + json_string_value(n) + "\"}";
    } else if (!crv || !x) {
        return std::nullopt;
    } else if (type == "EC") {
        const json_t* y = member_of(jwk, "y", JSON_STRING);
        if (!y) return std::nullopt;
        text = std::string("{\"crv\":\"") + json_string_value(crv) + "\",\"kty\":\"EC\",\"x\":\"" + json_string_value(x) +
               "\",\"y\":\"" + json_string_value(y) + "\"}";
    } else if (type == "OKP") {
        text = std::string("{\"crv\":\"") + json_string_value(crv) + "\",\"kty\":\"OKP\",\"x\":\"" + json_string_value(x) + "\"}";
    } else {
        return std::nullopt;
    }
    for (char c : text)
        if (c == '\\' || (unsigned char)c < 0x20) return std::nullopt;
    return sha256(text);
}

DpopFailure check_proof(const Request& req, const Settings& settings, std::string_view token, DpopProof* out) {
    if (req.dpop.empty()) return DpopFailure::Missing;
    if (req.dpop.size() > 1) return DpopFailure::Multiple;
    const std::string& jwt = req.dpop[0];
    const size_t dot1 = jwt.find('.'), dot2 = dot1 == std::string::npos ? dot1 : jwt.find('.', dot1 + 1);
    if (dot2 == std::string::npos || jwt.find('.', dot2 + 1) != std::string::npos || jwt.size() > 4096)
        return DpopFailure::Malformed;
    const ProofHeader* header = proof_header(std::string_view(jwt).substr(0, dot1));
    if (!header) return DpopFailure::Malformed;
    if (!header->valid) return DpopFailure::Header;
    auto claims_text = base64url_decode(std::string_view(jwt).substr(dot1 + 1, dot2 - dot1 - 1));
    auto signature = base64url_decode(std::string_view(jwt).substr(dot2 + 1));
    if (!claims_text || !signature) return DpopFailure::Malformed;
    ProofClaims claims;
    Json tree;
    if (!parse_proof_claims(*claims_text, &claims, &tree)) return DpopFailure::Malformed;
    const std::string_view signed_part = std::string_view(jwt).substr(0, dot2);
    const bool valid = header->es256 ? es256_verify(header->key, signed_part, *signature)
                                     : ed25519_verify(header->key, signed_part, *signature);
    if (!valid) return DpopFailure::Signature;

    // The claims: this request, now, this token, this host's nonce.
    if (!claims.jti || claims.jti->empty() || claims.jti->size() > 256 || !claims.htm || !claims.htu || !claims.iat)
        return DpopFailure::Malformed;
    if (req.method != *claims.htm) return DpopFailure::Request;
    auto expected = expected_htu(settings, req), presented = normalize_http_uri(*claims.htu);
    if (!expected || !presented || *expected != *presented) return DpopFailure::Request;
    const int64_t now_s = req.now_ms / 1000, issued = *claims.iat;
    if (issued < now_s - (int64_t)settings.dpop_window_s || issued > now_s + (int64_t)settings.dpop_window_s)
        return DpopFailure::Time;
    if (!token.empty()) {
        const Digest token_hash = sha256(token);
        if (!claims.ath || *claims.ath != base64url_encode(std::string_view((const char*)token_hash.data(), 32)))
            return DpopFailure::TokenHash;
    }
    if (settings.dpop_nonce && (!claims.nonce || !dpop_nonce_fresh(settings, req.host_id, *claims.nonce, now_s)))
        return DpopFailure::Nonce;
    out->jkt = header->jkt;
    out->jti = *claims.jti;
    out->iat = (uint32_t)issued;
    return DpopFailure::None;
}

namespace {

// A proof's jti remembered until `until`; false: already there, or no room.
bool insert_seen(Store& store, const Digest& key, uint32_t now_s, uint32_t until) {
    return insert_record<DpopJtiRecord>(store, Kind::DpopJti, key, now_s, [&](DpopJtiRecord* r) { r->h.expires_s = until; });
}

}  // namespace

DpopFailure remember_proof(Store& store, const Settings& settings, const DpopProof& proof, uint32_t now_s) {
    const Digest key = key_of("dpop-jti", std::string((const char*)proof.jkt.data(), 32) + proof.jti);
    // Kept until no proof with this iat is accepted any more.
    const uint32_t until = std::max(proof.iat, now_s) + settings.dpop_window_s + 1;
    const auto remember = [&] { return insert_seen(store, key, now_s, until); };
    // The insert looks for the key itself: one lookup when the jti is new.
    if (remember()) return DpopFailure::None;
    const RecordHeader* seen = store.find(Kind::DpopJti, key);
    if (!seen) return DpopFailure::Full;
    if (record_live(seen, now_s)) return DpopFailure::Replay;
    store.remove(seen);  // a record whose window ended, not yet swept
    return remember() ? DpopFailure::None : DpopFailure::Full;
}

void copy_remembered_proofs(Store& from, Store& to, uint32_t now_s) {
    from.for_each(Kind::DpopJti, [&](const RecordHeader* seen) {
        if (!record_live(seen, now_s)) return;
        Digest key;
        memcpy(key.data(), seen->key, 32);
        insert_seen(to, key, now_s, seen->expires_s);
    });
}

std::string dpop_nonce(const Settings& settings, uint64_t host_id, int64_t now_s) {
    const std::string payload = nonce_payload((uint64_t)now_s, host_id);
    return base64url_encode(payload + nonce_mac(settings, payload));
}

bool dpop_nonce_fresh(const Settings& settings, uint64_t host_id, std::string_view nonce, int64_t now_s) {
    auto raw = base64url_decode(nonce);
    if (!raw || raw->size() != 32) return false;
    const std::string payload = raw->substr(0, 16);
    if (!ct_equal(nonce_mac(settings, payload).data(), raw->data() + 16, 16)) return false;
    uint64_t t = 0, host = 0;
    for (int i = 0; i < 8; i++) {
        t = t << 8 | (uint8_t)payload[i];
        host = host << 8 | (uint8_t)payload[8 + i];
    }
    return host == host_id && (int64_t)t <= now_s + 1 && now_s - (int64_t)t <= (int64_t)settings.dpop_window_s;
}

Result<std::optional<Digest>> issuance_binding(Call& call) {
    const Request& req = call.req;
    if (req.dpop_mode == DpopMode::Off) return std::optional<Digest>();
    if (req.dpop.empty() && req.dpop_mode != DpopMode::Required) return std::optional<Digest>();
    DpopProof proof;
    DpopFailure f = check_proof(req, call.settings, {}, &proof);
    if (f == DpopFailure::None) {
        StoreLock lock(call.store);
        f = remember_proof(call.store, call.settings, proof, call.now_s());
    }
    count_dpop(call.store, f);
    if (f != DpopFailure::None) return dpop_refusal(f, req, call.settings, req.path == "/oauth/token");
    return std::optional<Digest>(proof.jkt);
}

bool bind_device(Store& store, const DeviceRecord* device, const Digest& jkt, uint32_t now_s) {
    const Digest key = binding_key(device_id_text(device->id));
    if (auto* b = as<BindingRecord>(store.find(Kind::Binding, key))) {
        memcpy(update_record(store, b)->jkt, jkt.data(), 32);
    } else if (!insert_record<BindingRecord>(store, Kind::Binding, key, now_s,
                                             [&](BindingRecord* r) { memcpy(r->jkt, jkt.data(), 32); })) {
        return false;
    }
    update_record(store, device)->h.flags |= kDeviceDpopBound;
    return true;
}

std::optional<Digest> device_binding(Store& store, const DeviceRecord* device) {
    if (!(device->h.flags & kDeviceDpopBound)) return std::nullopt;
    auto* b = as<BindingRecord>(store.find(Kind::Binding, binding_key(device_id_text(device->id))));
    if (!b) return std::nullopt;
    Digest jkt;
    memcpy(jkt.data(), b->jkt, 32);
    return jkt;
}

DpopFailure check_token_use(Store& store, const Request& req, const Settings& settings, Principal& p, uint32_t now_s) {
    if (!p.bound) {
        // "DPoP <token>" claims a binding the token does not have.
        if (p.dpop_scheme || (req.dpop_mode == DpopMode::Required && p.method == Principal::DeviceToken))
            return DpopFailure::Unbound;
        return DpopFailure::None;
    }
    if (!p.dpop_scheme) return DpopFailure::Missing;  // a bound token sent as Bearer
    bool malformed;
    bool dpop_scheme;
    const std::string_view token = bearer_token(req.authorization, &malformed, &dpop_scheme);
    DpopProof proof;
    DpopFailure f = check_proof(req, settings, token, &proof);
    if (f != DpopFailure::None) return f;
    if (!ct_equal(proof.jkt, p.bound_jkt)) return DpopFailure::Key;
    {
        StoreLock lock(store);
        f = remember_proof(store, settings, proof, now_s);
    }
    if (f != DpopFailure::None) return f;
    p.dpop_checked = true;
    const std::string text = base64url_encode(std::string_view((const char*)proof.jkt.data(), 32));
    memcpy(p.jkt, text.data(), std::min(text.size(), sizeof p.jkt - 1));
    return DpopFailure::None;
}

void count_dpop(Store& store, DpopFailure f) {
    store.count((Counter)((size_t)Counter::DpopAccepted + (size_t)f));
}

Response dpop_refusal(DpopFailure f, const Request& req, const Settings& settings, bool token_endpoint) {
    Response r = token_endpoint ? dpop_token_error(f) : dpop_unauthorized(f);
    if (f == DpopFailure::Nonce) r.header("DPoP-Nonce", dpop_nonce(settings, req.host_id, req.now_ms / 1000));
    return r;
}

Response dpop_unauthorized(DpopFailure f) {
    const bool token_error = f == DpopFailure::Missing || f == DpopFailure::Unbound;
    const char* error = f == DpopFailure::Nonce ? "use_dpop_nonce" : token_error ? "invalid_token" : "invalid_dpop_proof";
    Response r = problem(401, error, f == DpopFailure::Nonce ? "DPoP nonce required" : "DPoP proof refused",
                         std::string("the DPoP check failed: ") + dpop_failure_name(f));
    r.header("WWW-Authenticate", std::string("DPoP error=\"") + error + "\", algs=\"" + kDpopAlgs + "\"");
    return r;
}

Response dpop_token_error(DpopFailure f) {
    Response r = json_response(400, json_pack("{s:s, s:s}", "error", f == DpopFailure::Nonce ? "use_dpop_nonce" : "invalid_dpop_proof",
                                              "error_description", (std::string("the DPoP proof failed: ") + dpop_failure_name(f)).c_str()));
    return r;
}

}  // namespace dp
