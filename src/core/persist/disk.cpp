#include "core/persist/disk.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "core/files.h"
#include "core/persist/journal.h"
#include "core/persist/snapshot.h"
#include "core/pairing_log.h"

namespace dp {

namespace {

std::string dirname_of(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

namespace {

bool write_all(int fd, std::string_view bytes) {
    for (size_t done = 0; done < bytes.size();) {
        ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += (size_t)n;
    }
    return true;
}

}  // namespace

bool PosixDisk::read_file(const std::string& path, std::string* out, std::string* error) {
    return dp::read_file(path, out, error);
}

namespace {

// A temporary name nobody can predict. From getrandom(2), not OpenSSL:
// these run in nginx's thread pool, and a thread that touched OpenSSL's
// RNG runs OpenSSL's thread-exit handler as the pool winds down, which
// raced the worker's exit-time OPENSSL_cleanup (a SEGV seen under ASan).
std::string unpredictable_tmp_name(const std::string& path) {
    unsigned char salt[6];
    if (getrandom(salt, sizeof(salt), 0) != (ssize_t)sizeof(salt)) throw std::runtime_error("getrandom failed");
    return path + ".tmp." + std::to_string(getpid()) + "." + hex_encode(std::string_view((const char*)salt, sizeof(salt)));
}

}  // namespace

namespace {

// The header of the state file in place (32 bytes, not the whole file).
bool read_head(const std::string& path, SnapshotInfo* info) {
    char head[32];
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, head, sizeof(head));
    close(fd);
    return n > 0 && read_snapshot_info(std::string_view(head, (size_t)n), info);
}

void sync_directory_of(const std::string& path) {
    int dir = open(dirname_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
}

// Replaces path by a temporary file renamed over it: a name nobody can
// predict, created exclusively and never through a symlink, so a planted
// link cannot redirect the write. With sync: the file is fsynced before the
// rename and its directory after.
bool replace_file(const std::string& path, std::string_view bytes, bool sync, std::string* error) {
    const std::string tmp = unpredictable_tmp_name(path);
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        *error = "cannot create " + tmp + ": " + strerror(errno);
        return false;
    }
    bool ok = write_all(fd, bytes) && (!sync || fsync(fd) == 0);
    int saved = errno;
    close(fd);
    if (ok && rename(tmp.c_str(), path.c_str()) != 0) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        unlink(tmp.c_str());
        *error = "cannot write " + path + ": " + strerror(saved);
        return false;
    }
    if (sync) sync_directory_of(path);
    return true;
}

}  // namespace

bool PosixDisk::write_atomically(const std::string& path, const std::string& bytes, std::string* error) {
    return replace_file(path, bytes, false, error);
}

int (*journal_sync)(int fd) = fdatasync;

StateLock::StateLock(const StatePaths& paths, std::string* error) {
    fd_ = open(paths.lock.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd_ < 0)
        *error = "cannot open " + paths.lock + ": " + strerror(errno);
    else
        flock(fd_, LOCK_EX);
}

StateLock::~StateLock() {
    if (fd_ >= 0) close(fd_);  // closing releases the flock
}

namespace {

// The lock file's content: where the journal's complete entries end.
struct JournalEnd {
    char magic[8];
    uint64_t inode;
    uint64_t end;
};
constexpr char kEndMagic[8] = {'D', 'P', 'J', 'E', 'N', 'D', '1', '\n'};

bool write_end(const StateLock& lock, uint64_t inode, uint64_t end) {
    JournalEnd mark{};
    memcpy(mark.magic, kEndMagic, 8);
    mark.inode = inode;
    mark.end = end;
    return pwrite(lock.fd(), &mark, sizeof mark, 0) == (ssize_t)sizeof mark;
}

// Where the complete entries of the open journal end: the lock file's mark
// when it is about this file, else a scan of the file (once, after a start
// from an older version or a lost lock file).
bool journal_end(const StateLock& lock, int fd, const struct stat& st, uint64_t* end, std::string* error) {
    JournalEnd mark;
    if (pread(lock.fd(), &mark, sizeof mark, 0) == (ssize_t)sizeof mark && memcmp(mark.magic, kEndMagic, 8) == 0 &&
        mark.inode == (uint64_t)st.st_ino && mark.end <= (uint64_t)st.st_size) {
        *end = mark.end;
        return true;
    }
    std::string bytes((size_t)st.st_size, '\0');
    if (pread(fd, bytes.data(), bytes.size(), 0) != (ssize_t)bytes.size()) {
        *error = std::string("cannot read the journal: ") + strerror(errno);
        return false;
    }
    JournalScan scan;
    if (!parse_journal(bytes, &scan, error)) return false;
    *end = scan.valid_bytes;
    return true;
}

}  // namespace

namespace {

struct OwnerRecord {
    char magic[8];
    uint64_t zone_id;
    uint64_t master_pid;
    uint64_t journal_end;
};
constexpr char kOwnerMagic[8] = {'D', 'P', 'O', 'W', 'N', 'E', 'R', '1'};
constexpr off_t kOwnerAt = 64;  // after the journal's end mark

}  // namespace

bool read_journal_owner(const StateLock& lock, JournalOwner* owner) {
    OwnerRecord r;
    *owner = JournalOwner{};
    if (pread(lock.fd(), &r, sizeof r, kOwnerAt) != (ssize_t)sizeof r || memcmp(r.magic, kOwnerMagic, 8) != 0) return false;
    owner->zone_id = r.zone_id;
    owner->master_pid = r.master_pid;
    owner->journal_end = r.journal_end;
    return true;
}

bool write_journal_owner(const StateLock& lock, const JournalOwner& owner, std::string* error) {
    OwnerRecord r{};
    memcpy(r.magic, kOwnerMagic, 8);
    r.zone_id = owner.zone_id;
    r.master_pid = owner.master_pid;
    r.journal_end = owner.journal_end;
    if (pwrite(lock.fd(), &r, sizeof r, kOwnerAt) == (ssize_t)sizeof r && fdatasync(lock.fd()) == 0) return true;
    *error = std::string("cannot register in the lock file: ") + strerror(errno);
    return false;
}

uint64_t journal_size(const StatePaths& paths) {
    struct stat st;
    return stat(paths.journal.c_str(), &st) == 0 ? (uint64_t)st.st_size : 0;
}

bool read_journal_tail(const StatePaths& paths, uint64_t from, JournalTail* tail, std::string* error,
                       const JournalOwner* take_back_as) {
    StateLock lock(paths, error);
    if (!lock.held()) return false;
    read_journal_owner(lock, &tail->owner);
    tail->bytes.clear();
    tail->took_back = false;
    int fd = open(paths.journal.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st{};
    bool ok = fd >= 0 ? fstat(fd, &st) == 0 : errno == ENOENT;
    if (ok && fd >= 0 && (uint64_t)st.st_size > from) {
        tail->bytes.resize((size_t)((uint64_t)st.st_size - from));
        ok = pread(fd, tail->bytes.data(), tail->bytes.size(), (off_t)from) == (ssize_t)tail->bytes.size();
    }
    if (!ok) *error = "cannot read " + paths.journal + ": " + strerror(errno);
    if (fd >= 0) close(fd);
    if (ok && take_back_as && tail->owner.zone_id != take_back_as->zone_id && tail->owner.master_pid &&
        kill((pid_t)tail->owner.master_pid, 0) != 0 && errno == ESRCH) {
        JournalOwner me = *take_back_as;
        me.journal_end = (uint64_t)st.st_size;
        tail->took_back = write_journal_owner(lock, me, error);
        ok = tail->took_back;
    }
    return ok;
}

bool settle_journal(const StateLock& lock, const StatePaths& paths, uint64_t end, std::string* error) {
    int fd = open(paths.journal.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return true;
        *error = "cannot open " + paths.journal + ": " + strerror(errno);
        return false;
    }
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && ((uint64_t)st.st_size <= end || (ftruncate(fd, (off_t)end) == 0 && journal_sync(fd) == 0)) &&
              write_end(lock, (uint64_t)st.st_ino, end);
    if (!ok) *error = "cannot settle " + paths.journal + ": " + strerror(errno);
    close(fd);
    return ok;
}

namespace {

constexpr size_t kLogTrailer = 12;        // the length again and the index
constexpr uint32_t kMaxLogLeaf = 65536;   // a length beyond it is damage, not a leaf
constexpr size_t kLogReadChunk = 1 << 20;

template <typename T>
T load_le(const char* p) {
    T v;
    memcpy(&v, p, sizeof v);
    return v;
}

bool pread_all(int fd, char* to, size_t n, uint64_t at) {
    for (size_t done = 0; done < n;) {
        ssize_t got = pread(fd, to + done, n - done, (off_t)(at + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        done += (size_t)got;
    }
    return true;
}

// The index after the file's last complete record, from its trailer (a
// file that does not end in one is scanned, and a torn tail cut off).
bool log_file_next(const std::string& path, uint64_t* next, uint64_t* end, std::string* error) {
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        *error = "cannot open " + path + ": " + strerror(errno);
        return false;
    }
    struct stat st;
    bool ok = fstat(fd, &st) == 0;
    const uint64_t size = ok ? (uint64_t)st.st_size : 0;
    *next = 0;
    *end = 0;
    char trailer[kLogTrailer], head[4];
    if (ok && size >= 4 + kLogTrailer && pread_all(fd, trailer, kLogTrailer, size - kLogTrailer)) {
        const uint32_t len = load_le<uint32_t>(trailer);
        if (len <= kMaxLogLeaf && size >= 4 + len + kLogTrailer &&
            pread_all(fd, head, 4, size - kLogTrailer - len - 4) && load_le<uint32_t>(head) == len) {
            *next = load_le<uint64_t>(trailer + 4) + 1;
            *end = size;
            close(fd);
            return true;
        }
    }
    if (ok && size > 0) {  // no complete record at the end: find where they stop
        bool torn = false;
        ok = scan_log_file(path, [&](uint64_t index, uint64_t, std::string_view) { *next = index + 1; }, end, &torn,
                           error);
        if (ok && *end < size && ftruncate(fd, (off_t)*end) != 0) {
            *error = "cannot cut the torn tail off " + path + ": " + strerror(errno);
            ok = false;
        }
    } else if (!ok) {
        *error = "cannot stat " + path + ": " + strerror(errno);
    }
    close(fd);
    return ok;
}

bool append_log_records(const std::string& path, uint64_t first, const std::vector<std::string>& leaves,
                        std::string* error) {
    int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write_all(fd, encode_log_records(first, leaves));
    if (!ok) *error = "cannot append to " + path + ": " + strerror(errno);
    if (fd >= 0) close(fd);
    return ok;
}

// The journals' leaves from `from` on, in index order (false: a gap).
bool journal_leaves(const StatePaths& paths, uint64_t from, std::vector<std::string>* out, std::string* error) {
    std::vector<LogLeafEntry> found;
    for (const std::string* path : {&paths.rotated, &paths.journal}) {
        std::string bytes;
        if (!read_file(*path, &bytes, error)) {
            if (errno == ENOENT) continue;
            return false;
        }
        JournalScan scan;
        if (!parse_journal(bytes, &scan, error)) return false;
        for (LogLeafEntry& leaf : scan.leaves)
            if (leaf.index >= from) found.push_back(std::move(leaf));
    }
    std::sort(found.begin(), found.end(), [](const LogLeafEntry& a, const LogLeafEntry& b) { return a.index < b.index; });
    for (LogLeafEntry& leaf : found) {
        if (leaf.index < from + out->size()) continue;  // the same leaf in both journals
        if (leaf.index != from + out->size()) {
            *error = "the journal holds pairing log leaf " + std::to_string(leaf.index) + " but not leaf " +
                     std::to_string(from + out->size()) + " before it";
            return false;
        }
        out->push_back(std::move(leaf.bytes));
    }
    return true;
}

}  // namespace

std::string encode_log_records(uint64_t first_index, const std::vector<std::string>& leaves) {
    std::string out;
    for (const std::string& leaf : leaves) {
        const uint32_t len = (uint32_t)leaf.size();
        const uint64_t index = first_index++;
        out.append((const char*)&len, 4);
        out += leaf;
        out.append((const char*)&len, 4);
        out.append((const char*)&index, 8);
    }
    return out;
}

bool scan_log_file(const std::string& path,
                   const std::function<void(uint64_t index, uint64_t offset, std::string_view leaf)>& visit,
                   uint64_t* valid_bytes, bool* torn, std::string* error) {
    *valid_bytes = 0;
    *torn = false;
    int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return true;
        *error = "cannot open " + path + ": " + strerror(errno);
        return false;
    }
    std::string buf;
    std::vector<char> chunk(kLogReadChunk);
    uint64_t base = 0, index = 0;
    for (;;) {
        const ssize_t n = read(fd, chunk.data(), chunk.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            *error = "cannot read " + path + ": " + strerror(errno);
            close(fd);
            return false;
        }
        buf.append(chunk.data(), (size_t)n);
        size_t pos = 0;
        while (buf.size() - pos >= 4) {
            const uint32_t len = load_le<uint32_t>(buf.data() + pos);
            if (len > kMaxLogLeaf) break;  // damage: judged below
            if (buf.size() - pos < log_record_bytes(len)) break;
            const char* trailer = buf.data() + pos + 4 + len;
            if (load_le<uint32_t>(trailer) != len || load_le<uint64_t>(trailer + 4) != index) {
                *error = path + ": the record at offset " + std::to_string(base + pos) + " is not pairing log leaf " +
                         std::to_string(index) + " (the file was changed by hand?)";
                close(fd);
                return false;
            }
            visit(index++, base + pos, std::string_view(buf.data() + pos + 4, len));
            pos += log_record_bytes(len);
        }
        buf.erase(0, pos);
        base += pos;
        if (n == 0) break;
        if (buf.size() >= 4 && load_le<uint32_t>(buf.data()) > kMaxLogLeaf) {
            *error = path + ": a damaged record at offset " + std::to_string(base);
            close(fd);
            return false;
        }
    }
    close(fd);
    *valid_bytes = base;
    *torn = !buf.empty();
    return true;
}

bool read_log_leaves(const std::string& path, uint64_t offset, uint64_t first, uint64_t count,
                     std::vector<std::string>* out, std::string* error) {
    int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        *error = "cannot open " + path + ": " + strerror(errno);
        return false;
    }
    // Read a chunk at a time (a page of 1 000 leaves is one or two reads).
    std::string buf;
    uint64_t base = offset;  // the file offset of buf[0]
    size_t pos = 0;
    uint64_t index = first;
    bool ok = true, eof = false;
    while (ok && index < first + count) {
        const size_t have = buf.size() - pos;
        const uint32_t len = have >= 4 ? load_le<uint32_t>(buf.data() + pos) : 0;
        if (len > kMaxLogLeaf) {
            ok = false;
        } else if (have >= log_record_bytes(len)) {
            const char* trailer = buf.data() + pos + 4 + len;
            ok = load_le<uint32_t>(trailer) == len && load_le<uint64_t>(trailer + 4) == index;
            if (ok) {
                out->emplace_back(buf.data() + pos + 4, len);
                pos += log_record_bytes(len);
                index++;
            }
        } else if (eof) {
            ok = false;
        } else {  // the record runs past what was read: more
            buf.erase(0, pos);
            base += pos;
            pos = 0;
            const size_t old = buf.size(), want = kLogReadChunk / 4;
            buf.resize(old + want);
            ssize_t got;
            do got = pread(fd, buf.data() + old, want, (off_t)(base + old));
            while (got < 0 && errno == EINTR);
            eof = got <= 0;
            buf.resize(old + (got > 0 ? (size_t)got : 0));
        }
    }
    if (!ok) *error = path + ": no record of leaf " + std::to_string(index) + " where it was expected";
    close(fd);
    return ok;
}

bool catch_up_log_file(const StatePaths& paths, uint64_t* next, uint64_t* end_offset, std::string* error) {
    if (!log_file_next(paths.log, next, end_offset, error)) return false;
    std::vector<std::string> missing;
    if (!journal_leaves(paths, *next, &missing, error)) return false;
    if (missing.empty()) return true;
    if (!append_log_records(paths.log, *next, missing, error)) return false;
    *next += missing.size();
    return log_file_next(paths.log, next, end_offset, error);
}

bool settle_log_file(const StatePaths& paths, std::string* error) {
    StateLock lock(paths, error);
    if (!lock.held()) return false;
    uint64_t next, end;
    if (!catch_up_log_file(paths, &next, &end, error)) return false;
    int fd = open(paths.log.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    const bool ok = fd >= 0 && fsync(fd) == 0;
    if (!ok) *error = "cannot make " + paths.log + " durable: " + strerror(errno);
    if (fd >= 0) close(fd);
    if (ok) sync_directory_of(paths.log);
    return ok;
}

bool write_file_durably(const std::string& path, std::string_view bytes, std::string* error) {
    return replace_file(path, bytes, true, error);
}

bool copy_log_file(const StatePaths& from, const StatePaths& to, std::string* error) {
    StateLock lock(from, error);
    if (!lock.held()) return false;
    uint64_t next, end;
    std::string bytes;
    if (!catch_up_log_file(from, &next, &end, error)) return false;
    if (!read_file(from.log, &bytes, error) && errno != ENOENT) return false;
    int fd = open(to.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    const bool ok = fd >= 0 && write_all(fd, bytes) && fsync(fd) == 0;
    if (!ok) *error = "cannot write " + to.log + ": " + strerror(errno);
    if (fd >= 0) close(fd);
    if (ok) sync_directory_of(to.log);
    return ok;
}

bool append_journal(const StatePaths& paths, std::string_view bytes, std::string* error, AppendOutcome* outcome,
                    uint64_t writer, LeafSink* leaves) {
    StateLock lock(paths, error);
    if (!lock.held()) return false;
    JournalOwner owner;
    if (writer && read_journal_owner(lock, &owner) && owner.zone_id && owner.zone_id != writer) {
        if (outcome) outcome->superseded = true;
        *error = "a newer nginx generation (a binary upgrade) owns the journal now";
        return false;
    }
    int fd = open(paths.journal.c_str(), O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        *error = "cannot open " + paths.journal + ": " + strerror(errno);
        return false;
    }
    struct stat st;
    uint64_t start = 0;
    bool ok = fstat(fd, &st) == 0;
    if (!ok) *error = "cannot stat " + paths.journal + ": " + strerror(errno);
    ok = ok && journal_end(lock, fd, st, &start, error);
    if (ok && (uint64_t)st.st_size > start) {  // a writer died mid-append: its partial entry goes first
        if (outcome) outcome->repaired = (uint64_t)st.st_size - start;
        ok = ftruncate(fd, (off_t)start) == 0;
        if (!ok) *error = "cannot cut the partial entry off " + paths.journal + ": " + strerror(errno);
    }
    // The leaves go first in the write: an append a crash cuts short (never
    // acknowledged) may keep a leaf without its event, never the reverse.
    std::string write;
    std::vector<std::string> rendered;
    uint64_t first_leaf = 0, file_next = 0, file_end = 0;
    if (ok && leaves && !leaves->templates().empty()) {
        ok = log_file_next(paths.log, &file_next, &file_end, error) &&
             leaves->next_index(file_next, leaves->templates().size(), &first_leaf, error);
        if (ok) {
            for (const std::string& t : leaves->templates()) rendered.push_back(leaf_from_template(t, first_leaf + rendered.size()));
            write = encode_log_leaves(first_leaf, rendered);
        }
    }
    write += bytes;
    if (ok) {
        ok = write_all(fd, write) && journal_sync(fd) == 0;
        if (!ok) {
            *error = "cannot append to " + paths.journal + ": " + strerror(errno);
            if (ftruncate(fd, (off_t)start) == 0) journal_sync(fd);
        }
    }
    // Past here the entry is durable; a lost mark only costs the next
    // append a scan.
    if (ok) (void)write_end(lock, (uint64_t)st.st_ino, start + write.size());
    close(fd);
    if (ok && !rendered.empty()) {
        // The copy in PATH.log is not synced: the journal holds the leaves
        // until a compaction settles the file. A file behind (an earlier copy
        // failed) is caught up from the journal, these leaves with the rest:
        // where they start is not known then (the zone's hints mark it so).
        std::string copy_error;
        uint64_t offset = UINT64_MAX;
        if (file_next == first_leaf && append_log_records(paths.log, first_leaf, rendered, &copy_error))
            offset = file_end;
        else if (file_next < first_leaf)
            (void)catch_up_log_file(paths, &file_next, &file_end, &copy_error);
        leaves->durable(first_leaf, rendered, offset);
    }
    if (ok && st.st_size == 0) sync_directory_of(paths.journal);  // a new journal's name is durable too
    return ok;
}

bool rotate_journal(const StatePaths& paths, std::string* error) {
    StateLock lock(paths, error);
    if (!lock.held()) return false;
    if (access(paths.rotated.c_str(), F_OK) == 0) return true;  // an interrupted compaction's: compact it too
    if (rename(paths.journal.c_str(), paths.rotated.c_str()) != 0 && errno != ENOENT) {
        *error = "cannot rename " + paths.journal + ": " + strerror(errno);
        return false;
    }
    sync_directory_of(paths.journal);
    (void)write_end(lock, 0, 0);  // the mark was the old journal's; the next append scans its successor
    return true;
}

bool SnapshotFile::create(const StatePaths& paths, std::string* error) {
    paths_ = &paths;
    tmp_ = unpredictable_tmp_name(paths.state);
    fd_ = open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd_ < 0) *error = "cannot create " + tmp_ + ": " + strerror(errno);
    return fd_ >= 0;
}

bool SnapshotFile::write(std::string_view bytes, std::string* error) {
    if (write_all(fd_, bytes)) return true;
    *error = "cannot write " + tmp_ + ": " + strerror(errno);
    return false;
}

bool SnapshotFile::commit(const SnapshotInfo& info, std::string* error) {
    if (fsync(fd_) != 0) {
        *error = "cannot write " + tmp_ + ": " + strerror(errno);
        return false;
    }
    StateLock lock(*paths_, error);
    if (!lock.held()) return false;
    SnapshotInfo current;
    if (read_head(paths_->state, &current) && current.generation > info.generation) {
        *error = "the state file holds a newer generation (" + std::to_string(current.generation) + ")";
        return false;
    }
    if (rename(tmp_.c_str(), paths_->state.c_str()) != 0) {
        *error = "cannot rename " + tmp_ + ": " + strerror(errno);
        return false;
    }
    tmp_.clear();
    unlink(paths_->rotated.c_str());
    sync_directory_of(paths_->state);
    return true;
}

void SnapshotFile::abandon() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    if (!tmp_.empty()) unlink(tmp_.c_str());
    tmp_.clear();
}

}  // namespace dp
