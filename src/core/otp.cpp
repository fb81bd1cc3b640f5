#include "core/otp.h"

#include "core/pairing_log.h"

#include <cstring>

#include "core/devices.h"
#include "core/dpop.h"
#include "core/limiter.h"
#include "core/qr.h"

namespace dp {

namespace {

const char kInvalidCode[] = "Invalid or expired code";
const char kTooMany[] = "Too many attempts";
const char kUnavailable[] = "Pairing not available";

Response invalid_code() {
    return problem(401, "invalid_code", kInvalidCode, "the code is wrong or expired", kInvalidCode);
}

}  // namespace

bool otp_live(Store& store, int64_t now_ms) {
    StoreLock lock(store);
    const OtpState& otp = store.shared().otp;
    return otp.expires_ms > now_ms && !otp.burned;
}

std::string new_otp(Store& store, const Settings& settings, int64_t now_ms) {
    char digits[8];
    snprintf(digits, sizeof(digits), "%06u", random_below(1000000));
    Digest hash = guessable_key(settings, "otp", digits);
    StoreLock lock(store);
    OtpState& otp = store.otp_for_update();
    memcpy(otp.hash, hash.data(), 32);
    otp.expires_ms = now_ms + settings.otp_ttl_ms;
    otp.failures = 0;
    otp.burned = 0;
    return digits;
}

std::vector<std::string> otp_banner(const Settings& settings, const std::string& base, const std::string& otp,
                                    int64_t now_ms, const QrCode& qr) {
    std::vector<std::string> lines;
    lines.push_back("device pairing: open " + base + "/pair on the device, or scan:");
    for (std::string& row : qr.terminal_lines(settings.qr_colors)) lines.push_back(std::move(row));
    lines.push_back("OTP: " + otp + " (expires in " + std::to_string(settings.otp_ttl_ms / 60000) +
                    " minutes, at " + iso8601(now_ms + settings.otp_ttl_ms) +
                    "); at most 10 guesses, P <= 1e-5");
    return lines;
}

std::vector<std::string> otp_at_start(Store& store, const Settings& settings, int64_t now_ms) {
    if (otp_live(store, now_ms)) return {};  // a reload keeps the live OTP
    std::string otp = new_otp(store, settings, now_ms);
    std::string url = settings.public_url.empty() ? settings.listen_url : settings.public_url;
    while (!url.empty() && url.back() == '/') url.pop_back();
    return otp_banner(settings, url, otp, now_ms, QrCode(url + "/pair#otp=" + otp));
}

namespace {

bool real_name(const std::string& name) {
    return !name.empty() && name != "_" && name != "localhost" && name[0] != '~' &&
           name.find('*') == std::string::npos && name.find('.') != std::string::npos;
}

}  // namespace

std::string startup_url(const std::vector<ListenAddress>& listens, const std::vector<std::string>& server_names,
                        const std::string& hostname, std::vector<std::string>* warnings) {
    if (listens.empty()) return "http://localhost";
    const ListenAddress& listen = listens.front();
    const std::string scheme = listen.ssl ? "https" : "http";
    const size_t colon = listen.text.rfind(':');
    const std::string port = colon == std::string::npos ? "" : listen.text.substr(colon + 1);
    std::string host = colon == std::string::npos ? listen.text : listen.text.substr(0, colon);
    std::vector<std::string> names;
    for (const std::string& n : server_names)
        if (real_name(n)) names.push_back(n);
    if (!names.empty()) {
        host = names.front();
        if (names.size() > 1)
            warnings->push_back("several server names; the start-up QR uses \"" + host + "\"");
    } else if (listen.wildcard) {
        host = hostname.empty() ? "localhost" : hostname;
        warnings->push_back("the server listens on a wildcard address; the start-up QR guesses the host name \"" +
                            host + "\"");
    }
    const bool default_port = (scheme == "http" && port == "80") || (scheme == "https" && port == "443");
    std::string url = scheme + "://" + host + (default_port || port.empty() ? "" : ":" + port);
    if (!warnings->empty()) warnings->back() += " (" + url + "); set device_pairing_url to say which URL phones reach";
    return url;
}

Response health(Call&) { return json_response(200, json_pack("{s:s}", "status", "ok")); }

Response pair_page(Call&) {
    Response r;
    r.content_type = "text/html; charset=utf-8";
    r.body = pair_page_html();
    r.header("Content-Security-Policy", pair_page_csp());
    r.header("X-Content-Type-Options", "nosniff");
    return r;
}

Response pair_otp(Call& call) {
    if (call.settings.operator_token_unavailable)
        return problem(501, "pairing_unavailable", kUnavailable,
                       "the gateway token file could not be read or created", kUnavailable);
    Result<Json> body = body_object(call.req);
    if (!body) return body.error();
    auto code = json_string_member(body->get(), "otp");
    if (!code) return bad_request("\"otp\" must be a string of 6 digits");
    std::string name =
        json_string_member(body->get(), "name").value_or(user_agent_summary(call.req.user_agent));

    auto binding = issuance_binding(call);  // a DPoP proof binds the token to its key
    if (!binding) return binding.error();
    const int64_t now = call.req.now_ms;
    Digest presented = guessable_key(call.settings, "otp", *code);
    StoreLock lock(call.store);
    Limiter limiter(call.store, "otp-limit", call.addr);
    if (int wait = limiter.admit(now)) return rate_limited(wait, kTooMany);

    const OtpState& otp = call.store.shared().otp;
    const bool live = otp.expires_ms > now && !otp.burned;
    if (live && ct_equal(otp.hash, presented.data(), 32)) {
        Result<IssuedDevice> device =
            issue_device(call.store, call.settings, Role::Owner, PairMethod::Otp, name, call.addr, to_s(now),
                         random_bytes(32), *binding);
        if (!device) return device.error();
        call.store.otp_for_update().expires_ms = 0;  // single use
        limiter.succeeded();
        Response r = json_response(200, json_pack("{s:s}", "token", device->token.c_str()));
        record_event(call, r, paired_event(call.store, *device, Role::Owner, PairMethod::Otp));
        r.durable = true;
        return r;
    }
    call.store.count(Counter::OtpFailures);
    Response r = invalid_code();
    if (limiter.failed(now)) r.audit.push_back(lockout_event("otp"));
    if (live && ++call.store.otp_for_update().failures >= kOtpBurnAfter) {
        call.store.otp_for_update().burned = 1;
        call.store.count(Counter::OtpBurns);
        r.notices.push_back("device pairing: OTP burned after " + std::to_string(kOtpBurnAfter) +
                            " failed attempts; GET /pair/refresh or reload nginx for a new one");
        r.audit.push_back(AuditEvent{"otp_burned", "", "", "otp", "", ""});
    }
    return r;
}

Response pair_refresh(Call& call) {
    const int64_t now = call.req.now_ms;
    Result<std::string> url = base_url(call.settings, call.req);
    if (!url) return url.error();  // before the OTP changes: a bad Host changes nothing
    std::string otp = new_otp(call.store, call.settings, now);
    std::string pairing_url = *url + "/pair#otp=" + otp;
    const QrCode qr(pairing_url);
    Response r = json_response(
        200, json_pack("{s:s, s:s, s:s, s:s}", "otp", otp.c_str(), "expires_at",
                       iso8601(now + call.settings.otp_ttl_ms).c_str(), "pairing_url", pairing_url.c_str(),
                       "qr_svg", qr.svg().c_str()));
    r.banner = otp_banner(call.settings, *url, otp, now, qr);
    return r;
}

}  // namespace dp
