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

}  // namespace

QrCode::QrCode(const std::string& text) {
    std::unique_ptr<QRcode, QrDeleter> q(QRcode_encodeString8bit(text.c_str(), 0, QR_ECLEVEL_M));
    if (!q) throw std::runtime_error("QR encoding failed");
    width_ = q->width;
    modules_.assign(q->data, q->data + (size_t)width_ * width_);
}

bool QrCode::dark(int x, int y) const {
    x -= kQuiet;
    y -= kQuiet;
    return x >= 0 && y >= 0 && x < width_ && y < width_ && (modules_[(size_t)y * width_ + x] & 1);
}

std::vector<std::string> QrCode::terminal_lines(QrColors colors) const {
    const int size = width_ + 2 * kQuiet;
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

std::string QrCode::svg() const {
    const int size = width_ + 2 * kQuiet;
    std::string path;
    for (int y = kQuiet; y < size - kQuiet; y++) {
        for (int x = kQuiet; x < size - kQuiet;) {
            if (!dark(x, y)) {
                x++;
                continue;
            }
            int run = 1;
            while (dark(x + run, y)) run++;
            const std::string r = std::to_string(run);
            path += "M" + std::to_string(x) + " " + std::to_string(y) + "h" + r + "v1h-" + r + "z";
            x += run;
        }
    }
    std::string s = std::to_string(size);
    return "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " + s + " " + s +
           "\" width=\"" + std::to_string(size * 8) + "\" height=\"" + std::to_string(size * 8) +
           "\" shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" "
           "fill=\"#fff\"/><path fill=\"#000\" d=\"" + path + "\"/></svg>";
}

}  // namespace dp
