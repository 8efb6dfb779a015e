"""pepita from Python: a task pool with concurrent.futures semantics, Python functions as tasks
(locally or on remote pepita workers), job files, and the simd kernels over numpy arrays.

    import pepita

    with pepita.Pool(cpu_workers=4) as pool:
        f = pool.submit(pepita.Task.binary("/bin/echo", args=["hi"]))
        print(f.result().stdout)                      # b'hi\\n'
        print(pool.submit(pow, 2, 10).result())       # 1024, computed in a worker process
        print(list(pool.map(abs, [-1, -2])))          # [1, 2]

Errors are pepita.errors classes (InvalidArgumentError is also a ValueError, ...). A task that
ran and failed raises TaskFailedError from Future.result(); a Python function's own exception
comes back as itself. Ctrl-C while waiting cancels the task waited for, and leaving a `with
Pool()` block with an exception cancels the rest.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import concurrent.futures._base as _cf
import os
import pickle
import shutil
import sys
import tempfile
import weakref
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional

from . import _pepita
from ._pepita import ZramStore, axpy, dot, gelu, l2_norm, relu, sgemm, simd_level, softmax, vsum
from ._pepita import gpu
from .errors import (
    AlreadyExistsError,
    BusyError,
    CancelledError,
    CorruptedError,
    DisconnectedError,
    InvalidArgumentError,
    NotFoundError,
    PepitaError,
    PermissionDeniedError,
    ProtocolError,
    ResourceExhaustedError,
    TaskFailedError,
    TaskTimedOutError,
    TimedOutError,
    UnsupportedError,
)

__version__ = "0.1.0"

# Where this package lives: function tasks put it on the runner's PYTHONPATH.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The function runner, run as a script: `python3 -m pepita._runner` would import this package
# and load the extension first (hundreds of ms per task); the script needs only the stdlib.
_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_runner.py")
# A function's pickled result may be large; the process task's stdout cap must hold it.
_FUNCTION_OUTPUT_CAP = 1 << 30
# The interpreter that runs function tasks: this one.
_PYTHON = sys.executable or "/usr/bin/python3"
# The backend of the pool's persistent workers (include/pepita/executor/serve.hpp).
_WORKER_BACKEND = "python"


# ---------------------------------------------------------------------------------------------
# Argument checks: TypeError/ValueError naming the argument.


def _check_int(where: str, name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value}")
    return value


def _check_number(where: str, name: str, value: Any, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where}: {name} must be a number, got {type(value).__name__}")
    if not value >= minimum:  # also refuses NaN
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value}")
    return float(value)


def _check_str(where: str, name: str, value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"{where}: {name} must be a str, got {type(value).__name__}")
    return value


def _check_str_list(where: str, name: str, value: Any) -> List[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{where}: {name} must be a list of str, got {type(value).__name__}")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, os.PathLike):
            item = os.fspath(item)
        if not isinstance(item, str):
            raise TypeError(f"{where}: {name}[{i}] must be a str, got {type(item).__name__}")
        out.append(item)
    return out


# ---------------------------------------------------------------------------------------------
# Results, events and tasks.


class TaskResult:
    """What one task's run produced (pepita's ExecutionResult)."""

    __slots__ = (
        "id", "name", "status", "exit_code", "signal", "wall", "cpu", "max_rss_kb", "stdout",
        "stderr", "output_truncated", "error", "attempts", "from_journal", "host", "peak_memory",
    )

    def __init__(self, fields: Mapping[str, Any]) -> None:
        for key in self.__slots__:
            setattr(self, key, fields[key])

    @property
    def ok(self) -> bool:
        """True when the task succeeded."""
        return self.status == "succeeded"

    @property
    def text(self) -> str:
        """stdout decoded as UTF-8 (invalid bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return (f"TaskResult(name={self.name!r}, status={self.status!r}, "
                f"exit_code={self.exit_code}, wall={self.wall:.3f})")


class Event(NamedTuple):
    """A pool event: kind is "started", "retrying" or "finished"; result is set for the last
    two (the failed attempt, the final result)."""

    kind: str
    id: int
    name: str
    attempt: int
    result: Optional[TaskResult]


class Task:
    """A task description; submit it with Pool.submit. Build with Task.binary or
    Task.function. Immutable once built; each submit runs it anew."""

    __slots__ = ("_spec", "_function", "_local")

    def __init__(self) -> None:
        raise TypeError("use Task.binary(path, ...) or Task.function(fn, ...)")

    @classmethod
    def _make(cls, spec: "_pepita._TaskSpec", function: Optional[bytes],
              local: Optional["_pepita._TaskSpec"] = None) -> "Task":
        task = object.__new__(cls)
        task._spec = spec      # what submit() sends (a remote pool adds its backend)
        task._function = function
        task._local = local    # a function task for a local pool's persistent workers
        return task

    @staticmethod
    def binary(path: str, *, args: Iterable[str] = (), name: Optional[str] = None,
               env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
               stdin: Optional[bytes] = None, timeout: Optional[float] = None,
               retries: Optional[int] = None, priority: int = 0,
               deps: Iterable["Future"] = (), cpus: Optional[float] = None,
               memory: Any = None, gpus: Optional[float] = None,
               backend: Optional[str] = None, output_cap: Optional[int] = None) -> "Task":
        """A process task running `path` (absolute, relative, or looked up in PATH) with
        `args`. `env` is layered over the pool's environment; `timeout` is in seconds;
        `retries` extra attempts (default: the pool's); `deps` are futures of tasks submitted
        before it, which must succeed first; `cpus`, `memory` (bytes or "4G") and `gpus` are
        its resource request; `backend` a registered backend name ("process", "remote")."""
        where = "Task.binary"
        spec = _pepita._TaskSpec()
        spec.path = _check_str(where, "path", path)
        spec.args = _check_str_list(where, "args", args)
        _fill_common(where, spec, name=name, env=env, cwd=cwd, stdin=stdin, timeout=timeout,
                     retries=retries, priority=priority, deps=deps, cpus=cpus, memory=memory,
                     gpus=gpus, backend=backend)
        if output_cap is not None:
            spec.output_cap = _check_int(where, "output_cap", output_cap, 1)
        return Task._make(spec, None)

    @staticmethod
    def function(fn: Callable[..., Any], args: Iterable[Any] = (),
                 kwargs: Optional[Mapping[str, Any]] = None, *, name: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
                 timeout: Optional[float] = None, retries: Optional[int] = None,
                 priority: int = 0, deps: Iterable["Future"] = (),
                 cpus: Optional[float] = None, memory: Any = None,
                 gpus: Optional[float] = None, backend: Optional[str] = None) -> "Task":
        """fn(*args, **kwargs) as a task: pickled with cloudpickle. On a local pool it runs in
        one of the pool's persistent worker interpreters (the "python" backend: one per cpu
        slot, started on first use, reused for every call), on a remote pool in one of the
        `pepita worker`'s (one per worker slot; on a worker with a sandbox floor, or with
        cpus given, it runs as a process there); with env, cwd, memory, gpus or a backend
        given, in a fresh process of the same Python (`python3 <package>/_runner.py`). The
        future's result is its return value; its exception is raised from result(), with the
        worker's traceback as its __cause__. TypeError when fn or its arguments cannot be pickled."""
        return Task._of_function("Task.function", fn, args, kwargs, False, name=name, env=env,
                              cwd=cwd, timeout=timeout, retries=retries, priority=priority,
                              deps=deps, cpus=cpus, memory=memory, gpus=gpus, backend=backend)

    @staticmethod
    def _of_function(where: str, fn: Callable[..., Any], args: Iterable[Any],
                  kwargs: Optional[Mapping[str, Any]], local_only: bool, *,
                  name: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                  cwd: Optional[str] = None, timeout: Optional[float] = None,
                  retries: Optional[int] = None, priority: int = 0,
                  deps: Iterable["Future"] = (), cpus: Optional[float] = None,
                  memory: Any = None, gpus: Optional[float] = None,
                  backend: Optional[str] = None) -> "Task":
        """local_only: the task is for a local pool's persistent workers only (pool.submit(fn,
        ...) on a local pool builds just that spec)."""
        if not callable(fn):
            raise TypeError(f"{where}: fn must be callable, got {type(fn).__name__}")
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, Mapping):
            raise TypeError(f"{where}: kwargs must be a mapping, got {type(kwargs).__name__}")
        payload = _pickle_call(where, fn, tuple(args), dict(kwargs))
        if name is None:
            name = getattr(fn, "__qualname__", None) or "function"
            name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        persistent = (env is None and cwd is None and memory is None and gpus is None
                      and backend is None)
        common = dict(name=name, cwd=cwd, stdin=None, timeout=timeout, retries=retries,
                      priority=priority, deps=deps, cpus=cpus, memory=memory, gpus=gpus)
        local = None
        if persistent:
            local = _pepita._TaskSpec()
            local.path = _PYTHON
            local.args = [_RUNNER]
            local.stdin = payload
            local.output_cap = _FUNCTION_OUTPUT_CAP
            _fill_common(where, local, env=None, backend=_WORKER_BACKEND, **common)
            if local_only:
                return Task._make(local, payload, local)
        spec = _pepita._TaskSpec()
        spec.path = _PYTHON
        spec.args = [_RUNNER]
        spec.stdin = payload
        spec.output_cap = _FUNCTION_OUTPUT_CAP
        _fill_common(where, spec, env=env, backend=backend, **common)
        spec.env = _runner_env(dict(spec.env))
        if persistent:
            # On a remote pool: a `pepita worker` may run it on one of its persistent
            # interpreters (transport/worker.hpp, kServeEnv); an older worker, one with a
            # sandbox floor, or a task with limits runs it as this one-shot process.
            spec.env = dict(spec.env, PEPITA_SERVE="1")
        return Task._make(spec, payload, local)

    @property
    def name(self) -> str:
        return self._spec.name

    def __repr__(self) -> str:
        kind = "function" if self._function is not None else "binary"
        return f"Task.{kind}({self._spec.name or self._spec.path!r})"


def _pickle_call(where: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> bytes:
    try:
        import cloudpickle
    except ImportError as exc:  # pragma: no cover - a packaging problem
        raise ImportError("pepita: function tasks need cloudpickle (apt install "
                          "python3-cloudpickle)") from exc
    try:
        return cloudpickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise TypeError(f"{where}: fn {getattr(fn, '__qualname__', fn)!r} or its arguments "
                        f"cannot be pickled: {exc}") from exc


def _runner_env(env: Dict[str, str]) -> Dict[str, str]:
    """The environment of a one-shot `_runner.py` process (or a persistent worker): this
    package importable, and this interpreter first on PATH."""
    path = env.get("PYTHONPATH") or os.environ.get("PYTHONPATH", "")
    env["PYTHONPATH"] = _PACKAGE_PARENT + (os.pathsep + path if path else "")
    # The process gets argv[0] = the interpreter's file name without its directory, from
    # which Python finds itself through PATH (its prefix, its site-packages): this
    # interpreter's directory first makes that this interpreter, not another python3.
    search = env.get("PATH") or os.environ.get("PATH", "/usr/bin:/bin")
    env["PATH"] = os.path.dirname(_PYTHON) + os.pathsep + search
    return env


def _fill_common(where: str, spec: Any, *, name: Optional[str], env: Any, cwd: Any,
                 stdin: Any, timeout: Any, retries: Any, priority: Any, deps: Any, cpus: Any,
                 memory: Any, gpus: Any, backend: Any) -> None:
    if name is not None:
        spec.name = _check_str(where, "name", name)
    if env is not None:
        if not isinstance(env, Mapping):
            raise TypeError(f"{where}: env must be a dict of str to str, got "
                            f"{type(env).__name__}")
        for k, v in env.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"{where}: env must map str to str; {k!r}: {v!r} does not")
        spec.env = dict(env)
    if cwd is not None:
        spec.cwd = _check_str(where, "cwd", cwd)
    if stdin is not None:
        if isinstance(stdin, str):
            stdin = stdin.encode()
        if not isinstance(stdin, (bytes, bytearray, memoryview)):
            raise TypeError(f"{where}: stdin must be bytes or str, got {type(stdin).__name__}")
        spec.stdin = bytes(stdin)
    if timeout is not None:
        spec.timeout = _check_number(where, "timeout", timeout)
    if retries is not None:
        spec.retries = _check_int(where, "retries", retries)
    spec.priority = _check_int(where, "priority", priority, -(2 ** 31))
    ids = []
    if isinstance(deps, (str, bytes)) or not isinstance(deps, Iterable):
        raise TypeError(f"{where}: deps must be a list of Futures, got {type(deps).__name__}")
    for i, dep in enumerate(deps):
        if not isinstance(dep, Future):
            raise TypeError(f"{where}: deps[{i}] must be a pepita Future (from Pool.submit), "
                            f"got {type(dep).__name__}")
        ids.append(dep.task_id)
    spec.deps = ids
    if cpus is not None:
        spec.cpus = _check_number(where, "cpus", cpus)
    if gpus is not None:
        spec.gpus = _check_number(where, "gpus", gpus)
    if memory is not None:
        if isinstance(memory, str):
            spec.memory = _pepita._parse_bytes(memory)
        else:
            spec.memory = _check_int(where, "memory", memory)
    if backend is not None:
        spec.backend = _check_str(where, "backend", backend)


# ---------------------------------------------------------------------------------------------
# Futures.


class _RemoteTraceback(Exception):
    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class Future(concurrent.futures.Future):
    """A submitted task's result: a concurrent.futures.Future (result, exception, done,
    cancel, add_done_callback, and concurrent.futures.wait / as_completed all work). pepita
    finishes it from a pool thread. cancel() stops the task whether queued or running.
    Ctrl-C during result() or exception() cancels the task, then raises KeyboardInterrupt."""

    def __init__(self, pool: "_pepita._Pool", function: bool) -> None:
        super().__init__()
        self._pool = pool
        self._function = function
        self.task_id = 0

    def result(self, timeout: Optional[float] = None) -> Any:
        try:
            return super().result(timeout)
        except KeyboardInterrupt:
            self.cancel()
            raise

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        try:
            return super().exception(timeout)
        except KeyboardInterrupt:
            self.cancel()
            raise

    def cancel(self) -> bool:
        with self._condition:
            if self._state == _cf.FINISHED:
                return False
            if self._state in (_cf.CANCELLED, _cf.CANCELLED_AND_NOTIFIED):
                return True
        pool = self._pool
        if pool is not None and not pool.closed and self.task_id:
            if not pool.cancel(self.task_id):
                return self.cancelled()  # already final: its result is being delivered
        return self._mark_cancelled()

    def _mark_cancelled(self) -> bool:
        if not concurrent.futures.Future.cancel(self):
            return False
        try:
            self.set_running_or_notify_cancel()  # wakes wait() and as_completed()
        except RuntimeError:
            pass  # already notified
        return True

    def _settle(self, setter: Callable[[Any], None], value: Any) -> None:
        try:
            setter(value)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled meanwhile

    def _pepita_finish(self, fields: Mapping[str, Any]) -> None:
        """Called by the pool (on its thread, with the GIL) with the final result."""
        self._pool = None
        if self.done():
            return
        r = TaskResult(fields)
        if r.status == "cancelled":
            self._mark_cancelled()
            return
        if r.status != "succeeded":
            self._settle(self.set_exception, _task_error(r, self._function))
            return
        if not self._function:
            self._settle(self.set_result, r)
            return
        try:
            payload = pickle.loads(r.stdout)
        except Exception as exc:
            self._settle(self.set_exception, TaskFailedError(
                f"function task {r.name!r}: its result could not be read here ({exc!r}); "
                f"stderr: {_tail(r.stderr)}", r))
            return
        if payload[0] == "ok":
            self._settle(self.set_result, payload[1])
        else:
            exc = payload[1]
            if len(payload) > 2 and payload[2]:
                exc.__cause__ = _RemoteTraceback(payload[2])
            self._settle(self.set_exception, exc)


def _tail(data: bytes, limit: int = 2000) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _task_error(r: TaskResult, function: bool) -> TaskFailedError:
    what = "function task" if function else "task"
    if r.status == "failed" and r.exit_code > 0:
        why = f"exited with status {r.exit_code}"
    elif r.status == "signaled":
        why = f"was killed by signal {r.signal}"
    else:
        why = r.status
    msg = f"{what} {r.name!r} {why}"
    if r.error:
        msg += f": {r.error}"
    if r.stderr:
        msg += f"; stderr: {_tail(r.stderr)}"
    cls = TaskTimedOutError if r.status == "timed-out" else TaskFailedError
    return cls(msg, r)


# ---------------------------------------------------------------------------------------------
# The pool.

_live_pools: "weakref.WeakSet[Pool]" = weakref.WeakSet()


class Pool:
    """A pepita pool: runs binaries and Python functions as processes, here or on remote
    pepita workers. A context manager: leaving the block waits for every task (or cancels
    them when the block raised, Ctrl-C included).

    cpu_workers: processes at once (0: one per CPU). process_slots overrides that bound. It is
    also the number of persistent worker interpreters that run Python function tasks on a
    local pool (started on first use; one that crashes or times out is replaced).
    journal: a crash-safe journal file; with resume=True tasks that succeeded (same name and
    spec) are not run again. retries: extra attempts per failed task. timeout: seconds, for
    tasks without their own. queue_capacity: submit() blocks while that many are unfinished.
    workers=["host:7070", ...] with key=<pre-shared key file> sends tasks to `pepita worker`s
    (tls=True to encrypt); each needs the same Python and pepita package for function tasks.
    slurm=dict(nodes=4, partition="gpu", ...) runs tasks on `pepita worker`s submitted as Slurm
    jobs (the settings of `pepita run --slurm`; worker_binary defaults to the pepita CLI).
    on_event: called with an Event on a pool thread for every start, retry and finish.
    """

    def __init__(self, cpu_workers: int = 0, *, process_slots: Optional[int] = None,
                 journal: Optional[str] = None, resume: bool = False, retries: int = 0,
                 timeout: Optional[float] = None, queue_capacity: Optional[int] = None,
                 workers: Optional[Iterable[str]] = None, key: Optional[str] = None,
                 tls: bool = False, slurm: Optional[Mapping[str, Any]] = None,
                 on_event: Optional[Callable[[Event], None]] = None) -> None:
        where = "Pool"
        _check_int(where, "cpu_workers", cpu_workers)
        if process_slots is not None:
            _check_int(where, "process_slots", process_slots)
        journal_path = "" if journal is None else _check_str(where, "journal", journal)
        _check_int(where, "retries", retries)
        if timeout is not None:
            timeout = _check_number(where, "timeout", timeout)
        if queue_capacity is not None:
            _check_int(where, "queue_capacity", queue_capacity, 1)
        worker_list = [] if workers is None else _check_str_list(where, "workers", workers)
        key_path = "" if key is None else _check_str(where, "key", key)
        if worker_list and not key_path:
            raise ValueError("Pool: workers=... needs key=<path of the workers' pre-shared key "
                             "file> (pepita worker --gen-key FILE makes one)")
        if key_path and not worker_list:
            raise ValueError("Pool: key= is only used with workers=[\"host:port\", ...]")
        slurm_settings = {} if slurm is None else _slurm_settings(slurm)
        if slurm_settings and worker_list:
            raise ValueError("Pool: workers= and slurm= exclude each other (one remote backend "
                             "per pool)")
        if on_event is not None and not callable(on_event):
            raise TypeError(f"Pool: on_event must be callable, got {type(on_event).__name__}")
        self._default_backend = "remote" if worker_list else "slurm" if slurm_settings else ""
        callback = None
        if on_event is not None:
            def callback(kind: str, task_id: int, name: str, attempt: int, fields: Any) -> None:
                result = None if fields is None else TaskResult(fields)
                on_event(Event(kind, task_id, name, attempt, result))
        worker_argv: List[str] = []
        worker_env: List[str] = []
        if not self._default_backend:
            worker_argv = [_PYTHON, _RUNNER, "--serve", "3"]
            worker_env = [f"{k}={v}" for k, v in _runner_env(dict(os.environ)).items()]
        self._pool = _pepita._Pool(cpu_workers, process_slots, journal_path, bool(resume),
                                   retries + 1, worker_list, key_path, bool(tls), timeout,
                                   queue_capacity, slurm_settings, callback, worker_argv,
                                   worker_env)
        self._futures: "weakref.WeakSet[Future]" = weakref.WeakSet()
        _live_pools.add(self)

    # -- submission --------------------------------------------------------------------------

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        """submit(task) runs a Task; submit(fn, *args, **kwargs) runs fn(*args, **kwargs) in a
        worker process (see Task.function). Returns a Future."""
        if isinstance(fn, Task):
            if args or kwargs:
                raise TypeError("Pool.submit: a Task takes no further arguments")
            task = fn
        elif callable(fn):
            task = Task._of_function("Pool.submit", fn, args, kwargs, not self._default_backend)
        else:
            raise TypeError(f"Pool.submit: fn must be a Task or a callable, got "
                            f"{type(fn).__name__}")
        spec = task._spec
        if task._local is not None and not self._default_backend:
            spec = task._local
        elif self._default_backend and not spec.backend:
            spec = _copy_spec(spec)
            spec.backend = self._default_backend
        future = Future(self._pool, task._function is not None)
        future.task_id = self._pool.submit(future, spec)
        self._futures.add(future)
        return future

    def run(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        """submit(...).result(): the TaskResult of a Task, the return value of a function."""
        return self.submit(fn, *args, **kwargs).result()

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: Optional[float] = None) -> Iterator[Any]:
        """Like Executor.map: fn over the iterables in worker processes, results in order.
        Ctrl-C or a failure while iterating cancels the tasks not yet consumed."""
        if not callable(fn):
            raise TypeError(f"Pool.map: fn must be callable, got {type(fn).__name__}")
        futures = [self.submit(fn, *args) for args in zip(*iterables)]

        def results() -> Iterator[Any]:
            try:
                for f in futures:
                    yield f.result(timeout)
            finally:
                for f in futures:
                    f.cancel()

        return results()

    # -- state and teardown -----------------------------------------------------------------

    @property
    def num_workers(self) -> int:
        return self._pool.num_workers()

    def stats(self) -> Dict[str, Any]:
        """The pool's counters (submitted, done, succeeded, failed, retries, latencies)."""
        return self._pool.stats()

    def cancel_all(self) -> None:
        """Cancels every unfinished task."""
        self._pool.cancel_all()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stops the pool. wait=True waits for every task (interruptible by Ctrl-C, which then
        cancels them); cancel_futures=True or wait=False cancels what has not finished."""
        if self._pool.closed:
            return
        if wait and not cancel_futures:
            try:
                concurrent.futures.wait(list(self._futures))
            except KeyboardInterrupt:
                self._pool.shutdown(False)
                raise
            self._pool.shutdown(True)
        else:
            self._pool.shutdown(False)
        for f in list(self._futures):
            f._mark_cancelled()  # any the pool dropped without a result

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)


def _slurm_settings(slurm: Any) -> Dict[str, str]:
    """Pool(slurm=dict(nodes=4, partition="gpu", ...)) as the slurm backend's settings (those
    of `pepita run --slurm`; see pepita/slurm/slurm_executor.hpp). worker_binary defaults to the
    pepita CLI ($PEPITA_CLI, else `pepita` on PATH): the worker jobs run `pepita worker`."""
    if not isinstance(slurm, Mapping):
        raise TypeError(f"Pool: slurm must be a dict of settings, got {type(slurm).__name__}")
    out: Dict[str, str] = {}
    for key, value in slurm.items():
        if not isinstance(key, str):
            raise TypeError(f"Pool: slurm keys must be str, got {key!r}")
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            out[key] = str(value)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            out[key] = ",".join(value)
        else:
            raise TypeError(f"Pool: slurm[{key!r}] must be a str, number, bool or list of str, "
                            f"got {type(value).__name__}")
    if "worker_binary" not in out:
        cli = os.environ.get("PEPITA_CLI") or shutil.which("pepita")
        if not cli:
            raise ValueError("Pool: slurm= needs the pepita CLI for its worker jobs: put it on "
                             "PATH, set PEPITA_CLI, or pass slurm=dict(worker_binary=...)")
        out["worker_binary"] = cli
    return out


def _copy_spec(spec: Any) -> Any:
    out = _pepita._TaskSpec()
    for field in ("path", "args", "name", "env", "cwd", "stdin", "timeout", "retries",
                  "priority", "deps", "cpus", "memory", "gpus", "backend", "output_cap"):
        setattr(out, field, getattr(spec, field))
    return out


@atexit.register
def _shutdown_live_pools() -> None:
    for pool in list(_live_pools):
        try:
            pool.shutdown(wait=False)
        except Exception:  # pragma: no cover - best effort at exit
            pass


def run_job(path: str, *, state_dir: Optional[str] = None, resume: bool = False,
            journal: bool = True,
            on_event: Optional[Callable[[Event], None]] = None) -> List[TaskResult]:
    """Runs a job file (the `pepita run` format) to the end and returns each task's result in
    file order. The journal goes to state_dir (default: a new temporary directory); with
    resume=True tasks that succeeded there before are not run again. Ctrl-C cancels the run.
    Errors: InvalidArgumentError ("job.toml:3:1: ...") for a bad file, NotFoundError for a
    missing one."""
    where = "run_job"
    path = _check_str(where, "path", path)
    if state_dir is None:
        state_dir = tempfile.mkdtemp(prefix="pepita-job-")
    state_dir = _check_str(where, "state_dir", state_dir)
    os.makedirs(state_dir, exist_ok=True)
    if on_event is not None and not callable(on_event):
        raise TypeError(f"run_job: on_event must be callable, got {type(on_event).__name__}")
    cli = os.environ.get("PEPITA_CLI") or shutil.which("pepita") or ""
    callback = None
    if on_event is not None:
        def callback(kind: str, task_id: int, name: str, attempt: int, fields: Any) -> None:
            on_event(Event(kind, task_id, name, attempt,
                           None if fields is None else TaskResult(fields)))
    rows = _pepita._run_job(path, state_dir, os.path.dirname(cli), bool(resume), bool(journal),
                            callback)
    return [TaskResult(r) for r in rows]


__all__ = [
    "Pool", "Task", "Future", "TaskResult", "Event", "run_job",
    "dot", "axpy", "softmax", "relu", "gelu", "vsum", "l2_norm", "sgemm", "simd_level",
    "ZramStore", "gpu",
    "PepitaError", "InvalidArgumentError", "NotFoundError", "AlreadyExistsError",
    "PermissionDeniedError", "UnsupportedError", "ResourceExhaustedError", "BusyError",
    "TimedOutError", "CancelledError", "DisconnectedError", "ProtocolError", "CorruptedError",
    "TaskFailedError", "TaskTimedOutError",
]
