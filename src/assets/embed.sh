#!/bin/sh
# Embeds the module's assets into a C++ header at build time: each file of
# this directory the module serves or sends (the pairing page's style, script
# and body, the fleet's commit script) as a NUL-terminated char array, and
# the SHA-256 (base64) of the page's style and script for its
# Content-Security-Policy, so what runs is exactly what the files say.
# Usage: embed.sh OUT.h   (needs od and openssl, both in every build here)
set -eu
dir=$(dirname "$0")
out=$1
mkdir -p "$(dirname "$out")"
tmp=$out.tmp.$$
ident() { printf '%s' "$1" | sed 's/[^A-Za-z0-9]/_/g'; }
{
    echo "// Generated from src/assets by src/assets/embed.sh: edit the assets, not this file."
    echo "#pragma once"
    for f in pair.css pair.js pair-body.html commit.lua migrate.lua; do
        echo "inline constexpr unsigned char kAsset_$(ident "$f")[] = {"
        od -An -v -tx1 "$dir/$f" | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'
        echo "0};"
    done
    for f in pair.css pair.js; do
        echo "inline constexpr char kAssetSha256_$(ident "$f")[] = \"$(openssl dgst -sha256 -binary "$dir/$f" | openssl base64 -A)\";"
    done
} > "$tmp"
mv "$tmp" "$out"
