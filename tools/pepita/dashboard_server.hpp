#pragma once
// The dashboard's HTTP server (cpp-httplib): the live page at /, its Server-Sent Events stream
// at /events (a full snapshot on connect, then batched deltas at most every 250 ms), the
// snapshot at /api/snapshot, /metrics in Prometheus text format, and — only with `control` —
// POST /api/tasks/<id>/cancel. Security rules: loopback by default; any other address, and
// control, need a token (one is generated when none is given); with a token every request must
// carry it (header `X-Pepita-Token` or `Authorization: Bearer`, the `pepita_token` cookie, or
// `?token=` which also sets the cookie); a cancel needs the header, so a page from another
// origin cannot forge one.
//
//   auto server = Server::start({.address = "127.0.0.1:0"}, {.model = &model}).value();
//   std::printf("%s\n", server->url().c_str());  // http://127.0.0.1:40123/

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "dashboard_model.hpp"
#include "pepita/error.hpp"

namespace pepita::cli::dashboard {

struct ServerOptions {
  std::string address = "127.0.0.1:8265";  // host:port; port 0 picks a free one
  std::string token{};                     // empty: none on loopback, else generated
  bool control = false;                    // allow cancelling tasks (needs a token)
  std::chrono::milliseconds batch{250};    // the SSE stream's batching interval
};

/// What the server shows. Either `model` (the dashboard) or only `metrics` (a worker's
/// --metrics) must be set.
struct ServerSources {
  RunModel* model = nullptr;                       // first, so {.metrics = f, ...} names the rest
  std::function<std::string()> metrics{};          // default: model->metrics()
  std::function<bool(std::uint64_t id)> cancel{};  // with control: cancels through the pool
  std::function<void()> refresh{};                 // before each batch: poll worker loads
};

struct Address {
  std::string host;
  int port = 0;
};
/// Parses "host:port", "[v6]:port" or ":port" (loopback). InvalidArgument saying the form.
Result<Address> parse_address(std::string_view text);
/// 127.0.0.0/8, ::1 and "localhost".
bool is_loopback(std::string_view host);
/// The token a request carries (header, bearer, query or cookie), or "".
struct RequestToken {
  std::string header{};  // X-Pepita-Token or Authorization: Bearer
  std::string query{};   // ?token=
  std::string cookie{};  // pepita_token=
};
/// Whether a request with these tokens may proceed when the server's token is `token` (""
/// allows all); `needs_header` for state-changing requests. Constant-time comparison.
bool authorized(const std::string& token, const RequestToken& given, bool needs_header);

class Server {
 public:
  /// Binds and starts serving on a thread of its own. Errors: InvalidArgument for a bad address
  /// or a model-less server without metrics; Io when the address cannot be bound (in use?).
  static Result<std::unique_ptr<Server>> start(ServerOptions options, ServerSources sources);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// http://host:port/ — with ?token=... when a token is set.
  std::string url() const;
  int port() const noexcept { return port_; }
  const std::string& token() const noexcept { return options_.token; }
  /// True when the token was generated here (then print it once).
  bool token_generated() const noexcept { return generated_; }
  /// Wakes the event streams now (e.g. at the end of the run) instead of at the next batch.
  void notify();
  /// Stops accepting and ends every stream; idempotent.
  void stop();

  struct Impl;

 private:
  Server() = default;
  ServerOptions options_;
  bool generated_ = false;
  int port_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pepita::cli::dashboard
