#include "core/fleet.h"

#include <algorithm>
#include <cstring>

#include <openssl/sha.h>

#include "core/encoding.h"

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
    if (redis_key == fleet_otp_key(prefix)) {
        *kind = Kind::Count;
        *key = Digest{};
        return true;
    }
    if (redis_key.size() != prefix.size() + 4 + 64 || redis_key.substr(0, prefix.size()) != prefix) return false;
    std::string_view rest = redis_key.substr(prefix.size());
    if (rest.substr(0, 2) != "r:" || rest[3] != ':' || rest[2] < '0' || rest[2] >= '0' + (int)kKindCount) return false;
    auto raw = hex_decode(rest.substr(4));
    if (!raw || raw->size() != 32) return false;
    *kind = (Kind)(rest[2] - '0');
    memcpy(key->data(), raw->data(), 32);
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

std::string fleet_scan_pattern(std::string_view prefix) {
    std::string p;
    for (char c : prefix) {  // a prefix is taken literally, glob characters too
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') p += '\\';
        p += c;
    }
    return p + "r:*";
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
    if (kind == Kind::Device && image.size() >= sizeof(DeviceRecord))
        memset(&image[offsetof(DeviceRecord, last_seen_s)], 0, sizeof(uint32_t));
    return image;
}

// Redis runs it atomically: no other commit interleaves between the checks
// and the writes, on any host.
const char* const kCommitScript = R"lua(
local n = #KEYS
for i = 1, n do
  local now = redis.call('GET', KEYS[i]) or ''
  if now ~= ARGV[2 + 3 * i] then
    local current = {0}
    for j = 1, n do current[j + 1] = redis.call('GET', KEYS[j]) or '' end
    return current
  end
end
-- The per-account cap, fleet-wide: each account's live mailboxes are a
-- sorted set scored by expiry.
local at = 5 + 3 * n
local cap, guards = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
local now_ms
for g = 0, guards - 1 do
  local set, expires = ARGV[at + 2 + 3 * g], tonumber(ARGV[at + 4 + 3 * g])
  if expires > 0 and cap > 0 then
    if not now_ms then
      local t = redis.call('TIME')
      now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    redis.call('ZREMRANGEBYSCORE', set, '-inf', now_ms)
    if redis.call('ZCARD', set) >= cap then return {2} end
  end
end
local fields = {'o', ARGV[1]}
for i = 1, n do
  local after, expires = ARGV[3 + 3 * i], tonumber(ARGV[4 + 3 * i])
  if after == '' then
    redis.call('DEL', KEYS[i])
  elseif expires > 0 then
    redis.call('SET', KEYS[i], after, 'PXAT', expires)
  else
    redis.call('SET', KEYS[i], after)
  end
  fields[#fields + 1] = KEYS[i]
  fields[#fields + 1] = after
end
for g = 0, guards - 1 do
  local set, member, expires = ARGV[at + 2 + 3 * g], ARGV[at + 3 + 3 * g], tonumber(ARGV[at + 4 + 3 * g])
  if expires > 0 then
    redis.call('ZADD', set, expires, member)
    local set_expires = redis.call('PEXPIRETIME', set)
    if set_expires < expires then redis.call('PEXPIREAT', set, expires) end
  else
    redis.call('ZREM', set, member)
  end
end
local seq = redis.call('INCR', ARGV[3])
redis.call('XADD', ARGV[2], 'MAXLEN', '~', ARGV[4], seq .. '-1', unpack(fields))
return {1, seq}
)lua";

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

FleetCommit fleet_commit(std::string_view prefix, std::string_view script_sha, std::string_view origin,
                         const std::vector<RecordChange>& changes, uint32_t account_cap) {
    FleetCommit c;
    for (const RecordChange& change : changes) c.keys.push_back(fleet_record_key(prefix, change.kind, change.key));
    c.argv = {"EVALSHA", std::string(script_sha), std::to_string(changes.size())};
    c.argv.insert(c.argv.end(), c.keys.begin(), c.keys.end());
    c.argv.push_back(std::string(origin));
    c.argv.push_back(fleet_feed_key(prefix));
    c.argv.push_back(fleet_seq_key(prefix));
    c.argv.push_back(std::to_string(kFeedMaxLen));
    for (const RecordChange& change : changes) {
        c.argv.push_back(fleet_image(change.kind, change.before));
        c.argv.push_back(fleet_image(change.kind, change.after));
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
        c.argv.push_back(std::to_string(expires_ms));
    }
    // A mailbox made or gone: its account's set of live mailboxes follows.
    std::vector<std::string> guards;
    for (size_t i = 0; i < changes.size(); i++) {
        const RecordChange& change = changes[i];
        if (change.kind != Kind::Mailbox || change.before.empty() == change.after.empty()) continue;
        const std::string& image = change.after.empty() ? change.before : change.after;
        if (image.size() != sizeof(MailboxRecord)) continue;
        MailboxRecord m;
        memcpy(&m, image.data(), sizeof m);
        guards.push_back(fleet_account_key(prefix, m.account_hash));
        guards.push_back(c.keys[i]);
        guards.push_back(change.after.empty() ? "0" : std::to_string((uint64_t)m.h.expires_s * 1000));
    }
    c.argv.push_back(std::to_string(account_cap));
    c.argv.push_back(std::to_string(guards.size() / 3));
    c.argv.insert(c.argv.end(), guards.begin(), guards.end());
    return c;
}

bool fleet_apply(Store& store, Kind kind, const Digest& key, std::string_view image, uint32_t now_s) {
    if (kind == Kind::Count) {
        OtpState& otp = store.otp_for_update();
        if (image.size() == sizeof(OtpState))
            memcpy(&otp, image.data(), sizeof otp);
        else
            otp = OtpState{};
        return true;
    }
    if (kind == Kind::AccountCount) return true;  // derived on each host from its mailboxes
    if (!image.empty() && image.size() != record_size(kind)) return true;  // not ours to read: ignored
    const RecordHeader* now = store.find(kind, key);
    uint32_t last_seen = 0;
    if (now && kind == Kind::Device) last_seen = as<DeviceRecord>(now)->last_seen_s;
    if (now) store.remove(now);  // a put is the whole record: inserted anew, counters stay right
    if (image.empty()) return true;
    RecordHeader head;
    memcpy(&head, image.data(), sizeof head);
    if (!record_live(&head, now_s)) return true;
    RecordHeader* rec = store.insert(kind, key, now_s, [&](RecordHeader* r) {
        memcpy(reinterpret_cast<char*>(r) + 2, image.data() + 2, image.size() - 2);
        if (kind == Kind::Device)
            as<DeviceRecord>(r)->last_seen_s = std::max(as<DeviceRecord>(r)->last_seen_s, last_seen);
    });
    if (!rec) return false;
    return kind != Kind::Mailbox || count_mailbox(store, as<MailboxRecord>(rec), now_s);
}

}  // namespace dp
