// Redis replies built by hand for the fleet's parsers (dp::ReplyView).
#pragma once

#include <string_view>
#include <vector>

#include "core/fleet.h"

inline dp::ReplyView str(std::string_view text) {
    dp::ReplyView v;
    v.type = dp::ReplyView::String;
    v.text = text;
    return v;
}
inline dp::ReplyView integer(long long n) {
    dp::ReplyView v;
    v.type = dp::ReplyView::Integer;
    v.integer = n;
    return v;
}
inline dp::ReplyView arr(std::vector<dp::ReplyView> elements) {
    dp::ReplyView v;
    v.type = dp::ReplyView::Array;
    v.elements = std::move(elements);
    return v;
}
