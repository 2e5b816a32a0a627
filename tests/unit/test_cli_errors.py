"""User errors end in one line and exit code 2; their traceback goes to a log file (or
stderr with --debug); internal errors keep their traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from uniembed.cli import EXIT_USER_ERROR, find_user_error, run_job
from uniembed.config import ConfigError, load_yaml
from uniembed.data.output_guard import ForeignFilesError, naming_input
from uniembed.errors import MissingInputError, UserError
from uniembed.storage import StorageError

ROOT = Path(__file__).parents[2]


def _raising(exc: BaseException):  # noqa: ANN202 - a fake job main
    def main(argv: list[str] | None) -> int:
        raise exc

    return main


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "exc",
    [
        ConfigError("compute.num_actors: expected an integer, got 'two'"),
        ForeignFilesError("output o holds 1 file(s) the embed job did not write: notes.txt"),
        MissingInputError("input x.jsonl does not exist; check input (--input)"),
        StorageError("S3 endpoint http://127.0.0.1:1, bucket 'b': unreachable or refused"),
    ],
)
def test_a_user_error_prints_one_line_and_exits_2(
    exc: Exception,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UNIEMBED_LOG_DIR", str(tmp_path))
    monkeypatch.delenv("UNIEMBED_DEBUG", raising=False)
    assert run_job(_raising(exc), "embed", ["--input", "x"]) == EXIT_USER_ERROR
    line = _one_line(capsys)
    assert line.startswith(f"embed: error: {exc}")
    assert "Traceback" not in line
    (log,) = tmp_path.glob("embed-*.log")
    assert str(log) in line
    text = log.read_text()
    assert "Traceback" in text and type(exc).__name__ in text and "--input x" in text


def test_debug_prints_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNIEMBED_DEBUG", raising=False)
    code = run_job(_raising(ConfigError("lr: expected a number")), "tune", ["--debug"])
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("tune: error: lr: expected a number")


def test_an_internal_error_keeps_its_traceback() -> None:
    with pytest.raises(KeyError):
        run_job(_raising(KeyError("embedding")), "embed", [])


def test_user_errors_are_found_through_ray_and_raise_from() -> None:
    from ray.exceptions import RayTaskError

    cause = MissingInputError("input gone.jsonl does not exist")
    remote = RayTaskError("read", "Traceback (most recent call last): ...", cause)
    assert find_user_error(remote) is cause
    wrapped = remote.as_instanceof_cause()
    assert find_user_error(wrapped) is cause
    try:  # Ray Data re-raises a task's error from its own
        raise RuntimeError("dataset failed") from wrapped
    except RuntimeError as e:
        assert find_user_error(e) is cause
    try:  # an internal error raised while handling a user error stays internal
        try:
            raise cause
        except UserError:
            raise ValueError("bug") from None
    except ValueError as e:
        assert find_user_error(e) is None


def test_config_file_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; check --config"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1\nb: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line 2: not valid YAML"):
        load_yaml(bad)


def test_a_missing_input_names_the_key() -> None:
    with pytest.raises(MissingInputError, match=r"input x does not exist; check pool \(--pool\)"):
        with naming_input("pool"):
            raise FileNotFoundError("input x does not exist")


@pytest.mark.parametrize(
    "job", ["embed", "mine", "evaluate", "tune", "distill", "train_reranker", "soup"]
)
def test_every_job_ends_a_config_error_with_exit_2(
    job: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    monkeypatch.setenv("UNIEMBED_LOG_DIR", str(tmp_path))
    main = importlib.import_module(f"jobs.{job}").main
    code = run_job(main, job, ["--config", str(tmp_path / "missing.yaml")])
    assert code == EXIT_USER_ERROR
    assert _one_line(capsys).startswith(f"{job}: error: config {tmp_path}/missing.yaml")


def test_the_script_exits_2_with_one_line(tmp_path: Path) -> None:
    """``python jobs/embed.py`` as a user runs it: a config type error."""
    argv = [sys.executable, str(ROOT / "jobs" / "embed.py"), "--input", "x", "--output", "y"]
    env = {"UNIEMBED_LOG_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [*argv, "compute.num_actors=two"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.returncode == EXIT_USER_ERROR, done.stderr
    assert done.stderr.strip().splitlines() == [
        next(line for line in done.stderr.splitlines() if line.startswith("embed: error:"))
    ]
    assert "compute.num_actors: expected an integer, got 'two'" in done.stderr


def test_too_few_training_rows_is_a_user_error(tmp_path: Path) -> None:
    """A train job cannot publish an export from an empty input: it stops, as a user error."""
    from uniembed.data.training_rows import TrainingDataError
    from uniembed.training.train_config import DistillConfig
    from uniembed.training.trainer import training_rows

    path = tmp_path / "texts.jsonl"
    path.write_text('{"id": "a", "text": "one"}\n')
    cfg = DistillConfig(input=str(path))
    with pytest.raises(TrainingDataError, match="1 usable rows, fewer than one batch") as info:
        training_rows(cfg)
    assert find_user_error(info.value) is info.value


def test_an_all_bad_training_input_names_the_count_and_the_first_reasons(tmp_path: Path) -> None:
    from uniembed.data.training_rows import TrainingDataError
    from uniembed.training.train_config import DistillConfig
    from uniembed.training.trainer import training_rows

    path = tmp_path / "texts.jsonl"
    path.write_text('{"id": "a", "text": ""}\n{"id": "b"}\nnot json\n{"id": "d", "text": 5}\n')
    with pytest.raises(TrainingDataError) as info:
        training_rows(DistillConfig(input=str(path)))
    message = str(info.value)
    assert message.startswith(f"{path}: 0 usable rows (4 more quarantined; first reasons: ")
    assert f"{path}:1: field 'text' is missing or empty" in message
    assert f"{path}:3: " in message and f"{path}:4" not in message  # the first three
