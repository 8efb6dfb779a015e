// The dashboard's HTTP server over cpp-httplib; see dashboard_server.hpp for the rules.
#include "dashboard_server.hpp"

#include <arpa/inet.h>
#include <httplib.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "pepita/core/format.hpp"

namespace pepita::cli::dashboard {

Result<Address> parse_address(std::string_view text) {
  const auto bad = [&] {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("dashboard address '{}' is not HOST:PORT (e.g. 127.0.0.1:8265, "
                            "0.0.0.0:8265, [::1]:8265 or :8265)",
                            text));
  };
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad();
  Address a;
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  a.host = host.empty() ? "127.0.0.1" : std::string(host);
  const std::string_view port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5) return bad();
  for (char c : port)
    if (c < '0' || c > '9') return bad();
  a.port = std::stoi(std::string(port));
  if (a.port > 65535) return bad();
  if (a.host.find(':') != std::string::npos && text.front() != '[') return bad();
  return a;
}

bool is_loopback(std::string_view host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr v4{};
  const std::string h(host);
  if (::inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  return false;
}

namespace {

bool same(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

Result<std::string> random_token() {
  unsigned char bytes[16];
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes))
    return fail(ErrorCode::Io, "cannot read random bytes for the dashboard token (getrandom)");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char b : bytes) {
    hex += kHex[b >> 4];
    hex += kHex[b & 15];
  }
  return hex;
}

std::string cookie_value(const std::string& cookies, std::string_view name) {
  std::size_t pos = 0;
  while (pos < cookies.size()) {
    while (pos < cookies.size() && (cookies[pos] == ' ' || cookies[pos] == ';')) ++pos;
    const auto end = cookies.find(';', pos);
    const std::string_view pair = std::string_view(cookies).substr(
        pos, end == std::string::npos ? std::string::npos : end - pos);
    if (pair.starts_with(name) && pair.size() > name.size() && pair[name.size()] == '=')
      return std::string(pair.substr(name.size() + 1));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return {};
}

RequestToken tokens_of(const httplib::Request& req) {
  RequestToken t;
  t.header = req.get_header_value("X-Pepita-Token");
  const std::string auth = req.get_header_value("Authorization");
  if (t.header.empty() && auth.starts_with("Bearer ")) t.header = auth.substr(7);
  t.query = req.get_param_value("token");
  t.cookie = cookie_value(req.get_header_value("Cookie"), "pepita_token");
  return t;
}

}  // namespace

bool authorized(const std::string& token, const RequestToken& given, bool needs_header) {
  if (token.empty()) return !needs_header;
  if (needs_header) return same(token, given.header);
  return same(token, given.header) || same(token, given.query) || same(token, given.cookie);
}

struct Server::Impl {
  httplib::Server http;
  ServerSources sources;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::atomic<bool> listen_returned{false};
  std::jthread listener;  // declared last: joined first, while `http` still exists
};

Result<std::unique_ptr<Server>> Server::start(ServerOptions options, ServerSources sources) {
  auto address = PEPITA_TRY(parse_address(options.address));
  if (sources.model == nullptr && !sources.metrics)
    return fail(ErrorCode::InvalidArgument, "dashboard server without a model or metrics");
  if (!sources.metrics) sources.metrics = [m = sources.model] { return m->metrics(); };
  std::unique_ptr<Server> server(new Server());
  if (options.token.empty() && (!is_loopback(address.host) || options.control)) {
    options.token = PEPITA_TRY(random_token());
    server->generated_ = true;
  }
  server->options_ = options;
  server->impl_ = std::make_unique<Impl>();
  Impl& impl = *server->impl_;
  impl.sources = std::move(sources);
  const std::string token = options.token;
  const bool control = options.control;
  const auto batch = options.batch;

  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which would let a second server
  // (another user's process, too) bind the same port and take half the connections.
  impl.http.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  impl.http.set_pre_routing_handler([token](const httplib::Request& req, httplib::Response& res) {
    const RequestToken given = tokens_of(req);
    if (!authorized(token, given, false)) {
      res.status = 401;
      res.set_content(
          "pepita dashboard: this dashboard needs its token: open the URL pepita printed "
          "(?token=...) or send the header X-Pepita-Token\n",
          "text/plain");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!token.empty() && !given.query.empty())  // hand the token over to a cookie
      res.set_header("Set-Cookie",
                     pepita::fmt("pepita_token={}; Path=/; SameSite=Strict", given.query));
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Cache-Control", "no-store");
    return httplib::Server::HandlerResponse::Unhandled;
  });
  impl.http.Get("/metrics", [&impl](const httplib::Request&, httplib::Response& res) {
    if (impl.sources.refresh) impl.sources.refresh();
    res.set_content(impl.sources.metrics(), "text/plain; version=0.0.4; charset=utf-8");
  });
  if (impl.sources.model != nullptr) {
    RunModel* model = impl.sources.model;
    impl.http.Get("/", [control](const httplib::Request&, httplib::Response& res) {
      std::string page = render_page(nullptr);
      if (control) {
        const auto at = page.find("<body");
        if (at != std::string::npos) page.insert(at + 5, " data-control=\"1\"");
      }
      res.set_header("Content-Security-Policy",
                     "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                     "img-src data:");
      res.set_content(page, "text/html; charset=utf-8");
    });
    impl.http.Get("/api/snapshot", [&impl, model](const httplib::Request&, httplib::Response& res) {
      if (impl.sources.refresh) impl.sources.refresh();
      res.set_content(model->snapshot().dump(), "application/json");
    });
    impl.http.Get("/events",
                  [&impl, model, batch](const httplib::Request&, httplib::Response& res) {
                    if (impl.sources.refresh) impl.sources.refresh();
                    auto sent = std::make_shared<std::uint64_t>(0);
                    auto first = std::make_shared<bool>(true);
                    res.set_header("X-Accel-Buffering", "no");
                    res.set_chunked_content_provider(
                        "text/event-stream",
                        [&impl, model, batch, sent, first](std::size_t, httplib::DataSink& sink) {
                          std::string frame;
                          if (*first) {
                            *first = false;
                            const auto snap = model->snapshot();
                            *sent = snap["version"].get<std::uint64_t>();
                            frame = "event: snapshot\ndata: " + snap.dump() + "\n\n";
                          } else {
                            {
                              std::unique_lock lock(impl.mu);
                              impl.cv.wait_for(lock, batch, [&] { return impl.stopping; });
                              if (impl.stopping) return false;
                            }
                            if (impl.sources.refresh) impl.sources.refresh();
                            const auto delta = model->delta_since(*sent);
                            *sent = delta["version"].get<std::uint64_t>();
                            frame = "event: delta\ndata: " + delta.dump() + "\n\n";
                          }
                          if (!sink.write(frame.data(), frame.size())) return false;
                          return true;
                        });
                  });
    impl.http.Post(R"(/api/tasks/(\d+)/cancel)",
                   [&impl, control, token](const httplib::Request& req, httplib::Response& res) {
                     if (!control) {
                       res.status = 403;
                       res.set_content(
                           "read-only dashboard: start the run with "
                           "--dashboard-control to cancel tasks from the page\n",
                           "text/plain");
                       return;
                     }
                     if (!authorized(token, tokens_of(req), true)) {
                       res.status = 401;
                       res.set_content("cancel needs the X-Pepita-Token header\n", "text/plain");
                       return;
                     }
                     const auto id = std::stoull(req.matches[1].str());
                     const bool ok = impl.sources.cancel && impl.sources.cancel(id);
                     res.status = ok ? 200 : 404;
                     res.set_content(ok ? "cancelled\n" : "no such unfinished task\n",
                                     "text/plain");
                   });
  }
  int port = address.port;
  if (port == 0) {
    port = impl.http.bind_to_any_port(address.host);
    if (port < 0) port = 0;
  } else if (!impl.http.bind_to_port(address.host, port)) {
    port = 0;
  }
  if (port == 0) {
    return fail(ErrorCode::Io, pepita::fmt("cannot listen on {}: is the port in use, or the "
                                           "address not one of this host's? (pick another with "
                                           "--dashboard HOST:PORT)",
                                           options.address));
  }
  server->port_ = port;
  impl.listener = std::jthread([&impl] {
    impl.http.listen_after_bind();
    impl.listen_returned = true;
  });
  // httplib 0.11's stop() does nothing until the listener has entered its accept loop
  // (is_running()): a server stopped right after it started would leave that thread blocked in
  // accept and its join hanging. Return only once stop() can reach it.
  while (!impl.http.is_running() && !impl.listen_returned) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return server;
}

std::string Server::url() const {
  auto address = parse_address(options_.address);
  std::string host = address ? address->host : "127.0.0.1";
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  std::string out = pepita::fmt("http://{}:{}/", host, port_);
  if (!options_.token.empty()) out.append("?token=").append(options_.token);
  return out;
}

void Server::notify() {
  if (impl_) impl_->cv.notify_all();
}

void Server::stop() {
  if (!impl_) return;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  impl_->http.stop();
  if (impl_->listener.joinable()) impl_->listener.join();
}

Server::~Server() { stop(); }

}  // namespace pepita::cli::dashboard
