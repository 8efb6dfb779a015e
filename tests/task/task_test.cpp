#include "pepita/task/task.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <set>
#include <sstream>
#include <string_view>
#include <vector>

#include "pepita/task/graph.hpp"

namespace pepita::task {
namespace {

using namespace std::chrono_literals;

TEST(TaskBuilder, BinaryWithEverySetting) {
  auto t = Task::binary("/bin/echo")
               .name("hello")
               .args({"a", "b"})
               .env("K", "V")
               .cwd("/tmp")
               .stdin("in")
               .timeout(2s)
               .max_retries(3)
               .priority(7)
               .output_cap(10)
               .build();
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->name(), "hello");
  EXPECT_EQ(t->backend(), Backend::Process);
  ASSERT_NE(t->process(), nullptr);
  EXPECT_EQ(t->process()->args, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(t->process()->env.at("K"), "V");
  EXPECT_EQ(t->process()->stdin_data, "in");
  EXPECT_EQ(t->timeout(), 2s);
  EXPECT_EQ(t->max_retries(), 3u);
  EXPECT_EQ(t->priority(), 7);
  EXPECT_EQ(t->output_cap(), 10u);
  EXPECT_EQ(t->function(), nullptr);
}

TEST(TaskBuilder, IdsAreUniqueAndDefaultNamesUseThem) {
  auto a = Task::binary("/bin/true").build();
  auto b = Task::binary("/bin/true").build();
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->id(), b->id());
  EXPECT_NE(a->id(), 0u);
  EXPECT_EQ(a->name(), "task-" + std::to_string(a->id()));
}

TEST(TaskBuilder, FunctionShapesAllWrap) {
  auto v = Task::function([] {}).build();
  auto s = Task::function([] { return std::string("x"); }).build();
  auto r =
      Task::function([]() -> Result<std::string> { return fail(ErrorCode::Io, "boom"); }).build();
  auto st = Task::function([](std::stop_token tok) {
              return std::string(tok.stop_requested() ? "stopped" : "running");
            }).build();
  ASSERT_TRUE(v && s && r && st);
  EXPECT_EQ(v->backend(), Backend::Cpu);
  EXPECT_EQ((*v->function())({}).value(), "");
  EXPECT_EQ((*s->function())({}).value(), "x");
  EXPECT_EQ((*r->function())({}).error().code(), ErrorCode::Io);
  std::stop_source src;
  src.request_stop();
  EXPECT_EQ((*st->function())(src.get_token()).value(), "stopped");
}

TEST(TaskBuilder, RejectsBadInput) {
  EXPECT_FALSE(Task::binary("").build());
  EXPECT_FALSE(Task::binary(std::string("a\0b", 3)).build());
  EXPECT_FALSE(Task::binary("/bin/true").env("", "x").build());
  EXPECT_FALSE(Task::binary("/bin/true").env("A=B", "x").build());
  EXPECT_FALSE(Task::binary("/bin/true").timeout(-1s).build());
  EXPECT_FALSE(Task::binary("/bin/true").depends_on({0}).build());
  // Issue 21: a binary on cpu is valid (the pool runs it as a process); see BinaryOnCpuBuilds.
  EXPECT_FALSE(Task::binary("/bin/true").metadata("", "x").build());
  EXPECT_FALSE(Task::binary("/bin/true").output_cap(0).build());
  EXPECT_FALSE(Task::function([] {}).backend(Backend::Process).build());
  EXPECT_FALSE(Task::function([] {}).args({"x"}).build());
  auto bad = Task::binary("/bin/true").name("n").env("A=B", "x").build();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(bad.error().message().find("'n'"), std::string::npos);
}

// ---- issue 21: the crate's task attributes ----

TEST(TaskBuilder, BinaryOnCpuBuilds) {
  // The crate's quick start: Task::binary(..).backend(Backend::Cpu); the pool runs it as a process.
  auto t = Task::binary("/bin/true").backend(Backend::Cpu).build();
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->backend(), Backend::Cpu);
  EXPECT_TRUE(Task::binary("/bin/true").backend(Backend::Any).build());
  EXPECT_TRUE(Task::function([] {}).backend(Backend::Any).build());
  auto gpu_fn = Task::function([] {}).backend(Backend::Gpu).build();
  ASSERT_FALSE(gpu_fn);
  EXPECT_NE(gpu_fn.error().message().find("cpu (or any)"), std::string::npos);
}

TEST(TaskPriority, LevelsConvertAndOrder) {
  EXPECT_EQ(as_u8(TaskPriority::Low), 0);
  EXPECT_EQ(as_u8(TaskPriority::Critical), 3);
  for (std::uint8_t v = 0; v <= 3; ++v) EXPECT_EQ(as_u8(*task_priority_from_u8(v)), v);
  EXPECT_FALSE(task_priority_from_u8(4).has_value());
  EXPECT_LT(priority_value(TaskPriority::Low), priority_value(TaskPriority::Normal));
  EXPECT_LT(priority_value(TaskPriority::High), priority_value(TaskPriority::Critical));
  EXPECT_EQ(priority_value(TaskPriority::Normal), 0);  // the default priority
  auto t = Task::binary("/bin/true").priority(TaskPriority::High).build().value();
  EXPECT_EQ(t.priority(), priority_value(TaskPriority::High));
  EXPECT_EQ(parse_task_priority("critical").value(), TaskPriority::Critical);
  auto bad = parse_task_priority("urgent");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("'urgent'"), std::string::npos);
}

TEST(TaskState, TerminalAndActiveSplitTheStates) {
  for (auto s : {TaskState::Pending, TaskState::Queued, TaskState::Running}) {
    EXPECT_TRUE(is_active(s)) << to_string(s);
    EXPECT_FALSE(is_terminal(s)) << to_string(s);
  }
  for (auto s :
       {TaskState::Completed, TaskState::Failed, TaskState::Cancelled, TaskState::TimedOut}) {
    EXPECT_TRUE(is_terminal(s)) << to_string(s);
    EXPECT_FALSE(is_active(s)) << to_string(s);
  }
  EXPECT_EQ(to_string(TaskState::TimedOut), "timed-out");
}

TEST(TaskBuilder, MetadataIsKeptAndValidated) {
  auto t = Task::binary("/bin/true").metadata("team", "ml").metadata("team", "infra").build();
  ASSERT_TRUE(t);
  EXPECT_EQ(t->metadata().at("team"), "infra");
  auto plain = Task::binary("/bin/true").build().value();
  auto labelled = Task::binary("/bin/true").metadata("k", "v").build().value();
  EXPECT_EQ(plain.spec_digest(), labelled.spec_digest());  // labels are not the task's effect
  auto bad = Task::binary("/bin/true").name("m").metadata(std::string("a\0b", 3), "v").build();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("metadata key"), std::string::npos);
  auto longer = labelled.with_timeout(std::chrono::seconds(3));
  EXPECT_EQ(longer.id(), labelled.id());
  EXPECT_EQ(longer.timeout(), std::chrono::seconds(3));
  EXPECT_EQ(labelled.timeout(), std::chrono::nanoseconds(0));
}

// Issue 27: the rarely set parts of a spec are boxed; unset they read as their defaults, set they
// survive the copies the pool makes (with_timeout, with_sandbox, with_allocation), and changing
// a copy leaves the original as it was.
TEST(TaskBuilder, BoxedPartsReadAsDefaultsUnsetAndSurviveCopiesSet) {
  auto plain = Task::binary("/bin/true").build().value();
  EXPECT_EQ(plain.sandbox(), SandboxPolicy::none());
  EXPECT_TRUE(plain.resources().empty());
  EXPECT_TRUE(plain.affinity().is_any());
  EXPECT_TRUE(plain.metadata().empty());
  EXPECT_EQ(plain.allocation(), nullptr);
  EXPECT_EQ(plain.as_pipeline(), nullptr);
  EXPECT_EQ(plain.shader(), nullptr);

  ResourceRequest req;
  req.memory = 1 << 20;
  auto rich = Task::binary("/bin/true")
                  .metadata("team", "ml")
                  .resources(req)
                  .sandbox(SandboxPolicy::standard())
                  .build()
                  .value();
  auto longer = rich.with_timeout(std::chrono::seconds(3));
  EXPECT_EQ(longer.metadata().at("team"), "ml");
  EXPECT_EQ(longer.resources().memory, 1u << 20);
  EXPECT_EQ(longer.sandbox(), SandboxPolicy::standard());
  auto unconfined = longer.with_sandbox(SandboxPolicy::none());
  EXPECT_EQ(unconfined.sandbox(), SandboxPolicy::none());
  EXPECT_EQ(longer.sandbox(), SandboxPolicy::standard());  // the copy's change is its own
  EXPECT_EQ(rich.sandbox(), SandboxPolicy::standard());
  Allocation alloc;
  alloc.cpus = 1;
  auto placed = rich.with_allocation(alloc);
  ASSERT_NE(placed.allocation(), nullptr);
  EXPECT_EQ(placed.allocation()->cpus, 1);
  EXPECT_EQ(rich.allocation(), nullptr);
  EXPECT_EQ(placed.metadata().at("team"), "ml");
}

TEST(TaskBuilder, DigestTracksSpec) {
  auto a = Task::binary("/bin/echo").args({"ab", "c"}).build();
  auto b = Task::binary("/bin/echo").args({"a", "bc"}).build();
  auto c = Task::binary("/bin/echo").args({"ab", "c"}).build();
  ASSERT_TRUE(a && b && c);
  EXPECT_NE(a->spec_digest(), b->spec_digest());
  EXPECT_EQ(a->spec_digest(), c->spec_digest());
  EXPECT_EQ(a->spec_digest().size(), 64u);
}

TEST(Backend, ParsesNames) {
  for (auto b : {Backend::Cpu, Backend::Process, Backend::Remote, Backend::MicroVm, Backend::Gpu}) {
    EXPECT_EQ(parse_backend(to_string(b)).value(), b);
  }
  auto bad = parse_backend("quantum");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("valid backends"), std::string::npos);
}

TEST(Graph, OrdersDependenciesFirst) {
  auto a = Task::binary("/bin/true").name("a").build().value();
  auto b = Task::binary("/bin/true").name("b").depends_on({a.id()}).build().value();
  auto c = Task::binary("/bin/true").name("c").depends_on({a.id(), b.id()}).build().value();
  std::vector<Task> tasks{c, b, a};
  auto order = topological_order(tasks);
  ASSERT_TRUE(order) << order.error().message();
  EXPECT_EQ(*order, (std::vector<TaskId>{a.id(), b.id(), c.id()}));
}

TEST(Graph, UnknownDependencyAndDuplicates) {
  auto a = Task::binary("/bin/true").name("a").depends_on({999999}).build().value();
  std::vector<Task> tasks{a};
  auto r = topological_order(tasks);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::NotFound);
  EXPECT_TRUE(topological_order(tasks, [](TaskId id) { return id == 999999; }));
  std::vector<Task> dup{a, a};
  EXPECT_FALSE(topological_order(dup, [](TaskId) { return true; }));
}

TEST(Graph, CycleNamesItsMembers) {
  // Edges 0->1->2->0 plus a tail 3->0.
  auto cycle = find_cycle({{1}, {2}, {0}, {0}});
  ASSERT_EQ(cycle.size(), 4u);
  EXPECT_EQ(cycle.front(), cycle.back());
  EXPECT_TRUE(find_cycle({{1}, {2}, {}}).empty());
}

RC_GTEST_PROP(Graph, RandomDagsOrderAndBackEdgesCycle, ()) {
  const auto n = *rc::gen::inRange<std::size_t>(1, 40);
  std::vector<Task> tasks;
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<TaskId> deps;
    for (std::size_t j = 0; j < i; ++j) {
      if (*rc::gen::inRange(0, 4) == 0) deps.push_back(tasks[j].id());
    }
    tasks.push_back(Task::binary("/bin/true").depends_on(deps).build().value());
  }
  auto order = topological_order(tasks);
  RC_ASSERT(order.has_value());
  std::set<TaskId> seen;
  for (TaskId id : *order) {
    for (const auto& t : tasks) {
      if (t.id() != id) continue;
      for (TaskId d : t.dependencies()) RC_ASSERT(seen.contains(d));
    }
    seen.insert(id);
  }
  RC_ASSERT(seen.size() == n);
  // A dense-index graph with a back edge always reports a cycle.
  std::vector<std::vector<std::size_t>> edges(n);
  for (std::size_t i = 1; i < n; ++i) edges[i].push_back(i - 1);
  if (n > 1) {
    edges[0].push_back(n - 1);
    RC_ASSERT(!find_cycle(edges).empty());
  }
}

TEST(Backend, NamedIsAValueType) {
  auto echo = Backend::named("echo-2_x");
  ASSERT_TRUE(echo) << echo.error().message();
  EXPECT_EQ(echo->name(), "echo-2_x");
  EXPECT_EQ(*echo, Backend::named("echo-2_x").value());
  EXPECT_NE(*echo, Backend::Process);
  EXPECT_EQ(Backend::named("gpu").value(), Backend::Gpu);  // a built-in by name is the constant
  EXPECT_EQ(std::hash<Backend>{}(Backend::named("gpu").value()),
            std::hash<Backend>{}(Backend::Gpu));
  std::ostringstream out;
  out << Backend::MicroVm;
  EXPECT_EQ(out.str(), "microvm");
  const Backend copy = *echo;
  EXPECT_EQ(to_string(copy), "echo-2_x");
}

TEST(Backend, NamedRejectsBadNames) {
  for (std::string_view bad : {"", "Echo", "a b", "x/y", "any"}) {
    auto b = Backend::named(bad);
    ASSERT_FALSE(b) << bad;
    EXPECT_EQ(b.error().code(), ErrorCode::InvalidArgument);
  }
  EXPECT_NE(Backend::named("").error().message().find("is empty"), std::string::npos);
  EXPECT_NE(
      Backend::named(std::string(Backend::kMaxName + 1, 'a')).error().message().find("too long"),
      std::string::npos);
  EXPECT_TRUE(Backend::named(std::string(Backend::kMaxName, 'a')));
  EXPECT_NE(Backend::named("any").error().message().find("reserved"), std::string::npos);
}

TEST(Backend, ParsesRegisteredNames) {
  const std::vector<Backend> known{Backend::Process, Backend::named("echo").value()};
  EXPECT_EQ(parse_backend("echo", known).value().name(), "echo");
  auto bad = parse_backend("gpu", known);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("valid backends: process, echo"), std::string::npos)
      << bad.error().message();
}

}  // namespace
}  // namespace pepita::task
