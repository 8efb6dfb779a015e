# Python functions as tasks: pickled with cloudpickle, run by `python3 -m pepita._runner` in a
# process task; the return value or the exception comes back.
import os
import sys
import textwrap
import threading

import cloudpickle
import pytest

import pepita

# This module's functions travel by value: the worker process cannot import the test module
# (a user's script is __main__, which cloudpickle always sends by value).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square(x):
    return x * x


def divide(a, b):
    return a / b


def test_function_result_comes_back():
    with pepita.Pool(cpu_workers=2) as pool:
        assert pool.submit(pow, 2, 10).result(timeout=120) == 1024
        assert pool.submit(square, 12).result(timeout=120) == 144
        assert pool.run(lambda a, *, b: {"sum": a + b, "pid": os.getpid()}, 1, b=2)["sum"] == 3


def test_function_runs_in_another_process():
    with pepita.Pool() as pool:
        pid = pool.run(os.getpid)
    assert pid != os.getpid()


def test_closures_and_large_values_round_trip():
    offset = 7
    big = list(range(200_000))
    with pepita.Pool() as pool:
        out = pool.run(lambda xs: [x + offset for x in xs], big)
    assert out == [x + 7 for x in big]


def test_function_exception_is_raised_as_itself_with_the_remote_traceback():
    with pepita.Pool() as pool:
        f = pool.submit(divide, 1, 0)
        with pytest.raises(ZeroDivisionError) as info:
            f.result(timeout=120)
    assert "divide" in str(info.value.__cause__)  # the worker's traceback


def test_prints_inside_the_function_do_not_corrupt_the_result():
    def noisy():
        print("chatter on stdout")
        return "value"

    with pepita.Pool() as pool:
        assert pool.run(noisy) == "value"


def test_map_returns_results_in_order():
    with pepita.Pool(cpu_workers=4) as pool:
        assert list(pool.map(square, range(10))) == [x * x for x in range(10)]
        assert list(pool.map(divide, [6, 8], [3, 2])) == [2, 4]


def test_non_picklable_function_is_a_type_error_naming_it():
    lock = threading.Lock()

    def holds_lock():
        return lock

    with pepita.Pool() as pool:
        with pytest.raises(TypeError, match="holds_lock.*cannot be pickled"):
            pool.submit(holds_lock)
        with pytest.raises(TypeError, match="cannot be pickled"):
            pool.submit(square, threading.Lock())


def test_unpicklable_result_is_a_type_error():
    with pepita.Pool() as pool:
        with pytest.raises(TypeError, match="result cannot be pickled"):
            pool.run(threading.Lock)


def test_missing_module_on_the_runner_is_an_error_naming_it(tmp_path, monkeypatch):
    (tmp_path / "only_here_mod.py").write_text(textwrap.dedent("""
        def f():
            return 1
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_here_mod  # importable here, not in the worker process (not on its path)

    with pepita.Pool() as pool:
        with pytest.raises(ImportError) as info:
            pool.run(only_here_mod.f)
    assert "only_here_mod" in str(info.value)
    assert info.value.name == "only_here_mod"


def test_function_task_options_apply():
    with pepita.Pool() as pool:
        f = pool.submit(pepita.Task.function(lambda: os.environ.get("PEPITA_T"),
                                             env={"PEPITA_T": "set"}, name="envget"))
        assert f.result(timeout=120) == "set"
        slow = pool.submit(pepita.Task.function(__import__("time").sleep, (30,), timeout=0.5))
        with pytest.raises(pepita.TaskTimedOutError):
            slow.result(timeout=120)


def test_function_sees_the_same_interpreter():
    with pepita.Pool() as pool:
        assert pool.run(lambda: sys.executable) == sys.executable
