// QR codes (libqrencode): terminal rendering with UTF-8 half blocks and a
// standalone SVG.
#pragma once

#include <string>
#include <vector>

namespace dp {

// light-on-dark: blocks are the light modules (dark terminal backgrounds);
// dark-on-light: blocks are the dark modules (light backgrounds).
enum class QrColors { LightOnDark, DarkOnLight };

// One string per terminal row, quiet zone included; two modules per row.
std::vector<std::string> qr_terminal_lines(const std::string& text, QrColors colors = QrColors::LightOnDark);
std::string qr_svg(const std::string& text);

}  // namespace dp
