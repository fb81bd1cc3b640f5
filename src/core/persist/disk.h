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

// What makes an append durable before it is acknowledged: fdatasync(2).
// A pointer so that a unit test can count the calls (a journal that skips
// it passes every other test).
extern int (*journal_sync)(int fd);

// PATH.lock's flock, held while alive: it orders appends, rotation, the
// snapshot's replacement and recovery across processes (two generations of
// a binary upgrade included).
class StateLock {
   public:
    StateLock(const StatePaths& paths, std::string* error);
    ~StateLock();
    StateLock(const StateLock&) = delete;
    StateLock& operator=(const StateLock&) = delete;
    bool held() const { return fd_ >= 0; }
    int fd() const { return fd_; }

   private:
    int fd_;
};

// Under the lock: records that the journal's complete entries end at `end`
// (the lock file keeps it with the journal's inode), cutting off whatever
// lies past it. Recovery calls it after its scan; appends keep it current.
bool settle_journal(const StateLock& lock, const StatePaths& paths, uint64_t end, std::string* error);

// Which zone may append to the journal. Two generations of nginx share one
// state= during a binary upgrade (USR2), each with its own zone: the new
// one registers when it recovers (under the lock, so it has read every entry
// appended before), and from then on appends by any other zone are refused,
// so nothing is acknowledged that the new generation does not hold.
struct JournalOwner {
    uint64_t zone_id = 0;      // the registered zone (0: none yet)
    uint64_t master_pid = 0;   // its master
    uint64_t journal_end = 0;  // where the journal ended when it registered: its own entries follow
};
bool read_journal_owner(const StateLock& lock, JournalOwner* owner);
bool write_journal_owner(const StateLock& lock, const JournalOwner& owner, std::string* error);
// The journal's size now (0: none).
uint64_t journal_size(const StatePaths& paths);

// What a superseded generation reads to keep its zone in step with the
// owner's (its gate still serves until its workers exit, and it resumes if
// the owner's master dies, a rolled-back upgrade): the owner, and the
// journal's bytes from an offset to the end, under the lock. False with
// *error when the journal cannot be read.
// With take_back_as: when the owner's master no longer runs, take_back_as
// (its journal_end set to the size now) becomes the owner in the same hold
// of the lock, after the bytes were read (tail->took_back).
struct JournalTail {
    JournalOwner owner;
    std::string bytes;
    bool took_back = false;
};
bool read_journal_tail(const StatePaths& paths, uint64_t from, JournalTail* tail, std::string* error,
                       const JournalOwner* take_back_as = nullptr);

// Appends bytes to the journal and makes them durable (journal_sync). A
// partial entry left at the end by a writer that died mid-append (this
// process's or another's) is cut off first, so an append never lands
// behind one; a journal damaged before its end is refused. On any failure
// the journal is cut back to where it was. *repaired (optional) gets the
// bytes of a partial tail that were cut. Blocking: nginx runs it in a thread.
// With a writer (a zone id), the append is refused unless that zone owns the
// journal (*superseded set: a newer generation registered).
struct AppendOutcome {
    uint64_t repaired = 0;
    bool superseded = false;
};
bool append_journal(const StatePaths& paths, std::string_view bytes, std::string* error,
                    AppendOutcome* outcome = nullptr, uint64_t writer = 0);

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
