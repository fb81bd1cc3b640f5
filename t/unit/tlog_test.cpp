// The transparency log's pure parts: RFC 6962 tree hashes against the
// published test vectors, every inclusion and consistency proof of every
// size up to 64 checked by the verifiers (and broken ones refused), and the
// C2SP signed note against golang.org/x/mod/sumdb/note's documented example.
#include <gtest/gtest.h>

#include "core/encoding.h"
#include "core/tlog.h"

using namespace dp;

namespace {
std::string hex(const Digest& d) { return hex_encode(std::string_view((const char*)d.data(), 32)); }

// RFC 6962's test leaves (certificate-transparency's merkle tree tests).
const std::vector<std::string> kLeaves = {
    "", std::string("\x00", 1), "\x10", "\x20\x21", "\x30\x31", "\x40\x41\x42\x43", "\x50\x51\x52\x53\x54\x55\x56\x57",
    "\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"};
const char* const kRoots[] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};
}  // namespace

TEST(Tlog, RootsMatchRfc6962TestVectors) {
    TlogHashes tree;
    EXPECT_EQ(hex(tlog_root(0, tree.reader())), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    for (size_t n = 0; n < kLeaves.size(); n++) {
        tree.append(tlog_leaf_hash(kLeaves[n]));
        EXPECT_EQ(hex(tlog_root(n + 1, tree.reader())), kRoots[n]) << "size " << n + 1;
    }
}

TEST(Tlog, EveryProofOfEverySizeTo64VerifiesAndABrokenOneDoesNot) {
    TlogHashes tree;
    std::vector<Digest> roots = {tlog_root(0, tree.reader())};
    for (int i = 0; i < 64; i++) {
        tree.append(tlog_leaf_hash("leaf " + std::to_string(i)));
        roots.push_back(tlog_root(tree.size(), tree.reader()));
    }
    for (uint64_t n = 1; n <= 64; n++) {
        for (uint64_t i = 0; i < n; i++) {
            const Digest leaf = tlog_leaf_hash("leaf " + std::to_string(i));
            std::vector<Digest> proof = tlog_inclusion_proof(i, n, tree.reader());
            ASSERT_TRUE(tlog_verify_inclusion(i, n, leaf, proof, roots[n])) << i << " in " << n;
            EXPECT_FALSE(tlog_verify_inclusion(i, n, tlog_leaf_hash("other"), proof, roots[n]));
            if (!proof.empty()) {
                proof.back()[31] ^= 1;  // the last byte of the last hash
                EXPECT_FALSE(tlog_verify_inclusion(i, n, leaf, proof, roots[n])) << i << " in " << n;
                proof.back()[31] ^= 1;
                proof.pop_back();
                EXPECT_FALSE(tlog_verify_inclusion(i, n, leaf, proof, roots[n])) << "a short proof, " << i << " in " << n;
            }
            EXPECT_FALSE(tlog_verify_inclusion(n, n, leaf, {}, roots[n]));
        }
        for (uint64_t m = 1; m <= n; m++) {
            std::vector<Digest> proof = tlog_consistency_proof(m, n, tree.reader());
            ASSERT_TRUE(tlog_verify_consistency(m, n, roots[m], roots[n], proof)) << m << " -> " << n;
            if (m < n) {
                EXPECT_FALSE(tlog_verify_consistency(m, n, roots[m], roots[m], proof));
                Digest rewritten = roots[m];
                rewritten[0] ^= 1;
                EXPECT_FALSE(tlog_verify_consistency(m, n, rewritten, roots[n], proof)) << "a rewritten history";
                proof.back()[31] ^= 1;
                EXPECT_FALSE(tlog_verify_consistency(m, n, roots[m], roots[n], proof)) << m << " -> " << n;
            }
        }
    }
}

// The example of golang.org/x/mod/sumdb/note's documentation: the same key,
// text and (deterministic Ed25519) signature line, byte for byte.
TEST(Tlog, SignedNoteMatchesTheGoNotePackagesExample) {
    const auto seed = base64_decode_strict("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz");
    ASSERT_TRUE(seed && seed->size() == 33);
    const auto key = Ed25519Identity::from_seed(seed->substr(1));
    EXPECT_EQ(note_verifier_key("PeterNeumann", key->public_raw()), "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
    const std::string text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    EXPECT_EQ(sign_note(text, {{"PeterNeumann", key.get()}}),
              text + "\n\xe2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n");
    EXPECT_THROW(sign_note("no newline", {{"PeterNeumann", key.get()}}), std::invalid_argument);
}

TEST(Tlog, CheckpointText) {
    TlogHashes tree;
    tree.append(tlog_leaf_hash(""));
    EXPECT_EQ(checkpoint_text("example.com/log", 1, tlog_root(1, tree.reader())),
              "example.com/log\n1\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\n");
}
