"""Tests of the mutation runner (scripts/mutation, issue 29): the mutants it makes of a small C++
snippet, that comments, strings and preprocessor lines are never touched, and that the source file
is restored after a SIGTERM mid-run and after a run that died without restoring it."""

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "mutation"


def load_runner():
    loader = importlib.machinery.SourceFileLoader("pepita_mutation", str(SCRIPT))
    spec = importlib.util.spec_from_loader("pepita_mutation", loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["pepita_mutation"] = mod  # dataclasses look their module up
    loader.exec_module(mod)
    return mod


mutation = load_runner()

SNIPPET = """\
#include <vector>  // a < b
#define LIMIT(a, b) ((a) < (b) ? (a) : (b))

// if (x == 0) return -1;
/* while (a && b) { f(); } */
static int clamp(int x, std::vector<int> const& v) {
  const char* s = "a < b && c || d; return 1;";
  char q = '<';
  if (x < 0) {
    return 0;
  }
  count(v);
  x = x + 1;
  return x >= 10 && v.empty() ? 10 : x;
}
"""


def descriptions(text):
    return [(m.line, m.description) for m in mutation.find_mutants(text, "snippet.cpp")]


def test_snippet_yields_the_expected_mutants():
    got = descriptions(SNIPPET)
    expected = [
        (9, "if (x < 0) negated"),
        (9, "'<' -> '<='"),
        (9, "'<' -> '>='"),
        (9, "'0' -> '1'"),
        (10, "'return 0;' -> 'return {};'"),
        (10, "'0' -> '1'"),
        (12, "deleted 'count(v);'"),
        (13, "deleted 'x = x + 1;'"),
        (13, "'+' -> '-'"),
        (13, "'1' -> '0'"),
        (14, "'return x >= 10 && v.empty() ? 10 : x;' -> 'return {};'"),
        (14, "'>=' -> '>'"),
        (14, "'>=' -> '<'"),
        (14, "'10' -> '11'"),
        (14, "'&&' -> '||'"),
        (14, "'10' -> '11'"),
    ]
    assert sorted(got) == sorted(expected)


def test_mutants_never_touch_comments_strings_or_preprocessor_lines():
    lines = SNIPPET.splitlines()
    for m in mutation.find_mutants(SNIPPET, "snippet.cpp"):
        assert m.line >= 6, m.key  # lines 1-5: #include, #define, comments
        mutated = m.apply(SNIPPET).splitlines()
        assert mutated[:5] == lines[:5], m.key
        assert '"a < b && c || d; return 1;"' in m.apply(SNIPPET), m.key
        assert "'<'" in m.apply(SNIPPET), m.key


def test_template_brackets_shifts_and_references_are_not_operators():
    text = ("template <typename T>\nauto f(T&& t, std::map<int, std::pair<int, int>> m) -> int {\n"
            "  std::cout << t->x >> 2;\n  return static_cast<int>(-t);\n}\n")
    kinds = {m.operator for m in mutation.find_mutants(text, "t.cpp")}
    assert "relational" not in kinds and "logical" not in kinds and "arithmetic" not in kinds


def test_masking_handles_raw_strings_char_literals_and_digit_separators():
    text = 'auto a = R"x(if (b < c) "quoted")x";\nint n = 1\'000;\nchar c = \'"\';\nint z = a < b;\n'
    code = mutation.code_only(text)
    assert len(code) == len(text)
    assert "if" not in code and "quoted" not in code
    assert "1'000" in code
    assert code.splitlines()[3] == "int z = a < b;"
    lits = [m.description for m in mutation.find_mutants(text, "t.cpp") if m.operator == "constant"]
    assert lits == ["'1'000' -> '1001'"]


def test_if_with_an_init_statement_negates_only_the_condition():
    text = "void f() {\n  if (auto r = g(); r > 0) {\n    h();\n  }\n}\n"
    neg = [m for m in mutation.find_mutants(text, "t.cpp") if m.operator == "negate-condition"]
    assert len(neg) == 1
    assert "if (auto r = g(); !(r > 0))" in neg[0].apply(text)


def test_failed_and_timed_out_cases_are_named_parameterised_ones_too():
    out = (
        "10/20 Test  #641: vmm.Attempts/Escape.EndsAsReportedFault/mode_105  # GetParam() = "
        "24-byte object <69-A3 AB-C3> ...............***Failed    0.06 sec\n"
        "11/20 Test  #642: core.Foo.Bar ...................***Failed    0.06 sec\n"
        "12/20 Test  #643: core.Foo.Baz ...................   Passed    0.06 sec\n"
        "13/20 Test  #644: blk_mq.E/F.G/1  # GetParam() = 1 ...***Timeout  30.0 sec\n"
        "14/20 Test  #926: gpu.R.M ......Subprocess aborted***Exception:   0.12 sec\n"
        "15/20 Test  #927: gpu.R.N ......***Exception: SegFault  0.12 sec\n"
    )
    failed, timeouts = mutation.Runner.failed_tests(out)
    assert failed == ["vmm.Attempts/Escape.EndsAsReportedFault/mode_105", "core.Foo.Bar",
                      "gpu.R.M", "gpu.R.N"]
    assert timeouts == ["blk_mq.E/F.G/1"]


def test_an_excluded_parameterised_case_is_excluded_by_its_ctest_name():
    pattern = mutation.exclude_pattern(["vmm.Attempts/Escape.Ends/mode_118", "core.A.B"])
    # CTest names a value-parameterised case with its parameter after the gtest name.
    assert re.search(pattern, "vmm.Attempts/Escape.Ends/mode_118  # GetParam() = 24-byte object")
    assert re.search(pattern, "core.A.B")
    # Neither a longer name nor another case sharing the prefix, nor a '.' matching any character.
    for other in ("vmm.Attempts/Escape.Ends/mode_1180", "vmm.Attempts/Escape.Ends/mode_11",
                  "core.A.BC", "core.AxB", "x.core.A.B"):
        assert not re.search(pattern, other), other


def test_sampling_is_reproducible_for_a_seed(tmp_path):
    project = make_project(tmp_path)
    cmd = [sys.executable, str(SCRIPT), "--root", str(project), "--module", "demo",
           "--per-module", "3", "--seed", "7", "--list"]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    second = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert first == second and first.count("demo.cpp:") == 3


def test_keys_tell_two_mutants_of_one_line_apart():
    keys = [m.key for m in mutation.find_mutants("int f(int c) {\n  return c == 0 || c % 2 != 0;\n}\n",
                                                 "t.cpp")]
    assert len(keys) == len(set(keys))
    assert "t.cpp:2:15: '0' -> '1'" in keys and "t.cpp:2:29: '0' -> '1'" in keys


def make_project(tmp_path):
    (tmp_path / "src" / "demo").mkdir(parents=True)
    (tmp_path / "src" / "demo" / "demo.cpp").write_text(SNIPPET)
    return tmp_path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digest_of(text):
    return hashlib.sha256(text.encode()).hexdigest()


def test_unknown_module_is_a_clear_error(tmp_path):
    project = make_project(tmp_path)
    r = subprocess.run([sys.executable, str(SCRIPT), "--root", str(project), "--module", "nope",
                        "--list"], capture_output=True, text=True)
    assert r.returncode != 0 and "no module 'nope'" in r.stderr


def start_run_hanging_in_a_mutant(project, marker):
    """A run of every demo mutant whose "tests" pass unmutated, then, for the first mutant, touch
    `marker` and hang until killed; returned once that mutant is applied and its tests hang."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--root", str(project), "--module", "demo",
         "--per-module", "0", "--timeout", "120", "--build-command", "true",
         "--test-command", f"test -e {marker}.base || {{ touch {marker}.base; exit 0; }}; "
                           f"touch {marker}; sleep 60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the runner never reached a mutant's tests"
        time.sleep(0.05)
    return proc


def test_file_is_restored_after_sigterm_mid_run(tmp_path):
    project = make_project(tmp_path)
    src = project / "src" / "demo" / "demo.cpp"
    before = digest(src)
    proc = start_run_hanging_in_a_mutant(project, tmp_path / "testing")
    assert digest(src) != before  # a mutant is applied right now
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143, out
    assert "restored" in out
    assert digest(src) == before
    assert not (project / "build-mutation" / "mutation-state" / "state.json").exists()


def test_a_second_run_in_the_same_tree_refuses_and_list_reads_the_original(tmp_path):
    project = make_project(tmp_path)
    src = project / "src" / "demo" / "demo.cpp"
    before = digest(src)
    listing = [sys.executable, str(SCRIPT), "--root", str(project), "--module", "demo",
               "--per-module", "0", "--list"]
    want = subprocess.run(listing, capture_output=True, text=True, check=True).stdout
    proc = start_run_hanging_in_a_mutant(project, tmp_path / "testing")
    try:
        mutated = digest(src)
        assert mutated != before
        # Another build dir does not help: the tree is what two runs would share.
        second = subprocess.run(
            [sys.executable, str(SCRIPT), "--root", str(project), "--module", "demo",
             "--build-dir", "other", "--build-command", "true", "--test-command", "true"],
            capture_output=True, text=True, timeout=60)
        assert second.returncode != 0 and "another mutation run is using" in second.stderr
        restore = subprocess.run([sys.executable, str(SCRIPT), "--root", str(project),
                                  "--restore-only"], capture_output=True, text=True, timeout=60)
        assert restore.returncode != 0 and "another mutation run" in restore.stderr
        listed = subprocess.run(listing, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout == want, "--list drew from the mutated file"
        # None of them touched the first run's mutant or its state.
        assert digest(src) == mutated
        assert (project / "build-mutation" / "mutation-state" / "state.json").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143, out
    assert digest(src) == before


def test_a_killed_runs_mutation_is_undone_at_the_next_start(tmp_path):
    project = make_project(tmp_path)
    src = project / "src" / "demo" / "demo.cpp"
    original = src.read_bytes()
    # What a SIGKILLed runner leaves: the mutated file, its backup and the state file.
    guard = mutation.Guard(project, project / "build-mutation")
    guard.apply(src, original, original.replace(b"x < 0", b"x <= 0"))
    assert src.read_bytes() != original
    r = subprocess.run([sys.executable, str(SCRIPT), "--root", str(project), "--restore-only"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "restored src/demo/demo.cpp" in r.stdout
    assert src.read_bytes() == original
    assert not guard.state.exists()


def test_report_counts_kills_survivors_and_equivalents(tmp_path):
    project = make_project(tmp_path)
    equiv = tmp_path / "equivalent.txt"
    equiv.write_text("snippet.cpp:1: nothing  # unrelated\n"
                     "src/demo/demo.cpp:12:3: deleted 'count(v);'  # count has no effect\n")
    report = tmp_path / "report.json"
    # The "tests" pass while line 9 reads `if (x < 0) {`: its four mutants are killed.
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(project), "--module", "demo",
         "--per-module", "0", "--build-command", "true", "--equivalent", str(equiv),
         "--json", str(report), "--test-command",
         f"grep -q 'if (x < 0) {{' {project}/src/demo/demo.cpp"],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    mod = json.loads(report.read_text())["modules"][0]
    assert mod["mutants"] == 16
    assert [e["mutation"] for e in mod["equivalent"]] == ["deleted 'count(v);'"]
    assert mod["killed"] == 4
    assert len(mod["survived"]) == 11
    assert all(s["line"] != 9 for s in mod["survived"])
    assert mod["score"] == round(100 * 4 / 15, 1)
    assert "| demo | 16 | 4 | 11 | 0 | 0 | 1 | 26.7% |" in r.stdout


def test_a_samples_tree_estimate_weighs_each_module_by_its_candidates():
    R = mutation.ModuleResult
    small = R("small", candidates=500, mutants=8, killed=8)
    big = R("big", candidates=3500, mutants=8, killed=2, survived=[{}] * 6)
    # Pooled, the sample scores 10 of 16; weighted, the big module's 1 in 4 counts seven times
    # more (by counts alone: (500 x 1 + 3500 x 0.25) / 4000 = 34.4%).
    assert mutation.table([small, big])[1].score == 62.5
    est = mutation.tree_estimate([small, big])
    assert est["candidates"] == 4000
    assert est["low"] < est["score"] < est["high"]
    assert 34.4 <= est["score"] < 62.5 - 15  # near the weighted counts, far below the pooled
    # Swapped, the strong module is the big one.
    est2 = mutation.tree_estimate([R("small", candidates=500, mutants=8, killed=2,
                                     survived=[{}] * 6),
                                   R("big", candidates=3500, mutants=8, killed=8)])
    assert est2["score"] > 62.5 + 15
    # Two of two killed is neither a certain 100% nor pulled down to 50%.
    lone = mutation.tree_estimate([R("m", candidates=100, mutants=2, killed=2)])
    assert 80 < lone["score"] < 100 and lone["high"] == 100.0 and lone["low"] < 80
    # Unscored mutants (timeouts, compile errors, equivalents) shrink a module's weight: half of
    # the big module's draw timed out, so the strong small module counts for more.
    half = R("big", candidates=3500, mutants=8, killed=1, survived=[{}] * 3, timeouts=[{}] * 4)
    assert mutation.tree_estimate([small, half])["score"] > est["score"]
    # Seeded: the same results print the same numbers.
    assert mutation.tree_estimate([small, big]) == est
    # A full run's pooled score is exact, and nothing scored estimates nothing.
    assert mutation.tree_estimate([R("m", candidates=4, mutants=4, killed=3, survived=[{}])]) \
        is None
    assert mutation.tree_estimate([R("m", candidates=9, mutants=2, timeouts=[{}, {}])]) is None


def test_direct_users_are_the_modules_whose_cmake_links_a_library_of_the_module(tmp_path):
    for name, cmake in {
        "core": "pepita_module(NAME core DEPS Threads::Threads)\n",
        # a sub-library's DEPS count, and an executor adapter links pepita_executor itself
        "net": "pepita_module(NAME net DEPS pepita_core\n  EXCLUDE_DIRS executor\n"
               "  TEST_DEPS pepita_pool BENCH_DEPS pepita_sim)\n"
               "pepita_sublibrary(MODULE net DIR dispatch DEPS pepita_fault_extra)\n"
               "pepita_executor_adapter(MODULE net)\n",
        "executor": "pepita_module(NAME executor DEPS pepita_core) # pepita_sim in a comment\n",
        "fault": "pepita_module(NAME fault DEPS pepita_core pepita_executor)\n",
        "pool": "pepita_module(NAME pool DEPS pepita_executor pepita_fault)\n",
        "sim": "pepita_module(NAME sim DEPS pepita_core pepita_net_executor)\n",
    }.items():
        (tmp_path / "src" / name).mkdir(parents=True)
        (tmp_path / "src" / name / "CMakeLists.txt").write_text(cmake)
    modules = ["core", "executor", "fault", "pool", "sim", "net"]
    users = mutation.module_users(tmp_path, modules)
    assert users["core"] == ["executor", "fault", "sim", "net"]
    assert users["executor"] == ["fault", "pool", "net"]
    assert users["fault"] == ["pool", "net"]
    assert users["pool"] == ["net"]  # TEST_DEPS: net's tests use the pool
    assert users["sim"] == []  # BENCH_DEPS and comments do not make a user
    assert users["net"] == ["sim"]  # through its sub-library pepita_net_executor

    # The CLI is a user of each module whose public headers it includes.
    (tmp_path / "tools" / "pepita").mkdir(parents=True)
    (tmp_path / "tools" / "pepita" / "run.cpp").write_text(
        '#include "pepita/pool/pool.hpp"\n#include <pepita/fault/journal.hpp>\n'
        '#include "detail/x.hpp"\n')
    users = mutation.module_users(tmp_path, modules)
    assert users["pool"] == ["net", "cli"] and users["fault"] == ["pool", "net", "cli"]
    assert users["core"] == ["executor", "fault", "sim", "net"]


def test_a_mutant_the_modules_tests_miss_is_killed_by_its_users_tests(tmp_path):
    project = make_project(tmp_path)
    (project / "src" / "app").mkdir()
    (project / "src" / "app" / "CMakeLists.txt").write_text(
        "pepita_module(NAME app DEPS pepita_demo Threads::Threads)\n")
    report = tmp_path / "report.json"
    # demo's own "tests" always pass; app's pass while line 9 reads `if (x < 0) {`.
    cmd = [sys.executable, str(SCRIPT), "--root", str(project), "--module", "demo",
           "--per-module", "0", "--build-command", "true", "--json", str(report),
           "--test-command",
           f"test {{module}} = demo || grep -q 'if (x < 0) {{' {project}/src/demo/demo.cpp"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    mod = json.loads(report.read_text())["modules"][0]
    assert (mod["killed"], mod["killed_by_users"], len(mod["survived"])) == (4, 4, 12)
    assert mod["users"] == ["app"]
    assert all(s["line"] != 9 for s in mod["survived"])
    assert r.stdout.count("killed (its users' tests)") == 4
    assert "4 of its killed were killed only by those" in r.stdout
    assert digest(project / "src" / "demo" / "demo.cpp") == digest_of(SNIPPET)

    r = subprocess.run(cmd + ["--no-users"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    mod = json.loads(report.read_text())["modules"][0]
    assert (mod["killed"], mod["killed_by_users"], len(mod["survived"])) == (0, 0, 16)


def test_users_whose_unmutated_tests_fail_leave_the_survivor_a_survivor(tmp_path):
    project = make_project(tmp_path)
    (project / "src" / "app").mkdir()
    (project / "src" / "app" / "CMakeLists.txt").write_text(
        "pepita_module(NAME app DEPS pepita_demo)\n")
    report = tmp_path / "report.json"
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(project), "--module", "demo",
         "--per-module", "2", "--build-command", "true", "--json", str(report),
         "--test-command", "test {module} = demo"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    mod = json.loads(report.read_text())["modules"][0]
    assert (mod["killed"], len(mod["survived"])) == (0, 2)
    assert mod["users"] == [] and mod["users_note"] == "the unmutated tests fail"
    assert "demo's users' tests were not run: the unmutated tests fail" in r.stdout


def test_returning_nullopt_as_the_default_is_drawn_but_known_equivalent():
    text = "std::optional<int> f(int x) {\n  if (x) return std::nullopt;\n  return x;\n}\n"
    rets = {m.description: m.equivalent for m in mutation.find_mutants(text, "t.cpp")
            if m.operator == "return-default"}
    assert rets["'return x;' -> 'return {};'"] == ""
    assert "optional" in rets["'return std::nullopt;' -> 'return {};'"]


def test_object_fingerprint_sees_through_debug_info_and_dead_branches_but_not_code(tmp_path):
    base = ("int f(int x) {\n#if 0\n  if (x < 0) return 1;\n#endif\n"
            "  return x < 3 ? 1 : 2;\n}\n")
    variants = {
        "orig": base,
        # a mutant in an inactive #if branch: the same machine code
        "dead": base.replace("x < 0", "x <= 0"),
        # one that only moves a column of the debug info: the same machine code
        "cols": base.replace("return x < 3 ? 1 : 2;", "return x < 3 ?  1 : 2;"),
        "live": base.replace("x < 3", "x <= 3"),
    }
    prints = {}
    for name, text in variants.items():
        src = tmp_path / f"{name}.cpp"
        src.write_text(text)
        obj = tmp_path / f"{name}.o"
        subprocess.run(["g++", "-O2", "-g", "-c", str(src), "-o", str(obj)], check=True)
        prints[name] = mutation.object_fingerprint(obj)
    assert prints["orig"] is not None
    assert prints["dead"] == prints["orig"]
    assert prints["cols"] == prints["orig"]
    assert prints["live"] != prints["orig"]
    assert mutation.object_fingerprint(tmp_path / "missing.o") is None
