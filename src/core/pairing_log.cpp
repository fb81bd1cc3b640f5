#include "core/pairing_log.h"

#include <functional>

#include "core/dpop.h"
#include "core/encoding.h"
#include "core/identity.h"

namespace dp {

namespace {

constexpr const char kSeqMark[] = "\"seq\":0";
constexpr char kSplit = '\0';  // JSON text never holds a raw NUL: the template's seam

void set_text(json_t* object, const char* name, const std::string& value) {
    if (!value.empty()) json_object_set_new(object, name, json_string(value.c_str()));
}

// A strict decimal query argument (no sign, no spaces), or nothing.
std::optional<uint64_t> count_arg(const Request& req, const char* name) {
    const std::string text = req.query_arg(name);
    if (text.empty() || text.size() > 18) return std::nullopt;
    uint64_t n = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        n = n * 10 + (uint64_t)(c - '0');
    }
    return n;
}

Response bad_range(const std::string& detail) { return problem(400, "bad_range", "Bad log range", detail); }

// The log's size now (read under the lock), or 0 for no log.
uint64_t log_size(Store& store) {
    StoreReadLock lock(store);
    return store.log_tree()->size();
}

json_t* hashes_json(const std::vector<Digest>& hashes) {
    json_t* list = json_array();
    for (const Digest& h : hashes)
        json_array_append_new(list, json_string(base64_encode(std::string_view((const char*)h.data(), 32)).c_str()));
    return list;
}

}  // namespace

std::string leaf_template(const AuditEvent& e, std::string_view jkt, int64_t now_ms) {
    Json leaf(json_object());
    json_t* o = leaf.get();
    set_text(o, "event", e.event);
    json_object_set_new(o, "seq", json_integer(0));
    set_text(o, "time", iso8601(now_ms));
    set_text(o, "device_id", e.device_id);
    set_text(o, "role", e.role);
    set_text(o, "method", e.method);
    set_text(o, "actor", e.actor);
    set_text(o, "jkt", std::string(jkt));
    if (e.event == "renamed") set_text(o, "name", e.detail);
    // A rotation's leaf is its hand-over note (signed by both keys) and the new key.
    if (e.event == "identity_rotated") {
        set_text(o, "handover", e.detail);
        set_text(o, "key", handover_field(e.detail, "new"));
    }
    std::string text = json_canonical(o);
    // Strings are escaped ("\"seq\":0" inside one reads \"seq\":0): the mark
    // is found only as the member.
    const size_t at = text.find(kSeqMark);
    text[at + sizeof(kSeqMark) - 2] = kSplit;
    return text;
}

std::string leaf_from_template(std::string_view t, uint64_t index) {
    const size_t at = t.find(kSplit);
    std::string leaf(t.substr(0, at));
    leaf += std::to_string(index);
    leaf += t.substr(at + 1);
    return leaf;
}

void log_event(Store& store, const AuditEvent& e, int64_t now_ms) {
    if (!store.logs_events()) return;
    std::string jkt;
    if (!e.device_id.empty())
        if (auto* b = as<BindingRecord>(store.find(Kind::Binding, binding_key(e.device_id))))
            jkt = base64url_encode(std::string_view((const char*)b->jkt, 32));
    store.append_leaf(leaf_template(e, jkt, now_ms));
}

void record_event(Call& call, Response& r, AuditEvent event) {
    log_event(call.store, event, call.req.now_ms);
    r.audit.push_back(std::move(event));
}

Response log_off() {
    return problem(404, "log_off", "No pairing log", "this zone keeps no pairing log (device_pairing_zone ... log=on)");
}

Response log_checkpoint(Call& call) {
    TlogStorage* tree = call.store.log_tree();
    if (!tree) return log_off();
    if (!call.settings.identity)
        return problem(501, "identity_unavailable", "No device identity",
                       "the pairing log's checkpoints are signed by device_pairing_identity, which is not configured");
    uint64_t size;
    Digest root;
    {
        StoreReadLock lock(call.store);
        size = tree->size();
        root = tlog_root(size, tlog_subtrees(*tree));
    }
    const std::string& origin = call.settings.log_origin;
    Response r;
    r.content_type = "text/plain; charset=utf-8";
    std::vector<NoteSigner> signers{NoteSigner{origin, call.settings.identity.get()}};
    // The first checkpoint after a rotation carries the replaced key's
    // signature too: a verifier still on it reads this one and then the hand-over.
    if (call.settings.previous_identity && size == call.settings.dual_signed_size)
        signers.push_back(NoteSigner{origin, call.settings.previous_identity.get()});
    r.body = sign_note(checkpoint_text(origin, size, root), signers);
    return r;
}

namespace {

// A proof route: two sizes from the query (`first`, `second`), checked
// against the log's size under the lock, the proof made there too.
Response proof_route(Call& call, const char* first_name, const char* second_name,
                     const std::function<std::optional<std::string>(uint64_t, uint64_t)>& bad,
                     const std::function<std::vector<Digest>(uint64_t, uint64_t, const SubtreeHash&)>& prove) {
    TlogStorage* tree = call.store.log_tree();
    if (!tree) return log_off();
    const auto first = count_arg(call.req, first_name), second = count_arg(call.req, second_name);
    if (!first || !second)
        return bad_range(std::string(first_name) + " and " + second_name + " must be decimal numbers");
    std::vector<Digest> proof;
    {
        StoreReadLock lock(call.store);
        if (*second > tree->size())
            return bad_range(std::string(second_name) + " " + std::to_string(*second) + " is beyond the log's " +
                             std::to_string(tree->size()));
        if (auto why = bad(*first, *second)) return bad_range(*why);
        proof = prove(*first, *second, tlog_subtrees(*tree));
    }
    return json_response(200, json_pack("{s:I, s:I, s:o}", first_name, (json_int_t)*first, second_name,
                                        (json_int_t)*second, "hashes", hashes_json(proof)));
}

}  // namespace

Response log_inclusion_proof(Call& call) {
    return proof_route(
        call, "index", "size",
        [](uint64_t index, uint64_t size) -> std::optional<std::string> {
            if (index >= size) return "index must be below size";
            return std::nullopt;
        },
        tlog_inclusion_proof);
}

Response log_consistency_proof(Call& call) {
    return proof_route(
        call, "old", "new",
        [](uint64_t old_size, uint64_t new_size) -> std::optional<std::string> {
            if (old_size == 0 || old_size > new_size) return "old must be at least 1 and at most new";
            return std::nullopt;
        },
        tlog_consistency_proof);
}

Result<LogRange> log_entries_range(Call& call) {
    if (!call.store.log_tree()) return log_off();
    const auto start = count_arg(call.req, "start"), end = count_arg(call.req, "end");
    if (!start || !end) return bad_range("start and end must be decimal numbers");
    const uint64_t size = log_size(call.store);
    if (*start >= *end) return bad_range("end (exclusive) must be above start");
    if (*start >= size) return bad_range("start " + std::to_string(*start) + " is beyond the log's " + std::to_string(size));
    return LogRange{*start, std::min({*end, size, *start + kMaxLogEntries})};
}

Response log_entries(Call& call) {
    Result<LogRange> range = log_entries_range(call);
    if (!range) return range.error();
    Response r;
    r.log_first = range->start;
    r.log_end = range->end;
    return r;
}

Response log_entries_answer(uint64_t start, const std::vector<std::string>& leaves) {
    json_t* list = json_array();
    for (const std::string& leaf : leaves)
        json_array_append_new(list, json_pack("{s:I, s:s}", "index", (json_int_t)start++, "leaf",
                                              base64_encode(leaf).c_str()));
    return json_response(200, json_pack("{s:o}", "entries", list));
}

}  // namespace dp
