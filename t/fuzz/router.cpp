// The route table and the checks made before a body is read.
#include "core/api.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto f = dpfuzz::fields(data, size, 3);  // method, path, content type
    dp::RouteMatch m = dp::api_route(f[0], f[1]);
    if (m.outcome == dp::RouteMatch::Found && (!m.spec || !m.spec->handler)) abort();
    dp::Request head;
    head.method = f[0];
    head.path = f[1];
    head.content_type = f[2];
    head.content_length = (int64_t)size * 100;
    dp::Settings settings;
    auto early = dp::api_precheck(m, head, settings);
    if (m.outcome != dp::RouteMatch::Found && !early) abort();
    return 0;
}
