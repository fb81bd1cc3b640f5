#include "core/qr.h"

#include <qrencode.h>

#include <memory>
#include <stdexcept>

namespace dp {

namespace {

constexpr int kQuiet = 4;  // modules of quiet zone required by ISO/IEC 18004

struct QrDeleter {
    void operator()(QRcode* q) const { QRcode_free(q); }
};

std::unique_ptr<QRcode, QrDeleter> encode(const std::string& text) {
    std::unique_ptr<QRcode, QrDeleter> q(QRcode_encodeString8bit(text.c_str(), 0, QR_ECLEVEL_M));
    if (!q) throw std::runtime_error("QR encoding failed");
    return q;
}

}  // namespace

std::vector<std::string> qr_terminal_lines(const std::string& text, QrColors colors) {
    auto q = encode(text);
    const int n = q->width, size = n + 2 * kQuiet;
    auto dark = [&](int x, int y) {
        x -= kQuiet;
        y -= kQuiet;
        return x >= 0 && y >= 0 && x < n && y < n && (q->data[y * n + x] & 1);
    };
    // A glyph is the terminal's text colour: on a dark terminal it draws the
    // light modules, on a light terminal the dark ones.
    const bool glyph_is_dark = colors == QrColors::DarkOnLight;
    auto glyph = [&](int x, int y) { return y < size && dark(x, y) == glyph_is_dark; };
    std::vector<std::string> lines;
    for (int y = 0; y < size; y += 2) {
        std::string line;
        for (int x = 0; x < size; x++) {
            bool top = glyph(x, y), bottom = glyph(x, y + 1);
            line += top && bottom ? "\u2588" : top ? "\u2580" : bottom ? "\u2584" : " ";
        }
        lines.push_back(line);
    }
    return lines;
}

std::string qr_svg(const std::string& text) {
    auto q = encode(text);
    const int n = q->width, size = n + 2 * kQuiet;
    std::string path;
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++)
            if (q->data[y * n + x] & 1)
                path += "M" + std::to_string(x + kQuiet) + " " + std::to_string(y + kQuiet) + "h1v1h-1z";
    std::string s = std::to_string(size);
    return "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " + s + " " + s +
           "\" width=\"" + std::to_string(size * 8) + "\" height=\"" + std::to_string(size * 8) +
           "\" shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" "
           "fill=\"#fff\"/><path fill=\"#000\" d=\"" + path + "\"/></svg>";
}

}  // namespace dp
