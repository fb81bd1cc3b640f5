#include "core/persist/journal.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

namespace dp {

namespace {

enum : uint8_t { kPut = 1, kRemove = 2 };
constexpr size_t kPrefix = 8;                 // length + checksum
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

uint32_t crc_of(std::string_view bytes) {
    return (uint32_t)crc32(crc32(0, nullptr, 0), reinterpret_cast<const Bytef*>(bytes.data()), (uInt)bytes.size());
}

bool all_zero(std::string_view bytes) {
    return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

}  // namespace

std::string encode_journal(const std::vector<RecordChange>& changes) {
    std::string out;
    for (const RecordChange& c : changes) {
        if (c.kind == Kind::Count) continue;
        std::string body;
        put(body, c.seq);
        put(body, (uint8_t)c.kind);
        const bool removed = c.after.empty();
        put(body, removed ? kRemove : kPut);
        const std::string_view image =
            removed ? std::string_view((const char*)c.key.data(), 32) : std::string_view(c.after);
        put(body, (uint16_t)image.size());
        body.append(image);
        put(out, (uint32_t)body.size());
        put(out, crc_of(body));
        out += body;
    }
    return out;
}

bool parse_journal(std::string_view bytes, JournalScan* scan, std::string* error) {
    size_t pos = 0;
    while (pos < bytes.size()) {
        const std::string_view rest = bytes.substr(pos);
        bool ok = rest.size() >= kPrefix;
        uint32_t len = ok ? get<uint32_t>(rest.data()) : 0;
        ok = ok && len >= kFixed && len <= kFixed + kMaxImage && rest.size() >= kPrefix + len &&
             crc_of(rest.substr(kPrefix, len)) == get<uint32_t>(rest.data() + 4);
        JournalEntry e{};
        if (ok) {
            const char* p = rest.data() + kPrefix;
            e.seq = get<uint64_t>(p);
            uint8_t kind = (uint8_t)p[8], op = (uint8_t)p[9];
            uint16_t size = get<uint16_t>(p + 10);
            ok = kind < kKindCount && (op == kPut || op == kRemove) && size == len - kFixed &&
                 (op == kRemove ? size == 32 : size == record_size((Kind)kind));
            if (ok) {
                e.kind = (Kind)kind;
                e.removed = op == kRemove;
                std::string_view image(p + kFixed, size);
                memcpy(e.key.data(), e.removed ? image.data() : image.data() + offsetof(RecordHeader, key), 32);
                if (!e.removed) e.image.assign(image);
            }
        }
        if (!ok) {
            // A crash mid-append leaves a short or half-written last entry:
            // dropped. A bad entry with good data after it is not a crash.
            const bool reaches_end = rest.size() < kPrefix || (size_t)len + kPrefix >= rest.size();
            if (reaches_end || all_zero(rest)) {
                scan->torn = true;
                break;
            }
            *error = "corrupt journal entry at offset " + std::to_string(pos);
            return false;
        }
        scan->entries.push_back(std::move(e));
        pos += kPrefix + len;
        scan->valid_bytes = pos;
    }
    return true;
}

bool apply_journal(Store& store, std::vector<JournalEntry>& entries, uint64_t after_seq, uint32_t now_s,
                   uint64_t* last_seq, std::string* error) {
    std::stable_sort(entries.begin(), entries.end(),
                     [](const JournalEntry& a, const JournalEntry& b) { return a.seq < b.seq; });
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
        RecordHeader* rec = store.insert(e.kind, e.key, now_s, [&](RecordHeader* r) {
            memcpy(reinterpret_cast<char*>(r) + 2, e.image.data() + 2, e.image.size() - 2);
        });
        if (!rec || (e.kind == Kind::Mailbox && !count_mailbox(store, as<MailboxRecord>(rec), now_s))) {
            *error = "the zone is too small for the records in the state file and journal";
            return false;
        }
    }
    return true;
}

}  // namespace dp
