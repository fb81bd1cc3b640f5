// GET /pair: the browser page. Self-contained (no external assets), under a
// strict Content-Security-Policy that allows only this page's own script and
// style (by hash) and fetches to this origin. Before pairing: the 6-digit
// entry, automatic pairing from the QR URL (/pair#otp=NNNNNN; a fragment
// never reaches the server's access log), or asking an owner with a pairing
// code. After pairing as an owner: the devices (rename, revoke), pairing
// requests (approve or reject after seeing who asks and from where), and a
// fresh OTP for the next device.
#include "core/otp.h"
#include "dp_assets.h"  // build/gen: src/assets embedded

namespace dp {

namespace {

// The page's parts, from src/assets (embedded at build time).
const char* const kStyle = reinterpret_cast<const char*>(kAsset_pair_css);
const char* const kScript = reinterpret_cast<const char*>(kAsset_pair_js);
const char* const kBody = reinterpret_cast<const char*>(kAsset_pair_body_html);

// A CSP source for an inline element: its hash, computed when the module
// was built from the very file that is inlined.
std::string csp_hash(const char* sha256_base64) { return std::string("'sha256-") + sha256_base64 + "'"; }

}  // namespace

const std::string& pair_page_html() {
    static const std::string html = std::string(R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Pair this device</title>
<style>)HTML") + kStyle + "</style>\n</head>\n<body>" + kBody + "<script>" + kScript +
                                    "</script>\n</body>\n</html>\n";
    return html;
}

const std::string& pair_page_csp() {
    static const std::string csp = "default-src 'none'; script-src " + csp_hash(kAssetSha256_pair_js) +
                                   "; style-src " + csp_hash(kAssetSha256_pair_css) +
                                   "; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                                   "frame-ancestors 'none'";
    return csp;
}

}  // namespace dp
