// Registry and BackendOptions: names to factories, typed settings with clear errors.
#include "pepita/executor/registry.hpp"

#include <gtest/gtest.h>

#include "pepita/executor/process.hpp"
#include "pepita/executor/zero.hpp"

namespace pepita::executor {
namespace {

using namespace std::chrono_literals;

TEST(BackendOptions, TypedGettersParseAndExplain) {
  BackendOptions o;
  o.set("slots_hint", "8").set("grace", "250ms").set("memory", "16M").set("snap", "no");
  ASSERT_TRUE(o.set("devices=a,,b"));
  EXPECT_EQ(o.uint_or("slots_hint", 1).value(), 8u);
  EXPECT_EQ(o.uint_or("absent", 7).value(), 7u);
  EXPECT_EQ(o.duration_or("grace", 1s).value(), 250ms);
  EXPECT_EQ(o.bytes_or("memory", 0).value(), 16u << 20);
  EXPECT_FALSE(o.bool_or("snap", true).value());
  EXPECT_EQ(o.list("devices"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(o.string_or("absent", "x"), "x");

  o.set("grace", "soon");
  auto d = o.duration_or("grace", 1s);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message().find("grace='soon': expected a duration such as 250ms"),
            std::string::npos)
      << d.error().message();
  EXPECT_FALSE(o.uint_or("slots_hint", 1, 10, 20));  // out of range
  EXPECT_FALSE(o.set("novalue"));
  auto unknown = o.expect_only({"grace", "memory"});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("unknown backend setting devices, slots_hint, snap"),
            std::string::npos)
      << unknown.error().message();
}

class Named final : public Executor {
 public:
  explicit Named(Backend b, std::size_t slots) : b_(b), slots_(slots) {}
  Backend backend() const noexcept override { return b_; }
  std::size_t slots() const noexcept override { return slots_; }
  Result<void> start(const task::Task&, std::stop_token, Completion) override {
    return fail(ErrorCode::Unsupported, "not used");
  }
  void shutdown() override {}

 private:
  Backend b_;
  std::size_t slots_;
};

TEST(Registry, BuildsByNameAndListsNames) {
  Registry r;
  ASSERT_TRUE(register_builtins(r));
  const auto echo = Backend::named("echo").value();
  ASSERT_TRUE(r.add(
      echo,
      [echo](const BackendOptions& o) -> Result<std::shared_ptr<Executor>> {
        return std::make_shared<Named>(echo, o.slots);
      },
      "prints"));
  EXPECT_EQ(r.names(),
            (std::vector<Backend>{Backend::Cpu, Backend::Process, zero_backend(), echo}));
  EXPECT_EQ(r.description(echo), "prints");
  auto again = r.add(
      echo, [](const BackendOptions&) -> Result<std::shared_ptr<Executor>> { return nullptr; });
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::AlreadyExists);

  BackendOptions o;
  o.slots = 3;
  auto e = r.create(echo, o);
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ((*e)->backend(), echo);
  EXPECT_EQ((*e)->slots(), 3u);

  auto proc = r.create(Backend::Process, o);
  ASSERT_TRUE(proc) << proc.error().message();
  EXPECT_EQ((*proc)->backend(), Backend::Process);
  (*proc)->shutdown();

  auto missing = r.create(Backend::Gpu, o);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::NotFound);
  EXPECT_NE(missing.error().message().find("registered backends: cpu, process, zero, echo"),
            std::string::npos)
      << missing.error().message();
}

TEST(Registry, FactoryErrorsNameTheBackendAndCheckTheName) {
  Registry r;
  ASSERT_TRUE(register_process(r));
  BackendOptions o;
  o.set("kill_grace", "later");
  auto bad = r.factory(Backend::Process, o)();  // deferred, as Pool::Builder::executor runs it
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("backend 'process'"), std::string::npos);
  EXPECT_NE(bad.error().message().find("kill_grace='later'"), std::string::npos);

  const auto liar = Backend::named("liar").value();
  r.replace(liar, [](const BackendOptions&) -> Result<std::shared_ptr<Executor>> {
    return std::make_shared<Named>(Backend::Gpu, 1);
  });
  auto wrong = r.create(liar, {});
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), ErrorCode::Internal);
}

}  // namespace
}  // namespace pepita::executor
