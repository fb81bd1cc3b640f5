// The verifiable pairing log (issue #28): every durable device event as a
// leaf of an RFC 6962 tree, checkpoints signed with the gateway's identity
// as C2SP signed notes, and the routes verifiers read. The tree's hashes are
// the store's (log_tree); where leaves are numbered and kept is the change
// log's (the journal: numbered under the state file's lock, in the order
// they become durable).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/call.h"

namespace dp {

// A leaf's bytes are RFC 8785 JSON of the event: "event", "seq" (the leaf's
// index), "time" (RFC 3339, ms), and where they apply "device_id", "role",
// "method", "actor", "jkt" (the RFC 7638 thumbprint its token is bound to)
// and "name" (a rename's new name). Never a secret or an address. Until it
// is numbered a leaf is a template: the JSON split where seq's digits go.
std::string leaf_template(const AuditEvent& event, std::string_view jkt, int64_t now_ms);
std::string leaf_from_template(std::string_view leaf_template, uint64_t index);

// Logs an event in the caller's open transaction, when the store keeps a
// log; the device's binding is read for its jkt (before a revocation drops it).
void log_event(Store& store, const AuditEvent& event, int64_t now_ms);
// The audit log's event and, when it changed the pairing state, the pairing log's leaf.
void record_event(Call& call, Response& r, AuditEvent event);

// GET /api/devices/log/checkpoint: the C2SP checkpoint signed by the identity.
Response log_checkpoint(Call& call);
// GET /api/devices/log/proof/inclusion?index=I&size=N
Response log_inclusion_proof(Call& call);
// GET /api/devices/log/proof/consistency?old=M&new=N
Response log_consistency_proof(Call& call);

// GET /api/devices/log/entries?start=S&end=E: the leaves [start, end) the
// log holds, at most kMaxLogEntries; the caller reads them (from disk) and
// answers with log_entries_answer.
constexpr uint64_t kMaxLogEntries = 1000;
struct LogRange {
    uint64_t start, end;
};
Result<LogRange> log_entries_range(Call& call);
// The route's handler: the range to read (Response::log_first, log_end), or a problem.
Response log_entries(Call& call);
Response log_entries_answer(uint64_t start, const std::vector<std::string>& leaves);
// The answer of a log route when the zone keeps no log.
Response log_off();

}  // namespace dp
