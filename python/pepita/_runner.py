"""Runs pickled Python functions for pepita: one per process, or many in a persistent worker.

`python3 .../pepita/_runner.py` (or `python3 -m pepita._runner`) reads a cloudpickle of (fn, args, kwargs) on stdin, calls it and
writes pickle(("ok", value)) or pickle(("err", exception, traceback_text)) to stdout; its exit
status is 0 either way (the driver tells a function's exception from a crash by the payload). A
payload that cannot be loaded here (a module the function needs is missing on this host) comes
back as the ImportError naming the module. The driver's pepita.Pool starts it, locally or on a
remote worker, with the same interpreter.

`python3 .../pepita/_runner.py --serve 3` is a persistent worker (the pool's "python" backend,
include/pepita/executor/serve.hpp): on fd 3, a socket, it reads frames (8-byte little-endian
length, then a cloudpickle of (fn, args, kwargs)), runs each call and answers each with one
frame holding the same payload; it exits at end of file. Its stdout and stderr are the pool's
pipe, so the function's prints never touch the frames.
"""

import os
import pickle
import sys
import traceback


# Run as a script, Python puts this package's directory first on sys.path, where its modules
# (errors.py) could shadow the function's imports; the package's parent is on PYTHONPATH.
if __name__ == "__main__" and sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]



def _encode(payload) -> bytes:
    try:
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an unpicklable result or exception
        kind = "result" if payload[0] == "ok" else "exception"
        return pickle.dumps(
            ("err", TypeError(f"pepita: the function's {kind} cannot be pickled: {exc!r}"), ""),
            protocol=pickle.HIGHEST_PROTOCOL,
        )


def _call(data: bytes):
    """The reply payload for one pickled call."""
    try:
        fn, args, kwargs = pickle.loads(data)
    except Exception as exc:
        if isinstance(exc, ImportError):
            exc = type(exc)(
                f"pepita: cannot load the task on this worker ({sys.executable}): {exc}",
                name=getattr(exc, "name", None),
            )
        return ("err", exc, traceback.format_exc())
    try:
        return ("ok", fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - every exception goes back to the caller
        return ("err", exc, traceback.format_exc())


def _recv_exact(sock, n: int):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return buf


def serve(fd: int) -> int:
    """The persistent worker's loop: one reply frame per request frame until end of file."""
    import socket
    import struct

    try:  # die with the pool's thread that started us (a driver killed by SIGKILL)
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:  # pragma: no cover - not Linux/glibc: end of file still stops us
        pass
    sock = socket.socket(fileno=fd)
    head = struct.Struct("<Q")
    while True:
        h = _recv_exact(sock, 8)
        if h is None:
            return 0
        data = _recv_exact(sock, head.unpack(h)[0])
        if data is None:
            return 0
        reply = _encode(_call(data))
        sys.stdout.flush()
        sys.stderr.flush()
        if len(reply) < 65536:
            sock.sendall(head.pack(len(reply)) + reply)
        else:
            sock.sendall(head.pack(len(reply)))
            sock.sendall(reply)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        return serve(int(sys.argv[2]))
    out = sys.stdout.buffer
    # The function's own prints must not corrupt the payload: they go to stderr.
    sys.stdout = sys.stderr
    out.write(_encode(_call(sys.stdin.buffer.read())))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
