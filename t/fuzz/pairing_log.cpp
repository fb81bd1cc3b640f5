// The pairing log's readers and proofs: a hostile identity file parses or
// is refused and round-trips when it parses; hand-over notes never crash the
// key reader; a hostile PATH.log is read up to its valid records or refused;
// proofs of any size and index verify, and a flipped byte never does.
#include <unistd.h>

#include <cstdio>

#include "core/identity.h"
#include "core/persist/disk.h"
#include "core/tlog.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const std::string_view rest((const char*)data + 1, size - 1);
    switch (data[0] % 4) {
        case 0: {
            dp::IdentityFile f, again;
            std::string error;
            if (!dp::parse_identity_file(rest, &f, &error)) return 0;
            if (!dp::parse_identity_file(dp::encode_identity_file(f), &again, &error) || again.seed != f.seed ||
                again.previous != f.previous || again.handovers != f.handovers)
                abort();
            return 0;
        }
        case 1:
            if (dp::retired_keys({std::string(rest)}).size() != 1) abort();
            return 0;
        case 2: {
            static const std::string path = "/tmp/dp-fuzz-log-" + std::to_string(getpid());
            FILE* f = fopen(path.c_str(), "wb");
            fwrite(rest.data(), 1, rest.size(), f);
            fclose(f);
            struct Gone {
                ~Gone() { unlink(path.c_str()); }
            } gone;
            uint64_t valid = 0, count = 0;
            bool torn = false;
            std::string error;
            std::vector<std::pair<uint64_t, std::string>> seen;
            if (!dp::scan_log_file(path, [&](uint64_t i, uint64_t offset, std::string_view leaf) {
                    if (i != count++) abort();
                    seen.emplace_back(offset, std::string(leaf));
                }, &valid, &torn, &error))
                return 0;
            if (valid > rest.size() || (!torn && valid != rest.size())) abort();
            for (size_t i = 0; i < seen.size(); i++) {
                std::vector<std::string> read;
                if (!dp::read_log_leaves(path, seen[i].first, i, 1, &read, &error) || read[0] != seen[i].second) abort();
            }
            return 0;
        }
        default: {
            if (rest.size() < 6) return 0;
            const uint64_t n = ((uint8_t)rest[0] | (uint8_t)rest[1] << 8) % 300 + 1;
            const uint64_t index = ((uint8_t)rest[2] | (uint8_t)rest[3] << 8) % n;
            const uint64_t old = ((uint8_t)rest[4] | (uint8_t)rest[5] << 8) % n + 1;
            dp::KeptLevelsTlog tree;
            for (uint64_t i = 0; i < n; i++) dp::tlog_append(tree, dp::tlog_leaf_hash(std::to_string(i) + std::string(rest.substr(6))));
            const dp::SubtreeHash hashes = dp::tlog_subtrees(tree);
            const dp::Digest root = dp::tlog_root(n, hashes), old_root = dp::tlog_root(old, hashes);
            std::vector<dp::Digest> path = dp::tlog_inclusion_proof(index, n, hashes);
            const dp::Digest leaf = dp::tlog_leaf_hash(std::to_string(index) + std::string(rest.substr(6)));
            if (!dp::tlog_verify_inclusion(index, n, leaf, path, root)) abort();
            std::vector<dp::Digest> consistency = dp::tlog_consistency_proof(old, n, hashes);
            if (!dp::tlog_verify_consistency(old, n, old_root, root, consistency)) abort();
            if (!path.empty()) {
                path[index % path.size()][n % 32] ^= 1;
                if (dp::tlog_verify_inclusion(index, n, leaf, path, root)) abort();
            }
            if (!consistency.empty()) {
                consistency[old % consistency.size()][index % 32] ^= 1;
                if (dp::tlog_verify_consistency(old, n, old_root, root, consistency)) abort();
            }
            return 0;
        }
    }
}
