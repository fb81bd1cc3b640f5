// File I/O behind an interface, so that the core's persistence logic runs
// against a real directory in nginx and against a fake one in unit tests.
#pragma once

#include <functional>
#include <string>

#include "core/persist/snapshot.h"
#include "core/store.h"

namespace dp {

class Disk {
   public:
    virtual ~Disk() = default;
    virtual bool read_file(const std::string& path, std::string* out, std::string* error) = 0;
    // Replaces path with bytes atomically (a reader sees the old file or the
    // new one), or leaves it as it was. Not fsynced: for files made again at
    // every start (the banner), written from the event loop.
    virtual bool write_atomically(const std::string& path, const std::string& bytes, std::string* error) = 0;
};

// The real file system: temp file (O_EXCL, never through a symlink, 0600),
// then rename.
class PosixDisk final : public Disk {
   public:
    bool read_file(const std::string& path, std::string* out, std::string* error) override;
    bool write_atomically(const std::string& path, const std::string& bytes, std::string* error) override;
};

// The files of state=PATH: the snapshot, the journal appended after it, the
// journal set aside while a compaction runs, and the lock that orders
// appends, rotation and the snapshot's replacement across processes.
struct StatePaths {
    explicit StatePaths(const std::string& state)
        : state(state), journal(state + ".journal"), rotated(state + ".journal.1"), lock(state + ".lock") {}
    std::string state, journal, rotated, lock;
};

// Appends bytes to the journal and makes them durable (fdatasync). On any
// failure the journal is cut back to where it was, so a failed append never
// leaves a half entry in the middle. Blocking: nginx runs it in a thread.
bool append_journal(const StatePaths& paths, std::string_view bytes, std::string* error);

// Sets the journal aside for a compaction (PATH.journal -> PATH.journal.1),
// unless an interrupted compaction already left one, which is compacted too.
bool rotate_journal(const StatePaths& paths, std::string* error);

// A new snapshot written in pieces and put in place whole.
class SnapshotFile {
   public:
    ~SnapshotFile() { abandon(); }
    bool create(const StatePaths& paths, std::string* error);
    bool write(std::string_view bytes, std::string* error);
    // fsync, then replaces the state file unless it holds a newer generation,
    // then drops the set-aside journal it covers.
    bool commit(const SnapshotInfo& info, std::string* error);
    void abandon();

   private:
    const StatePaths* paths_ = nullptr;
    std::string tmp_;
    int fd_ = -1;
};

}  // namespace dp
