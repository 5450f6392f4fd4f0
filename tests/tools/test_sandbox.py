"""Each escape a generated program may try is contained: real programs run in a real sandbox, no mocks.

Every program here is bounded by itself as well (a capped number of forks, a capped write), so that a sandbox
whose limit failed still leaves the machine usable and the test fails instead of hanging.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tools.bubblewrap import BWRAP_ENV, Bubblewrap, bubblewrap
from tools.processes import FOLDER_PREFIX, TOKEN_ENV, clean_leftovers
from tools.sandbox import Limits, Sandbox, SandboxError, SandboxRun, sandbox_user

PY = sys.executable
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="namespaces exist on Linux only")
#: CI installs bubblewrap and sets this: there its tests must run, never skip.
REQUIRE_BWRAP = os.environ.get("TUNESMITH_REQUIRE_BWRAP") == "1"


def bwrap_here() -> bool:
    found = bubblewrap(sandbox_user())
    assert isinstance(found, Bubblewrap) or not REQUIRE_BWRAP, found
    return isinstance(found, Bubblewrap)


requires_bwrap = pytest.mark.skipif(not bwrap_here(), reason="bubblewrap is not installed or refused here")


@pytest.fixture
def tree() -> Iterator[Path]:
    """The user's folder, readable by every user (as a project usually is), so that only the sandbox keeps a
    program from writing into it: a folder under pytest's private tmp_path would stop ``nobody`` by itself."""
    folder = Path(tempfile.mkdtemp(prefix="sandbox-tree-"))
    folder.chmod(0o755)
    (folder / "train.py").write_text("print('the user\\'s code')\n")
    (folder / "data").mkdir()
    (folder / "data" / "rows.csv").write_text("a,b\n1,2\n")
    for ignored in (".git", "__pycache__", f"{FOLDER_PREFIX}1-2-3-{'0' * 32}"):
        (folder / ignored).mkdir()
        (folder / ignored / "x").write_text("not copied")
    (folder / "study.db").write_text("not copied")
    yield folder
    shutil.rmtree(folder)


def fingerprint(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with a hash of its bytes (folders and links marked as such)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path)] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            found[str(path)] = "folder"
        else:
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def python(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


def carriers(token: str) -> list[int]:
    """The processes still running with ``token`` in their environment."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get(TOKEN_ENV) == token:
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


def last_json(done: SandboxRun) -> dict[str, object]:
    """The JSON object a program printed last."""
    assert done.stdout.strip(), f"the program printed nothing; its stderr: {done.stderr}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# The copy ---------------------------------------------------------------------------------------------------
def test_the_copy_holds_the_tree_without_ignored_files_and_is_removed_afterwards(tree: Path) -> None:
    with Sandbox(tree, Limits()) as box:
        copy = box.path
        assert (copy / "train.py").read_text() == (tree / "train.py").read_text()
        assert (copy / "data" / "rows.csv").exists()
        assert sorted(p.name for p in copy.iterdir()) == ["data", "train.py"]
        box.write("model.py", "x = 1\n")
        box.write("pkg/deep/mod.py", "y = 2\n")
        done = box.run(python("import model, pkg.deep.mod as m; print(model.x + m.y)"), timeout_s=60)
        assert (done.returncode, done.stdout) == (0, "3\n"), done.stderr
    assert not copy.parent.exists()
    assert not (tree / "model.py").exists()


def test_write_refuses_paths_out_of_the_copy(tree: Path, tmp_path: Path) -> None:
    (tree / "link").symlink_to(tmp_path)
    with Sandbox(tree, Limits()) as box:
        for outside in ("../x", "a/../../x", "/etc/x", str(tree / "x"), "link/x"):
            with pytest.raises(ValueError, match="path inside the folder"):
                box.write(outside, "escaped")
        assert not (box.path.parent / "x").exists()
    assert not list(tmp_path.iterdir()) and not (tree / "x").exists()
    with pytest.raises(RuntimeError, match="with Sandbox"):
        Sandbox(tree).write("x", "")
    with pytest.raises(SandboxError, match="not a folder"), Sandbox(tree / "train.py"):
        pass


def test_the_copy_is_removed_after_a_run_killed_at_its_timeout(tree: Path) -> None:
    with Sandbox(tree, Limits()) as box:
        done = box.run(["sh", "-c", "sleep 60 & echo started; sleep 60"], timeout_s=0.5)
        folder = box.path.parent
    assert done.returncode is None and done.stdout == "started\n"
    assert not folder.exists()


def test_a_folder_left_by_a_killed_run_is_removed_at_the_next_start(tree: Path) -> None:
    code = f"""
        import sys, time
        from pathlib import Path
        from tools.sandbox import Sandbox
        with Sandbox(Path({str(tree)!r})) as box:
            print(box.path.parent, flush=True)
            time.sleep(60)
    """
    owner = subprocess.Popen(python(code), stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    assert owner.stdout is not None
    folder = Path(owner.stdout.readline().strip())
    assert folder.is_dir()
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert clean_leftovers().folders >= 1
    assert not folder.exists()


# Secrets ----------------------------------------------------------------------------------------------------
SHOW_ENVIRONMENT = "import json, os; print(json.dumps(dict(os.environ)))"


def test_secrets_and_credentials_are_not_visible(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "MY_API_KEY": "sk-not-for-generated-code",
        "AWS_SECRET_ACCESS_KEY": "aws-not-for-generated-code",
        "AWS_PROFILE": "production",
        "GOOGLE_APPLICATION_CREDENTIALS": "/root/gcp.json",
        "KUBECONFIG": "/root/.kube/config",
        "SSH_AUTH_SOCK": "/tmp/ssh-agent.sock",
        # names no deny-list knows: the environment is an allow-list
        "DATABASE_URL": "postgresql://alice:hunter2-for-nobody@db/prod",
        "GH_PAT": "ghp_not-for-generated-code",
        "OPENAI_KEY": "sk-another-not-for-generated-code",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    with Sandbox(tree, Limits()) as box:
        seen = last_json(box.run(python(SHOW_ENVIRONMENT), timeout_s=60))
        home = Path(str(seen["HOME"]))
        assert home.parent == box.path.parent
    with Sandbox(tree, Limits(), pass_env=["MY_API_KEY", "AWS_PROFILE"]) as box:  # the job's pass_env
        seen_passed = last_json(box.run(python(SHOW_ENVIRONMENT), timeout_s=60, env={"GIVEN": "on purpose"}))
    assert not set(secrets) & set(seen)
    assert not set(secrets.values()) & set(map(str, seen.values()))
    assert seen["LC_ALL"] == "C.UTF-8" and seen["PATH"] == os.environ["PATH"]  # the allow-list
    assert seen_passed["MY_API_KEY"] == secrets["MY_API_KEY"]  # named by the user: kept
    assert seen_passed["GIVEN"] == "on purpose"  # given by the evaluator: kept
    assert "AWS_PROFILE" not in seen_passed  # a credential: never
    assert home != Path.home()


def test_credential_files_and_storage_are_not_copied(tree: Path) -> None:
    (tree / ".env").write_text("OPENAI_API_KEY=sk-in-a-dotfile\n")
    (tree / ".env.local").write_text("GH_PAT=ghp_in-a-dotfile\n")
    (tree / ".ssh").mkdir()
    (tree / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    (tree / "deploy.pem").write_text("PRIVATE KEY")
    (tree / "study.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    (tree / "study.sqlite-wal").write_bytes(b"\x37\x7f\x06\x82")
    (tree / "results").mkdir()
    (tree / "results" / "history.bin").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)  # any name
    (tree / "tunesmith.db.schema-3.bak").write_bytes(b"SQLite format 3\x00")
    with Sandbox(tree, Limits()) as box:
        copied = sorted(str(p.relative_to(box.path)) for p in box.path.rglob("*"))
    assert copied == ["data", "data/rows.csv", "results", "train.py"]


# Files ------------------------------------------------------------------------------------------------------
def test_writing_outside_the_copy_leaves_the_users_tree_unchanged(tree: Path) -> None:
    before = fingerprint(tree)
    with Sandbox(tree, Limits()) as box:
        climbing = os.path.relpath(tree, box.path)
        code = f"""
            import json, os, shutil
            attempts = {{}}
            for name, attempt in [
                ("absolute", lambda: open({str(tree / "train.py")!r}, "w").write("pwned")),
                ("new file", lambda: open({str(tree / "new.py")!r}, "w").write("pwned")),
                ("dot-dot", lambda: open({climbing!r} + "/data/rows.csv", "a").write("pwned")),
                ("remove", lambda: os.remove({str(tree / "data" / "rows.csv")!r})),
                ("rmtree", lambda: shutil.rmtree({str(tree / "data")!r})),
            ]:
                try:
                    attempt()
                    attempts[name] = "written"
                except OSError as exc:
                    attempts[name] = errno.errorcode[exc.errno]
            print(json.dumps(attempts))
        """
        done = box.run(python("import errno\n" + textwrap.dedent(code)), timeout_s=60)
    assert done.returncode == 0, done.stderr
    attempts = last_json(done)
    assert set(attempts.values()) <= {"EACCES", "EPERM", "EROFS", "ENOENT"}, attempts  # ENOENT: not in its view
    assert fingerprint(tree) == before


def test_a_huge_file_is_stopped_at_the_file_size_limit(tree: Path) -> None:
    limit = 10 << 20
    code = """
        import errno, json, os
        outcome = {}
        with open("huge.bin", "wb", buffering=0) as f:  # a runaway writer, capped at 64 MB should the limit fail
            try:
                for _ in range(64):
                    f.write(b"x" * (1 << 20))
                outcome["stream"] = "written"
            except OSError as exc:
                outcome["stream"] = errno.errorcode[exc.errno]
        with open("sparse.bin", "wb", buffering=0) as f:  # 10 GB of size, no disk
            try:
                f.seek(10 << 30)
                f.write(b"x")
                outcome["sparse"] = "written"
            except OSError as exc:
                outcome["sparse"] = errno.errorcode[exc.errno]
        outcome["sizes"] = [os.path.getsize("huge.bin"), os.path.getsize("sparse.bin")]
        print(json.dumps(outcome))
    """
    with Sandbox(tree, Limits(file_size_bytes=limit)) as box:
        done = box.run(python(code), timeout_s=60)
        sizes = [(box.path / name).stat().st_size for name in ("huge.bin", "sparse.bin")]
    outcome = last_json(done)
    assert (outcome["stream"], outcome["sparse"]) == ("EFBIG", "EFBIG"), done.stderr
    assert max(sizes) <= limit


# Processes, time and memory ---------------------------------------------------------------------------------
FORK_BOMB = """
    import json, os, time
    forked = 0
    refused = None
    while forked < 2000:  # a cap of its own, should the limit fail
        try:
            pid = os.fork()
        except OSError as exc:
            refused = exc.errno
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        forked += 1
    print(json.dumps({"forked": forked, "refused": refused, "token": os.environ["TUNESMITH_TRIAL_TOKEN"]}))
"""


def test_a_fork_bomb_is_contained_by_the_process_limit_and_nothing_outlives_the_run(tree: Path) -> None:
    with Sandbox(tree, Limits(processes=16)) as box:
        done = box.run(python(FORK_BOMB), timeout_s=60)
    bomb = last_json(done)
    assert done.returncode == 0, done.stderr
    assert bomb["refused"] == errno.EAGAIN and isinstance(bomb["forked"], int) and bomb["forked"] < 16, bomb
    assert not carriers(str(bomb["token"]))


def test_an_infinite_loop_is_killed_at_the_wall_timeout(tree: Path) -> None:
    with Sandbox(tree, Limits()) as box:
        done = box.run(python("while True: pass"), timeout_s=1)
    assert done.returncode is None
    assert 1 <= done.seconds < 60  # killed at 1 s (plus the grace); unkilled it would run to the 600 s CPU limit


def test_an_infinite_loop_is_stopped_by_the_cpu_time_limit(tree: Path) -> None:
    with Sandbox(tree, Limits(cpu_time_s=1)) as box:
        done = box.run(python("while True: pass"), timeout_s=60)
    assert done.returncode == -signal.SIGXCPU
    assert done.seconds < 60


def test_a_memory_hog_fails_under_the_memory_limit(tree: Path) -> None:
    code = "hog = bytearray(1 << 30); print('allocated', len(hog))"
    with Sandbox(tree, Limits(memory_bytes=256 << 20)) as box:
        done = box.run(python(code), timeout_s=60)
    assert done.returncode != 0 and "allocated" not in done.stdout
    assert "MemoryError" in done.stderr


# Who runs it, with what -------------------------------------------------------------------------------------
def test_the_program_runs_as_nobody_under_root_and_finds_this_interpreters_packages(tree: Path) -> None:
    with Sandbox(tree, Limits()) as box:
        done = box.run(python("import os, numpy; print(os.getuid())"), timeout_s=120)
    assert done.returncode == 0, done.stderr
    expected = 65534 if os.geteuid() == 0 else os.getuid()
    assert done.stdout.split() == [str(expected)]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's programs run as another user")
def test_a_program_in_a_folder_closed_to_nobody_runs_and_the_rest_of_the_folder_stays_hidden(tree: Path) -> None:
    closed = Path(tempfile.mkdtemp(prefix="sandbox-closed-"))  # mode 0700, like /root holding a pyenv Python
    try:
        (closed / "secret.txt").write_text("not for generated code")
        (closed / "bin").mkdir(mode=0o755)
        (closed / "bin" / "tool").write_text('#!/bin/sh\necho ran as "$(id -u)"; ls -a "$(dirname "$0")/.."\n')
        (closed / "bin" / "tool").chmod(0o755)
        with Sandbox(tree, Limits()) as box:
            done = box.run([str(closed / "bin" / "tool")], timeout_s=60)
    finally:
        shutil.rmtree(closed)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ran", "as", "65534", ".", "..", "bin"]


@linux_only
def test_the_network_is_cut_where_the_kernel_allows_it_and_a_note_says_so_where_not(
    tree: Path, record_property: Callable[[str, object], None]
) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        code = f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=5).close()
                print("reached the host")
            except OSError as exc:
                print("cut off:", exc)
            with socket.socket() as own:  # its own loopback works either way
                own.bind(("127.0.0.1", 0))
                own.listen()
                socket.create_connection(own.getsockname(), timeout=5).close()
                print("own loopback")
        """
        with Sandbox(tree, Limits()) as box:
            done = box.run(python(code), timeout_s=60)
    record_property("network_isolated", done.network_isolated)
    print(f"network isolated here: {done.network_isolated}; notes: {done.notes}")
    assert done.returncode == 0, done.stderr
    if done.network_isolated:
        assert done.stdout.startswith("cut off:")
        assert not any("network" in note for note in done.notes)
    else:
        assert done.stdout.startswith("reached the host")
        assert any(note.startswith("network not isolated: ") for note in done.notes), done.notes
    assert done.stdout.endswith("own loopback\n")


def test_a_sandbox_allowed_the_network_reaches_the_host(tree: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        code = f"import socket; socket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=5)"
        with Sandbox(tree, Limits(network=True)) as box:
            done = box.run(python(code), timeout_s=60)
    assert done.returncode == 0, done.stderr
    assert not done.network_isolated
    assert not any("network" in note for note in done.notes)


def test_output_is_kept_and_a_missing_program_is_reported(tree: Path) -> None:
    with Sandbox(tree, Limits()) as box:
        started = time.monotonic()
        done = box.run(python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"), timeout_s=60)
        assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
        assert 0 < done.seconds <= time.monotonic() - started
        with pytest.raises(FileNotFoundError):
            box.run([str(box.path / "no-such-program")], timeout_s=10)


# Escapes that only bubblewrap closes ------------------------------------------------------------------------
@requires_bwrap
def test_a_daemon_with_a_clean_environment_dies_with_the_run(tree: Path) -> None:
    marker = f"tunesmith-daemon-{os.getpid()}-{time.monotonic_ns()}"
    code = f"""
        import os
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:  # a daemon: no session, no token, no parent of ours
                os.execve("/bin/sh", ["sh", "-c", "sleep 300; : {marker}"], {{}})
            os._exit(0)
        print("left a daemon")
    """
    with Sandbox(tree, Limits()) as box:
        done = box.run(python(code), timeout_s=60)
    assert done.returncode == 0 and done.stdout == "left a daemon\n", done.stderr
    alive = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert not alive, alive


@requires_bwrap
def test_the_program_sees_and_signals_only_its_own_processes(tree: Path) -> None:
    user = sandbox_user()
    victim = subprocess.Popen(
        ["sleep", "300"], user=None if user is None else user[0], group=None if user is None else user[1]
    )
    try:
        code = f"""
            import json, os, signal
            try:
                os.kill({victim.pid}, signal.SIGTERM)
                outcome = "killed"
            except OSError as exc:
                outcome = type(exc).__name__
            print(json.dumps({{"kill": outcome, "pids": [p for p in os.listdir("/proc") if p.isdigit()]}}))
        """
        with Sandbox(tree, Limits()) as box:
            seen = last_json(box.run(python(code), timeout_s=60))
        assert victim.poll() is None, "a process of the same user outside the sandbox was killed"
    finally:
        victim.kill()
        victim.wait()
    assert seen["kill"] in ("ProcessLookupError", "PermissionError")
    assert str(os.getpid()) not in seen["pids"] and len(seen["pids"]) <= 3, seen  # its init, itself


@requires_bwrap
def test_tmp_and_dev_shm_are_its_own_bounded_and_gone_afterwards(tree: Path) -> None:
    name = f"tunesmith-scratch-{os.getpid()}-{time.monotonic_ns()}"
    code = f"""
        import errno, json
        outcome = {{}}
        for folder in ("/tmp", "/dev/shm"):
            try:
                with open(folder + "/{name}", "wb", buffering=0) as f:
                    for _ in range(32):  # 32 MiB, over the 8 MiB bound
                        f.write(b"x" * (1 << 20))
                outcome[folder] = "written"
            except OSError as exc:
                outcome[folder] = errno.errorcode[exc.errno]
        print(json.dumps(outcome))
    """
    with Sandbox(tree, Limits(file_size_bytes=8 << 20)) as box:
        outcome = last_json(box.run(python(code), timeout_s=60))
    assert outcome == {"/tmp": "ENOSPC", "/dev/shm": "ENOSPC"} or set(outcome.values()) <= {"ENOSPC", "EFBIG"}
    assert not Path("/tmp", name).exists() and not Path("/dev/shm", name).exists()


@requires_bwrap
def test_unix_sockets_storage_and_home_of_the_host_are_out_of_reach(tree: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sandbox-host-"))
    folder.chmod(0o755)
    study = folder / "tunesmith.db"
    study.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    study.chmod(0o644)
    path = folder / "agent.sock"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(path))
            path.chmod(0o777)
            server.listen()
            server.settimeout(0)
            code = f"""
                import json, os, socket
                outcome = {{}}
                try:
                    socket.socket(socket.AF_UNIX).connect({str(path)!r})
                    outcome["socket"] = "connected"
                except OSError as exc:
                    outcome["socket"] = type(exc).__name__
                for name, target in (("storage", {str(study)!r}), ("home", {str(Path.home() / ".bashrc")!r})):
                    try:
                        open(target, "rb").read(16)
                        outcome[name] = "read"
                    except OSError as exc:
                        outcome[name] = type(exc).__name__
                outcome["home_listing"] = sorted(os.listdir({str(Path.home())!r})) if os.path.isdir(
                    {str(Path.home())!r}) else None
                print(json.dumps(outcome))
            """
            with Sandbox(tree, Limits()) as box:
                outcome = last_json(box.run(python(code), timeout_s=60))
            with pytest.raises(BlockingIOError):
                server.accept()
    finally:
        shutil.rmtree(folder)
    assert outcome["socket"] == "FileNotFoundError" and outcome["storage"] == "FileNotFoundError", outcome
    assert outcome["home"] in ("FileNotFoundError", "PermissionError"), outcome
    listing = outcome["home_listing"] or []
    assert not {".ssh", ".bashrc", ".aws"} & set(listing), listing  # at most the interpreter's own folders


def test_without_bubblewrap_the_run_goes_on_and_says_it_was_weaker(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BWRAP_ENV, "none")
    with Sandbox(tree, Limits()) as box:
        done = box.run(python("print('ran')"), timeout_s=60)
    assert done.returncode == 0 and done.stdout == "ran\n", done.stderr
    assert any(note.startswith("weaker confinement: bubblewrap switched off") for note in done.notes), done.notes
