# pepita.run_job: the `pepita run` job-file format from Python, with events and errors.
import textwrap

import pytest

import pepita


def test_run_job_returns_results_in_file_order_with_events(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(textwrap.dedent("""
        [[task]]
        name = "a"
        command = "/bin/echo"
        args = ["alpha"]

        [[task]]
        name = "b"
        command = "/bin/sh"
        args = ["-c", "echo beta; exit 2"]
        deps = ["a"]
    """))
    events = []
    results = pepita.run_job(str(job), state_dir=str(tmp_path / "state"), on_event=events.append)
    assert [r.name for r in results] == ["a", "b"]
    assert results[0].ok and results[0].stdout == b"alpha\n"
    assert results[1].status == "failed" and results[1].exit_code == 2
    assert ("finished", "a") in [(e.kind, e.name) for e in events]
    resumed = pepita.run_job(str(job), state_dir=str(tmp_path / "state"), resume=True)
    assert resumed[0].from_journal and not resumed[1].from_journal


def test_run_job_errors_name_the_file_and_position(tmp_path):
    with pytest.raises(pepita.NotFoundError):
        pepita.run_job(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text('[[task]]\nname = "x"\ncommand = "/bin/true"\nbogus = 1\n')
    with pytest.raises(pepita.InvalidArgumentError) as info:
        pepita.run_job(str(bad))
    assert "bad.toml:" in str(info.value) and "bogus" in str(info.value)
    with pytest.raises(TypeError, match="path must be a str"):
        pepita.run_job(3)
