// The dashboard server's rules, checked with cpp-httplib's client: loopback without a token;
// a non-loopback address gets a generated token that every request needs (header, bearer,
// ?token= with its cookie handoff, cookie); read-only unless control, and a cancel needs the
// header; /events sends a snapshot first, then deltas; bad addresses are refused.
#include "dashboard_server.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <string>

#include "pepita/error.hpp"
#include "pepita/executor/result.hpp"

namespace pepita::cli::dashboard {
namespace {

httplib::Client client(const Server& s) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(30, 0);
  c.set_connection_timeout(30, 0);
  return c;
}

TEST(DashboardAddress, ParsesHostPortAndRefusesTheRest) {
  auto a = parse_address("127.0.0.1:8265");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8265);
  EXPECT_EQ(parse_address(":9000")->host, "127.0.0.1");
  EXPECT_EQ(parse_address("[::1]:9000")->host, "::1");
  for (const char* bad : {"", "8265", "host:", "host:port", "host:70000", "::1:80", "h:-1"}) {
    auto r = parse_address(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(r.error().message().find("HOST:PORT"), std::string::npos);
  }
}

TEST(DashboardAddress, LoopbackIs127Slash8AndV6AndLocalhost) {
  EXPECT_TRUE(is_loopback("127.0.0.1"));
  EXPECT_TRUE(is_loopback("127.8.9.10"));
  EXPECT_TRUE(is_loopback("::1"));
  EXPECT_TRUE(is_loopback("localhost"));
  EXPECT_FALSE(is_loopback("0.0.0.0"));
  EXPECT_FALSE(is_loopback("10.0.0.1"));
  EXPECT_FALSE(is_loopback("::"));
}

TEST(DashboardAuth, TheRuleItself) {
  EXPECT_TRUE(authorized("", {}, false));
  EXPECT_FALSE(authorized("", {}, true));  // a state change always needs a token
  EXPECT_FALSE(authorized("t0k", {}, false));
  EXPECT_TRUE(authorized("t0k", {.header = "t0k", .query = "", .cookie = ""}, false));
  EXPECT_TRUE(authorized("t0k", {.header = "", .query = "t0k", .cookie = ""}, false));
  EXPECT_TRUE(authorized("t0k", {.header = "", .query = "", .cookie = "t0k"}, false));
  EXPECT_FALSE(authorized("t0k", {.header = "", .query = "", .cookie = "t0k"}, true));
  EXPECT_FALSE(authorized("t0k", {.header = "t0K", .query = "", .cookie = ""}, false));
}

TEST(DashboardServer, LoopbackServesThePageAndMetricsWithoutAToken) {
  RunModel model("job");
  auto s = Server::start({.address = "127.0.0.1:0"}, {.model = &model});
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_TRUE((*s)->token().empty());
  EXPECT_FALSE((*s)->token_generated());
  auto c = client(**s);
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("EventSource"), std::string::npos);
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->get_header_value("Content-Type").find("version=0.0.4"), std::string::npos);
  EXPECT_NE(metrics->body.find("# TYPE pepita_tasks gauge"), std::string::npos);
}

TEST(DashboardServer, ANonLoopbackAddressGetsAGeneratedTokenThatEveryRequestNeeds) {
  RunModel model("job");
  auto s = Server::start({.address = "0.0.0.0:0"}, {.model = &model});
  ASSERT_TRUE(s.has_value()) << s.error().message();
  ASSERT_TRUE((*s)->token_generated());
  const std::string token = (*s)->token();
  EXPECT_EQ(token.size(), 32u);
  EXPECT_NE((*s)->url().find("?token=" + token), std::string::npos);
  auto c = client(**s);
  for (const char* path : {"/", "/metrics", "/api/snapshot", "/events"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 401) << path;
    EXPECT_NE(r->body.find("token"), std::string::npos);
  }
  auto wrong = c.Get("/metrics", {{"X-Pepita-Token", "not-the-token"}});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  auto header = c.Get("/metrics", {{"X-Pepita-Token", token}});
  ASSERT_TRUE(header);
  EXPECT_EQ(header->status, 200);
  auto bearer = c.Get("/api/snapshot", {{"Authorization", "Bearer " + token}});
  ASSERT_TRUE(bearer);
  EXPECT_EQ(bearer->status, 200);
  auto query = c.Get("/?token=" + token);
  ASSERT_TRUE(query);
  EXPECT_EQ(query->status, 200);
  const std::string cookie = query->get_header_value("Set-Cookie");
  EXPECT_NE(cookie.find("pepita_token=" + token), std::string::npos);
  EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos);
  auto by_cookie = c.Get("/metrics", {{"Cookie", "pepita_token=" + token}});
  ASSERT_TRUE(by_cookie);
  EXPECT_EQ(by_cookie->status, 200);
}

TEST(DashboardServer, AGivenTokenIsRequiredEvenOnLoopback) {
  RunModel model("job");
  auto s = Server::start({.address = "127.0.0.1:0", .token = "s3cret"}, {.model = &model});
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_FALSE((*s)->token_generated());
  auto c = client(**s);
  EXPECT_EQ(c.Get("/metrics")->status, 401);
  EXPECT_EQ(c.Get("/metrics", {{"X-Pepita-Token", "s3cret"}})->status, 200);
}

// The token cookie counts wherever it sits among the page's other cookies.
TEST(DashboardServer, TheTokenCookieIsFoundAmongOtherCookies) {
  RunModel model("job");
  auto s = Server::start({.address = "127.0.0.1:0", .token = "s3cret"}, {.model = &model});
  ASSERT_TRUE(s.has_value()) << s.error().message();
  auto c = client(**s);
  auto last = c.Get("/metrics", {{"Cookie", "theme=dark; pepita_token=s3cret"}});
  ASSERT_TRUE(last);
  EXPECT_EQ(last->status, 200);
  auto first = c.Get("/metrics", {{"Cookie", "pepita_token=s3cret;theme=dark"}});
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200);
  auto others = c.Get("/metrics", {{"Cookie", "theme=dark; pepita_tokenx=s3cret; lang=en"}});
  ASSERT_TRUE(others);
  EXPECT_EQ(others->status, 401);
}

TEST(DashboardServer, WithNothingToServeItRefusesToStart) {
  auto s = Server::start({.address = "127.0.0.1:0"}, {});
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(s.error().message().find("without a model or metrics"), std::string::npos);
}

TEST(DashboardServer, ReadOnlyUnlessControlThenCancelNeedsTheHeader) {
  RunModel model("job");
  std::atomic<std::uint64_t> cancelled{0};
  const auto cancel = [&](std::uint64_t id) {
    cancelled = id;
    return id == 7;
  };
  {
    auto ro = Server::start({.address = "127.0.0.1:0"}, {.model = &model, .cancel = cancel});
    ASSERT_TRUE(ro.has_value());
    auto r = client(**ro).Post("/api/tasks/7/cancel");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403);
    EXPECT_NE(r->body.find("--dashboard-control"), std::string::npos);
    EXPECT_EQ(cancelled.load(), 0u);
  }
  auto s = Server::start({.address = "127.0.0.1:0", .control = true},
                         {.model = &model, .cancel = cancel});
  ASSERT_TRUE(s.has_value());
  ASSERT_TRUE((*s)->token_generated());  // control always needs a token
  const std::string token = (*s)->token();
  auto c = client(**s);
  EXPECT_EQ(c.Post("/api/tasks/7/cancel")->status, 401);
  // The cookie alone is not enough for a state change (a forged cross-site form carries it).
  EXPECT_EQ(c.Post("/api/tasks/7/cancel", {{"Cookie", "pepita_token=" + token}}, "", "text/plain")
                ->status,
            401);
  EXPECT_EQ(cancelled.load(), 0u);
  auto ok = c.Post("/api/tasks/7/cancel", {{"X-Pepita-Token", token}}, "", "text/plain");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(cancelled.load(), 7u);
  auto unknown = c.Post("/api/tasks/8/cancel", {{"X-Pepita-Token", token}}, "", "text/plain");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  auto page = c.Get("/", {{"X-Pepita-Token", token}});
  ASSERT_TRUE(page);
  EXPECT_NE(page->body.find("data-control=\"1\""), std::string::npos);
}

TEST(DashboardServer, EventsStreamASnapshotThenDeltas) {
  RunModel model("job");
  model.on_event({.kind = pool::Event::Kind::Started, .id = 1, .name = "a", .attempt = 1});
  auto s = Server::start({.address = "127.0.0.1:0", .batch = std::chrono::milliseconds(50)},
                         {.model = &model});
  ASSERT_TRUE(s.has_value());
  auto c = client(**s);
  std::string stream;
  bool added = false;
  auto r = c.Get("/events", [&](const char* data, std::size_t n) {
    stream.append(data, n);
    if (!added && stream.find("event: snapshot") != std::string::npos) {
      added = true;
      auto res = executor::ExecutionResult::success(1, std::chrono::milliseconds(3));
      res.name = "a";
      res.attempts = 1;
      model.on_event({.kind = pool::Event::Kind::Finished,
                      .id = 1,
                      .name = "a",
                      .attempt = 1,
                      .result = &res});
    }
    // Stop reading once a delta carried the finished task.
    return stream.find("\"succeeded\"", stream.find("event: delta")) == std::string::npos ||
           stream.find("event: delta") == std::string::npos;
  });
  const auto snap = stream.find("event: snapshot\ndata: {");
  ASSERT_EQ(snap, 0u) << stream.substr(0, 200);
  const auto delta = stream.find("event: delta\ndata: {");
  ASSERT_NE(delta, std::string::npos);
  EXPECT_NE(stream.find("\"succeeded\"", delta), std::string::npos);
}

TEST(DashboardServer, AnAddressInUseIsAClearError) {
  RunModel model("job");
  auto first = Server::start({.address = "127.0.0.1:0"}, {.model = &model});
  ASSERT_TRUE(first.has_value());
  auto second = Server::start({.address = "127.0.0.1:" + std::to_string((*first)->port())},
                              {.model = &model});
  ASSERT_FALSE(second.has_value());
  EXPECT_NE(second.error().message().find("in use"), std::string::npos);
}

}  // namespace
}  // namespace pepita::cli::dashboard
