#include "core/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

namespace dp {

namespace {

std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

bool account_ok(const std::string& a) {
    if (a.empty() || a.size() > 64) return false;
    for (char c : a)
        if (!isalnum((unsigned char)c) && !strchr("._@-", c)) return false;
    return true;
}

}  // namespace

bool read_file(const std::string& path, std::string* out, std::string* error) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *error = strerror(errno);
        return false;
    }
    out->clear();
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) out->append(buf, (size_t)n);
    int saved = errno;
    close(fd);
    if (n < 0) {
        *error = strerror(saved);
        errno = saved;
        return false;
    }
    return true;
}

namespace {

// The secret a file holds (at least 16 characters), made (prefix + 256
// random bits, 0600) when the file does not exist.
std::optional<std::string> load_or_create_secret(const std::string& path, const char* prefix, std::string* error) {
    std::string text;
    if (read_file(path, &text, error)) {
        std::string secret = trim(text);
        if (secret.size() < 16) {
            *error = "the file holds no secret of at least 16 characters";
            return std::nullopt;
        }
        return secret;
    }
    if (errno != ENOENT) return std::nullopt;

    std::string token = random_token(prefix, 32);
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        *error = std::string("cannot create: ") + strerror(errno);
        return std::nullopt;
    }
    std::string line = token + "\n";
    bool ok = write(fd, line.data(), line.size()) == (ssize_t)line.size() && fsync(fd) == 0;
    int saved = errno;
    close(fd);
    if (!ok) {
        unlink(path.c_str());
        *error = std::string("cannot write: ") + strerror(saved);
        return std::nullopt;
    }
    return token;
}

}  // namespace

std::optional<Digest> load_or_create_token_file(const std::string& path, std::string* error) {
    std::optional<std::string> token = load_or_create_secret(path, "dp_op_", error);
    if (!token) return std::nullopt;
    return sha256(*token);
}

std::optional<Digest> load_or_create_secret_key_file(const std::string& path, std::string* error) {
    std::optional<std::string> text = load_or_create_secret(path, "dp_key_", error);
    if (!text) return std::nullopt;
    return sha256_labeled("secret-mac-key", *text);
}

bool parse_device_keys(const std::string& text, std::vector<DeviceKey>* keys, std::string* error) {
    std::istringstream in(text);
    std::string line;
    for (int number = 1; std::getline(in, line); number++) {
        line = trim(line);
        if (line.empty() || line[0] == '#') continue;
        std::istringstream fields(line);
        std::string account, hex, extra;
        fields >> account >> hex;
        auto fail = [&](const char* why) {
            *error = "line " + std::to_string(number) + ": " + why;
            return false;
        };
        if (fields >> extra) return fail("expected \"ACCOUNT SHA256HEX\", found more fields");
        if (!account_ok(account)) return fail("account must be 1-64 of [A-Za-z0-9._@-]");
        auto raw = hex_decode(hex);
        if (!raw || raw->size() != 32) return fail("expected the key's SHA-256 as 64 hex digits");
        DeviceKey key;
        memcpy(key.hash.data(), raw->data(), 32);
        key.account = account;
        keys->push_back(std::move(key));
    }
    return true;
}

bool load_device_keys_file(const std::string& path, std::vector<DeviceKey>* keys, std::string* error) {
    std::string text;
    if (!read_file(path, &text, error)) return false;
    return parse_device_keys(text, keys, error);
}

}  // namespace dp
