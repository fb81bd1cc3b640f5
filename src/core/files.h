// The operator's files: the operator token file and the device keys file.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/crypto.h"

namespace dp {

struct DeviceKey {
    Digest hash;          // SHA-256 of the key as the client sends it
    std::string account;
};

// Reads the operator token, creating the file (0600, a fresh token) when it
// does not exist. Returns the token's SHA-256, or nullopt with *error set.
std::optional<Digest> load_or_create_token_file(const std::string& path, std::string* error);

// Reads the key that makes low-entropy secrets (OTPs, pairing codes) keyed
// MACs wherever they are stored, creating the file (0600, 256 random bits)
// when it does not exist. Every host of a fleet holds the same file. Returns
// the key, or nullopt with *error set.
std::optional<Digest> load_or_create_secret_key_file(const std::string& path, std::string* error);

// "ACCOUNT SHA256HEX" per line; blank lines and '#' comments are skipped.
// On a bad line returns false and sets *error to "line N: ...".
bool parse_device_keys(const std::string& text, std::vector<DeviceKey>* keys, std::string* error);
bool load_device_keys_file(const std::string& path, std::vector<DeviceKey>* keys, std::string* error);

bool read_file(const std::string& path, std::string* out, std::string* error);

}  // namespace dp
