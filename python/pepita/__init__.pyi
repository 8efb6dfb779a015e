# Type stubs for the pepita package (issue 26). The runtime is pepita/__init__.py over the
# pybind11 extension pepita/_pepita.
import concurrent.futures
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional

import numpy
import numpy.typing as npt

from .errors import (
    AlreadyExistsError as AlreadyExistsError,
    BusyError as BusyError,
    CancelledError as CancelledError,
    CorruptedError as CorruptedError,
    DisconnectedError as DisconnectedError,
    InvalidArgumentError as InvalidArgumentError,
    NotFoundError as NotFoundError,
    PepitaError as PepitaError,
    PermissionDeniedError as PermissionDeniedError,
    ProtocolError as ProtocolError,
    ResourceExhaustedError as ResourceExhaustedError,
    TaskFailedError as TaskFailedError,
    TaskTimedOutError as TaskTimedOutError,
    TimedOutError as TimedOutError,
    UnsupportedError as UnsupportedError,
)

__version__: str

F32 = npt.NDArray[numpy.float32]
F64 = npt.NDArray[numpy.float64]

class TaskResult:
    id: int
    name: str
    status: str
    exit_code: int
    signal: int
    wall: float
    cpu: float
    max_rss_kb: int
    stdout: bytes
    stderr: bytes
    output_truncated: bool
    error: str
    attempts: int
    from_journal: bool
    host: str
    peak_memory: int
    @property
    def ok(self) -> bool: ...
    @property
    def text(self) -> str: ...

class Event(NamedTuple):
    kind: str
    id: int
    name: str
    attempt: int
    result: Optional[TaskResult]

class Task:
    @staticmethod
    def binary(path: str, *, args: Iterable[str] = ..., name: Optional[str] = ...,
               env: Optional[Mapping[str, str]] = ..., cwd: Optional[str] = ...,
               stdin: Optional[bytes | str] = ..., timeout: Optional[float] = ...,
               retries: Optional[int] = ..., priority: int = ..., deps: Iterable[Future] = ...,
               cpus: Optional[float] = ..., memory: int | str | None = ...,
               gpus: Optional[float] = ..., backend: Optional[str] = ...,
               output_cap: Optional[int] = ...) -> Task: ...
    @staticmethod
    def function(fn: Callable[..., Any], args: Iterable[Any] = ...,
                 kwargs: Optional[Mapping[str, Any]] = ..., *, name: Optional[str] = ...,
                 env: Optional[Mapping[str, str]] = ..., cwd: Optional[str] = ...,
                 timeout: Optional[float] = ..., retries: Optional[int] = ...,
                 priority: int = ..., deps: Iterable[Future] = ..., cpus: Optional[float] = ...,
                 memory: int | str | None = ..., gpus: Optional[float] = ...,
                 backend: Optional[str] = ...) -> Task: ...
    @property
    def name(self) -> str: ...

class Future(concurrent.futures.Future[Any]):
    task_id: int

class Pool:
    def __init__(self, cpu_workers: int = ..., *, process_slots: Optional[int] = ...,
                 journal: Optional[str] = ..., resume: bool = ..., retries: int = ...,
                 timeout: Optional[float] = ..., queue_capacity: Optional[int] = ...,
                 workers: Optional[Iterable[str]] = ..., key: Optional[str] = ...,
                 tls: bool = ..., slurm: Optional[Mapping[str, Any]] = ...,
                 on_event: Optional[Callable[[Event], None]] = ...) -> None: ...
    def submit(self, fn: Task | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future: ...
    def run(self, fn: Task | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...
    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: Optional[float] = ...) -> Iterator[Any]: ...
    @property
    def num_workers(self) -> int: ...
    def stats(self) -> Dict[str, Any]: ...
    def cancel_all(self) -> None: ...
    def shutdown(self, wait: bool = ..., *, cancel_futures: bool = ...) -> None: ...
    def __enter__(self) -> Pool: ...
    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...

def run_job(path: str, *, state_dir: Optional[str] = ..., resume: bool = ...,
            journal: bool = ...,
            on_event: Optional[Callable[[Event], None]] = ...) -> List[TaskResult]: ...

def dot(x: F32 | F64, y: F32 | F64, parallel: bool = ...) -> float: ...
def axpy(alpha: float, x: F32 | F64, y: F32 | F64) -> None: ...
def softmax(x: F32, out: Optional[F32] = ...) -> F32: ...
def relu(x: F32, out: Optional[F32] = ...) -> F32: ...
def gelu(x: F32, out: Optional[F32] = ...) -> F32: ...
def vsum(x: F32) -> float: ...
def l2_norm(x: F32) -> float: ...
def sgemm(a: F32, b: F32, c: Optional[F32] = ..., alpha: float = ..., beta: float = ...,
          trans_a: bool = ..., trans_b: bool = ..., parallel: bool = ...) -> F32: ...
def simd_level() -> str: ...

class gpu:
    """The built-in Vulkan kernels on float32 arrays (a submodule of the extension)."""
    @staticmethod
    def available() -> bool: ...
    @staticmethod
    def device_name() -> str: ...
    @staticmethod
    def sgemm(a: F32, b: F32) -> F32: ...
    @staticmethod
    def saxpy(alpha: float, x: F32, y: F32) -> F32: ...
    @staticmethod
    def softmax(x: F32) -> F32: ...
    @staticmethod
    def sum(x: F32) -> float: ...

class ZramStore:
    def __init__(self, size: int, algorithm: str = ..., mem_limit: int = ...) -> None: ...
    def write(self, offset: int, data: bytes | bytearray | memoryview | numpy.ndarray) -> None: ...
    def read(self, offset: int, length: int) -> bytes: ...
    def discard(self, offset: int, length: int) -> None: ...
    def compact(self) -> int: ...
    def stats(self) -> Dict[str, float]: ...
    @property
    def size(self) -> int: ...
    @property
    def stored_pages(self) -> int: ...
