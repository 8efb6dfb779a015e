"""Runs one pickled Python function as a pepita process task.

`python3 .../pepita/_runner.py` (or `python3 -m pepita._runner`) reads a cloudpickle of (fn, args, kwargs) on stdin, calls it and
writes pickle(("ok", value)) or pickle(("err", exception, traceback_text)) to stdout; its exit
status is 0 either way (the driver tells a function's exception from a crash by the payload). A
payload that cannot be loaded here (a module the function needs is missing on this host) comes
back as the ImportError naming the module. The driver's pepita.Pool starts it, locally or on a
remote worker, with the same interpreter.
"""

import os
import pickle
import sys
import traceback


# Run as a script, Python puts this package's directory first on sys.path, where its modules
# (errors.py) could shadow the function's imports; the package's parent is on PYTHONPATH.
if __name__ == "__main__" and sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]


def _dump(payload, out):
    try:
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an unpicklable result or exception
        kind = "result" if payload[0] == "ok" else "exception"
        data = pickle.dumps(
            ("err", TypeError(f"pepita: the function's {kind} cannot be pickled: {exc!r}"), ""),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
    out.write(data)
    out.flush()


def main() -> int:
    out = sys.stdout.buffer
    # The function's own prints must not corrupt the payload: they go to stderr.
    sys.stdout = sys.stderr
    try:
        fn, args, kwargs = pickle.loads(sys.stdin.buffer.read())
    except Exception as exc:
        if isinstance(exc, ImportError):
            exc = type(exc)(
                f"pepita: cannot load the task on this worker ({sys.executable}): {exc}",
                name=getattr(exc, "name", None),
            )
        _dump(("err", exc, traceback.format_exc()), out)
        return 0
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - every exception goes back to the caller
        _dump(("err", exc, traceback.format_exc()), out)
        return 0
    _dump(("ok", value), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
