#include "core/fleet.h"

#include <algorithm>
#include <cstring>

#include <openssl/sha.h>

#include "core/encoding.h"
#include "dp_assets.h"  // build/gen: src/assets embedded

namespace dp {

namespace {

constexpr char kOtpName[] = "otp";

std::string str(std::string_view a, std::string_view b) {
    std::string s(a);
    s += b;
    return s;
}

}  // namespace

std::string fleet_record_key(std::string_view prefix, Kind kind, const Digest& key) {
    if (kind == Kind::Count) return fleet_otp_key(prefix);
    std::string k = str(prefix, "r:");
    k += (char)('0' + (int)kind);
    k += ':';
    k += hex_encode(std::string_view((const char*)key.data(), key.size()));
    return k;
}

bool parse_fleet_record_key(std::string_view prefix, std::string_view redis_key, Kind* kind, Digest* key) {
    if (redis_key.substr(0, prefix.size()) != prefix) return false;
    std::string_view rest = redis_key.substr(prefix.size());
    if (rest == kOtpName) {
        *kind = Kind::Count;
        *key = Digest{};
        return true;
    }
    if (rest.size() != 4 + 64 || rest.substr(0, 2) != "r:" || rest[3] != ':' || rest[2] < '0' ||
        rest[2] >= '0' + (int)kKindCount)
        return false;
    if (!hex_decode_to(rest.substr(4), key->data(), key->size())) return false;
    *kind = (Kind)(rest[2] - '0');
    return true;
}

void FleetKeySet::add(Kind kind, const Digest& key) {
    if ((size_t)kind < kKindCount) keys_[(size_t)kind].push_back(key);
}

void FleetKeySet::seal() {
    for (auto& keys : keys_) std::sort(keys.begin(), keys.end());
}

bool FleetKeySet::contains(Kind kind, const Digest& key) const {
    if ((size_t)kind >= kKindCount) return false;
    const auto& keys = keys_[(size_t)kind];
    return std::binary_search(keys.begin(), keys.end(), key);
}

size_t FleetKeySet::size() const {
    size_t n = 0;
    for (const auto& keys : keys_) n += keys.size();
    return n;
}

void FleetKeySet::clear() {
    for (auto& keys : keys_) std::vector<Digest>().swap(keys);  // the memory goes too
}

namespace {
std::string glob_literal(std::string_view text) {  // a prefix is taken literally, glob characters too
    std::string p;
    for (char c : text) {
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') p += '\\';
        p += c;
    }
    return p;
}
}  // namespace

std::vector<std::string> fleet_migration(std::string_view old_prefix, std::string_view new_prefix, std::string_view cursor) {
    return {"EVAL", reinterpret_cast<const char*>(kAsset_migrate_lua), "0", std::string(old_prefix),
            std::string(new_prefix), std::string(cursor), glob_literal(old_prefix) + "*"};
}

std::string fleet_scan_pattern(std::string_view prefix) {
    return glob_literal(prefix) + "r:*";
}
std::string fleet_otp_key(std::string_view prefix) { return str(prefix, kOtpName); }
std::string fleet_seq_key(std::string_view prefix) { return str(prefix, "seq"); }
std::string fleet_feed_key(std::string_view prefix) { return str(prefix, "feed"); }
std::string fleet_epoch_key(std::string_view prefix) { return str(prefix, "epoch"); }

std::string fleet_image(Kind kind, std::string_view bytes) {
    std::string image(bytes);
    if (kind == Kind::Count) {  // no OTP (never made, or gone) is no key
        OtpState otp{};
        if (image.size() == sizeof otp) memcpy(&otp, image.data(), sizeof otp);
        return otp.expires_ms == 0 ? std::string() : image;
    }
    if (image.empty()) return image;
    image[0] = image[1] = 0;  // RecordHeader::tree_reserved
    return image;  // last seen included: each step it moves is a write, so every host judges idleness alike
}

// Redis runs it atomically: no other commit interleaves between a
// transaction's checks and its writes, on any host. Expiries and scores stay
// the strings the host sent (a Lua number would be formatted anew).
// The script lives in src/assets/commit.lua (embedded at build time).
const char* const kCommitScript = reinterpret_cast<const char*>(kAsset_commit_lua);

std::string fleet_script_sha() {
    static const std::string sha = [] {
        unsigned char digest[SHA_DIGEST_LENGTH];
        SHA1(reinterpret_cast<const unsigned char*>(kCommitScript), strlen(kCommitScript), digest);
        return hex_encode(std::string_view((const char*)digest, sizeof digest));
    }();
    return sha;
}

std::string fleet_account_key(std::string_view prefix, const uint8_t account_hash[16]) {
    return std::string(prefix) + "a:" + hex_encode(std::string_view((const char*)account_hash, 16));
}

std::string fleet_log_key(std::string_view prefix) { return str(prefix, "log"); }

bool parse_fleet_log_field(std::string_view prefix, std::string_view field, uint64_t* index) {
    const std::string head = str(prefix, "log:");
    if (field.substr(0, head.size()) != head) return false;
    const std::string_view digits = field.substr(head.size());
    if (digits.empty() || digits.size() > 19) return false;
    uint64_t n = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') return false;
        n = n * 10 + (uint64_t)(c - '0');
    }
    *index = n;
    return true;
}

FleetTransaction fleet_transaction(std::string_view prefix, const std::vector<RecordChange>& all_changes,
                                   uint32_t account_cap) {
    FleetTransaction t;
    std::vector<RecordChange> changes;  // the records; the leaves go apart
    std::vector<std::string> leaves;
    for (const RecordChange& change : all_changes) {
        if (change.kind == Kind::LogLeaf)
            leaves.push_back(change.after);
        else
            changes.push_back(change);
    }
    for (const RecordChange& change : changes) t.keys.push_back(fleet_record_key(prefix, change.kind, change.key));
    // A mailbox made or gone: its account's set of live mailboxes follows.
    std::vector<std::string> guards;
    for (size_t i = 0; i < changes.size(); i++) {
        const RecordChange& change = changes[i];
        if (change.kind != Kind::Mailbox || change.before.empty() == change.after.empty()) continue;
        const std::string& image = change.after.empty() ? change.before : change.after;
        if (image.size() != sizeof(MailboxRecord)) continue;
        MailboxRecord m;
        memcpy(&m, image.data(), sizeof m);
        t.guard_keys.push_back(fleet_account_key(prefix, m.account_hash));
        guards.push_back(t.keys[i]);
        guards.push_back(change.after.empty() ? "0" : std::to_string((uint64_t)m.h.expires_s * 1000));
    }
    t.args.reserve(4 + 3 * changes.size() + guards.size() + leaves.size());
    t.args.push_back(std::to_string(changes.size()));
    t.args.push_back(std::to_string(account_cap));
    t.args.push_back(std::to_string(t.guard_keys.size()));
    t.args.push_back(std::to_string(leaves.size()));
    for (const RecordChange& change : changes) {
        t.args.push_back(fleet_image(change.kind, change.before));
        t.args.push_back(fleet_image(change.kind, change.after));
        uint64_t expires_ms = 0;
        if (change.kind == Kind::Count) {
            OtpState otp;
            if (change.after.size() == sizeof otp) {
                memcpy(&otp, change.after.data(), sizeof otp);
                // A burned OTP is kept while it would have lived, so it stays burned.
                expires_ms = otp.expires_ms > 0 ? (uint64_t)otp.expires_ms : 0;
            }
        } else if (change.after.size() >= sizeof(RecordHeader) && expiring_kind(change.kind)) {
            RecordHeader h;
            memcpy(&h, change.after.data(), sizeof h);
            expires_ms = (uint64_t)h.expires_s * 1000;
        }
        t.args.push_back(std::to_string(expires_ms));
    }
    for (std::string& g : guards) t.args.push_back(std::move(g));
    for (std::string& leaf : leaves) t.args.push_back(std::move(leaf));
    return t;
}

std::vector<std::string> fleet_commit(std::string_view prefix, std::string_view script_sha, std::string_view origin,
                                      const std::vector<const FleetTransaction*>& batch) {
    size_t keys = 3, args = 0;
    for (const FleetTransaction* t : batch) {
        keys += t->keys.size() + t->guard_keys.size();
        args += t->args.size();
    }
    std::vector<std::string> argv;
    argv.reserve(3 + keys + 3 + args);
    argv.push_back("EVALSHA");
    argv.push_back(std::string(script_sha));
    argv.push_back(std::to_string(keys));
    argv.push_back(fleet_feed_key(prefix));
    argv.push_back(fleet_seq_key(prefix));
    argv.push_back(fleet_log_key(prefix));
    for (const FleetTransaction* t : batch) {
        argv.insert(argv.end(), t->keys.begin(), t->keys.end());
        argv.insert(argv.end(), t->guard_keys.begin(), t->guard_keys.end());
    }
    argv.push_back(std::string(origin));
    argv.push_back(std::to_string(kFeedMaxLen));
    argv.push_back(std::to_string(batch.size()));
    for (const FleetTransaction* t : batch) argv.insert(argv.end(), t->args.begin(), t->args.end());
    return argv;
}

bool fleet_apply(Store& store, Kind kind, const Digest& key, std::string_view image, uint32_t now_s,
                 std::string* problem) {
    problem->clear();
    if (kind == Kind::Count) {
        OtpState& otp = store.otp_for_update();
        if (image.size() == sizeof(OtpState))
            memcpy(&otp, image.data(), sizeof otp);
        else if (image.empty())
            otp = OtpState{};
        else
            *problem = "an OTP state of " + std::to_string(image.size()) + " bytes";
        return problem->empty();
    }
    if (kind == Kind::AccountCount) return true;  // derived on each host from its mailboxes
    if (!image.empty()) {
        *problem = record_image_problem(kind, image, key.data(), true);  // an older host's image: zero-extended
        if (!problem->empty()) return false;
    }
    const RecordHeader* now = store.find(kind, key);
    uint32_t last_seen = 0;
    if (now && kind == Kind::Device) last_seen = as<DeviceRecord>(now)->last_seen_s;
    auto fill = [&](RecordHeader* r) {  // the store's reserved bytes stay the store's
        copy_record_image(r, image);
        if (kind == Kind::Device)
            as<DeviceRecord>(r)->last_seen_s = std::max(as<DeviceRecord>(r)->last_seen_s, last_seen);
    };
    union {  // the image, aligned for reading as a record
        RecordHeader head;
        DeviceRecord device;
        MailboxRecord mailbox;
        CodeRequestRecord code;
    } copy{};
    memcpy(&copy, image.data(), std::min(image.size(), sizeof copy));
    const bool live = !image.empty() && record_live(&copy.head, now_s);
    // A changed record (a deposit, a rename) is written where it is; one whose
    // derived state changes is removed and inserted anew, so it stays right.
    if (now && live && same_derived_state(now, &copy.head)) {
        fill(store.update(now));
        return true;
    }
    if (now) store.remove(now);
    if (!live) return true;
    RecordHeader* rec = store.insert(kind, key, now_s, fill);
    if (!rec) return false;
    return kind != Kind::Mailbox || count_mailbox(store, as<MailboxRecord>(rec), now_s);
}

namespace {

bool parse_number(std::string_view text, uint64_t* out) {
    if (text.empty() || text.size() > 20) return false;
    uint64_t v = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        const uint64_t next = v * 10 + (uint64_t)(c - '0');
        if (next / 10 != v) return false;  // past 2^64
        v = next;
    }
    *out = v;
    return true;
}

// A stream entry id "SEQ-0" ... as written by the commit script: "SEQ-1".
bool parse_entry_id(std::string_view id, uint64_t* seq) {
    const size_t dash = id.find('-');
    return dash != std::string_view::npos && parse_number(id.substr(0, dash), seq);
}

}  // namespace

bool parse_feed_sequence(const ReplyView& reply, uint64_t* seq) {
    if (reply.type == ReplyView::Nil) {
        *seq = 0;
        return true;
    }
    return reply.type == ReplyView::String && parse_number(reply.text, seq);
}

bool parse_scan(const ReplyView& reply, std::string* cursor, std::vector<std::string>* keys) {
    if (reply.type != ReplyView::Array || reply.elements.size() != 2 || reply.elements[0].type != ReplyView::String ||
        reply.elements[1].type != ReplyView::Array)
        return false;
    uint64_t number;
    if (!parse_number(reply.elements[0].text, &number)) return false;
    cursor->assign(reply.elements[0].text);
    keys->clear();
    for (const ReplyView& key : reply.elements[1].elements) {
        if (key.type != ReplyView::String) return false;
        keys->emplace_back(key.text);
    }
    return true;
}

bool parse_feed_entries(const ReplyView& reply, uint64_t after, FleetImages* images, uint64_t* last) {
    *last = after;
    if (reply.type == ReplyView::Nil) return true;  // BLOCK timed out: nothing new
    // [[stream, [[id, [o, origin, key, image, ...]], ...]]]
    if (reply.type != ReplyView::Array || reply.elements.empty() || reply.elements[0].type != ReplyView::Array ||
        reply.elements[0].elements.size() != 2 || reply.elements[0].elements[1].type != ReplyView::Array)
        return false;
    for (const ReplyView& entry : reply.elements[0].elements[1].elements) {
        if (entry.type != ReplyView::Array || entry.elements.size() != 2 || entry.elements[0].type != ReplyView::String ||
            entry.elements[1].type != ReplyView::Array)
            return false;
        uint64_t seq;
        if (!parse_entry_id(entry.elements[0].text, &seq) || seq != *last + 1) return false;  // a gap
        *last = seq;
        const std::vector<ReplyView>& fields = entry.elements[1].elements;
        if (fields.size() % 2 != 0) return false;
        for (size_t f = 2; f + 1 < fields.size(); f += 2) {  // fields 0, 1: the origin
            if (fields[f].type != ReplyView::String || fields[f + 1].type != ReplyView::String) return false;
            images->emplace_back(fields[f].text, fields[f + 1].text);
        }
    }
    return true;
}

}  // namespace dp
