#include "core/tlog.h"

#include <cstring>
#include <stdexcept>

#include "core/encoding.h"

namespace dp {

namespace {

// The largest power of two below n (n > 1): RFC 6962's split point.
uint64_t split_point(uint64_t n) {
    uint64_t k = 1;
    while (k << 1 < n) k <<= 1;
    return k;
}

bool is_power_of_two(uint64_t n) { return n && !(n & (n - 1)); }

int log2_of(uint64_t n) {
    int level = 0;
    while ((uint64_t)1 << level < n) level++;
    return level;
}

// MTH(D[lo:hi]): a complete aligned subtree is stored; anything else splits.
Digest range_hash(uint64_t lo, uint64_t hi, const SubtreeHash& stored) {
    const uint64_t n = hi - lo;
    if (is_power_of_two(n) && lo % n == 0) return stored(log2_of(n), lo / n);
    const uint64_t k = split_point(n);
    return tlog_node_hash(range_hash(lo, lo + k, stored), range_hash(lo + k, hi, stored));
}

void path(uint64_t m, uint64_t lo, uint64_t hi, const SubtreeHash& stored, std::vector<Digest>* out) {
    if (hi - lo <= 1) return;
    const uint64_t k = split_point(hi - lo);
    if (m < lo + k) {
        path(m, lo, lo + k, stored, out);
        out->push_back(range_hash(lo + k, hi, stored));
    } else {
        path(m, lo + k, hi, stored, out);
        out->push_back(range_hash(lo, lo + k, stored));
    }
}

void subproof(uint64_t m, uint64_t lo, uint64_t hi, bool whole, const SubtreeHash& stored, std::vector<Digest>* out) {
    const uint64_t n = hi - lo;
    if (m == n) {
        if (!whole) out->push_back(range_hash(lo, hi, stored));
        return;
    }
    const uint64_t k = split_point(n);
    if (m <= k) {
        subproof(m, lo, lo + k, whole, stored, out);
        out->push_back(range_hash(lo + k, hi, stored));
    } else {
        subproof(m - k, lo + k, hi, false, stored, out);
        out->push_back(range_hash(lo, lo + k, stored));
    }
}

}  // namespace

Digest tlog_leaf_hash(std::string_view data) {
    std::string prefixed(1, '\0');
    prefixed += data;
    return sha256(prefixed);
}

Digest tlog_node_hash(const Digest& left, const Digest& right) {
    std::string both(65, '\1');
    memcpy(&both[1], left.data(), 32);
    memcpy(&both[33], right.data(), 32);
    return sha256(both);
}

Digest tlog_root(uint64_t size, const SubtreeHash& stored) {
    return size ? range_hash(0, size, stored) : sha256("");
}

std::vector<Digest> tlog_inclusion_proof(uint64_t index, uint64_t size, const SubtreeHash& stored) {
    if (index >= size) throw std::invalid_argument("an inclusion proof needs index < size");
    std::vector<Digest> out;
    path(index, 0, size, stored, &out);
    return out;
}

std::vector<Digest> tlog_consistency_proof(uint64_t old_size, uint64_t new_size, const SubtreeHash& stored) {
    if (old_size == 0 || old_size > new_size) throw std::invalid_argument("a consistency proof needs 0 < old <= new");
    std::vector<Digest> out;
    subproof(old_size, 0, new_size, true, stored, &out);
    return out;
}

bool tlog_verify_inclusion(uint64_t index, uint64_t size, const Digest& leaf_hash, const std::vector<Digest>& proof,
                           const Digest& root) {
    if (index >= size) return false;
    uint64_t fn = index, sn = size - 1;
    Digest r = leaf_hash;
    for (const Digest& p : proof) {
        if (sn == 0) return false;
        if ((fn & 1) || fn == sn) {
            r = tlog_node_hash(p, r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            r = tlog_node_hash(r, p);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && ct_equal(r, root);
}

bool tlog_verify_consistency(uint64_t old_size, uint64_t new_size, const Digest& old_root, const Digest& new_root,
                             const std::vector<Digest>& proof) {
    if (old_size == 0 || old_size > new_size) return false;
    if (old_size == new_size) return proof.empty() && ct_equal(old_root, new_root);
    std::vector<Digest> path = proof;
    if (is_power_of_two(old_size)) path.insert(path.begin(), old_root);
    if (path.empty()) return false;
    uint64_t fn = old_size - 1, sn = new_size - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    Digest fr = path[0], sr = path[0];
    for (size_t i = 1; i < path.size(); i++) {
        if (sn == 0) return false;
        if ((fn & 1) || fn == sn) {
            fr = tlog_node_hash(path[i], fr);
            sr = tlog_node_hash(path[i], sr);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            sr = tlog_node_hash(sr, path[i]);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && ct_equal(fr, old_root) && ct_equal(sr, new_root);
}

void TlogHashes::append(const Digest& leaf_hash) {
    if (levels_.empty()) levels_.emplace_back();
    levels_[0].push_back(leaf_hash);
    // Each level whose count became even completes a parent.
    for (size_t level = 0; levels_[level].size() % 2 == 0; level++) {
        if (level + 1 == levels_.size()) levels_.emplace_back();
        const auto& here = levels_[level];
        levels_[level + 1].push_back(tlog_node_hash(here[here.size() - 2], here[here.size() - 1]));
    }
}

namespace {

// A complete subtree's hash from what the storage keeps.
Digest subtree_hash(TlogStorage& storage, int level, uint64_t index) {
    if (tlog_level_kept(level)) return storage.kept(level, index);
    return tlog_node_hash(subtree_hash(storage, level - 1, 2 * index), subtree_hash(storage, level - 1, 2 * index + 1));
}

}  // namespace

void tlog_append(TlogStorage& storage, const Digest& leaf_hash) {
    const uint64_t index = storage.size();
    storage.keep(0, index, leaf_hash);
    // The leaf closes the subtree at each level whose count it makes even:
    // its hash is the left sibling's and the one just made.
    Digest hash = leaf_hash;
    uint64_t at = index;
    for (int level = 1; at & 1; level++) {
        hash = tlog_node_hash(subtree_hash(storage, level - 1, at - 1), hash);
        at >>= 1;
        if (tlog_level_kept(level)) storage.keep(level, at, hash);
    }
    storage.grew(index + 1);
}

SubtreeHash tlog_subtrees(TlogStorage& storage) {
    return [&storage](int level, uint64_t index) { return subtree_hash(storage, level, index); };
}

std::string note_key_id(std::string_view name, std::string_view public_raw) {
    std::string input(name);
    input += '\n';
    input += '\1';  // Ed25519
    input += public_raw;
    const Digest d = sha256(input);
    return std::string((const char*)d.data(), 4);
}

std::string note_verifier_key(std::string_view name, std::string_view public_raw) {
    return std::string(name) + "+" + hex_encode(note_key_id(name, public_raw)) + "+" +
           base64_encode(std::string("\1") + std::string(public_raw));
}

std::string sign_note(std::string_view text, const std::vector<NoteSigner>& signers) {
    if (text.empty() || text.back() != '\n') throw std::invalid_argument("a note's text ends with a newline");
    std::string out(text);
    out += '\n';
    for (const NoteSigner& s : signers) {
        const Bytes sig = s.key->sign(text);
        out += "\xe2\x80\x94 " + s.name + " " + base64_encode(note_key_id(s.name, s.key->public_raw()) + sig) + "\n";
    }
    return out;
}

std::string checkpoint_text(std::string_view origin, uint64_t size, const Digest& root) {
    return std::string(origin) + "\n" + std::to_string(size) + "\n" +
           base64_encode(std::string_view((const char*)root.data(), root.size())) + "\n";
}

}  // namespace dp
