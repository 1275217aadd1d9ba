"""The built ./robotwtf.pyz, run the way operators run it, under each CPython it supports.

`make test` builds the pyz first; these tests only use it (and the reproducibility test rebuilds
into temporary folders with the same script). Pythons come from pyenv, else from PATH.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
PYZ = ROOT / "robotwtf.pyz"
BUILD_SCRIPT = ROOT / "tools" / "build_pyz.py"
SUPPORTED = ("3.11", "3.12", "3.13")
REQUIRED = "3.11"  # the version CI and `make` build with: its absence is a broken machine, not a skip
UNSUPPORTED = ("3.9", "3.10")
REFUSAL = re.compile(r"robotwtf needs CPython 3\.11, 3\.12 or 3\.13 on x86_64 Linux; this is CPython (\S+) on .+")


def pyenv_root() -> Path:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    try:
        return Path(subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return Path.home() / ".pyenv"


def version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"/versions/(\d+)\.(\d+)\.(\d+)/", path)
    return tuple(int(n) for n in match.groups()) if match else (0,)


def runs_as(python: str, version: str) -> bool:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def find_python(version: str) -> str | None:
    """A real interpreter for `version` (a pyenv install, else pythonX.Y on PATH), or None."""
    installs = sorted(glob.glob(str(pyenv_root() / "versions" / f"{version}.*" / "bin" / f"python{version}")),
                      key=version_key, reverse=True)
    on_path = shutil.which(f"python{version}")
    for candidate in [*installs, *([on_path] if on_path else [])]:
        if runs_as(candidate, version):
            return candidate
    return None


def python_for(version: str) -> str:
    python = find_python(version)
    if python is None:
        if version == REQUIRED:
            pytest.fail(f"CPython {version} is required (make and CI build with it) but none was found "
                        f"in pyenv ({pyenv_root()}) or on PATH")
        pytest.skip(f"CPython {version} is not installed here (looked in pyenv {pyenv_root()} and on PATH)")
    return python


@pytest.fixture(scope="session")
def pyz() -> Path:
    if not PYZ.is_file():
        pytest.fail(f"{PYZ} is missing: build it with `make pyz` (`make test` does that first)")
    return PYZ


@pytest.fixture(scope="session")
def shiv_root(tmp_path_factory) -> Path:
    """One unpack folder for the whole session, shared by all versions as on a real machine."""
    return tmp_path_factory.mktemp("shiv-root")


@pytest.fixture
def pyz_env(shiv_root) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROBOTWTF_", "SHIV_"))}
    env.update(SHIV_ROOT=str(shiv_root), PYTHONUNBUFFERED="1")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("version", SUPPORTED)
def test_help_exits_0(version, pyz, pyz_env):
    result = subprocess.run([python_for(version), str(pyz), "--help"], env=pyz_env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout


@pytest.mark.parametrize("version", SUPPORTED)
def test_compiled_dependencies_load_from_the_pyz_alone(version, pyz, pyz_env, shiv_root):
    """Each version finds its own extension modules in the pyz, not in the interpreter's
    site-packages (-I -S leave those out), and they work."""
    tag = "cpython-" + version.replace(".", "")
    probe = (
        "import regex, _cffi_backend, charset_normalizer, charset_normalizer.md\n"
        "from cryptography.hazmat.bindings import _rust\n"
        "from cryptography.hazmat.primitives.asymmetric import ec\n"
        "ec.generate_private_key(ec.SECP256R1())\n"
        "assert regex.fullmatch(r'\\p{L}+', 'w\\u00f6rld')\n"
        "assert str(charset_normalizer.from_bytes('h\\u00e9llo w\\u00f6rld'.encode('utf-8')).best()) == 'h\\u00e9llo w\\u00f6rld'\n"
        "import robotwtf, authlib, joserfc, dns.resolver, markdown_it, requests_hardened, waitress, bottle\n"
        "for m in (regex._regex, _cffi_backend, _rust, charset_normalizer.md, robotwtf):\n"
        "    print(m.__file__)\n"
    )
    env = dict(pyz_env, SHIV_INTERPRETER="1")
    result = subprocess.run([python_for(version), "-I", "-S", str(pyz), "-c", probe], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    files = result.stdout.split()
    assert len(files) == 5
    assert all(f.startswith(str(shiv_root)) for f in files), files
    assert all(tag in Path(f).name for f in files[:2]), files
    assert files[2].endswith(".abi3.so")
    assert files[3].endswith("charset_normalizer/md.py")  # its compiled copies are left out (build_pyz.py)
    assert (Path(files[4]).parent / "schema.sql").is_file()
    assert (Path(files[4]).parent / "views").is_dir()


@pytest.mark.parametrize("version", SUPPORTED)
def test_later_runs_skip_shivs_bootstrap(version, pyz, pyz_env):
    """Once shiv has unpacked the pyz, __main__.py imports robotwtf from the unpacked folder
    itself: shiv's bootstrap (~60 ms a start) runs only to unpack, or for a SHIV_ setting."""
    command = [python_for(version), "-X", "importtime", str(pyz), "--help"]
    subprocess.run(command, env=pyz_env, capture_output=True, timeout=120)  # unpacks, if not done yet
    result = subprocess.run(command, env=pyz_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout
    assert not re.search(r"\| _bootstrap$", result.stderr, re.MULTILINE)
    assert re.search(r"\| robotwtf$", result.stderr, re.MULTILINE)
    shiv = subprocess.run(command, env=dict(pyz_env, SHIV_FORCE_EXTRACT="1"), capture_output=True, text=True,
                          timeout=120)
    assert shiv.returncode == 0 and "serve" in shiv.stdout, shiv.stderr
    assert re.search(r"\| _bootstrap$", shiv.stderr, re.MULTILINE)


@pytest.mark.parametrize("version", SUPPORTED)
def test_serve_answers_healthz_and_stops_on_sigterm(version, pyz, pyz_env, tmp_path):
    port = free_port()
    data = tmp_path / "data"
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [python_for(version), str(pyz), "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data)],
            env=pyz_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"serve exited {process.returncode} before answering:\n{log_path.read_text()}")
            try:
                response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"serve did not answer within 60 s:\n{log_path.read_text()}")
                time.sleep(0.05)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok"}
        for asset in ("style.css", "wiki.js"):  # packaged beside the templates
            assert requests.get(f"http://127.0.0.1:{port}/static/{asset}", timeout=5).status_code == 200, asset
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert any(data.iterdir()), "serve wrote nothing into its --data folder"


def test_git_clone_and_push_through_the_pyz_with_pure_python_dulwich(pyz, pyz_env, tmp_path):
    """The pyz ships dulwich without its compiled extensions; its pure-Python code serves git."""
    python, data, port = python_for(REQUIRED), tmp_path / "data", free_port()

    def cli(*args: str) -> str:
        result = subprocess.run([python, str(pyz), "--data", str(data), *args], env=pyz_env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    probe = subprocess.run([python, str(pyz), "-c", "import dulwich.pack as p; print(p.create_delta.__name__)"],
                           env=dict(pyz_env, SHIV_INTERPRETER="1"), capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "_create_delta_py", probe.stderr
    cli("init")
    cli("user", "add", "did:plc:aliceaaaaaaaaaaaaaaaaaaa", "--username", "alice")
    cli("wiki", "create", "garden", "--owner", "alice")
    cli("wiki", "git", "garden", "on")
    token = cli("token", "create", "garden", "--user", "alice")
    git_env = {k: v for k, v in pyz_env.items() if not k.startswith("GIT_")}
    git_env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
                   GIT_AUTHOR_NAME="T", GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="T",
                   GIT_COMMITTER_EMAIL="t@example.invalid")

    def git(*args: str, cwd: Path) -> None:
        result = subprocess.run(["git", "-c", "credential.helper=", *args], cwd=cwd, env=git_env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr

    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen([python, str(pyz), "serve", "--port", str(port), "--data", str(data)],
                                   env=pyz_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"http://127.0.0.1:{port}/healthz"):
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.05)
        git("clone", "-q", f"http://x:{token}@127.0.0.1:{port}/w/garden.git", "clone", cwd=tmp_path)
        (tmp_path / "clone" / "Home.md").write_text("# Home\n\nPushed through the pyz.\n")
        git("commit", "-q", "-am", "From git", cwd=tmp_path / "clone")
        git("push", "-q", cwd=tmp_path / "clone")
        git("clone", "-q", f"http://x:{token}@127.0.0.1:{port}/w/garden.git", "again", cwd=tmp_path)
        assert (tmp_path / "again" / "Home.md").read_text() == "# Home\n\nPushed through the pyz.\n"
    finally:
        process.terminate()
        process.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_shebang_runs_the_pyz_directly(pyz, pyz_env):
    python3 = shutil.which("python3", path=pyz_env.get("PATH"))
    if python3 is None or not any(runs_as(python3, v) for v in SUPPORTED):
        pytest.skip("python3 on PATH is not a supported CPython, so ./robotwtf.pyz alone can't run here")
    result = subprocess.run([str(pyz), "--help"], env=pyz_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("version", UNSUPPORTED)
def test_unsupported_python_gets_one_clear_line(version, pyz, pyz_env, tmp_path):
    env = dict(pyz_env, SHIV_ROOT=str(tmp_path / "shiv-root"))
    result = subprocess.run([python_for(version), str(pyz), "serve"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    match = REFUSAL.fullmatch(lines[0])
    assert match, lines[0]
    assert match.group(1).startswith(version + ".")
    assert not (tmp_path / "shiv-root").exists(), "the pyz unpacked itself before refusing"


def test_build_is_reproducible(tmp_path):
    """Two builds of the same tree, in different folders under different umasks, are byte-identical."""
    builds = []
    for name, umask in (("a", 0o022), ("b", 0o077)):
        output = tmp_path / name / "robotwtf.pyz"
        log = open(tmp_path / f"build-{name}.log", "wb")
        process = subprocess.Popen(
            [sys.executable, str(BUILD_SCRIPT), "--output", str(output), "--work-dir", str(tmp_path / f"work-{name}")],
            stdout=log, stderr=subprocess.STDOUT, umask=umask, cwd=tmp_path)
        builds.append((process, output, log))
    for process, output, log in builds:
        status = process.wait(timeout=600)
        log.close()
        assert status == 0, Path(log.name).read_text(errors="replace")
    (_, a, _), (_, b, _) = builds
    assert a.read_bytes() == b.read_bytes(), f"{a} and {b} differ"
