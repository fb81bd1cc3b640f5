#include "core/persist/snapshot.h"

#include <cstring>

namespace dp {

namespace {

const char kMagic[8] = {'D', 'P', 'S', 'T', 'A', 'T', 'E', '\n'};
constexpr size_t kHeaderSize = 16;  // magic + version + reserved

template <typename T>
void put(std::string& out, const T& v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(v));
}

}  // namespace

std::string serialize_state(Store& store) {
    std::string out(kMagic, sizeof(kMagic));
    put(out, kStateVersion);
    put(out, (uint32_t)0);
    // The OTP is never written: a restart prints a fresh one (seed 000), and
    // a file copy holds no hash of a 6-digit number to recover.
    put(out, OtpState{});
    for (size_t k = 0; k < kKindCount; k++) {
        store.for_each((Kind)k, [&](const RecordHeader* h) {
            size_t size = record_size(h->kind);
            put(out, (uint8_t)h->kind);
            put(out, (uint16_t)size);
            out.append(reinterpret_cast<const char*>(h), size);
        });
    }
    put(out, (uint8_t)0xff);
    Digest sum = sha256(out);
    out.append(reinterpret_cast<const char*>(sum.data()), sum.size());
    return out;
}

bool load_state(Store& store, const std::string& bytes, uint32_t now_s, std::string* error) {
    if (bytes.size() < kHeaderSize + sizeof(OtpState) + 1 + 32 || memcmp(bytes.data(), kMagic, 8) != 0) {
        *error = "not a device pairing state file";
        return false;
    }
    uint32_t version;
    memcpy(&version, bytes.data() + 8, 4);
    if (version != kStateVersion) {
        *error = "state file version " + std::to_string(version) + " is not supported (expected " +
                 std::to_string(kStateVersion) + ")";
        return false;
    }
    const size_t body = bytes.size() - 32;
    Digest sum = sha256(std::string_view(bytes.data(), body));
    if (memcmp(sum.data(), bytes.data() + body, 32) != 0) {
        *error = "checksum mismatch: the file is corrupt or truncated";
        return false;
    }
    size_t pos = kHeaderSize;
    pos += sizeof(OtpState);  // written empty: a start always makes a fresh OTP
    StoreLock lock(store);
    while (pos < body) {
        uint8_t kind = (uint8_t)bytes[pos++];
        if (kind == 0xff) break;
        uint16_t size;
        if (pos + 2 > body) break;
        memcpy(&size, bytes.data() + pos, 2);
        pos += 2;
        // A record written before its kind grew new (trailing) fields loads
        // with them zeroed.
        if (kind >= kKindCount || size > record_size((Kind)kind) || size < sizeof(RecordHeader) || pos + size > body) {
            *error = "bad record at offset " + std::to_string(pos);
            return false;
        }
        RecordHeader h;
        memcpy(&h, bytes.data() + pos, sizeof(h));
        // Account counters are derived: rebuilt below from the live mailboxes.
        if ((Kind)kind != Kind::AccountCount && (h.expires_s == 0 || h.expires_s > now_s)) {
            Digest key;
            memcpy(key.data(), h.key, 32);
            // Everything after the store's reserved bytes comes from the file.
            const char* from = bytes.data() + pos + 2;
            RecordHeader* rec = store.insert((Kind)kind, key, now_s, [&](RecordHeader* r) {
                memcpy(reinterpret_cast<char*>(r) + 2, from, size - 2u);
            });
            if (!rec || ((Kind)kind == Kind::Mailbox && !count_mailbox(store, as<MailboxRecord>(rec), now_s))) {
                *error = "the zone is too small for the records in the state file";
                return false;
            }
        }
        pos += size;
    }
    if (pos != body) {
        *error = "trailing bytes after the last record";
        return false;
    }
    return true;
}

}  // namespace dp
