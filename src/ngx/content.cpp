// The pairing API's content handler (`device_pairing on;` locations): match
// the route, let the core decide what the request line and headers already
// decide, read the body asynchronously, run the route, send the answer.
#include <new>

#include "core/identity.h"
#include "core/mailbox.h"

#include "ngx/access.h"
#include "ngx/banner.h"
#include "ngx/console.h"
#include "ngx/content.h"
#include "ngx/durable.h"
#include "ngx/identity.h"
#include "ngx/threads.h"
#include "ngx/pairing_log.h"
#include "ngx/zone.h"

namespace dpngx {

namespace {

void destroy_ctx(void* data) {
    auto* ctx = static_cast<RequestCtx*>(data);
    if (ctx->poll_timer.timer_set) ngx_del_timer(&ctx->poll_timer);
    if (ctx->durable && ctx->durable->waiting) forget_held(ctx->owner, zone_of(ctx->owner));
    ctx->~RequestCtx();
}

// The request body as one string, from memory buffers and temp files alike.
bool collect_body(ngx_http_request_t* r, std::string* out, size_t limit, bool* too_large) {
    *too_large = false;
    if (!r->request_body) return true;
    for (ngx_chain_t* cl = r->request_body->bufs; cl; cl = cl->next) {
        ngx_buf_t* b = cl->buf;
        if (b->in_file) {
            size_t size = (size_t)(b->file_last - b->file_pos);
            if (out->size() + size > limit) return *too_large = true, false;
            size_t old = out->size();
            out->resize(old + size);
            ssize_t n = ngx_read_file(b->file, reinterpret_cast<u_char*>(&(*out)[old]), size, b->file_pos);
            if (n != (ssize_t)size) return false;
        } else {
            size_t size = (size_t)(b->last - b->pos);
            if (out->size() + size > limit) return *too_large = true, false;
            out->append(reinterpret_cast<char*>(b->pos), size);
        }
    }
    return true;
}

// What the core sees of the request line and headers.
ngx_int_t internal_error(ngx_http_request_t* r) {
    try {
        return send_response(r, dp::internal_error());
    } catch (...) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}

void body_ready(ngx_http_request_t* r) noexcept {
    ngx_int_t rc;
    try {
        auto* ctx = static_cast<RequestCtx*>(ngx_http_get_module_ctx(r, ngx_http_device_pairing_module));
        const size_t limit = srv_conf(r)->settings->max_body;
        std::string body;
        bool too_large;
        if (!collect_body(r, &body, limit, &too_large)) {
            rc = too_large ? send_response(r, dp::body_too_large(limit)) : NGX_HTTP_INTERNAL_SERVER_ERROR;
        } else {
            rc = run_route(r, ctx, std::move(body));
            // Held (a long poll, a durable answer): the hold took its own
            // reference; this one, the body reading's, is given back.
        }
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0, "device_pairing: %s", e.what());
        rc = internal_error(r);
    } catch (...) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ngx_http_finalize_request(r, rc);
}

ngx_int_t add_header(ngx_http_request_t* r, const std::string& name, const std::string& value) {
    ngx_table_elt_t* h = static_cast<ngx_table_elt_t*>(ngx_list_push(&r->headers_out.headers));
    if (!h) return NGX_ERROR;
    h->hash = 1;
    h->key.len = name.size();
    h->key.data = static_cast<u_char*>(ngx_pnalloc(r->pool, name.size() + value.size()));
    if (!h->key.data) return NGX_ERROR;
    ngx_memcpy(h->key.data, name.data(), name.size());
    h->value.len = value.size();
    h->value.data = h->key.data + name.size();
    ngx_memcpy(h->value.data, value.data(), value.size());
#if defined(nginx_version) && nginx_version >= 1023000
    h->next = nullptr;
#endif
    return NGX_OK;
}

}  // namespace

int64_t now_ms() {
    ngx_time_t* tp = ngx_timeofday();
    return (int64_t)tp->sec * 1000 + (int64_t)tp->msec;
}

dp::ClientAddr client_addr(ngx_http_request_t* r) {
    dp::ClientAddr a;
    struct sockaddr* sa = r->connection->sockaddr;
    if (sa->sa_family == AF_INET) {
        a.len = 4;
        ngx_memcpy(a.bytes, &reinterpret_cast<struct sockaddr_in*>(sa)->sin_addr, 4);
    }
#if (NGX_HAVE_INET6)
    else if (sa->sa_family == AF_INET6) {
        a.len = 16;
        ngx_memcpy(a.bytes, &reinterpret_cast<struct sockaddr_in6*>(sa)->sin6_addr, 16);
    }
#endif
    return a;
}

dp::Request build_request(ngx_http_request_t* r) {
    dp::Request req;
    req.method = to_string(r->method_name);
    req.path = to_string(r->uri);
    req.query = to_string(r->args);
    if (r->headers_in.authorization) req.authorization = to_string(r->headers_in.authorization->value);
    req.device_key = header_value(r, "x-device-key");
    if (r->headers_in.user_agent) req.user_agent = to_string(r->headers_in.user_agent->value);
    if (r->headers_in.host) req.host = to_string(r->headers_in.host->value);
    if (r->headers_in.content_type) req.content_type = to_string(r->headers_in.content_type->value);
    req.content_length = r->headers_in.content_length_n;
#if (NGX_HTTP_SSL)
    if (r->connection->ssl) req.scheme = "https";
#endif
    req.now_ms = now_ms();
    // DPoP (RFC 9449): every proof header (two is a refusal, so all are
    // kept), the location's mode, and this host's name for its nonces.
    find_in_list<ngx_table_elt_t>(&r->headers_in.headers, [&](ngx_table_elt_t& e) {
        if (e.key.len == 4 && ngx_strncasecmp(e.key.data, (u_char*)"dpop", 4) == 0) req.dpop.push_back(to_string(e.value));
        return false;
    });
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_device_pairing_module));
    req.dpop_mode = (dp::DpopMode)lcf->dpop;
    if (ZoneCtx* zone = zone_of(r)) req.host_id = zone_id(zone);
    return req;
}

std::string header_value(ngx_http_request_t* r, const char* lowercase_name) {
    size_t len = ngx_strlen(lowercase_name);
    ngx_table_elt_t* h = find_in_list<ngx_table_elt_t>(&r->headers_in.headers, [&](ngx_table_elt_t& e) {
        return e.key.len == len && ngx_strncasecmp(e.key.data, (u_char*)lowercase_name, len) == 0;
    });
    return h ? to_string(h->value) : std::string();
}

SrvConf* srv_conf(ngx_http_request_t* r) {
    return static_cast<SrvConf*>(ngx_http_get_module_srv_conf(r, ngx_http_device_pairing_module));
}

RequestCtx* find_ctx(ngx_http_request_t* r) {
    auto* ctx = static_cast<RequestCtx*>(ngx_http_get_module_ctx(r, ngx_http_device_pairing_module));
    if (ctx) return ctx;
    // An internal redirect zeroed the module contexts; the pool still holds ours.
    for (ngx_pool_cleanup_t* cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler != destroy_ctx || static_cast<RequestCtx*>(cln->data)->owner != r) continue;
        ctx = static_cast<RequestCtx*>(cln->data);
        ngx_http_set_ctx(r, ctx, ngx_http_device_pairing_module);
        return ctx;
    }
    return nullptr;
}

RequestCtx* request_ctx(ngx_http_request_t* r) {
    if (RequestCtx* ctx = find_ctx(r)) return ctx;
    ngx_pool_cleanup_t* cln = ngx_pool_cleanup_add(r->pool, sizeof(RequestCtx));
    if (!cln) return nullptr;
    auto* ctx = new (cln->data) RequestCtx();
    ctx->owner = r;
    cln->handler = destroy_ctx;
    ngx_http_set_ctx(r, ctx, ngx_http_device_pairing_module);
    return ctx;
}

namespace {

constexpr int kMaxRuns = 4;  // runs of a route that keeps meeting newer state (fleet conflicts)

// The writer settled a held request: its held answer when the changes are
// durable, else what the outcome calls for. Releases the reference the
// writer's wait() took.
void answer_settled(ngx_http_request_t* r, const WriteResult& result) {
    ngx_connection_t* c = r->connection;
    RequestCtx* ctx = find_ctx(r);
    ngx_int_t rc = NGX_ERROR;
    try {
        switch (result.kind) {
            case WriteResult::Durable:
                write_audit(r, ctx->durable->held.audit);
                rc = send_response(r, ctx->durable->held);
                break;
            case WriteResult::AccountFull:
                rc = send_response(r, dp::too_many_pairings(srv_conf(r)->settings->max_pairings_per_account));
                break;
            case WriteResult::Conflict:
                // The replica holds the newer records now: the route decides again on them.
                rc = ctx->attempts < kMaxRuns
                         ? run_route(r, ctx, ctx->body)
                         : send_response(r, dp::unavailable("the records kept changing on other hosts; try again"));
                break;
            case WriteResult::Failed: rc = send_response(r, dp::unavailable(result.reason)); break;
        }
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0, "device_pairing: %s", e.what());
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}

// A rotation of the gateway identity: the new key is kept (PATH.identity,
// the zone) in a thread, then its leaf is logged and the answer held until
// that is durable too.
struct RotationJob {
    ThreadStep step;
    dp::Response resp;
};

ngx_int_t rotate_identity(ngx_http_request_t* r, RequestCtx* ctx, dp::Response&& resp) {
    ZoneCtx* zone = zone_of(r);
    auto job = std::make_shared<RotationJob>();
    job->resp = std::move(resp);
    ctx->pending_read = job;
    RotationJob* j = job.get();
    j->step.work = [zone, j](std::string* error) { return keep_rotated_identity(zone, *j->resp.rotation, error); };
    j->step.done = [r, ctx, zone, j](bool ok, const std::string& error) {
        ngx_connection_t* c = r->connection;
        ngx_int_t rc = NGX_ERROR;
        try {
            if (!ok) {
                ngx_log_error(NGX_LOG_ERR, c->log, 0, "device_pairing: identity rotation: %s", error.c_str());
                rc = send_response(r, dp::problem(error == kAnotherRotationFirst ? 409 : 503,
                                                  "rotation_failed", "Identity not rotated", error + "; nothing changed"));
            } else {
                refresh_identity(zone, srv_conf(r)->settings);
                ZoneStore store(zone);
                {
                    CollectingChanges collecting(zone, ctx);
                    dp::log_identity_rotation(store, *j->resp.rotation, now_ms());
                }
                if (hold_until_durable(r, zone, ctx, std::move(j->resp), answer_settled)) {
                    ngx_http_finalize_request(r, NGX_DONE);  // the hold took its own reference
                    ngx_http_run_posted_requests(c);
                    return;
                }
                write_audit(r, j->resp.audit);
                rc = send_response(r, j->resp);
            }
        } catch (const std::exception& e) {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0, "device_pairing: %s", e.what());
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    };
    if (post_request_step(r, &j->step)) return NGX_DONE;
    return send_response(r, dp::unavailable("the identity could not be rotated"));
}

}  // namespace

ngx_int_t run_route(ngx_http_request_t* r, RequestCtx* ctx, std::string body) {
    ZoneCtx* zone = zone_of(r);
    dp::Request req = build_request(r);
    req.body = std::move(body);
    // A resize retired this worker's zone: a change made in it now would be
    // lost, and a poll would watch a zone nobody writes. The client retries
    // and reaches a new worker (the gate still reads the retired zone).
    if (zone_retired(zone))
        return send_response(r, dp::unavailable("the pairing state moved to a resized zone; try again"));
    if (zone && zone->fleet) ctx->body = req.body;  // run again after a fleet conflict
    ctx->attempts++;
    ctx->poll_changes_seen = zone_changes(zone);  // read first: a change after it wakes a parked poll
    ZoneStore store(zone);
    refresh_identity(zone, srv_conf(r)->settings);
    dp::Response resp = [&] {
        CollectingChanges collecting(zone, ctx);
        return dp::api_handle(store, *srv_conf(r)->settings, ctx->route, req, client_addr(r));
    }();
    if (resp.rotation) return rotate_identity(r, ctx, std::move(resp));
    // The writer could not take a transaction (an allocation failed): the
    // store undid it, so the answer built on it is not sent.
    if (store.take_commit_failure()) resp = dp::unavailable("the change could not be recorded and was undone; try again");
    for (const std::string& line : resp.notices)
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0, "%s", line.c_str());
    if (!resp.banner.empty()) show_banner(zone, resp.banner, r->connection->log);
    if (hold_until_durable(r, zone, ctx, std::move(resp), answer_settled)) return NGX_DONE;
    write_audit(r, resp.audit);
    if (resp.log_end) return answer_log_entries(r, ctx, resp.log_first, resp.log_end);

    if (resp.poll_until_ms) {
        // The deadline runs on nginx's monotonic clock: a step of the wall
        // clock neither stretches nor cuts a parked poll.
        if (!ctx->polling) ctx->poll_deadline = ngx_current_msec + (ngx_msec_t)(resp.poll_until_ms - req.now_ms);
        if ((ngx_msec_int_t)(ctx->poll_deadline - ngx_current_msec) > 0) return park_poll(r, ctx);
    }
    return send_response(r, resp);
}

ngx_int_t send_response(ngx_http_request_t* r, const dp::Response& resp) {
    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0, "device_pairing route %V %V: answered %i",
                   &r->method_name, &r->uri, (ngx_int_t)resp.status);
    r->headers_out.status = (ngx_uint_t)resp.status;
    if (add_header(r, "Cache-Control", "no-store") != NGX_OK) return NGX_ERROR;
    for (const auto& h : resp.headers)
        if (add_header(r, h.first, h.second) != NGX_OK) return NGX_ERROR;
    if (!resp.content_type.empty()) {
        r->headers_out.content_type.len = resp.content_type.size();
        r->headers_out.content_type.data = static_cast<u_char*>(ngx_pnalloc(r->pool, resp.content_type.size()));
        if (!r->headers_out.content_type.data) return NGX_ERROR;
        ngx_memcpy(r->headers_out.content_type.data, resp.content_type.data(), resp.content_type.size());
        // The media type without its parameters, as gzip_types and charset match it.
        r->headers_out.content_type_len = resp.content_type.find(';') == std::string::npos
                                              ? resp.content_type.size()
                                              : resp.content_type.find(';');
        r->headers_out.content_type_lowcase = nullptr;
    }
    r->headers_out.content_length_n = (off_t)resp.body.size();
    if (resp.body.empty()) r->header_only = 1;

    ngx_int_t rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) return rc;

    ngx_buf_t* b = ngx_create_temp_buf(r->pool, resp.body.size());
    if (!b) return NGX_ERROR;
    b->last = ngx_cpymem(b->pos, resp.body.data(), resp.body.size());
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    ngx_chain_t out = {b, nullptr};
    return ngx_http_output_filter(r, &out);
}

ngx_int_t answer_now(ngx_http_request_t* r, const dp::Response& resp) {
    if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    ngx_http_finalize_request(r, send_response(r, resp));
    return NGX_DONE;
}

ngx_int_t content_handler(ngx_http_request_t* r) noexcept {
    auto* lcf = static_cast<LocConf*>(ngx_http_get_module_loc_conf(r, ngx_http_device_pairing_module));
    if (lcf->check != kAuthOff) return check_handler(r);
    if (lcf->metrics) return metrics_handler(r);
    if (!lcf->enable) return NGX_DECLINED;
    // The route runs once: a write event on the connection while the body is
    // read or the answer is held (it fired after a proxied request on the
    // same keep-alive connection) must not run the phases, and the route,
    // again. A durable pairing was answered 401 by its own second run.
    r->write_event_handler = ngx_http_request_empty_handler;
    try {
        RequestCtx* ctx = request_ctx(r);
        if (!ctx) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        ctx->route = dp::api_route(to_string(r->method_name), to_string(r->uri));
        if (auto early = dp::api_precheck(ctx->route, build_request(r), *srv_conf(r)->settings)) {
            if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
            return send_response(r, *early);
        }
        if (ctx->route.spec->has_body) {
            ngx_int_t rc = ngx_http_read_client_request_body(r, body_ready);
            if (rc >= NGX_HTTP_SPECIAL_RESPONSE) return rc;
            return NGX_DONE;
        }
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        return run_route(r, ctx, std::string());
    } catch (const std::exception& e) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0, "device_pairing: %s", e.what());
    } catch (...) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0, "device_pairing: unknown exception");
    }
    return internal_error(r);
}

}  // namespace dpngx
