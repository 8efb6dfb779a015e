# Bad input on every boundary: TypeError/ValueError naming the argument, pepita::Error codes
# mapped to pepita.errors with the message intact.
import concurrent.futures

import pytest

import pepita
from pepita import errors


def test_hierarchy_maps_codes_to_builtin_bases():
    assert issubclass(pepita.InvalidArgumentError, ValueError)
    assert issubclass(pepita.NotFoundError, LookupError)
    assert issubclass(pepita.TimedOutError, TimeoutError)
    assert issubclass(pepita.PermissionDeniedError, PermissionError)
    assert issubclass(pepita.CancelledError, concurrent.futures.CancelledError)
    for cls in (pepita.InvalidArgumentError, pepita.NotFoundError, pepita.TimedOutError,
                pepita.CancelledError, pepita.TaskFailedError, pepita.UnsupportedError):
        assert issubclass(cls, pepita.PepitaError)


def test_from_code_keeps_the_message_and_unknown_codes_stay_pepita_errors():
    e = errors._from_code("not-found", "no task 'x'; submit it first", 2)
    assert type(e) is pepita.NotFoundError and str(e) == "no task 'x'; submit it first"
    assert e.errno == 2
    e = errors._from_code("io", "disk failed")
    assert type(e) is pepita.PepitaError and e.code == "io"


@pytest.mark.parametrize("kwargs, exc, says", [
    ({"cpu_workers": "4"}, TypeError, "cpu_workers must be an int"),
    ({"cpu_workers": -1}, ValueError, "cpu_workers must be >= 0"),
    ({"retries": 1.5}, TypeError, "retries"),
    ({"timeout": "soon"}, TypeError, "timeout must be a number"),
    ({"queue_capacity": 0}, ValueError, "queue_capacity"),
    ({"workers": "host:1"}, TypeError, "workers must be a list of str"),
    ({"workers": ["127.0.0.1:1"]}, ValueError, "needs key="),
    ({"on_event": 3}, TypeError, "on_event must be callable"),
    ({"journal": 7}, TypeError, "journal must be a str"),
])
def test_pool_bad_arguments_name_the_argument(kwargs, exc, says):
    with pytest.raises(exc) as info:
        pepita.Pool(**kwargs)
    assert says in str(info.value)


def test_unknown_keyword_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="cpu_wrokers"):
        pepita.Pool(cpu_wrokers=2)
    with pytest.raises(TypeError, match="argz"):
        pepita.Task.binary("/bin/true", argz=["x"])


@pytest.mark.parametrize("kwargs, exc, says", [
    ({"args": "x"}, TypeError, "args must be a list of str"),
    ({"args": ["ok", 3]}, TypeError, "args[1] must be a str"),
    ({"env": {"A": 1}}, TypeError, "env must map str to str"),
    ({"env": ["A=1"]}, TypeError, "env must be a dict"),
    ({"timeout": -1}, ValueError, "timeout must be >= 0"),
    ({"retries": -1}, ValueError, "retries must be >= 0"),
    ({"deps": [1]}, TypeError, "deps[0] must be a pepita Future"),
    ({"stdin": 5}, TypeError, "stdin must be bytes"),
    ({"cpus": "two"}, TypeError, "cpus must be a number"),
    ({"memory": "lots"}, pepita.InvalidArgumentError, "lots"),
])
def test_task_bad_arguments_name_the_argument(kwargs, exc, says):
    with pytest.raises(exc) as info:
        pepita.Task.binary("/bin/true", **kwargs)
    assert says in str(info.value)


def test_invalid_task_is_invalid_argument_error_at_submit():
    with pepita.Pool() as pool:
        with pytest.raises(pepita.InvalidArgumentError) as info:
            pool.submit(pepita.Task.binary(""))
        assert isinstance(info.value, ValueError)
        assert str(info.value)  # pepita's message, intact
        with pytest.raises(pepita.InvalidArgumentError, match="backend"):
            pool.submit(pepita.Task.binary("/bin/true", backend="Not A Name"))
        with pytest.raises(pepita.UnsupportedError):
            pool.submit(pepita.Task.binary("/bin/true", backend="nosuch"))


def test_submit_rejects_what_is_neither_task_nor_callable():
    with pepita.Pool() as pool:
        with pytest.raises(TypeError, match="fn must be a Task or a callable, got int"):
            pool.submit(42)
        with pytest.raises(TypeError, match="takes no further arguments"):
            pool.submit(pepita.Task.binary("/bin/true"), 1)


def test_task_cannot_be_constructed_directly():
    with pytest.raises(TypeError, match="Task.binary"):
        pepita.Task()
