#include "core/persist/snapshot.h"

#include <cstring>

namespace dp {

namespace {

const char kMagic[8] = {'D', 'P', 'S', 'T', 'A', 'T', 'E', '\n'};
constexpr size_t kHeaderSizeV1 = 16;  // magic + version + reserved
constexpr size_t kHeaderSize = 32;    // ... + covered sequence + generation

template <typename T>
void put(std::string& out, const T& v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(v));
}

}  // namespace

SnapshotWriter::SnapshotWriter(const SnapshotInfo& info) : buf_(kMagic, sizeof(kMagic)) {
    put(buf_, kStateVersion);
    put(buf_, (uint32_t)0);
    put(buf_, info.covers_seq);
    put(buf_, info.generation);
    // The OTP is never written: a restart prints a fresh one (seed 000), and
    // a file copy holds no hash of a 6-digit number to recover.
    put(buf_, OtpState{});
}

void SnapshotWriter::add(const RecordHeader* h) {
    if (h->kind == Kind::AccountCount) return;  // derived: rebuilt from the mailboxes on load
    if (local_kind(h->kind)) return;            // the host's own (the DPoP replay cache)
    size_t size = record_size(h->kind);
    put(buf_, (uint8_t)h->kind);
    put(buf_, (uint16_t)size);
    buf_.append(reinterpret_cast<const char*>(h), size);
}

std::string SnapshotWriter::take() {
    sum_.update(buf_);
    std::string out;
    out.swap(buf_);
    return out;
}

std::string SnapshotWriter::finish() {
    put(buf_, (uint8_t)0xff);
    sum_.update(buf_);
    Digest sum = sum_.finish();
    buf_.append(reinterpret_cast<const char*>(sum.data()), sum.size());
    std::string out;
    out.swap(buf_);
    return out;
}

std::string serialize_state(Store& store, const SnapshotInfo& info) {
    SnapshotWriter writer(info);
    for (size_t k = 0; k < kKindCount; k++) store.for_each((Kind)k, [&](const RecordHeader* h) { writer.add(h); });
    std::string out = writer.take();
    return out + writer.finish();
}

bool read_snapshot_info(std::string_view bytes, SnapshotInfo* info) {
    if (bytes.size() < kHeaderSizeV1 || memcmp(bytes.data(), kMagic, 8) != 0) return false;
    uint32_t version;
    memcpy(&version, bytes.data() + 8, 4);
    *info = SnapshotInfo{};
    if (version >= 2 && bytes.size() >= kHeaderSize) {
        memcpy(&info->covers_seq, bytes.data() + 16, 8);
        memcpy(&info->generation, bytes.data() + 24, 8);
    }
    return true;
}

bool load_state(Store& store, const std::string& bytes, uint32_t now_s, std::string* error, SnapshotInfo* info) {
    SnapshotInfo header;
    if (bytes.size() < kHeaderSizeV1 + sizeof(OtpState) + 1 + 32 || !read_snapshot_info(bytes, &header)) {
        *error = "not a device pairing state file";
        return false;
    }
    uint32_t version;
    memcpy(&version, bytes.data() + 8, 4);
    if (version != 1 && version != kStateVersion) {
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
    if (info) *info = header;
    size_t pos = version == 1 ? kHeaderSizeV1 : kHeaderSize;
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
        if (kind >= kKindCount || pos + size > body) {
            *error = "bad record at offset " + std::to_string(pos);
            return false;
        }
        const std::string_view image(bytes.data() + pos, size);
        const std::string problem = record_image_problem((Kind)kind, image, nullptr, true);
        if (!problem.empty()) {
            *error = "bad record at offset " + std::to_string(pos) + ": " + problem;
            return false;
        }
        RecordHeader h;
        memcpy(&h, bytes.data() + pos, sizeof(h));
        // Account counters are derived: rebuilt below from the live mailboxes.
        if ((Kind)kind != Kind::AccountCount && (h.expires_s == 0 || h.expires_s > now_s)) {
            Digest key;
            memcpy(key.data(), h.key, 32);
            RecordHeader* rec = store.insert((Kind)kind, key, now_s, [&](RecordHeader* r) { copy_record_image(r, image); });
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
