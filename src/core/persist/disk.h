// File I/O behind an interface, so that the core's persistence logic runs
// against a real directory in nginx and against a fake one in unit tests.
#pragma once

#include <functional>
#include <string>

#include "core/store.h"

namespace dp {

class Disk {
   public:
    virtual ~Disk() = default;
    virtual bool read_file(const std::string& path, std::string* out, std::string* error) = 0;
    // Replaces path with bytes atomically and durably, or leaves it as it was.
    virtual bool write_atomically(const std::string& path, const std::string& bytes, std::string* error) = 0;
    // Runs work while holding an exclusive lock named after path: writers of
    // one file, in any process, take turns.
    virtual bool exclusively(const std::string& path, const std::function<bool()>& work, std::string* error) = 0;
};

// The real file system: temp file (O_EXCL, never through a symlink, 0600),
// fsync, rename, fsync of the directory; flock of PATH.lock.
class PosixDisk final : public Disk {
   public:
    bool read_file(const std::string& path, std::string* out, std::string* error) override;
    bool write_atomically(const std::string& path, const std::string& bytes, std::string* error) override;
    bool exclusively(const std::string& path, const std::function<bool()>& work, std::string* error) override;
};

// Serialises the store and replaces the state file with it; of two writers
// at once, the newer snapshot lands last. Marks what the file now holds.
bool persist_state(Store& store, Disk& disk, const std::string& path, std::string* error);

}  // namespace dp
