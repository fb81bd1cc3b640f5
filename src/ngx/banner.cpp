// The first-pairing OTP's banner (URL, QR, OTP): to the root-only banner
// file and the terminal that starts nginx, never to a log line. Made when a
// configuration starts (init_module), not by the zone: a reload keeps the
// live OTP and only says where its banner is.
#include <unistd.h>

#include "core/otp.h"
#include "core/persist/disk.h"
#include "ngx/banner.h"
#include "ngx/threads.h"

namespace dpngx {

namespace {

std::string banner_pointer(const std::string& path) {
    return "device pairing: a new OTP; print the pairing URL, QR and OTP with: cat " + path;
}

// A worker rewrites the banner file in the thread pool: replacing a file by
// rename makes ext4 write it out at once, which stalled every request on the
// worker for milliseconds. The newest text wins; one write at a time.
class BannerWriter {
   public:
    explicit BannerWriter(ngx_cycle_t* cycle) : pool_(default_thread_pool(cycle)), task_(new_thread_task(cycle, &step_)) {
        step_.work = [this](std::string* error) { return dp::PosixDisk().write_atomically(path_, writing_, error); };
        step_.done = [this](bool ok, const std::string& error) {
            in_flight_ = false;
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0, "%s",
                          ok ? banner_pointer(path_).c_str() : ("device_pairing: the banner file: " + error).c_str());
            if (!next_.empty()) start();
        };
    }
    // False: no thread pool here; the caller writes it itself.
    bool write(const std::string& path, std::string text) {
        if (!pool_ || !task_) return false;
        path_ = path;
        next_ = std::move(text);
        if (!in_flight_) start();
        return true;
    }

   private:
    void start() {
        writing_ = std::move(next_);
        next_.clear();
        in_flight_ = true;
        if (ngx_thread_task_post(pool_, task_) != NGX_OK) step_.done(false, "the thread pool refused the task");
    }

    ngx_thread_pool_t* pool_;
    ThreadStep step_;
    ngx_thread_task_t* task_;
    std::string path_, writing_, next_;
    bool in_flight_ = false;
};

BannerWriter* worker_banner_writer;

}  // namespace

// The banner holds the OTP: it goes to the root-only banner file and to the
// terminal that starts nginx, never to a log line (logs are shipped, kept
// and read by people who must not pair an owner).
void show_banner(ZoneCtx* zone, const std::vector<std::string>& lines, ngx_log_t* log) {
    std::string text;
    for (const std::string& line : lines) text += line + "\n";
    std::string path = to_string(zone->banner_path), error;
    if (!path.empty() && ngx_process == NGX_PROCESS_WORKER) {
        if (!worker_banner_writer) worker_banner_writer = new BannerWriter((ngx_cycle_t*)ngx_cycle);
        if (worker_banner_writer->write(path, std::move(text))) return;  // it logs where to look
    }
    if (!path.empty() && !dp::PosixDisk().write_atomically(path, text, &error)) {
        ngx_log_error(NGX_LOG_WARN, log, 0, "device_pairing: the banner file: %s", error.c_str());
        path.clear();
    }
    std::string pointer = path.empty() ? "" : banner_pointer(path);
    if (!pointer.empty()) ngx_log_error(NGX_LOG_WARN, log, 0, "%s", pointer.c_str());
    // nginx starting (not a reload, not a worker): stderr is still the
    // starter's. A terminal gets the whole banner; anything else (systemd's
    // journal) only where to look, never the OTP.
    if (ngx_process == NGX_PROCESS_SINGLE && !ngx_test_config) {
        const std::string out = isatty(STDERR_FILENO) ? text : pointer.empty() ? "" : pointer + "\n";
        if (!out.empty()) (void)!write(STDERR_FILENO, out.data(), out.size());
    }
}

void show_otp_at_start(ZoneCtx* ctx, ngx_log_t* log) {
    // In fleet mode the OTP is the fleet's: worker 0 makes it, once in step.
    if (ngx_test_config || !ctx->mcf->first_pairing_srv || ctx->fleet) return;
    ZoneStore store(ctx);
    std::vector<std::string> banner = dp::otp_at_start(store, *ctx->mcf->first_pairing_srv->settings, now_ms());
    if (!banner.empty()) {
        show_banner(ctx, banner, log);
        return;
    }
    // A reload keeps the live OTP and its banner file: say where it is.
    if (ctx->banner_path.len)
        ngx_log_error(NGX_LOG_WARN, log, 0, "device pairing: the OTP is live; print the pairing URL, QR and OTP with: cat %V",
                      &ctx->banner_path);
}

}  // namespace dpngx
