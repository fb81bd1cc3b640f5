// An in-process Store for unit tests: the same contract as the nginx zone.
#pragma once

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "core/store.h"

namespace dp {

class MemoryStore final : public Store {
   public:
    size_t capacity = SIZE_MAX;  // records allowed, to exercise the full-zone path

    void lock() override { locked_++; }
    void unlock() override { locked_--; }
    RecordHeader* find(Kind kind, const Digest& key) override {
        auto it = records_[(size_t)kind].find(key);
        return it == records_[(size_t)kind].end() ? nullptr : header(it->second);
    }
    RecordHeader* insert(Kind kind, const Digest& key, uint32_t now_s,
                         const std::function<void(RecordHeader*)>& init) override {
        if (count() >= capacity && drop_expired(*this, now_s) == 0) return nullptr;
        std::vector<uint8_t> record(record_size(kind), 0);
        RecordHeader* h = header(record);
        h->kind = kind;
        memcpy(h->key, key.data(), 32);
        init(h);
        auto& slot = records_[(size_t)kind][key];
        slot = std::move(record);  // visible only once built
        return header(slot);
    }
    void remove(RecordHeader* record) override {
        Digest key;
        memcpy(key.data(), record->key, 32);
        records_[(size_t)record->kind].erase(key);
    }
    void for_each(Kind kind, const std::function<void(RecordHeader*)>& visit) override {
        std::vector<RecordHeader*> all;
        for (auto& kv : records_[(size_t)kind]) all.push_back(header(kv.second));
        for (RecordHeader* h : all) visit(h);
    }
    SharedState& shared() override { return shared_; }
    size_t total_bytes() override { return capacity == SIZE_MAX ? 1 << 20 : capacity * 128; }
    size_t free_bytes() override { return total_bytes() - std::min(total_bytes(), count() * 128); }

    size_t count() const {
        size_t n = 0;
        for (auto& m : records_) n += m.size();
        return n;
    }
    int locked() const { return locked_; }

   private:
    static RecordHeader* header(std::vector<uint8_t>& v) { return reinterpret_cast<RecordHeader*>(v.data()); }
    std::map<Digest, std::vector<uint8_t>> records_[kKindCount];
    SharedState shared_{};
    int locked_ = 0;
};

}  // namespace dp
