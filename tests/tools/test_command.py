"""CommandEvaluator: real programs in real subprocesses, never a shell."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.evolution.regions import CodeLocation
from agent.space import Categorical, Code, Space, SpaceError, Text
from agent.trial import Trial
from tests.tools.conftest import make_trial
from tools.command import CommandEvaluator, check_command, last_json_object, placeholders
from tools.evaluation import Evaluation, read_outcome
from tools.registry import EvaluatorContext, make_evaluator
from tools.sandbox import Limits

PY = sys.executable


def write_script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def dump_argv(tmp_path: Path) -> Path:
    """A program that writes its argv and environment to argv.json and prints a result."""
    return write_script(
        tmp_path,
        "dump_argv.py",
        """
        import json, os, sys
        from pathlib import Path
        record = {
            "argv": sys.argv[1:],
            "cwd": os.getcwd(),
            "params_file_env": os.environ.get("TUNESMITH_PARAMS_FILE"),
            "trial_number_env": os.environ.get("TUNESMITH_TRIAL_NUMBER"),
            "extra_env": os.environ.get("EXTRA_ENV"),
        }
        params_file = record["params_file_env"]
        record["params_file_content"] = json.loads(Path(params_file).read_text()) if params_file else None
        Path(__file__).with_name("argv.json").write_text(json.dumps(record))
        print(json.dumps({"loss": 1.5}))
        """,
    )


def run_dump(dump_argv: Path, argv_tail: list[str], params: dict[str, object], trial: Trial) -> dict:
    evaluation = CommandEvaluator([PY, str(dump_argv), *argv_tail], timeout=30, cwd=dump_argv.parent).evaluate(
        params, trial
    )
    assert evaluation.error is None, evaluation
    assert evaluation.output == {"loss": 1.5}
    return json.loads(dump_argv.with_name("argv.json").read_text())


# Command safety ------------------------------------------------------------------------------------------
HOSTILE_VALUES = [
    "x; touch pwned",
    "$(touch pwned_subst)",
    "`touch pwned_backtick`",
    "'; touch pwned_quote; echo '",
    '"; touch pwned_dquote; echo "',
    "a\ntouch pwned_newline",
    "&& touch pwned_and || touch pwned_or | tee pwned_pipe > pwned_redirect",
    "{x} {trial_number} %s \\ * ~",
]


def test_hostile_values_reach_the_program_as_one_literal_argument(
    dump_argv: Path, tmp_path: Path, trial: Trial
) -> None:
    space = Space(v=Categorical(HOSTILE_VALUES))
    for value in HOSTILE_VALUES:
        params = space.validate({"v": value})
        record = run_dump(dump_argv, ["--v", "{v}", "prefix={v}"], params, trial)
        assert record["argv"] == ["--v", value, f"prefix={value}"]
        assert record["params_file_content"] == {"v": value}
    for folder in {tmp_path, Path.cwd()}:
        assert not list(folder.glob("pwned*")), f"a value was executed as shell code in {folder}"


def test_text_values_with_newlines_and_quotes_stay_one_argument(dump_argv: Path, trial: Trial) -> None:
    text = 'line one\nline "two"\n$HOME `id` $(id)'
    params = Space(prompt=Text("x")).validate({"prompt": text})
    record = run_dump(dump_argv, ["{prompt}"], params, trial)
    assert record["argv"] == [text]


# Placeholders --------------------------------------------------------------------------------------------
def test_builtin_placeholders_env_and_format_specs(dump_argv: Path, tmp_path: Path) -> None:
    trial = make_trial(12)
    params = {"lr": 0.0123456, "depth": 3, "opt": "adam"}
    argv = [
        "--lr={lr:.3f}",
        "{depth:03d}",
        "{opt}",
        "{trial_number}",
        "{params_file}",
        "{lr!r}",
        "{{literal}}",
    ]
    record = run_dump(dump_argv, argv, params, trial)
    lr, depth, opt, number, params_file, lr_repr, literal = record["argv"]
    assert (lr, depth, opt, number, lr_repr, literal) == (
        "--lr=0.012",
        "003",
        "adam",
        "12",
        "0.0123456",
        "{literal}",
    )
    assert params_file == record["params_file_env"]
    assert Path(params_file).name == "params.json"
    assert record["params_file_content"] == params
    assert record["trial_number_env"] == "12"
    assert Path(record["cwd"]).resolve() == tmp_path.resolve()
    assert not Path(params_file).exists(), "the per-trial temporary folder should be removed afterwards"


def test_extra_env_reaches_the_command(dump_argv: Path, trial: Trial) -> None:
    evaluator = CommandEvaluator([PY, str(dump_argv)], env={"EXTRA_ENV": "hello"})
    assert evaluator.evaluate({}, trial).error is None
    assert json.loads(dump_argv.with_name("argv.json").read_text())["extra_env"] == "hello"


def test_placeholders_lists_fields_without_specs() -> None:
    assert placeholders(["python", "--lr={lr:.3f}", "{depth!r}", "{{x}}", "{trial_number}"]) == [
        "lr",
        "depth",
        "trial_number",
    ]
    with pytest.raises(ValueError):
        placeholders(["{lr"])
    with pytest.raises(ValueError):
        CommandEvaluator([PY, "{lr"])


def test_dotted_parameter_names_can_be_used_as_placeholders(dump_argv: Path, trial: Trial) -> None:
    # Space accepts names such as "optim.lr" (its name pattern allows '.'), so a command must be able to
    # use them; today "{optim.lr}" is read as attribute "lr" of a parameter "optim" and the trial fails.
    try:
        Space(**{"optim.lr": Categorical([0.1, 0.2])})
    except SpaceError:
        return  # also a fix: dotted names refused by the space
    assert placeholders(["{optim.lr}"]) == ["optim.lr"]
    record = run_dump(dump_argv, ["{optim.lr}"], {"optim.lr": 0.1}, trial)
    assert record["argv"] == ["0.1"]


def test_unknown_placeholder_fails_the_trial_not_the_study(trial: Trial) -> None:
    evaluation = CommandEvaluator([PY, "-c", "pass", "{missing}"]).evaluate({"x": 1}, trial)
    assert evaluation.output is None
    assert evaluation.error == (
        "cannot fill command item 3 ('{missing}'): KeyError('missing'); placeholders available: "
        "x, trial_number, params_file, python, candidate_dir (write {{ and }} for literal braces)"
    )


def test_python_is_the_interpreter_running_tunesmith(tmp_path: Path, trial: Trial) -> None:
    # ["python", ...] runs whatever `python` is first on PATH, often without the packages of this venv.
    script = write_script(tmp_path, "which.py", 'import json, sys\nprint(json.dumps({"exe": sys.executable}))\n')
    evaluation = CommandEvaluator(["{python}", str(script)], cwd=tmp_path).evaluate({}, trial)
    assert evaluation.error is None, evaluation
    assert evaluation.output == {"exe": sys.executable}


def test_python_is_a_known_placeholder_and_program(tmp_path: Path) -> None:
    context = EvaluatorContext(tmp_path, Space(v=Categorical(["a"])))
    assert check_command({"command": ["{python}", "train.py", "{v}"]}, context) == []
    assert check_command({"command": ["{pyhton}", "train.py"]}, context) == [
        "command[0]: placeholder {pyhton} is not a parameter "
        "(known: v, trial_number, params_file, python, candidate_dir)"
    ]


# Reading the result --------------------------------------------------------------------------------------
def test_metric_is_the_last_json_object_progress_and_garbage_skipped(tmp_path: Path, trial: Trial) -> None:
    script = write_script(
        tmp_path,
        "noisy.py",
        """
        import json, sys
        print("starting up")
        print(json.dumps({"loss": 9.0}))
        print(json.dumps({"step": 1, "value": 0.5}))
        print("{not json at all}")
        print(json.dumps({"loss": 0.25, "accuracy": 0.75}))
        print("[1, 2, 3]")
        print(json.dumps({"step": 2, "value": 0.25}))
        print("{\\"truncated\\": ")
        print("done, bye")
        sys.stderr.write("a warning on stderr\\n")
        """,
    )
    evaluation = CommandEvaluator([PY, str(script)], metric="accuracy").evaluate({}, trial)
    assert evaluation == Evaluation({"loss": 0.25, "accuracy": 0.75}, feedback="a warning on stderr\n")
    assert read_outcome(evaluation.output, "accuracy") == (0.75, {"loss": 0.25, "accuracy": 0.75})


def test_a_result_may_carry_step_and_epoch(tmp_path: Path, trial: Trial) -> None:
    # A "step" key used to mark a progress line, so this result was read as "no JSON object".
    script = write_script(
        tmp_path,
        "steps.py",
        """
        import json
        for step in (10, 20):
            print(json.dumps({"step": step, "epoch": step // 10, "loss": 1 / step}))
        print(json.dumps({"step": 100, "epoch": 3, "accuracy": 0.91}))
        """,
    )
    evaluation = CommandEvaluator([PY, str(script)], metric="accuracy").evaluate({}, trial)
    assert evaluation == Evaluation({"step": 100, "epoch": 3, "accuracy": 0.91})
    assert read_outcome(evaluation.output, "accuracy")[0] == 0.91


def test_progress_after_the_result_does_not_hide_it(tmp_path: Path, trial: Trial) -> None:
    script = write_script(
        tmp_path,
        "late_progress.py",
        """
        import json
        print(json.dumps({"step": 1, "accuracy": 0.5}))
        print(json.dumps({"step": 2, "accuracy": 0.8}))
        print(json.dumps({"event": "checkpoint saved", "step": 2}))
        """,
    )
    evaluation = CommandEvaluator([PY, str(script)], metric="accuracy").evaluate({}, trial)
    assert evaluation.output == {"step": 2, "accuracy": 0.8}


def test_the_metric_comes_from_the_job_through_the_evaluator_context(tmp_path: Path) -> None:
    evaluator = make_evaluator("command", {"command": [PY, "x.py"]}, EvaluatorContext(tmp_path, metric="loss"))
    assert isinstance(evaluator, CommandEvaluator)
    assert (evaluator.metric, evaluator.folder) == ("loss", tmp_path)


def test_last_json_object_unit() -> None:
    stdout = '{"a": 1}\n  {"b": 2}  \n{"step": 3}\nnoise\n'
    assert last_json_object(stdout) == {"step": 3}
    assert last_json_object(stdout, "b") == {"b": 2}
    assert last_json_object(stdout, "c") is None
    assert last_json_object("") is None
    assert last_json_object('["a"]\n{"a": 1') is None


def test_no_json_object_with_the_metric_names_what_was_printed(tmp_path: Path, trial: Trial) -> None:
    script = write_script(
        tmp_path,
        "silent.py",
        """
        import json
        print("trained, accuracy was 0.9")
        print(json.dumps({"step": 10, "epoch": 1, "loss": 0.9}))
        """,
    )
    evaluation = CommandEvaluator([PY, str(script)], metric="accuracy").evaluate({}, trial)
    assert evaluation.output is None
    assert evaluation.error == (
        'the command printed no JSON object with "accuracy" on stdout (the last one has: step, epoch, loss); '
        'print e.g. {"accuracy": 0.93} as its last line'
    )
    assert evaluation.feedback is not None
    assert "trained, accuracy was 0.9" in evaluation.feedback


@pytest.mark.parametrize(("metric", "example"), [("loss", '{"loss": 0.93}'), (None, '{"accuracy": 0.93}')])
def test_no_json_object_is_a_failed_evaluation_with_help(
    tmp_path: Path, trial: Trial, metric: str | None, example: str
) -> None:
    evaluation = CommandEvaluator([PY, "-c", "print('trained, loss was 0.9')"], metric=metric).evaluate({}, trial)
    assert evaluation.output is None
    assert (
        evaluation.error == f"the command printed no JSON object on stdout; print one as its last line, e.g. {example}"
    )


def test_nonzero_exit_names_the_status_and_keeps_the_stderr_tail(tmp_path: Path, trial: Trial) -> None:
    script = write_script(
        tmp_path,
        "crash.py",
        """
        import json, sys
        print(json.dumps({"loss": 1.0}))   # a result printed before crashing does not count
        sys.stderr.write("x" * 5000 + "\\n")
        sys.stderr.write("RuntimeError: CUDA out of memory\\n")
        sys.exit(3)
        """,
    )
    evaluation = CommandEvaluator([PY, str(script)]).evaluate({}, trial)
    assert evaluation.output is None
    assert evaluation.error == "the command exited with status 3"
    assert evaluation.feedback is not None
    assert evaluation.feedback.endswith("RuntimeError: CUDA out of memory\n")
    assert len(evaluation.feedback) <= 2003  # a tail, not the whole stderr


def test_missing_program_is_a_failed_evaluation(tmp_path: Path, trial: Trial) -> None:
    evaluator = CommandEvaluator(["tunesmith-no-such-program-xyz", "{x}"], cwd=tmp_path)
    evaluation = evaluator.evaluate({"x": 1}, trial)
    assert evaluation.output is None
    assert evaluation.error == "cannot start 'tunesmith-no-such-program-xyz': No such file or directory"


def test_bad_argv_is_refused_at_construction() -> None:
    for argv in ("python train.py", [], [PY, 3]):
        with pytest.raises(ValueError, match="the command must be a non-empty list of strings"):
            CommandEvaluator(argv)  # type: ignore[arg-type]


# Timeouts ------------------------------------------------------------------------------------------------
def _is_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie waiting for its reaper)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, within_s: float = 30.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if _is_gone(pid):
            return True
        time.sleep(0.05)
    return _is_gone(pid)


PARENT_WITH_CHILD = """
import signal, subprocess, sys, time
from pathlib import Path
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # inherited by the child: only SIGKILL works
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
Path(sys.argv[1]).write_text(str(child.pid))
print("child started", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.parametrize("ignore_term", [False, True], ids=["sigterm", "sigkill-after-grace"])
def test_timeout_kills_the_command_and_its_children(tmp_path: Path, trial: Trial, ignore_term: bool) -> None:
    script = write_script(tmp_path, "parent.py", PARENT_WITH_CHILD)
    pid_file = tmp_path / "child.pid"
    argv = [PY, str(script), str(pid_file)] + (["--ignore-term"] if ignore_term else [])
    started = time.monotonic()
    evaluation = CommandEvaluator(argv, timeout=1.5).evaluate({}, trial)
    elapsed = time.monotonic() - started
    child_pid = int(pid_file.read_text())
    try:
        assert evaluation.output is None
        assert evaluation.error == "timed out after 1.5s; the command and all its processes were killed"
        assert elapsed < 15, f"evaluate took {elapsed:.1f}s"
        assert _wait_gone(child_pid), f"the command's child {child_pid} survived the timeout"
    finally:
        if not _is_gone(child_pid):
            os.kill(child_pid, 9)


def test_timeout_as_duration_string(tmp_path: Path, trial: Trial) -> None:
    evaluator = CommandEvaluator([PY, "-c", "import time; time.sleep(60)"], timeout="1s")
    assert evaluator.timeout_s == 1.0
    started = time.monotonic()
    evaluation = evaluator.evaluate({}, trial)
    assert evaluation.error == "timed out after 1s; the command and all its processes were killed"
    assert time.monotonic() - started < 10


def test_fast_command_under_timeout_succeeds(tmp_path: Path, trial: Trial) -> None:
    script = write_script(tmp_path, "fast.py", 'import json, sys\nprint(json.dumps({"x": float(sys.argv[1])}))\n')
    evaluation = CommandEvaluator([PY, str(script), "{x}"], timeout="30s").evaluate({"x": 0.5}, trial)
    assert evaluation == Evaluation({"x": 0.5})


# Cascades and the sandbox ---------------------------------------------------------------------------------
CHECK = """\\
import json, sys
from tools.candidate import Candidate
with Candidate.from_env().functions("slow") as slow:
    cases = (("test_one", 1, 2), ("test_two", 2, 3))
    failed = [name for name, x, expected in cases if slow.call("f", x).value != expected]
for name in failed:
    print(f"FAILED {name}", file=sys.stderr)
print(json.dumps({"tests_passed": 2 - len(failed)}))
sys.exit(1 if failed else 0)
"""
SCORE = """\\
import json
from tools.candidate import Candidate
with Candidate.from_env().functions("slow") as slow:
    print(json.dumps({"score": slow.call("f", 10).value}))
"""
SLOW = "import math\n\n# tunesmith: begin f\ndef f(x):\n    return x + 1\n# tunesmith: end f\n"


def project(tmp_path: Path) -> Path:
    (tmp_path / "slow.py").write_text(SLOW)
    (tmp_path / "check.py").write_text(CHECK)
    (tmp_path / "score.py").write_text(SCORE)
    return tmp_path


def code_evaluator(folder: Path, **options: object) -> CommandEvaluator:
    space = Space(program=Code.from_file("slow.py", region="f", base=folder))
    table = {
        "command": ["{python}", "score.py"],
        "cascade": [{"name": "tests", "command": ["{python}", "check.py"], "timeout": "30s"}],
        **options,
    }
    evaluator = make_evaluator("command", table, EvaluatorContext(folder, space, metric="score"))
    assert isinstance(evaluator, CommandEvaluator)
    return evaluator


def test_a_candidate_runs_in_a_sandboxed_copy_after_its_cascade_and_the_user_files_stay(tmp_path: Path) -> None:
    folder = project(tmp_path)
    evaluator = code_evaluator(folder)
    assert evaluator.sandbox is not None, "Code parameters run in the sandbox without being asked"
    evaluation = evaluator.evaluate({"program": "def f(x):\n    return x + 1  # the same\n"}, make_trial())
    assert evaluation.error is None, evaluation
    assert isinstance(evaluation.output, dict)
    assert evaluation.output["score"] == 11 and evaluation.output["tests_passed"] == 2
    assert evaluation.output["tests_seconds"] > 0
    assert (folder / "slow.py").read_text() == SLOW, "the user's tree"


def test_an_evaluator_that_never_runs_the_candidate_fails_its_trial(tmp_path: Path) -> None:
    folder = project(tmp_path)
    (folder / "score.py").write_text("import json\nfrom slow import f\nprint(json.dumps({'score': f(10)}))\n")
    evaluation = code_evaluator(folder, cascade=[]).evaluate({"program": "def f(x):\n    return 99\n"}, make_trial())
    assert evaluation.output is None, "the user's own slow.py was scored, not the candidate"
    assert (evaluation.error or "").startswith("the evaluator never ran the candidate"), evaluation


def test_a_candidate_failing_a_stage_is_not_evaluated_and_says_which_tests_failed(tmp_path: Path) -> None:
    folder = project(tmp_path)
    evaluation = code_evaluator(folder).evaluate({"program": "def f(x):\n    return x * 2\n"}, make_trial())
    assert evaluation.output is None
    assert evaluation.error == "stage 'tests' exited with status 1"
    assert "FAILED test_two" in (evaluation.feedback or "") and "FAILED test_one" not in (evaluation.feedback or "")


def test_generated_code_never_runs_outside_the_sandbox(tmp_path: Path) -> None:
    folder = project(tmp_path)
    space = Space(program=Code.from_file("slow.py", region="f", base=folder))
    problems = check_command(
        {"command": ["{python}", "score.py"], "sandbox": False}, EvaluatorContext(folder, space, metric="score")
    )
    assert any(p.startswith("sandbox: the space has Code parameters (program)") for p in problems), problems
    with pytest.raises(ValueError, match="sandbox"):
        CommandEvaluator(["{python}", "score.py"], cwd=folder, code={"program": CodeLocation("slow.py", "f")})


def test_sandbox_limits_from_a_job_file(tmp_path: Path) -> None:
    evaluator = code_evaluator(project(tmp_path), sandbox={"memory": "1GB", "cpu_time": "30s", "processes": 32})
    assert evaluator.sandbox == Limits(cpu_time_s=30.0, memory_bytes=10**9, processes=32, file_size_bytes=1 << 30)
