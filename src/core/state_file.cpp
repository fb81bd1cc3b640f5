#include "core/state_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dp {

namespace {

const char kMagic[8] = {'D', 'P', 'S', 'T', 'A', 'T', 'E', '\n'};
constexpr size_t kHeaderSize = 16;  // magic + version + reserved

template <typename T>
void put(std::string& out, const T& v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof(v));
}

std::string dirname_of(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

std::string serialize_state(Store& store) {
    std::string out(kMagic, sizeof(kMagic));
    put(out, kStateVersion);
    put(out, (uint32_t)0);
    put(out, store.shared().otp);
    for (size_t k = 0; k < kKindCount; k++) {
        store.for_each((Kind)k, [&](RecordHeader* h) {
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
    OtpState otp;
    memcpy(&otp, bytes.data() + pos, sizeof(otp));
    pos += sizeof(otp);
    store.shared().otp = otp;
    while (pos < body) {
        uint8_t kind = (uint8_t)bytes[pos++];
        if (kind == 0xff) break;
        uint16_t size;
        if (pos + 2 > body) break;
        memcpy(&size, bytes.data() + pos, 2);
        pos += 2;
        if (kind >= kKindCount || size != record_size((Kind)kind) || pos + size > body) {
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
            if ((Kind)kind == Kind::Device) store.shared().devices++;
        }
        pos += size;
    }
    if (pos != body) {
        *error = "trailing bytes after the last record";
        return false;
    }
    return true;
}

bool write_file_atomically(const std::string& path, const std::string& bytes, std::string* error) {
    std::string tmp = path + ".tmp." + std::to_string(getpid());
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        *error = "cannot create " + tmp + ": " + strerror(errno);
        return false;
    }
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    bool ok = done == bytes.size() && fsync(fd) == 0;
    int saved = errno;
    close(fd);
    if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
        if (ok) saved = errno;
        unlink(tmp.c_str());
        *error = "cannot write " + path + ": " + strerror(saved);
        return false;
    }
    int dir = open(dirname_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
    return true;
}

bool persist_state(Store& store, const std::string& path, std::string* error) {
    std::string lock_path = path + ".lock";
    int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0) {
        *error = "cannot open " + lock_path + ": " + strerror(errno);
        return false;
    }
    flock(lock_fd, LOCK_EX);
    std::string bytes;
    uint64_t version;
    {
        StoreLock lock(store);
        version = store.shared().dirty;
        bytes = serialize_state(store);
    }
    bool ok = write_file_atomically(path, bytes, error);
    if (ok) {
        StoreLock lock(store);
        if (store.shared().persisted < version) store.shared().persisted = version;
    }
    flock(lock_fd, LOCK_UN);
    close(lock_fd);
    return ok;
}

}  // namespace dp
