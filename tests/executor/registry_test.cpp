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

TEST(BackendOptions, HasAndBoolSpellingsAndABadBoolIsExplained) {
  BackendOptions o;
  o.set("a", "on").set("b", "0").set("c", "maybe");
  EXPECT_TRUE(o.has("a"));
  EXPECT_FALSE(o.has("z"));
  EXPECT_TRUE(o.bool_or("a", false).value());
  EXPECT_FALSE(o.bool_or("b", true).value());
  EXPECT_TRUE(o.bool_or("z", true).value());
  auto bad = o.bool_or("c", true);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(bad.error().message().find("true or false"), std::string::npos)
      << bad.error().message();
}

TEST(Registry, EmptyFactoryNullExecutorAndReplaceAreHandled) {
  Registry r;
  const auto echo = Backend::named("echo").value();
  auto empty = r.add(echo, BackendFactory{});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(empty.error().message().find("empty factory"), std::string::npos);
  EXPECT_FALSE(r.contains(echo));

  ASSERT_TRUE(r.add(
      echo, [](const BackendOptions&) -> Result<std::shared_ptr<Executor>> { return nullptr; },
      "broken"));
  auto null = r.create(echo, {});
  ASSERT_FALSE(null);
  EXPECT_EQ(null.error().code(), ErrorCode::Internal);
  EXPECT_NE(null.error().message().find("the factory returned null"), std::string::npos);

  // replace() swaps the factory and description of the registered name in place.
  r.replace(
      echo,
      [echo](const BackendOptions& o) -> Result<std::shared_ptr<Executor>> {
        return std::make_shared<Named>(echo, o.slots);
      },
      "fixed");
  EXPECT_EQ(r.names(), std::vector<Backend>{echo});
  EXPECT_EQ(r.description(echo), "fixed");
  EXPECT_EQ(r.description(Backend::Gpu), "");
  auto made = r.create(echo, {});
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ((*made)->backend(), echo);
}

TEST(Registry, BuiltinCpuAndZeroFactoriesBuildAndRefuseUnknownSettings) {
  Registry r;
  ASSERT_TRUE(register_builtins(r));
  BackendOptions o;
  o.slots = 2;
  for (const Backend& b : {Backend::Cpu, zero_backend()}) {
    auto e = r.create(b, o);
    ASSERT_TRUE(e) << e.error().message();
    EXPECT_EQ((*e)->backend(), b);
    EXPECT_EQ((*e)->slots(), 2u);
    (*e)->shutdown();
  }
  o.set("turbo", "yes");
  for (const Backend& b : {Backend::Cpu, zero_backend()}) {
    auto e = r.create(b, o);
    ASSERT_FALSE(e) << b.name();
    EXPECT_NE(e.error().message().find("turbo"), std::string::npos) << e.error().message();
  }
}

TEST(Executor, DefaultsStreamOutputPlaceNothingAndFitEverything) {
  Named plain(Backend::named("plain").value(), 1);
  Executor& e = plain;
  e.abandon();  // a no-op by default
  EXPECT_TRUE(e.streams_output());
  EXPECT_FALSE(e.places_resources());
  task::ResourceRequest huge;
  huge.gpus = 1000;
  EXPECT_TRUE(e.can_ever_fit(huge));
  auto zero = ZeroExecutor::create({.slots = 1});
  ASSERT_TRUE(zero) << zero.error().message();
  EXPECT_FALSE((*zero)->streams_output());  // runs nothing: no output to stream
  (*zero)->shutdown();
}

}  // namespace
}  // namespace pepita::executor
