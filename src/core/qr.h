// QR codes (libqrencode): terminal rendering with UTF-8 half blocks and a
// standalone SVG.
#pragma once

#include <string>
#include <vector>

namespace dp {

// light-on-dark: blocks are the light modules (dark terminal backgrounds);
// dark-on-light: blocks are the dark modules (light backgrounds).
enum class QrColors { LightOnDark, DarkOnLight };

// One encoding of a text, rendered as often as needed (encoding is most of
// the cost: /pair/refresh shows the same URL in the terminal and as SVG).
class QrCode {
   public:
    explicit QrCode(const std::string& text);
    // One string per terminal row, quiet zone included; two modules per row.
    std::vector<std::string> terminal_lines(QrColors colors = QrColors::LightOnDark) const;
    // A standalone SVG: one path, a subpath per horizontal run of dark modules.
    std::string svg() const;

   private:
    bool dark(int x, int y) const;  // with the quiet zone: (0,0) is its corner
    int width_;                     // modules, without the quiet zone
    std::vector<unsigned char> modules_;
};

}  // namespace dp
