// An in-process Store for unit tests with the zone's contract: the same
// base class does expiry, eviction, duplicate refusal and the dirty mark;
// every access outside a StoreLock fails the test.
#pragma once

// Unit tests report a store used without its lock as a test failure; the
// fuzzers (no GoogleTest) define DP_STORE_VIOLATION to abort instead.
#ifndef DP_STORE_VIOLATION
#include <gtest/gtest.h>
#define DP_STORE_VIOLATION(what) ADD_FAILURE() << what
#endif

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "core/store.h"

namespace dp {

// A pairing log's hashes as a zone keeps them: only the kept levels; a read
// or write of another level fails the test.
class KeptLevelsTlog final : public TlogStorage {
   public:
    uint64_t size() override { return size_; }
    Digest kept(int level, uint64_t index) override {
        if (!tlog_level_kept(level)) DP_STORE_VIOLATION("a log level that is not kept was read");
        return levels_.at((size_t)level).at(index);
    }
    void keep(int level, uint64_t index, const Digest& hash) override {
        if (!tlog_level_kept(level)) DP_STORE_VIOLATION("a log level that is not kept was written");
        if (levels_.size() <= (size_t)level) levels_.resize((size_t)level + 1);
        if (levels_[(size_t)level].size() != index) DP_STORE_VIOLATION("a log level grew out of order");
        levels_[(size_t)level].push_back(hash);
    }
    void grew(uint64_t size) override { size_ = size; }
    size_t hashes_kept() const {
        size_t n = 0;
        for (const auto& l : levels_) n += l.size();
        return n;
    }

   private:
    uint64_t size_ = 0;
    std::vector<std::vector<Digest>> levels_;
};

class MemoryStore final : public Store {
   public:
    size_t capacity = SIZE_MAX;  // records allowed, to exercise the full-zone path
    bool log_on = false;         // the zone's log=on
    KeptLevelsTlog log;
    bool logs_events() override { return log_on; }
    TlogStorage* log_tree() override { return log_on ? &log : nullptr; }

    void for_each(Kind kind, const std::function<void(const RecordHeader*)>& visit) override {
        must_hold_lock("for_each");
        std::vector<RecordHeader*> all;
        for (auto& kv : records_[(size_t)kind]) all.push_back(header(kv.second));
        for (RecordHeader* h : all) visit(h);
    }
    size_t visit_after(Kind kind, const Digest* after, size_t limit,
                       const std::function<void(const RecordHeader*)>& visit) override {
        must_hold_lock("visit_after");
        auto& m = records_[(size_t)kind];
        std::vector<RecordHeader*> page;
        for (auto it = after ? m.upper_bound(*after) : m.begin(); it != m.end() && page.size() < limit; ++it)
            page.push_back(header(it->second));
        for (RecordHeader* h : page) visit(h);
        return page.size();
    }
    const RecordHeader* find_by(Index index, std::string_view field) override {
        must_hold_lock("find_by");
        for (auto& kv : records_[(size_t)indexed_kind(index)])
            if (index_field(index, header(kv.second)) == field) return header(kv.second);
        return nullptr;
    }
    size_t visit_index_after(Index index, std::string_view after, size_t limit,
                             const std::function<void(const RecordHeader*)>& visit) override {
        must_hold_lock("visit_index_after");
        std::vector<RecordHeader*> sorted;
        for (auto& kv : records_[(size_t)indexed_kind(index)])
            if (after.empty() || index_field(index, header(kv.second)) > after) sorted.push_back(header(kv.second));
        std::sort(sorted.begin(), sorted.end(), [&](RecordHeader* a, RecordHeader* b) {
            return index_field(index, a) < index_field(index, b);
        });
        if (sorted.size() > limit) sorted.resize(limit);
        for (RecordHeader* h : sorted) visit(h);
        return sorted.size();
    }
    const RecordHeader* oldest(Kind kind) override {
        must_hold_lock("oldest");
        auto& q = queue_[(size_t)kind];
        return q.empty() ? nullptr : header(records_[(size_t)kind][q.begin()->second]);
    }
    size_t total_bytes() override { return capacity == SIZE_MAX ? 1 << 20 : capacity * 128; }
    size_t free_bytes() override { return total_bytes() - std::min(total_bytes(), count() * 128); }

    size_t count() const {
        size_t n = 0;
        for (auto& m : records_) n += m.size();
        return n;
    }
    size_t count(Kind kind) const { return records_[(size_t)kind].size(); }
    int locked() const { return locked_; }
    // The test's own look at the zone-wide state, outside any lock.
    const SharedState& state() const { return shared_; }
    size_t process_slot = 0;  // the metrics slot counts go to (a worker's ngx_process_slot)

   protected:
    void lock() override {
        if (locked_ != 0) DP_STORE_VIOLATION("the store lock is not reentrant");
        locked_++;
    }
    void unlock() override { locked_--; }
    void read_lock() override {
        if (locked_ != 0) DP_STORE_VIOLATION("a read lock inside the write lock");
        reading_++;
    }
    void read_unlock() override { reading_--; }
    RecordHeader* do_find(Kind kind, const Digest& key) override {
        must_hold_lock("find");
        auto it = records_[(size_t)kind].find(key);
        return it == records_[(size_t)kind].end() ? nullptr : header(it->second);
    }
    RecordHeader* do_insert(Kind kind, const Digest& key, const std::function<void(RecordHeader*)>& init) override {
        must_write("insert");
        if (count() >= capacity) return nullptr;
        std::vector<uint8_t> record(record_size(kind), 0);
        RecordHeader* h = header(record);
        h->kind = kind;
        memcpy(h->key, key.data(), 32);
        init(h);
        auto& slot = records_[(size_t)kind][key];
        slot = std::move(record);  // visible only once built
        if (expiring_kind(kind)) enqueue(kind, key);
        return header(slot);
    }
    void do_remove(RecordHeader* record) override {
        must_write("remove");
        Digest key;
        memcpy(key.data(), record->key, 32);
        dequeue(record->kind, key);
        records_[(size_t)record->kind].erase(key);
    }
    void requeue(RecordHeader* record) override {
        must_write("update");
        if (!expiring_kind(record->kind)) return;
        Digest key;
        memcpy(key.data(), record->key, 32);
        dequeue(record->kind, key);
        enqueue(record->kind, key);
    }
    CounterSlot* counter_slots() override { return shared_.counters; }
    size_t counter_slot() override { return process_slot; }
    PollMark* poll_marks(size_t* count) override {
        *count = poll_marks_.size();
        return poll_marks_.data();
    }
    SharedState& raw_shared() override {
        must_hold_lock("shared state");
        return shared_;
    }

   private:
    void must_hold_lock(const char* what) {
        if (locked_ == 0 && reading_ == 0) DP_STORE_VIOLATION(std::string("store ") + what + " outside a StoreLock");
    }
    void must_write(const char* what) {
        if (locked_ == 0) DP_STORE_VIOLATION(std::string("store ") + what + " outside a StoreLock (a read lock is not enough)");
    }
    static RecordHeader* header(std::vector<uint8_t>& v) { return reinterpret_cast<RecordHeader*>(v.data()); }
    static Kind indexed_kind(Index index) { return index == Index::DeviceId ? Kind::Device : Kind::CodeRequest; }
    void enqueue(Kind kind, const Digest& key) {
        queue_[(size_t)kind][++queued_] = key;
        position_[(size_t)kind][key] = queued_;
    }
    void dequeue(Kind kind, const Digest& key) {
        auto it = position_[(size_t)kind].find(key);
        if (it == position_[(size_t)kind].end()) return;
        queue_[(size_t)kind].erase(it->second);
        position_[(size_t)kind].erase(it);
    }
    std::map<uint64_t, Digest> queue_[kKindCount];     // expiry queue: order of insert or last update
    std::map<Digest, uint64_t> position_[kKindCount];
    uint64_t queued_ = 0;
    std::map<Digest, std::vector<uint8_t>> records_[kKindCount];
    SharedState shared_{};
    std::vector<PollMark> poll_marks_ = std::vector<PollMark>(1024);
    int locked_ = 0;
    int reading_ = 0;
};

}  // namespace dp
