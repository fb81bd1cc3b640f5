#include "ngx/identity.h"

#include "core/files.h"
#include "ngx/zone.h"

namespace dpngx {

namespace {

std::vector<std::string> chain_of(const ShmIdentity& id) {
    std::vector<std::string> notes;
    for (size_t at = 0; at < id.chain_bytes;) {
        const size_t len = strnlen(id.chain + at, id.chain_bytes - at);
        notes.emplace_back(id.chain + at, len);
        at += len + 1;
    }
    return notes;
}

// Puts a kept identity in the zone; the caller holds the zone lock.
bool set_identity(ShmIdentity& id, const dp::IdentityFile& f, std::string* error) {
    size_t bytes = 0;
    for (const std::string& note : f.handovers) bytes += note.size() + 1;
    if (bytes > sizeof(id.chain)) {
        *error = "the hand-over chain is full (" + std::to_string(f.handovers.size()) + " rotations)";
        return false;
    }
    ngx_memcpy(id.seed, f.seed.data(), 32);
    id.has_previous = !f.previous.empty();
    if (id.has_previous) ngx_memcpy(id.previous, f.previous.data(), 32);
    id.chain_bytes = 0;
    for (const std::string& note : f.handovers) {
        ngx_memcpy(id.chain + id.chain_bytes, note.data(), note.size());
        id.chain_bytes += note.size();
        id.chain[id.chain_bytes++] = '\0';
    }
    id.generation++;
    return true;
}

}  // namespace

std::string identity_path(const dp::StatePaths& paths) { return paths.state + ".identity"; }

bool load_identity(ZoneCtx* zone, const dp::StatePaths& paths, std::string* error) {
    std::string text;
    if (!dp::read_file(identity_path(paths), &text, error)) return errno == ENOENT;
    dp::IdentityFile f;
    if (!dp::parse_identity_file(text, &f, error)) return false;
    ZoneStore store(zone);
    dp::StoreLock lock(store);
    return set_identity(zone->sh->identity, f, error);
}

bool keep_rotated_identity(ZoneCtx* zone, const dp::IdentityRotation& rotation, std::string* error) {
    const dp::StatePaths paths(to_string(zone->state_path));
    dp::StateLock file_lock(paths, error);
    if (!file_lock.held()) return false;
    ZoneStore store(zone);
    dp::IdentityFile f;
    {
        dp::StoreLock lock(store);  // a thread: never a read lock (its slot is the event loop's)
        const ShmIdentity& id = zone->sh->identity;
        if (id.generation != rotation.from_generation) {
            *error = kAnotherRotationFirst;
            return false;
        }
        f.handovers = chain_of(id);
    }
    f.seed = rotation.next->seed();
    f.previous = rotation.previous->seed();
    f.handovers.push_back(rotation.handover);
    if (!dp::write_file_durably(identity_path(paths), dp::encode_identity_file(f), error)) return false;
    dp::StoreLock lock(store);
    return set_identity(zone->sh->identity, f, error);
}

void refresh_identity(ZoneCtx* zone, dp::Settings* s) {
    if (!zone) return;
    s->identity_rotatable = zone->state_path.len > 0;
    const ShmIdentity& shared = zone->sh->identity;
    s->dual_signed_size = ((volatile const ShmIdentity&)shared).dual_signed_size;
    const uint64_t generation = ((volatile const ShmIdentity&)shared).generation;
    if (generation == s->identity_generation) return;
    ShmIdentity copy;
    {
        ZoneStore store(zone);
        dp::StoreReadLock lock(store);
        ngx_memcpy(&copy, &shared, offsetof(ShmIdentity, chain) + shared.chain_bytes);
    }
    s->identity = dp::Ed25519Identity::from_seed(std::string_view((const char*)copy.seed, 32));
    s->previous_identity =
        copy.has_previous ? dp::Ed25519Identity::from_seed(std::string_view((const char*)copy.previous, 32)) : nullptr;
    s->identity_handovers = chain_of(copy);
    s->earlier_identity_keys = dp::retired_keys(s->identity_handovers);
    s->identity_generation = copy.generation;
}

void note_rotation_leaf(ZoneCtx* zone, uint64_t size_after) { zone->sh->identity.dual_signed_size = size_after; }

}  // namespace dpngx
