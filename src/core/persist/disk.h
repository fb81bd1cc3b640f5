// File I/O behind an interface, so that the core's persistence logic runs
// against a real directory in nginx and against a fake one in unit tests.
#pragma once

#include <functional>
#include <string>
#include <vector>

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
        : state(state), journal(state + ".journal"), rotated(state + ".journal.1"), lock(state + ".lock"),
          log(state + ".log") {}
    std::string state, journal, rotated, lock, log;
};

// PATH.log: the pairing log's leaves in index order, never compacted. A
// record is u32 length, the leaf, the length again and the u64 index (all
// little-endian), so the last leaf is found from the end. Each leaf was
// durable in the journal before it was written here; the journal keeps it
// until a compaction, which first makes this file durable up to it.
std::string encode_log_records(uint64_t first_index, const std::vector<std::string>& leaves);
inline uint64_t log_record_bytes(size_t leaf_size) { return 4 + leaf_size + 12; }  // a leaf's record
// Reads the file a chunk at a time: visit(index, offset, leaf) for each
// record; a record cut short at the end is a torn tail (*torn, *valid_bytes
// where it starts). A record whose index is not its position is refused,
// naming it (a file edited by hand). A missing file is an empty log.
bool scan_log_file(const std::string& path,
                   const std::function<void(uint64_t index, uint64_t offset, std::string_view leaf)>& visit,
                   uint64_t* valid_bytes, bool* torn, std::string* error);
// count leaves from `first`, whose record starts at `offset` (from the
// zone's hints). False with *error when the bytes there are not those leaves.
bool read_log_leaves(const std::string& path, uint64_t offset, uint64_t first, uint64_t count,
                     std::vector<std::string>* out, std::string* error);

// The leaves that go with a journal append: numbered under the state lock
// from where the log ends, written in the same write as their events'
// entries, then copied to PATH.log; the sink hears of them while the lock is
// still held, so whoever keeps the tree sees them in the log's order.
class LeafSink {
   public:
    virtual ~LeafSink() = default;
    virtual const std::vector<std::string>& templates() = 0;
    // PATH.log holds leaves [0, file_next): the sink takes those it lacks
    // (another zone appended them) and answers the next leaf's index once
    // there is room for count more (false: *error). An index past file_next
    // means the file is behind (a copy failed): the append catches it up.
    virtual bool next_index(uint64_t file_next, size_t count, uint64_t* first, std::string* error) = 0;
    // They are durable (in the journal); file_offset: where the first one's
    // record starts in PATH.log, UINT64_MAX when the copy failed (a later
    // append or the next start copies them from the journal).
    virtual void durable(uint64_t first, const std::vector<std::string>& leaves, uint64_t file_offset) = 0;
};
// Under the lock: PATH.log gets the journals' leaves it lacks (from the
// next index it expects), in order; *next is then the log's size. False
// when the journals do not hold the leaves that follow the file's last.
// Reads both journals whole: for a start, a compaction, a file found behind.
bool catch_up_log_file(const StatePaths& paths, uint64_t* next, uint64_t* end_offset, std::string* error);

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
                    AppendOutcome* outcome = nullptr, uint64_t writer = 0, LeafSink* leaves = nullptr);
// Replaces path with bytes (mode 0600) and makes it durable: a temporary
// file fsynced, renamed over it, the directory fsynced.
bool write_file_durably(const std::string& path, std::string_view bytes, std::string* error);
// Makes PATH.log durable with every leaf the journals hold (a compaction,
// before it drops the journal set aside). Takes the lock.
bool settle_log_file(const StatePaths& paths, std::string* error);
// A reload moved state=: PATH.log (caught up under the old path's lock) is
// copied to the new path and made durable there.
bool copy_log_file(const StatePaths& from, const StatePaths& to, std::string* error);

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
