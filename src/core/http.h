// What the core sees of a request and hands back as a response. The nginx
// glue fills Request from ngx_http_request_t and sends Response; unit tests
// build them directly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <jansson.h>

namespace dp {

// device_pairing_dpop of the location: bind at issuance when a proof comes
// (On), ignore proofs at issuance (Off), or require them (Required: no
// token without a proof, and the gate refuses tokens that are not bound).
enum class DpopMode : uint8_t { On, Off, Required };

struct Request {
    std::string method;
    std::string path;
    std::string query;
    std::string authorization;  // "Authorization" header value, empty if absent
    std::string device_key;     // "X-DEVICE-KEY" header value, empty if absent
    std::string content_type;   // "Content-Type" header value, empty if absent
    int64_t content_length = -1;  // declared length; -1 when absent (chunked or no body)
    std::string body;
    std::string user_agent;
    std::string host;           // Host header, for URLs when no public URL is set
    std::string scheme = "http";
    int64_t now_ms = 0;
    std::vector<std::string> dpop;  // every DPoP header's value (RFC 9449 4.1)
    DpopMode dpop_mode = DpopMode::On;
    uint64_t host_id = 0;           // this host's name in its DPoP nonces

    // Value of one query argument, or empty.
    std::string query_arg(std::string_view name) const;
};

// One line of the audit log: what happened to which device, and who did
// it. Never a secret. The request adds the time, address and User-Agent.
struct AuditEvent {
    std::string event;      // paired, revoked, rotated, expired, renamed, otp_burned, lockout, ...
    std::string device_id;  // the device it concerns, or empty
    std::string role;       // that device's role, or empty
    std::string method;     // how it paired (otp, code), or empty
    std::string actor;      // who did it: a device id, "operator", or empty (the client itself)
    std::string detail;     // what else helps: a new name, a requester id, an account
};

struct IdentityRotation;  // core/identity.h

struct Response {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
    std::vector<std::string> notices;  // lines for the error log at notice level
    std::vector<std::string> banner;   // a new OTP for the operator: logged and written to the banner file
    bool durable = false;              // persist state before the answer leaves
    int64_t poll_until_ms = 0;         // long poll: ask again until ready or this time
    // The pairing log's entries [first, end) are read from disk by the caller,
    // which answers with log_entries_answer (end 0: nothing to read).
    uint64_t log_first = 0, log_end = 0;
    // A rotation of the gateway identity the caller makes durable (the key
    // in the state directory, then the log's leaf) before it answers.
    std::shared_ptr<const IdentityRotation> rotation;
    std::vector<AuditEvent> audit;     // written to the audit log when the answer stands

    void header(std::string name, std::string value) {
        headers.emplace_back(std::move(name), std::move(value));
    }
};

// The client's address, raw: limiter keys and the device list.
struct ClientAddr {
    uint8_t len = 0;  // 4, 16, or 0 when unknown
    uint8_t bytes[16] = {};
};

// A value or the problem answer that explains why there is none: the one
// error style of the core's handlers and their helpers.
template <typename T>
class Result {
   public:
    Result(T value) : v_(std::move(value)) {}
    Result(Response error) : v_(std::move(error)) {}
    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& operator*() { return std::get<0>(v_); }
    T* operator->() { return &std::get<0>(v_); }
    Response& error() { return std::get<1>(v_); }

   private:
    std::variant<T, Response> v_;
};

// RFC 9457 problem. legacy_error adds the "error" member seed 000's clients read.
Response problem(int status, const std::string& code, const std::string& title,
                 const std::string& detail, const char* legacy_error = nullptr);
Response json_response(int status, json_t* body);  // steals the reference
Response internal_error();  // 500: what a handler that failed unexpectedly answers
Response no_content();

}  // namespace dp
