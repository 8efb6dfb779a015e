#include "pepita/task/task.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
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
  // Result<void>: ok is an empty output, an error passes through with its code and message.
  bool fail_it = false;
  auto rv = Task::function([&fail_it]() -> Result<void> {
              if (fail_it) return fail(ErrorCode::NotFound, "input missing");
              return {};
            }).build();
  ASSERT_TRUE(rv);
  EXPECT_EQ((*rv->function())({}).value(), "");
  fail_it = true;
  const auto failed = (*rv->function())({});
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code(), ErrorCode::NotFound);
  EXPECT_EQ(failed.error().message(), "input missing");
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

TEST(Graph, CycleBelowTheRootStartsAtItsFirstMember) {
  // 0->1->2->1: the DFS from 0 finds the cycle 1->2->1; the path's lead-in (0) is cut off.
  EXPECT_EQ(find_cycle({{1}, {2}, {1}}), (std::vector<std::size_t>{1, 2, 1}));
  // 0->1->2->3->2: two members of the path before the cycle.
  EXPECT_EQ(find_cycle({{1}, {2}, {3}, {2}}), (std::vector<std::size_t>{2, 3, 2}));
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

// The message of a failed build, or "(built)" when it succeeded.
std::string problem_of(const Result<Task>& t) { return t ? "(built)" : t.error().message(); }

TEST(TaskBuilder, ProcessSettingsOnAFunctionTaskAreRefusedByName) {
  const std::string env = problem_of(Task::function([] {}).env("K", "V").build());
  EXPECT_NE(env.find("env() applies to binary tasks only"), std::string::npos) << env;
  const std::string cwd = problem_of(Task::function([] {}).cwd("/tmp").build());
  EXPECT_NE(cwd.find("cwd() applies to binary tasks only"), std::string::npos) << cwd;
  const std::string in = problem_of(Task::function([] {}).stdin("x").build());
  EXPECT_NE(in.find("stdin() applies to binary tasks only"), std::string::npos) << in;
  // clear_env() on a function has nothing to clear and is no error.
  EXPECT_TRUE(Task::function([] {}).clear_env().build());
}

TEST(TaskBuilder, ClearEnvAndDeadlineAreKeptAndNegativeDurationsRefused) {
  auto t = Task::binary("/bin/true").env("A", "1").clear_env().deadline(5s).build();
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_FALSE(t->process()->inherit_env);
  EXPECT_EQ(t->process()->env.at("A"), "1");  // explicit variables stay
  EXPECT_EQ(t->deadline(), 5s);
  const std::string neg_deadline = problem_of(Task::binary("/bin/true").deadline(-1s).build());
  EXPECT_NE(neg_deadline.find("deadline must not be negative"), std::string::npos) << neg_deadline;
  const std::string neg_timeout = problem_of(Task::binary("/bin/true").timeout(-1ns).build());
  EXPECT_NE(neg_timeout.find("timeout must not be negative"), std::string::npos) << neg_timeout;
  const std::string bad_env = problem_of(Task::binary("/bin/true").env("A=B", "1").build());
  EXPECT_NE(bad_env.find("'A=B' is invalid"), std::string::npos) << bad_env;
}

TEST(TaskBuilder, DeclaredFilesAreKeptAndBadOnesNamed) {
  auto t = Task::binary("/bin/cp").inputs({"a.txt"}).outputs({"b.txt", "c.txt"}).build();
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->inputs(), (std::vector<std::string>{"a.txt"}));
  EXPECT_EQ(t->outputs(), (std::vector<std::string>{"b.txt", "c.txt"}));
  const std::string fn = problem_of(Task::function([] {}).inputs({"a"}).build());
  EXPECT_NE(fn.find("only a binary or pipeline task declares files"), std::string::npos) << fn;
  const std::string empty = problem_of(Task::binary("/bin/true").inputs({""}).build());
  EXPECT_NE(empty.find("input path is empty"), std::string::npos) << empty;
  const std::string nul =
      problem_of(Task::binary("/bin/true").outputs({std::string("a\0b", 3)}).build());
  EXPECT_NE(nul.find("output path holds a NUL byte"), std::string::npos) << nul;
  const std::string twice = problem_of(Task::binary("/bin/true").outputs({"o", "p", "o"}).build());
  EXPECT_NE(twice.find("output 'o' is declared twice"), std::string::npos) << twice;
}

TEST(TaskBuilder, RetryOnCodesOutOfRangeAreRefused) {
  EXPECT_TRUE(Task::binary("/bin/true").retry_on({RetryOn::exit(255), RetryOn::signal(9)}).build());
  for (RetryOn bad : {RetryOn::exit(256), RetryOn::exit(-2), RetryOn::signal(65)}) {
    const std::string m = problem_of(Task::binary("/bin/true").retry_on({bad}).build());
    EXPECT_NE(m.find("has a code out of range"), std::string::npos) << m;
  }
}

TEST(TaskBuilder, PipelineStageWithItsOwnRetriesAffinityOrBackendIsRefused) {
  const Task retried = Task::binary("/bin/cat").name("r").max_retries(2).build().value();
  const Task pinned =
      Task::binary("/bin/cat").name("p").affinity(CpuAffinity::Core(0)).build().value();
  const Task remote = Task::binary("/bin/cat").name("x").backend(Backend::Remote).build().value();
  const std::pair<const Task*, const char*> cases[] = {
      {&retried, "has its own max_retries"},
      {&pinned, "has its own affinity"},
      {&remote, "runs on backend 'remote'"},
  };
  for (const auto& [stage, needle] : cases) {
    const std::string m = problem_of(Task::pipeline().add_stage(*stage).build());
    EXPECT_NE(m.find(needle), std::string::npos) << m;
    EXPECT_NE(m.find("pipeline stage 0 (task '" + stage->name() + "')"), std::string::npos) << m;
  }
}

TEST(Task, CopiesWithTimeoutAllocationAndLogSinkKeepTheIdAndChangeOneThing) {
  struct NullSink : LogSink {
    void write(LogStream, std::string_view) noexcept override {}
  };
  const Task t = Task::binary("/bin/true").timeout(1s).build().value();
  const Task longer = t.with_timeout(9s);
  EXPECT_EQ(longer.id(), t.id());
  EXPECT_EQ(longer.timeout(), 9s);
  EXPECT_EQ(t.timeout(), 1s);
  EXPECT_EQ(t.allocation(), nullptr);
  Allocation given;
  given.attempt = 3;
  given.cpus = 1;
  const Task placed = t.with_allocation(given);
  ASSERT_NE(placed.allocation(), nullptr);
  EXPECT_EQ(placed.allocation()->attempt, 3u);
  EXPECT_EQ(placed.id(), t.id());
  auto sink = std::make_shared<NullSink>();
  const Task logged = t.with_log_sink(sink);
  EXPECT_EQ(logged.log_sink(), sink);
  EXPECT_EQ(t.log_sink(), nullptr);
  // None of the three is part of what the task does.
  EXPECT_EQ(longer.spec_digest(), t.spec_digest());
  EXPECT_EQ(logged.spec_digest(), t.spec_digest());
}

TEST(Task, SpecDigestCoversEnvAndAFunctionsName) {
  const auto digest = [](auto&& b) { return b.build().value().spec_digest(); };
  const std::string plain = digest(Task::binary("/bin/env"));
  EXPECT_EQ(digest(Task::binary("/bin/env")), plain);
  EXPECT_NE(digest(Task::binary("/bin/env").env("K", "V")), plain);
  EXPECT_NE(digest(Task::binary("/bin/env").env("K", "V")),
            digest(Task::binary("/bin/env").env("K", "W")));
  // A function's body cannot be digested: its name stands in for it.
  EXPECT_EQ(digest(Task::function([] {}).name("f")),
            digest(Task::function([] { return std::string("x"); }).name("f")));
  EXPECT_NE(digest(Task::function([] {}).name("f")), digest(Task::function([] {}).name("g")));
  EXPECT_NE(digest(Task::function([] {}).name("f")), plain);
}

TEST(TaskStates, EveryStateAndPriorityHasANameAndUnknownNamesAreRefused) {
  const std::pair<TaskState, std::string_view> states[] = {
      {TaskState::Pending, "pending"},   {TaskState::Queued, "queued"},
      {TaskState::Running, "running"},   {TaskState::Completed, "completed"},
      {TaskState::Failed, "failed"},     {TaskState::Cancelled, "cancelled"},
      {TaskState::TimedOut, "timed-out"}};
  for (const auto& [state, name] : states) EXPECT_EQ(to_string(state), name);
  for (std::string_view name : {"low", "normal", "high", "critical"}) {
    auto p = parse_task_priority(name);
    ASSERT_TRUE(p) << name;
    EXPECT_EQ(to_string(*p), name);
  }
  auto bad = parse_task_priority("urgent");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(bad.error().message().find("unknown priority 'urgent'"), std::string::npos);
}

TEST(TopologicalOrder, CycleIsRefusedNamingItsTasks) {
  // Ids are handed out in build order, so a task can name the id of the one built after it.
  const Task probe = Task::binary("/bin/true").build().value();
  const TaskId next = probe.id() + 1;
  const Task a = Task::binary("/bin/true").name("a").depends_on({next + 1}).build().value();
  const Task b = Task::binary("/bin/true").name("b").depends_on({a.id()}).build().value();
  ASSERT_EQ(a.id(), next);
  ASSERT_EQ(b.id(), next + 1);
  const std::vector<Task> batch{a, b};
  auto order = topological_order(batch);
  ASSERT_FALSE(order);
  EXPECT_EQ(order.error().code(), ErrorCode::InvalidArgument);
  const std::string m = order.error().message();
  EXPECT_NE(m.find("dependency cycle: "), std::string::npos) << m;
  EXPECT_TRUE(m.find("a -> b -> a") != std::string::npos ||
              m.find("b -> a -> b") != std::string::npos)
      << m;
}

TEST(ShaderTask, WithBufferAppendsOneBufferAsGiven) {
  ShaderTask s = ShaderTask::create({0x07230203});
  s.with_buffer({.data = {std::byte{1}, std::byte{2}}, .output = true});
  ASSERT_EQ(s.buffers.size(), 1u);
  EXPECT_EQ(s.buffers[0].data, (std::vector<std::byte>{std::byte{1}, std::byte{2}}));
  EXPECT_TRUE(s.buffers[0].output);
}

// ---- issue 29: every refusal's exact text and every boundary of the builder's checks ----

// The exact message of a failed build, or "(built)".
TEST(TaskBuilder, AFailedBuildSaysInvalidTaskItsNameAndItsFirstProblem) {
  EXPECT_EQ(problem_of(Task::binary("").build()), "invalid task: binary path is empty");
  EXPECT_EQ(problem_of(Task::binary("").name("n").build()),
            "invalid task 'n': binary path is empty");
  EXPECT_EQ(problem_of(Task::binary(std::string("a\0b", 3)).build()),
            "invalid task: binary path holds a NUL byte");
  EXPECT_EQ(problem_of(Task::binary("/bin/true").arg(std::string("a\0b", 3)).build()),
            "invalid task: argument holds a NUL byte");
  EXPECT_EQ(problem_of(Task::binary("/bin/true").cwd(std::string("/\0b", 3)).build()),
            "invalid task: cwd holds a NUL byte");
  EXPECT_NE(problem_of(Task::binary("/bin/true").name(std::string("a\0b", 3)).build())
                .find(": task name holds a NUL byte"),
            std::string::npos);
  EXPECT_EQ(problem_of(Task::binary("/bin/true").depends_on({0}).build()),
            "invalid task: dependency id 0 is not a task id (ids start at 1)");
  EXPECT_EQ(problem_of(Task::binary("/bin/true").output_cap(0).build()),
            "invalid task: output cap must be at least 1 byte");
  EXPECT_EQ(problem_of(Task::function([] {}).arg("x").build()),
            "invalid task: args() applies to binary tasks only");
  EXPECT_EQ(problem_of(Task::function([] {}).backend(Backend::Remote).build()),
            "invalid task: a function task runs only on the cpu (or any) backend, not remote");
  // Two problems: the first one found is the one reported.
  EXPECT_EQ(problem_of(Task::binary("").timeout(-1s).build()),
            "invalid task: timeout must not be negative");
}

TEST(TaskBuilder, ZeroDurationsAndAOneByteCapAreTheSmallestAccepted) {
  auto t = Task::binary("/bin/true").timeout(0ns).deadline(0ns).output_cap(1).build();
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->timeout(), 0ns);
  EXPECT_EQ(t->deadline(), 0ns);
  EXPECT_EQ(t->output_cap(), 1u);
  EXPECT_EQ(problem_of(Task::binary("/bin/true").deadline(-1ns).build()),
            "invalid task: deadline must not be negative");
}

TEST(TaskBuilder, EnvKeysAndValuesWithNulAndMetadataValuesWithNulAreRefusedByKey) {
  const std::string invalid = "' is invalid: it must be non-empty and hold no '=' or NUL";
  EXPECT_EQ(problem_of(Task::binary("/bin/true").env("K", std::string("a\0b", 3)).build()),
            "invalid task: environment variable name 'K" + invalid);
  EXPECT_NE(problem_of(Task::binary("/bin/true").env(std::string("K\0L", 3), "v").build())
                .find("is invalid: it must be non-empty"),
            std::string::npos);
  EXPECT_EQ(problem_of(Task::binary("/bin/true").metadata("k", std::string("a\0b", 3)).build()),
            "invalid task: metadata key 'k' is invalid: the key must be non-empty and neither may "
            "hold NUL");
  auto kept = Task::binary("/bin/true").env("K", "v").env("L", "w").build();
  ASSERT_TRUE(kept) << kept.error().message();
  EXPECT_EQ(kept->process()->env, (std::map<std::string, std::string>{{"K", "v"}, {"L", "w"}}));
}

TEST(TaskBuilder, ATaskThatDependsOnItsOwnIdIsRefused) {
  const TaskId next = Task::binary("/bin/true").build().value().id() + 1;
  auto self = Task::binary("/bin/true").depends_on({next}).build();
  ASSERT_FALSE(self);
  EXPECT_EQ(self.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(self.error().message(), "task depends on itself");
  // The refused build used up its id: the next task gets the one after it.
  EXPECT_EQ(Task::binary("/bin/true").build().value().id(), next + 1);
}

TEST(TaskBuilder, DependenciesAreKeptInTheOrderGivenAndZeroIsDropped) {
  auto t = Task::binary("/bin/true").depends_on({7, 3}).depends_on({9}).build();
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->dependencies(), (std::vector<TaskId>{7, 3, 9}));
}

TEST(TaskBuilder, FilesOnAFunctionAreRefusedEvenWhenOnlyOutputsAreDeclared) {
  EXPECT_EQ(problem_of(Task::function([] {}).outputs({"o"}).build()),
            "invalid task: inputs/outputs: only a binary or pipeline task declares files (a "
            "function's and a shader's data travel in the task itself)");
  EXPECT_EQ(problem_of(Task::binary("/bin/true").inputs({std::string("a\0b", 3)}).build()),
            "invalid task: input path holds a NUL byte");
  EXPECT_EQ(problem_of(Task::binary("/bin/true").outputs({""}).build()),
            "invalid task: output path is empty");
  EXPECT_TRUE(
      Task::pipeline().add_stage(BinaryTask("/bin/cat")).inputs({"i"}).outputs({"o"}).build());
}

TEST(TaskBuilder, RetryOnTakesAnyCodeAndTheBoundsOfExitStatusesAndSignals) {
  for (RetryOn ok : {RetryOn::exit(), RetryOn::exit(0), RetryOn::exit(255), RetryOn::signal(),
                     RetryOn::signal(1), RetryOn::signal(64)}) {
    const std::string m = problem_of(Task::binary("/bin/true").retry_on({ok}).build());
    EXPECT_EQ(m, "(built)") << to_string(ok);
  }
  EXPECT_EQ(problem_of(Task::binary("/bin/true").retry_on({RetryOn::signal(65)}).build()),
            "invalid task: retry_on: 'signal:65' has a code out of range (exit 0..255, signal "
            "1..64)");
  for (RetryOn bad : {RetryOn::signal(-2), RetryOn::signal(0), RetryOn::exit(-2)}) {
    const std::string m = problem_of(Task::binary("/bin/true").retry_on({bad}).build());
    EXPECT_NE(m.find("has a code out of range"), std::string::npos) << to_string(bad) << ": " << m;
  }
}

TEST(TaskResources, AFunctionTaskIsRefusedEachResourceButCpus) {
  const auto refused = [](ResourceRequest r) {
    return problem_of(Task::function([] {}).resources(std::move(r)).build());
  };
  const std::string only_cpus =
      "invalid task: resources: a function task may request only cpus: it runs on a shared "
      "scheduler thread, and nothing there can hold it to memory, GPUs, named resources, pids or "
      "pinned cores (run it as a binary task for those)";
  ResourceRequest gpus;
  gpus.gpus = 1;
  EXPECT_EQ(refused(gpus), only_cpus);
  ResourceRequest ids;
  ids.gpu_ids = {"0"};
  EXPECT_EQ(refused(ids), only_cpus);
  ResourceRequest named;
  named.named["license"] = 1;
  EXPECT_EQ(refused(named), only_cpus);
  ResourceRequest pinned;
  pinned.cpus = 1;
  pinned.pin_cpus = true;
  EXPECT_EQ(refused(pinned), only_cpus);
  ResourceRequest pids;
  pids.pids = 1;
  EXPECT_EQ(refused(pids), only_cpus);
  ResourceRequest byte;
  byte.memory = 1;
  EXPECT_EQ(refused(byte), only_cpus);
  ResourceRequest half;
  half.cpus = 1.5;
  EXPECT_EQ(refused(half),
            "invalid task: resources: cpus = 1.5 on the cpu backend cannot be split: ask for a "
            "whole number (a function task holds whole scheduler threads)");
  ResourceRequest bad;
  bad.gpus = -1;
  EXPECT_NE(refused(bad).find("resources: gpus = -1 is negative"), std::string::npos);
}

TEST(TaskResources, FractionalCpusAreRefusedForARemoteBinaryAndAShaderAndPinningNamesTheAffinity) {
  ResourceRequest half;
  half.cpus = 0.5;
  EXPECT_NE(problem_of(Task::binary("true").backend(Backend::Remote).resources(half).build())
                .find("cpus = 0.5 on the remote backend cannot be split"),
            std::string::npos);
  EXPECT_TRUE(Task::pipeline().add_stage(BinaryTask("true")).resources(half).build());
  ResourceRequest pinned;
  pinned.cpus = 1;
  pinned.pin_cpus = true;
  EXPECT_EQ(
      problem_of(Task::binary("true").resources(pinned).affinity(CpuAffinity::Core(0)).build()),
      "invalid task: resources: pin_cpus and affinity (" + to_string(CpuAffinity::Core(0)) +
          ") both choose the task's cores; keep one (pin_cpus lets the pool pick free "
          "cores)");
}

TEST(TaskBuilder, AffinityOnABinaryRunsOnCpuAndAnyAndIsRefusedForAShader) {
  for (Backend on : {Backend::Cpu, Backend::Any}) {
    auto t = Task::binary("/bin/true").backend(on).affinity(CpuAffinity::Core(0)).build();
    ASSERT_TRUE(t) << t.error().message();
    EXPECT_EQ(t->affinity(), CpuAffinity::Core(0));
  }
  EXPECT_EQ(problem_of(Task::binary("/bin/true")
                           .backend(Backend::MicroVm)
                           .affinity(CpuAffinity::Core(0))
                           .build()),
            "invalid task: affinity is applied by the local process executor; backend 'microvm' "
            "does not apply it: drop the affinity or use backend process");
  const std::string fn = problem_of(Task::function([] {}).affinity(CpuAffinity::Core(0)).build());
  EXPECT_EQ(fn,
            "invalid task: affinity applies to binary and pipeline tasks (processes); a function "
            "task runs on the scheduler's shared worker threads (pin those with "
            "Scheduler::Options::pin_workers) and a shader task on the GPU");
}

TEST(Backend, NamedTakesExactlyLowercaseDigitsUnderscoreAndDash) {
  for (std::string_view ok : {"a", "z", "0", "9", "_", "-", "az09_-"}) {
    auto b = Backend::named(ok);
    ASSERT_TRUE(b) << ok << ": " << b.error().message();
    EXPECT_EQ(b->name(), ok);
  }
  // The neighbours of each allowed range in ASCII.
  for (std::string_view bad : {"`", "{", "/", ":", "A", "Z", "x.y", "^", "+"}) {
    auto b = Backend::named(bad);
    ASSERT_FALSE(b) << bad;
    EXPECT_EQ(b.error().message(), "backend name '" + std::string(bad) +
                                       "' holds a character that is not allowed: use 1..31 "
                                       "characters of a-z, 0-9, '_' and '-'");
  }
  EXPECT_EQ(Backend::named("").error().message(),
            "backend name '' is empty: use 1..31 characters of a-z, 0-9, '_' and '-'");
  EXPECT_EQ(Backend::named("any").error().message(),
            "backend name 'any' is reserved (it will mean: the pool picks a backend)");
  EXPECT_TRUE(Backend::named("anyx"));
  const std::string longest(Backend::kMaxName, 'q');
  EXPECT_EQ(Backend::named(longest).value().name(), longest);
}

TEST(Backend, AnUnknownNameListsEveryBuiltInBackend) {
  EXPECT_EQ(parse_backend("quantum").error().message(),
            "unknown backend 'quantum'; valid backends: cpu, process, remote, microvm, gpu");
  EXPECT_EQ(parse_backend("microvm").value(), Backend::MicroVm);
}

TEST(TaskStates, AValueOutsideTheEnumsIsNamedUnknown) {
  EXPECT_EQ(to_string(static_cast<TaskState>(200)), "unknown");
  EXPECT_EQ(to_string(static_cast<TaskPriority>(200)), "unknown");
  EXPECT_EQ(parse_task_priority("low").value(), TaskPriority::Low);
  EXPECT_EQ(parse_task_priority("unknown").error().code(), ErrorCode::InvalidArgument);
}

// The journal keys results on the digest: it must not change from one build to the next, or a
// resumed run would redo every finished task. These pin it for one spec of each kind.
TEST(Task, SpecDigestIsStableForEachKindOfTask) {
  const Task binary = Task::binary("/bin/echo")
                          .args({"a", "b"})
                          .env("K", "V")
                          .clear_env()
                          .cwd("/tmp")
                          .stdin("in")
                          .build()
                          .value();
  EXPECT_EQ(binary.spec_digest(),
            "86fe475757126178e26632d0ecda7d35100f655cdfe06b38dd6253c6b2ee48a5");
  EXPECT_EQ(Task::function([] {}).name("f").build().value().spec_digest(),
            "338fcc2f6916a40b47dab917f06b2d8894f07cc91fa3017664b2fb758585fb55");
  EXPECT_EQ(Task::pipeline(PipelineTask()
                               .add_stage(BinaryTask("seq").with_args({"3"}))
                               .add_stage(BinaryTask("wc").with_env({{"LANG", "C"}}))
                               .with_pipe_output(false))
                .build()
                .value()
                .spec_digest(),
            "f4f0cb87eb5b392fddf75a6efa6226c21a98349881233b032bb21a532001effc");
  EXPECT_EQ(Task::shader(
                ShaderTask::create({0x07230203, 5})
                    .with_inputs({{std::byte{1}, std::byte{2}}})
                    .with_outputs({4})
                    .with_workgroups(2, 3, 4)
                    .with_push_constants({std::byte{0}, std::byte{0}, std::byte{0}, std::byte{1}})
                    .with_spec_constants({6}))
                .build()
                .value()
                .spec_digest(),
            "1ddc1e6ecfcda94823bdcc05ae5281654a5b717a3c858f194e8436e82d2a20c5");
}

TEST(Task, SpecDigestSeparatesEachFieldOfABinary) {
  const auto digest = [](Builder b) { return b.build().value().spec_digest(); };
  const std::string plain = digest(Task::binary("/bin/env"));
  EXPECT_NE(digest(Task::binary("/bin/env").clear_env()), plain);
  EXPECT_NE(digest(Task::binary("/bin/env").cwd("/tmp")), plain);
  EXPECT_NE(digest(Task::binary("/bin/env").stdin("x")), plain);
  EXPECT_NE(digest(Task::binary("/bin/env").backend(Backend::Cpu)), plain);
  EXPECT_NE(digest(Task::binary("/bin/envx")), plain);
  // An argument list and an environment of the same strings are different specs.
  EXPECT_NE(digest(Task::binary("/bin/env").args({"K", "V"})),
            digest(Task::binary("/bin/env").env("K", "V")));
  EXPECT_NE(digest(Task::function([] {}).name("f")),
            digest(Task::function([] {}).name("f").backend(Backend::Any)));
}

}  // namespace
}  // namespace pepita::task
