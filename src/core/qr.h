// QR codes (libqrencode): terminal rendering with UTF-8 half blocks and a
// standalone SVG.
#pragma once

#include <string>
#include <vector>

namespace dp {

// One string per terminal row, quiet zone included; two modules per row.
std::vector<std::string> qr_terminal_lines(const std::string& text);
std::string qr_svg(const std::string& text);

}  // namespace dp
