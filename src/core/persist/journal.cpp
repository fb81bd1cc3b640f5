#include "core/persist/journal.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace dp {

namespace {

enum : uint8_t { kPut = 1, kRemove = 2, kLeaf = 3 };
constexpr uint32_t kMarker = 0x324a5044;      // "DPJ2" as little-endian bytes; never a first-format length
constexpr size_t kPrefixV1 = 8;               // first format: length + checksum of the body
constexpr size_t kPrefix = 12;                // marker + length + checksum of length and body
constexpr size_t kFixed = 8 + 1 + 1 + 2;      // seq, kind, op, size
constexpr size_t kMaxImage = 4096;

template <typename T>
void put(std::string& out, const T& v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(v));
}

template <typename T>
T get(const char* p) {
    T v;
    memcpy(&v, p, sizeof(v));
    return v;
}

uint32_t crc_of(std::string_view bytes, uint32_t crc = (uint32_t)crc32(0, nullptr, 0)) {
    return (uint32_t)crc32(crc, reinterpret_cast<const Bytef*>(bytes.data()), (uInt)bytes.size());
}

// The body of an entry, from its fields.
bool decode_body(std::string_view body, JournalEntry* e) {
    if (body.size() < kFixed || body.size() > kFixed + kMaxImage) return false;
    const char* p = body.data();
    e->seq = get<uint64_t>(p);
    const uint8_t kind = (uint8_t)p[8], op = (uint8_t)p[9];
    const uint16_t size = get<uint16_t>(p + 10);
    if (kind == (uint8_t)Kind::LogLeaf && op == kLeaf && size == body.size() - kFixed) {
        e->kind = Kind::LogLeaf;
        e->removed = false;
        e->image.assign(p + kFixed, size);
        return true;
    }
    if (kind >= kKindCount || (op != kPut && op != kRemove) || size != body.size() - kFixed ||
        (op == kRemove ? size != 32 : size > record_size((Kind)kind) || size < sizeof(RecordHeader)))
        return false;
    e->kind = (Kind)kind;
    e->removed = op == kRemove;
    const std::string_view image(p + kFixed, size);
    memcpy(e->key.data(), e->removed ? image.data() : image.data() + offsetof(RecordHeader, key), 32);
    if (!e->removed) e->image.assign(image);
    return true;
}

// The size of the valid entry at the start of rest, or 0.
size_t entry_at(std::string_view rest, JournalEntry* e) {
    if (rest.size() >= kPrefix && get<uint32_t>(rest.data()) == kMarker) {
        const uint32_t len = get<uint32_t>(rest.data() + 4);
        if (len > kFixed + kMaxImage || rest.size() - kPrefix < len) return 0;
        const uint32_t crc = crc_of(rest.substr(kPrefix, len), crc_of(rest.substr(4, 4)));
        return crc == get<uint32_t>(rest.data() + 8) && decode_body(rest.substr(kPrefix, len), e) ? kPrefix + len : 0;
    }
    if (rest.size() < kPrefixV1) return 0;
    const uint32_t len = get<uint32_t>(rest.data());
    if (len > kFixed + kMaxImage || rest.size() - kPrefixV1 < len) return 0;
    return crc_of(rest.substr(kPrefixV1, len)) == get<uint32_t>(rest.data() + 4) &&
                   decode_body(rest.substr(kPrefixV1, len), e)
               ? kPrefixV1 + len
               : 0;
}

// The offset of the first valid entry of the current format after from, or npos.
size_t next_valid_entry(std::string_view bytes, size_t from) {
    const char marker[4] = {(char)(kMarker & 0xff), (char)(kMarker >> 8 & 0xff), (char)(kMarker >> 16 & 0xff),
                            (char)(kMarker >> 24)};
    for (size_t at = bytes.find(std::string_view(marker, 4), from); at != std::string_view::npos;
         at = bytes.find(std::string_view(marker, 4), at + 1)) {
        JournalEntry e{};
        if (entry_at(bytes.substr(at), &e)) return at;
    }
    return std::string_view::npos;
}

void encode_entry(std::string& out, uint64_t seq, Kind kind, uint8_t op, std::string_view image) {
    const size_t at = out.size();
    put(out, kMarker);
    put(out, (uint32_t)(kFixed + image.size()));
    put(out, (uint32_t)0);  // the checksum, once the body is in place
    put(out, seq);
    put(out, (uint8_t)kind);
    put(out, op);
    put(out, (uint16_t)image.size());
    out.append(image);
    const std::string_view entry(out.data() + at, out.size() - at);
    const uint32_t crc = crc_of(entry.substr(kPrefix), crc_of(entry.substr(4, 4)));
    memcpy(&out[at + 8], &crc, 4);
}

}  // namespace

std::string encode_journal(const std::vector<RecordChange>& changes) {
    std::string out;
    for (const RecordChange& c : changes) {
        if (c.kind == Kind::Count || c.kind == Kind::LogLeaf) continue;
        const bool removed = c.after.empty();
        encode_entry(out, c.seq, c.kind, removed ? kRemove : kPut,
                     removed ? std::string_view((const char*)c.key.data(), 32) : std::string_view(c.after));
    }
    return out;
}

std::string encode_log_leaves(uint64_t first_index, const std::vector<std::string>& leaves) {
    std::string out;
    for (const std::string& leaf : leaves) {
        if (leaf.size() > kMaxImage) throw std::length_error("a pairing log leaf is larger than a journal entry holds");
        encode_entry(out, first_index++, Kind::LogLeaf, kLeaf, leaf);
    }
    return out;
}

bool parse_journal(std::string_view bytes, JournalScan* scan, std::string* error) {
    size_t pos = 0;
    while (pos < bytes.size()) {
        JournalEntry e{};
        if (const size_t n = entry_at(bytes.substr(pos), &e)) {
            if (e.kind == Kind::LogLeaf)
                scan->leaves.push_back(LogLeafEntry{e.seq, std::move(e.image)});
            else
                scan->entries.push_back(std::move(e));
            pos += n;
            scan->valid_bytes = pos;
            continue;
        }
        // Damage. With a valid entry after it, it is not where an append
        // was cut off: refused, so that no acknowledged entry is dropped.
        const size_t next = next_valid_entry(bytes, pos + 1);
        if (next != std::string_view::npos) {
            *error = "corrupt journal entry at offset " + std::to_string(pos) + " (valid entries follow at offset " +
                     std::to_string(next) + ")";
            return false;
        }
        scan->torn = true;
        break;
    }
    return true;
}

bool apply_journal(Store& store, std::vector<JournalEntry>& entries, uint64_t after_seq, uint32_t now_s,
                   uint64_t* last_seq, std::string* error) {
    std::stable_sort(entries.begin(), entries.end(),
                     [](const JournalEntry& a, const JournalEntry& b) { return a.seq < b.seq; });
    for (const JournalEntry& e : entries) {
        if (e.removed) continue;
        const std::string problem = record_image_problem(e.kind, e.image, e.key.data(), true);
        if (!problem.empty()) {
            *error = "journal entry " + std::to_string(e.seq) + ": " + problem;
            return false;
        }
    }
    StoreLock lock(store);
    for (const JournalEntry& e : entries) {
        *last_seq = std::max(*last_seq, e.seq);
        if (e.seq <= after_seq || e.kind == Kind::AccountCount) continue;
        const RecordHeader* now = store.find(e.kind, e.key);
        if (e.removed) {
            if (now) store.remove(now);
            continue;
        }
        RecordHeader head;
        memcpy(&head, e.image.data(), sizeof(head));
        if (now) store.remove(now);  // a put is the whole record: insert it anew (counters stay right)
        if (!record_live(&head, now_s)) continue;
        RecordHeader* rec = store.insert(e.kind, e.key, now_s, [&](RecordHeader* r) { copy_record_image(r, e.image); });
        if (!rec || (e.kind == Kind::Mailbox && !count_mailbox(store, as<MailboxRecord>(rec), now_s))) {
            *error = "the zone is too small for the records in the state file and journal";
            return false;
        }
    }
    return true;
}

}  // namespace dp
