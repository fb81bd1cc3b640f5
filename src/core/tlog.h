// A transparency log's pure parts (issue: the verifiable pairing log): RFC
// 6962 section 2.1 Merkle tree hashing, inclusion and consistency proofs and
// their verification, and the C2SP formats verifiers read: the signed note
// (Ed25519 signature lines, key IDs, verifier keys) and the tlog checkpoint.
// Where the leaves and hashes live (zone, disk, Redis) is the caller's: the
// algorithms read complete-subtree hashes through a function.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/crypto.h"

namespace dp {

Digest tlog_leaf_hash(std::string_view data);                      // SHA-256(0x00 || data)
Digest tlog_node_hash(const Digest& left, const Digest& right);    // SHA-256(0x01 || left || right)

// The hash of the complete subtree at `level` (2^level leaves) whose leaves
// are [index << level, (index + 1) << level): level 0 is a leaf hash.
using SubtreeHash = std::function<Digest(int level, uint64_t index)>;

// MTH(D[0:size]) (RFC 6962 2.1); the empty tree's is SHA-256 of nothing.
Digest tlog_root(uint64_t size, const SubtreeHash& stored);
// PATH(index, D[0:size]), leaf to root (2.1.1). index < size.
std::vector<Digest> tlog_inclusion_proof(uint64_t index, uint64_t size, const SubtreeHash& stored);
// PROOF(old_size, D[0:new_size]) (2.1.2). 0 < old_size <= new_size.
std::vector<Digest> tlog_consistency_proof(uint64_t old_size, uint64_t new_size, const SubtreeHash& stored);
// The verifiers' side (RFC 9162 2.1.3.2 and 2.1.4.2).
bool tlog_verify_inclusion(uint64_t index, uint64_t size, const Digest& leaf_hash, const std::vector<Digest>& proof,
                           const Digest& root);
bool tlog_verify_consistency(uint64_t old_size, uint64_t new_size, const Digest& old_root, const Digest& new_root,
                             const std::vector<Digest>& proof);

// Every complete subtree's hash, level by level, appended in O(log n): the
// unit tests' store, and the layout a zone or file keeps.
class TlogHashes {
   public:
    void append(const Digest& leaf_hash);
    uint64_t size() const { return levels_.empty() ? 0 : levels_[0].size(); }
    Digest subtree(int level, uint64_t index) const { return levels_.at((size_t)level).at(index); }
    SubtreeHash reader() const {
        return [this](int level, uint64_t index) { return subtree(level, index); };
    }

   private:
    std::vector<std::vector<Digest>> levels_;
};

// Where a log keeps its hashes: level 0 (the leaf hashes) and every level
// from kTlogKeptFrom up; the levels between are recomputed from at most
// 2^kTlogKeptFrom leaf hashes when a proof needs them. 32 bytes a leaf, plus
// 2 * 32 / 2^kTlogKeptFrom for the upper levels: 36 bytes a leaf in all.
constexpr int kTlogKeptFrom = 4;
inline bool tlog_level_kept(int level) { return level == 0 || level >= kTlogKeptFrom; }

class TlogStorage {
   public:
    virtual ~TlogStorage() = default;
    virtual uint64_t size() = 0;  // leaves appended
    // A kept hash (tlog_level_kept(level)) of a complete subtree.
    virtual Digest kept(int level, uint64_t index) = 0;
    // Stores the next hash of a kept level: index is that level's count.
    virtual void keep(int level, uint64_t index, const Digest& hash) = 0;
    // The new size, once every hash of the appended leaf is kept.
    virtual void grew(uint64_t size) = 0;
};

// Appends a leaf's hash: the complete subtrees it closes are hashed (at most
// 2^kTlogKeptFrom hashes below the kept levels, one a level above) and the
// kept ones stored, then the size grows.
void tlog_append(TlogStorage& storage, const Digest& leaf_hash);
// Complete-subtree hashes for the proofs: kept ones read, the others made.
SubtreeHash tlog_subtrees(TlogStorage& storage);
// How many hashes a kept level holds for a tree of `size` leaves.
inline uint64_t tlog_kept_count(int level, uint64_t size) { return size >> level; }

// C2SP signed-note. An Ed25519 key's ID: the first 4 bytes of
// SHA-256(name || "\n" || 0x01 || public key); its verifier key text
// "name+<8 hex of the ID>+<base64 of 0x01 || public key>".
std::string note_key_id(std::string_view name, std::string_view public_raw);
std::string note_verifier_key(std::string_view name, std::string_view public_raw);
// text (non-empty, ending in "\n") and one signature line per signer, in
// order: "\n— <name> <base64 of key ID || signature>\n".
struct NoteSigner {
    std::string name;
    const Ed25519Identity* key;
};
std::string sign_note(std::string_view text, const std::vector<NoteSigner>& signers);

// C2SP tlog-checkpoint: origin, tree size, base64 root hash, one per line.
std::string checkpoint_text(std::string_view origin, uint64_t size, const Digest& root);

}  // namespace dp
