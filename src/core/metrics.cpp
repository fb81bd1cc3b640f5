#include "core/metrics.h"

#include <algorithm>
#include <initializer_list>
#include <vector>

#include "core/dpop.h"

namespace dp {

namespace {

struct Sample {
    const char* label_value;  // null: no label
    uint64_t value;
};

void family(std::string& out, const char* name, const char* type, const char* help, const char* label,
            const std::vector<Sample>& samples) {
    out += std::string("# HELP ") + name + ' ' + help + "\n# TYPE " + name + ' ' + type + '\n';
    for (const Sample& s : samples) {
        out += name;
        if (s.label_value) out += std::string("{") + label + "=\"" + s.label_value + "\"}";
        out += ' ' + std::to_string(s.value) + '\n';
    }
}

// One family of counters; label values pair with the counters in order.
void counters(std::string& out, Store& store, const char* name, const char* help, const char* label,
              std::initializer_list<std::pair<const char*, Counter>> series) {
    std::vector<Sample> samples;
    for (const auto& [label_value, counter] : series) samples.push_back({label_value, store.counted(counter)});
    family(out, name, "counter", help, label, samples);
}

}  // namespace

std::string metrics_text(Store& store, uint32_t now_s) {
    constexpr size_t kSlice = 4096;
    uint64_t devices, owners, mailboxes, pending = 0;
    {
        StoreLock lock(store);
        devices = store.shared().devices;
        owners = store.shared().owners;
        mailboxes = store.shared().records[(size_t)Kind::Mailbox];
        store.for_each(Kind::CodeRequest, [&](const RecordHeader* h) {
            auto* r = as<CodeRequestRecord>(h);
            pending += r->status == CodeStatus::Pending && r->code_expires_s > now_s;
        });
    }
    uint64_t out_of_step, link_up;
    {
        StoreReadLock lock(store);
        out_of_step = store.shared().fleet_out_of_step_ms != 0;
        link_up = store.shared().fleet_link_up != 0;
    }
    uint32_t oldest_seen = 0;
    std::string after;
    for (size_t visited = kSlice; visited == kSlice;) {
        StoreReadLock lock(store);
        visited = store.visit_index_after(Index::DeviceId, after, kSlice, [&](const RecordHeader* h) {
            auto* d = as<DeviceRecord>(h);
            if (!oldest_seen || d->last_seen_s < oldest_seen) oldest_seen = d->last_seen_s;
            after.assign((const char*)d->id, 8);
        });
    }
    const uint64_t total = store.total_bytes(), free = store.free_bytes();

    std::string out;
    counters(out, store, "device_pairing_pairings_total", "Devices paired, by pairing method.", "method",
             {{"otp", Counter::PairedOtp}, {"code", Counter::PairedCode}, {"oauth", Counter::PairedOAuth}});
    counters(out, store, "device_pairing_otp_failures_total", "Wrong or expired OTPs presented to POST /pair.",
             nullptr, {{nullptr, Counter::OtpFailures}});
    counters(out, store, "device_pairing_lockouts_total",
             "Client addresses locked out (429) after repeated wrong OTPs or pairing codes.", nullptr,
             {{nullptr, Counter::Lockouts}});
    counters(out, store, "device_pairing_otp_burns_total", "OTPs burned after too many failed attempts.", nullptr,
             {{nullptr, Counter::OtpBurns}});
    counters(out, store, "device_pairing_codes_total", "Pairing-code requests, by what happened to them.", "event",
             {{"requested", Counter::CodesRequested},
              {"approved", Counter::CodesApproved},
              {"rejected", Counter::CodesRejected},
              {"expired", Counter::CodesExpired}});
    counters(out, store, "device_pairing_mailboxes_total", "Relay mailboxes, by what happened to them.", "event",
             {{"minted", Counter::MailboxesMinted},
              {"completed", Counter::MailboxesCompleted},
              {"cancelled", Counter::MailboxesCancelled},
              {"expired", Counter::MailboxesExpired}});
    counters(out, store, "device_pairing_gate_decisions_total",
             "Access-phase gate decisions (device_pairing_auth, device_pairing_check), by result.", "result",
             {{"accepted", Counter::GateAccepted},
              {"missing", Counter::GateMissing},
              {"invalid", Counter::GateInvalid},
              {"revoked", Counter::GateRevoked},
              {"expired", Counter::GateExpired}});
    counters(out, store, "device_pairing_revocations_total", "Device tokens revoked.", nullptr,
             {{nullptr, Counter::Revocations}});
    counters(out, store, "device_pairing_token_rotations_total", "Device tokens rotated by their device.", nullptr,
             {{nullptr, Counter::Rotations}});
    counters(out, store, "device_pairing_renames_total", "Devices renamed.", nullptr, {{nullptr, Counter::Renames}});
    counters(out, store, "device_pairing_zone_full_total", "Records refused because the zone had no room.", nullptr,
             {{nullptr, Counter::ZoneFull}});
    counters(out, store, "device_pairing_device_limit_total",
             "Pairings refused by device_pairing_max_devices (409 device_limit).", nullptr,
             {{nullptr, Counter::DeviceLimit}});
    counters(out, store, "device_pairing_replica_rebuilds_total",
             "Fleet mode: rebuilds of this host's replica from Redis (a reconnect, a gap in the feed, or a reply or "
             "record it could not read).", nullptr, {{nullptr, Counter::FleetRebuilds}});
    counters(out, store, "device_pairing_redis_master_changes_total",
             "Fleet mode with redis_sentinel=: times the sentinels named another master (a failover).", nullptr,
             {{nullptr, Counter::FleetMasterChanges}});
    {
        std::vector<Sample> dpop;  // one series per outcome, in DpopFailure's order
        for (size_t f = 0; f < (size_t)DpopFailure::Count; f++)
            dpop.push_back({dpop_failure_name((DpopFailure)f), store.counted((Counter)((size_t)Counter::DpopAccepted + f))});
        family(out, "device_pairing_dpop_checks_total", "counter",
               "DPoP proofs checked (RFC 9449) at issuance, the gate and bearer routes, by result: accepted or why "
               "refused.", "result", dpop);
    }
    family(out, "device_pairing_replica_out_of_step", "gauge",
           "Fleet mode: 1 while this host's replica is not following Redis's feed (device_pairing_redis_stale "
           "applies), else 0.", nullptr, {{nullptr, out_of_step}});
    family(out, "device_pairing_redis_link_up", "gauge",
           "Fleet mode: 1 while this host's link to the Redis master (worker 0's feed) is up, else 0.", nullptr,
           {{nullptr, link_up}});
    family(out, "device_pairing_devices", "gauge", "Paired devices, by role.", "role",
           {{"owner", owners}, {"device", devices - owners}});
    family(out, "device_pairing_pending_codes", "gauge", "Pairing-code requests waiting for an owner's decision.",
           nullptr, {{nullptr, pending}});
    family(out, "device_pairing_mailboxes", "gauge",
           "Relay mailboxes held in the zone (an expired one until the zone drops it).", nullptr,
           {{nullptr, mailboxes}});
    family(out, "device_pairing_zone_used_bytes", "gauge", "Bytes of the shared-memory zone in use.", nullptr,
           {{nullptr, total - std::min(free, total)}});
    family(out, "device_pairing_zone_free_bytes", "gauge", "Bytes of the shared-memory zone still free.", nullptr,
           {{nullptr, free}});
    if (oldest_seen)
        family(out, "device_pairing_oldest_last_seen_timestamp_seconds", "gauge",
               "Unix time the least recently seen device was last seen (kept to its step: 1/8 of the idle timeout, "
               "an hour without one).", nullptr,
               {{nullptr, oldest_seen}});
    return out;
}

}  // namespace dp
