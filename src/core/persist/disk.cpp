#include "core/persist/disk.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/files.h"
#include "core/persist/snapshot.h"

namespace dp {

namespace {

std::string dirname_of(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

bool PosixDisk::read_file(const std::string& path, std::string* out, std::string* error) {
    return dp::read_file(path, out, error);
}

bool PosixDisk::write_atomically(const std::string& path, const std::string& bytes, std::string* error) {
    // A name nobody can predict, created exclusively and never through a
    // symlink: a planted link cannot redirect the write.
    std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + hex_encode(random_bytes(6));
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
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

bool PosixDisk::exclusively(const std::string& path, const std::function<bool()>& work, std::string* error) {
    std::string lock_path = path + ".lock";
    int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lock_fd < 0) {
        *error = "cannot open " + lock_path + ": " + strerror(errno);
        return false;
    }
    flock(lock_fd, LOCK_EX);
    bool ok = work();
    flock(lock_fd, LOCK_UN);
    close(lock_fd);
    return ok;
}

bool persist_state(Store& store, Disk& disk, const std::string& path, std::string* error) {
    return disk.exclusively(
        path,
        [&] {
            std::string bytes;
            uint64_t version;
            {
                StoreLock lock(store);
                version = store.shared().dirty;
                bytes = serialize_state(store);
            }
            if (!disk.write_atomically(path, bytes, error)) return false;
            StoreLock lock(store);
            SharedState& state = store.shared_for_persistence();
            if (state.persisted < version) state.persisted = version;
            return true;
        },
        error);
}

}  // namespace dp
