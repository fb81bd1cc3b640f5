#include "core/mailbox.h"

#include <algorithm>
#include <cstring>

namespace dp {

namespace {

Response pairing_not_found() {
    return problem(404, "pairing_not_found", "Pairing not found", "no such pairing for this account; mint a new one");
}

Response invalid_write_token(const char* detail) {
    Response r = problem(401, "invalid_write_token", "Invalid write token", detail);
    r.header("WWW-Authenticate", "Bearer realm=\"device-pairing\", error=\"invalid_token\"");
    return r;
}

// The hashes a mailbox is found and owned by, computed before the lock.
struct MailboxKeys {
    Digest mailbox, owner;
    MailboxKeys(const Call& call, const std::string& account)
        : mailbox(key_of("mailbox", call.param)), owner(key_of("account", account)) {}
};

// A live mailbox of this account; lock held.
const MailboxRecord* find_mailbox(Call& call, const MailboxKeys& keys) {
    auto* m = as<MailboxRecord>(call.store.find(Kind::Mailbox, keys.mailbox));
    if (!m || !record_live(&m->h, call.now_s())) return nullptr;
    if (!ct_equal(m->account_hash, keys.owner.data(), sizeof(m->account_hash))) return nullptr;
    return m;
}

// Standard base64 of an exact length; the problem code says what was wrong.
Result<Bytes> decode_key(const json_t* body, const char* field, size_t length) {
    auto text = json_string_member(body, field);
    if (!text) return bad_request(std::string("\"") + field + "\" must be a string");
    auto raw = base64_decode_strict(*text);
    if (!raw)
        return problem(400, "invalid_key_encoding", "Invalid key encoding",
                       std::string(field) + " is not standard base64 (+/ alphabet, = padding, no whitespace)");
    if (raw->size() != length)
        return problem(400, "invalid_key_length", "Invalid key length",
                       std::string(field) + " must decode to exactly " + std::to_string(length) + " bytes, not " +
                           std::to_string(raw->size()));
    return *raw;
}

}  // namespace

constexpr size_t kExpireBeforeRefusing = 256;

Response too_many_pairings(uint32_t live_count) {
    return problem(429, "too_many_pairings", "Too many pairings",
                   "this account already has " + std::to_string(live_count) + " live pairings; cancel one or let it expire");
}

Response mailbox_mint(Call& call) {
    const uint32_t now = call.now_s();
    const Settings& settings = call.settings;
    Digest owner = key_of("account", *call.who.account);
    std::string id = random_token("", 16);
    std::string write_token = random_token("dp_wt_", 32);
    Digest token_hash = sha256(write_token);

    const Digest mailbox_key = key_of("mailbox", id);
    {
        StoreLock lock(call.store);
        uint32_t live_count = live_mailboxes(call.store, owner.data());
        if (live_count >= settings.max_pairings_per_account) {
            // Expired mailboxes must not count against the cap: drop a bounded
            // batch of them from the expiry queue's head, then count again.
            call.store.expire_some(Kind::Mailbox, now, kExpireBeforeRefusing);
            live_count = live_mailboxes(call.store, owner.data());
        }
        if (live_count >= settings.max_pairings_per_account) return too_many_pairings(live_count);
        auto* m = insert_record<MailboxRecord>(call.store, Kind::Mailbox, mailbox_key, now, [&](MailboxRecord* m) {
            m->h.expires_s = now + settings.mailbox_ttl_s;
            memcpy(m->write_token_hash, token_hash.data(), 32);
            memcpy(m->account_hash, owner.data(), sizeof(m->account_hash));
        });
        if (!m) return zone_full();
        if (!count_mailbox(call.store, m, now)) {
            call.store.remove(&m->h);
            return zone_full();
        }
    }
    call.store.count(Counter::MailboxesMinted);
    return json_response(201, json_pack("{s:s, s:s, s:I}", "pairing_id", id.c_str(), "write_token",
                                        write_token.c_str(), "expires_in_secs", (json_int_t)settings.mailbox_ttl_s));
}

// A deposit's body, parsed and its keys checked before the zone lock is
// taken: JSON and curve arithmetic never run while other workers wait.
struct DepositBody {
    Result<Json> body;
    Result<Bytes> session_pub;
    Result<Bytes> ecdh_pub;
    bool session_pub_usable = false;
    bool ecdh_pub_usable = false;

    explicit DepositBody(const Request& req)
        : body(body_object(req)),
          session_pub(body ? decode_key(body->get(), "session_pub", 32) : Result<Bytes>(body.error())),
          ecdh_pub(body ? decode_key(body->get(), "ecdh_pub", 65) : Result<Bytes>(body.error())) {
        session_pub_usable = session_pub && ed25519_public_key_ok(*session_pub);
        ecdh_pub_usable = ecdh_pub && p256_public_key_ok(*ecdh_pub);
    }
};

Response mailbox_deposit(Call& call) {
    const uint32_t now = call.now_s();
    bool malformed;
    std::string_view token = bearer_token(call.req.authorization, &malformed);
    Digest presented = sha256(token);
    DepositBody in(call.req);
    const Digest mailbox_key = key_of("mailbox", call.param);

    StoreLock lock(call.store);
    auto* m = as<MailboxRecord>(call.store.find(Kind::Mailbox, mailbox_key));
    if (!m) return pairing_not_found();
    const bool token_matches = !token.empty() && ct_equal(m->write_token_hash, presented.data(), 32);
    if ((m->h.flags & kMailboxReady) && !token_matches)
        return invalid_write_token("the write token is wrong or already spent");
    if (!(m->h.flags & kMailboxReady)) {
        if (!record_live(&m->h, now)) return pairing_not_found();
        if (token.empty()) return invalid_write_token("send the write token as \"Authorization: Bearer <token>\"");
        if (!token_matches) return invalid_write_token("the write token is wrong, expired or spent");
    }

    if (m->h.flags & kMailboxReady) {
        // The spent token again: the same keys are a retry (a 204 lost on the
        // network), anything else a second write.
        if (in.session_pub && in.ecdh_pub && memcmp(m->session_pub, in.session_pub->data(), 32) == 0 &&
            memcmp(m->ecdh_pub, in.ecdh_pub->data(), 65) == 0)
            return no_content();
        return problem(409, "pairing_already_completed", "Pairing already completed",
                       "this pairing already holds other keys; poll it to read them");
    }
    if (!in.body) return in.body.error();
    if (!in.session_pub) return in.session_pub.error();
    if (!in.ecdh_pub) return in.ecdh_pub.error();
    if (!in.session_pub_usable)
        return problem(400, "invalid_key", "Invalid key",
                       "session_pub is not a usable Ed25519 public key (non-canonical or small order)");
    if (!in.ecdh_pub_usable)
        return problem(400, "invalid_key", "Invalid key", "ecdh_pub is not an uncompressed point on P-256");

    MailboxRecord* ready = update_record(call.store, m);
    memcpy(ready->session_pub, in.session_pub->data(), 32);
    memcpy(ready->ecdh_pub, in.ecdh_pub->data(), 65);
    ready->h.flags |= kMailboxReady;
    ready->h.expires_s = std::max(ready->h.expires_s, now + call.settings.mailbox_ttl_s);  // time to read
    call.store.count(Counter::MailboxesCompleted);
    Response r = no_content();
    r.audit.push_back(AuditEvent{"mailbox_completed", "", "", "", "", call.param});
    return r;
}

Response mailbox_poll(Call& call) {
    std::string wait_arg = call.req.query_arg("wait");
    uint32_t wait = 0;
    if (!wait_arg.empty()) {
        if (wait_arg.size() > 2 || wait_arg.find_first_not_of("0123456789") != std::string::npos ||
            (wait = (uint32_t)std::stoul(wait_arg)) > kMaxWaitS)
            return bad_request("wait must be a whole number of seconds from 0 to 30");
    }
    // A read: polls of every worker look at once; the keys are copied out
    // and encoded after the lock.
    bool ready;
    char session_pub[32], ecdh_pub[65];
    const MailboxKeys keys(call, *call.who.account);
    {
        StoreReadLock lock(call.store);
        const MailboxRecord* m = find_mailbox(call, keys);
        if (!m) return pairing_not_found();
        ready = m->h.flags & kMailboxReady;
        if (ready) {
            memcpy(session_pub, m->session_pub, 32);
            memcpy(ecdh_pub, m->ecdh_pub, 65);
        }
    }
    if (!ready) {
        Response r = json_response(200, json_pack("{s:s}", "status", "pending"));
        if (wait) r.poll_until_ms = call.req.now_ms + wait * 1000LL;
        return r;
    }
    return json_response(200, json_pack("{s:s, s:s, s:s}", "status", "ready", "session_pub",
                                        base64_encode(std::string_view(session_pub, 32)).c_str(), "ecdh_pub",
                                        base64_encode(std::string_view(ecdh_pub, 65)).c_str()));
}

Response mailbox_cancel(Call& call) {
    const MailboxKeys keys(call, *call.who.account);
    StoreLock lock(call.store);
    const MailboxRecord* m = find_mailbox(call, keys);
    if (!m) return pairing_not_found();
    call.store.remove(&m->h);
    call.store.count(Counter::MailboxesCancelled);
    Response r = no_content();
    r.audit.push_back(AuditEvent{"mailbox_cancelled", "", "account", "", *call.who.account, call.param});
    return r;
}

}  // namespace dp
