"""Build robotwtf.pyz: one shiv zipapp that runs on CPython 3.11, 3.12 and 3.13 (x86_64 Linux).

    python tools/build_pyz.py [--output robotwtf.pyz] [--work-dir build/pyz]

Run it with the project's venv Python (it imports shiv). What it does:

1. For each supported CPython, `pip install --target` the pinned runtime set (requirements.txt,
   hash-checked) as binary wheels for that version's ABI and manylinux x86_64, into its own folder.
2. Merge the folders into one site-packages. Pure-Python files are identical across versions and
   kept once; compiled extension modules carry the version in their file name
   (`_regex.cpython-312-x86_64-linux-gnu.so`) or are abi3 (shared), so they coexist. Any other
   difference between the versions stops the build: it would mean one version gets the wrong code.
3. Add the application: robotwtf*.py, and schema.sql and views/ beside robotwtf.py (at the top of
   site-packages), which is where robotwtf.resource_root() finds them.
4. Leave out what nothing reads at run time (pip's install records, type stubs, dulwich's client
   side) and compiled extensions that have a pure-Python fallback (PURE_PYTHON_FALLBACKS): shiv unpacks
   every file on a pyz's first run, at ~0.4 ms a file. Compile the modules a server start imports
   (STARTUP_MODULES) to bytecode for the building Python's version (3.11 with make), so its first
   run need not compile them (~0.2 s); other versions compile on first import as before.
5. Run shiv with a fixed SOURCE_DATE_EPOCH (the last commit's time, unless set), --reproducible and
   --compressed, with a __main__.py that refuses an unsupported Python in one line before shiv
   unpacks anything. File modes are normalised, so the same sources give the same bytes.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ("3.11", "3.12", "3.13")
# manylinux_2_17 (= manylinux2014, glibc 2.17) is what most wheels ship; 2_28 where a project
# ships only that. pip expands manylinux2014 to the older manylinux2010/manylinux1 tags too.
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64")
APP_MODULES = "robotwtf*.py"
APP_DATA = ("schema.sql", "views", "static")
# pip's install records and typing-only files: no import reads them. METADATA and licenses stay
# (importlib.metadata and redistribution need them).
UNUSED_AT_RUN_TIME = ("*.dist-info/RECORD", "*.dist-info/INSTALLER", "*.dist-info/REQUESTED", "*.dist-info/WHEEL",
                      "**/*.pyi", "**/py.typed")
# Compiled extensions whose package falls back to its own pure-Python code when they are absent:
# dulwich's Rust speed-ups (~2 MB for each Python version) are left out: its pure-Python code does
# the same work, and robotwtf_git makes its packs' deltas itself. charset_normalizer's mypyc builds
# of cd.py and md.py (~0.56 MB for the three versions) only speed up requests' guess of an
# undeclared text encoding, which robotwtf's JSON fetches never need.
PURE_PYTHON_FALLBACKS = ("dulwich/*.so", "charset_normalizer/*.so")
# dulwich's client side: its command line, porcelain and the like. No module robotwtf_git uses
# imports them, however lazily (checked against the sources of the pinned version); ~250 KB.
UNUSED_DULWICH = tuple(f"dulwich/{name}" for name in (
    "porcelain/*", "aiohttp/*", "cloud/*", "tests/*", "__main__.py", "am.py", "annotate.py", "bisect.py", "cli.py",
    "diff.py", "diffstat.py", "fastexport.py", "filter_branch.py", "ignore.py", "lfs_server.py", "mailmap.py",
    "maintenance.py", "mbox.py", "range_diff.py", "rerere.py", "stash.py", "stripspace.py", "subtree.py", "web.py",
    "whitespace.py"))
# What `robotwtf serve` imports before it answers (tests/test_foundation.py keeps the rest lazy).
STARTUP_MODULES = ("robotwtf*.py", "bottle.py", "waitress/*.py")
# Bytecode checked against its source's hash when imported (unpacked files get new mtimes, so
# timestamps can't work); PYTHONHASHSEED=0 makes set constants marshal in the same order each build.
COMPILE_SCRIPT = """\
import py_compile, sys
for path in sys.argv[2:]:
    py_compile.compile(sys.argv[1] + "/" + path, dfile=path, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
"""
# 1980-01-01, the earliest time a zip entry can carry; used when there is no git history.
FALLBACK_EPOCH = 315532800

ENTRY_MODULE, ENTRY_FUNCTION = "robotwtf", "main"

# shiv writes __main__.py from this template (module=_bootstrap, fn=bootstrap; {{build_id}} is
# filled in before). The check runs before shiv's bootstrap, so an old Python never unpacks the
# archive or fails on an ImportError of a compiled module; it is written so that even Python 2
# can parse it. Once shiv has unpacked this build, later runs go straight to robotwtf: shiv's
# bootstrap costs ~60 ms a start (its imports, and reading the archive's index twice).
GUARDED_MAIN = '''\
# -*- coding: utf-8 -*-
import os
import sys

# platform (~5 ms of regular expressions) is imported only to word a refusal.
if (getattr(getattr(sys, "implementation", None), "name", "") != "cpython"
        or sys.version_info[:2] not in ((3, 11), (3, 12), (3, 13))
        or not sys.platform.startswith("linux") or os.uname()[4] != "x86_64"):
    import platform
    sys.stderr.write("robotwtf needs CPython 3.11, 3.12 or 3.13 on x86_64 Linux; this is %s %s on %s %s\\n"
                     % (platform.python_implementation(), platform.python_version(),
                        platform.machine(), platform.system()))
    sys.exit(1)


def unpacked_site_packages():
    """site-packages as shiv's bootstrap unpacked this build (where it would look), or None:
    not unpacked yet, or a SHIV_ setting other than SHIV_ROOT asks for shiv's bootstrap."""
    if any(name.startswith("SHIV_") and name != "SHIV_ROOT" for name in os.environ):
        return None
    root = os.path.expanduser(os.environ.get("SHIV_ROOT") or "~/.shiv")
    path = os.path.join(root, os.path.basename(os.path.realpath(sys.argv[0])) + "_{build_id}", "site-packages")
    return path if os.path.isdir(path) else None


site_packages = unpacked_site_packages()
if site_packages is None:
    import {{module}}
    {{module}}.{{fn}}()
else:
    # As shiv's bootstrap does: added with its .pth files, ahead of the interpreter's site-packages.
    import site
    length = len(sys.path)
    index = next((i for i, part in enumerate(sys.path)
                  if os.path.basename(part) in ("site-packages", "dist-packages")), length)
    site.addsitedir(site_packages)
    sys.path = sys.path[:index] + sys.path[length:] + sys.path[index:length]
    import {entry_module}
    sys.exit({entry_module}.{entry_function}())
'''


class BuildError(Exception):
    pass


def source_date_epoch() -> str:
    """SOURCE_DATE_EPOCH if set, else the last commit's time: the same commit builds the same bytes."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return os.environ["SOURCE_DATE_EPOCH"]
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out = ""
    return str(max(int(out), FALLBACK_EPOCH)) if out else str(FALLBACK_EPOCH)


def pip_install_for(version: str, requirements: Path, target: Path) -> None:
    """Install the pinned runtime set as binary wheels for CPython `version` into `target`."""
    abi = "cp" + version.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--target", str(target), "--no-deps", "--require-hashes", "--no-compile",
           "--only-binary=:all:", "--python-version", version, "--implementation", "cp",
           "--abi", abi, "-r", str(requirements)]
    for platform_tag in PLATFORMS:
        cmd += ["--platform", platform_tag]
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise BuildError(f"pip could not install the runtime set for CPython {version} (see above)")
    # Console scripts are not used from the pyz and carry this machine's interpreter path.
    shutil.rmtree(target / "bin", ignore_errors=True)


def is_extension_module(path: Path) -> bool:
    return path.suffix == ".so"


def is_install_metadata(rel: Path) -> bool:
    """RECORD and WHEEL name each version's own files and tags; keeping the first is harmless."""
    return rel.parts[0].endswith(".dist-info")


def merge_into(merged: Path, other: Path, version: str) -> None:
    """Add `other`'s extension modules to `merged`; everything else must already be identical."""
    for path in sorted(other.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(other)
        dest = merged / rel
        if not dest.exists():
            if is_extension_module(path) or is_install_metadata(rel):
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
                continue
            raise BuildError(f"{rel} exists only for CPython {version}; one site-packages can't serve all versions")
        if filecmp.cmp(path, dest, shallow=False) or is_install_metadata(rel):
            continue
        raise BuildError(f"{rel} differs between CPython versions ({version}); can't merge into one site-packages")


def add_application(site_packages: Path) -> None:
    modules = sorted(ROOT.glob(APP_MODULES))
    if not any(m.name == "robotwtf.py" for m in modules):
        raise BuildError(f"{ROOT / 'robotwtf.py'} is missing")
    for module in modules:
        shutil.copyfile(module, site_packages / module.name)
    for name in APP_DATA:
        source = ROOT / name
        if source.is_file():
            shutil.copyfile(source, site_packages / name)
        elif source.is_dir():
            shutil.copytree(source, site_packages / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "*~"))
        elif name == "schema.sql":
            raise BuildError(f"{source} is missing")


def leave_out_unused(site_packages: Path) -> None:
    for pattern in UNUSED_AT_RUN_TIME + PURE_PYTHON_FALLBACKS + UNUSED_DULWICH:
        for path in site_packages.glob(pattern):
            path.unlink()


def precompile_startup_modules(site_packages: Path) -> None:
    """Bytecode for the modules a server start imports, beside their sources (__pycache__)."""
    modules = sorted(str(path.relative_to(site_packages)) for pattern in STARTUP_MODULES
                     for path in site_packages.glob(pattern))
    env = dict(os.environ, PYTHONHASHSEED="0")
    result = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT, str(site_packages), *modules], env=env)
    if result.returncode != 0:
        raise BuildError("could not compile the startup modules to bytecode (see above)")
    for path in site_packages.rglob("__pycache__"):
        path.chmod(0o755)
        for pyc in path.iterdir():
            pyc.chmod(0o644)


def add_bytecode(archive_path: Path, site_packages: Path) -> None:
    """shiv leaves .pyc files out of the archive; append the precompiled ones, as shiv writes files."""
    with zipfile.ZipFile(archive_path, "a") as archive:
        date_time = archive.infolist()[0].date_time
        for pyc in sorted(site_packages.rglob("*.pyc")):
            info = zipfile.ZipInfo(f"site-packages/{pyc.relative_to(site_packages).as_posix()}", date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, pyc.read_bytes())


def normalise(tree: Path) -> None:
    """Same modes on every machine (umask, checkout): shiv stores them in the archive."""
    for path in tree.rglob("*"):
        if path.name == "__pycache__":
            shutil.rmtree(path)
    for path in tree.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def build_id(site_packages: Path) -> str:
    """A SHA-256 of every file's path and bytes (what shiv computes itself, but needed before it
    runs: __main__.py names the folder shiv unpacks to)."""
    digest = hashlib.sha256()
    for path in sorted(site_packages.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(site_packages).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_shiv(site_packages: Path, output: Path, epoch: str) -> None:
    from shiv import builder, cli

    if "{module}.{fn}()" not in builder.MAIN_TEMPLATE:
        raise BuildError("this shiv version writes __main__.py differently; update GUARDED_MAIN in tools/build_pyz.py")
    build = build_id(site_packages)
    builder.MAIN_TEMPLATE = GUARDED_MAIN.format(build_id=build, entry_module=ENTRY_MODULE,
                                                entry_function=ENTRY_FUNCTION)
    os.environ["SOURCE_DATE_EPOCH"] = epoch
    args = ["--site-packages", str(site_packages), "--entry-point", f"{ENTRY_MODULE}:{ENTRY_FUNCTION}",
            "--build-id", build, "--output-file", str(output), "--python", "/usr/bin/env python3",
            "--reproducible", "--compressed"]
    try:
        cli.main.main(args, prog_name="shiv", standalone_mode=False)
    except SystemExit as e:  # shiv reports its own errors by exiting
        if e.code:
            raise BuildError(f"shiv failed: {e.code}") from None


def build(output: Path, work_dir: Path, requirements: Path) -> None:
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    merged = work_dir / "site-packages"
    for version in SUPPORTED:
        target = work_dir / f"cp{version.replace('.', '')}"
        pip_install_for(version, requirements, target)
        if version == SUPPORTED[0]:
            target.rename(merged)
        else:
            merge_into(merged, target, version)
            shutil.rmtree(target)
    add_application(merged)
    leave_out_unused(merged)
    normalise(merged)
    precompile_startup_modules(merged)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    run_shiv(merged, partial, source_date_epoch())
    add_bytecode(partial, merged)
    partial.replace(output)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "robotwtf.pyz")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="scratch folder (default: a new temporary folder, removed afterwards)")
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt")
    args = parser.parse_args()
    try:
        if args.work_dir is not None:
            build(args.output.resolve(), args.work_dir.resolve(), args.requirements.resolve())
        else:
            with tempfile.TemporaryDirectory(prefix="robotwtf-pyz-") as tmp:
                build(args.output.resolve(), Path(tmp) / "work", args.requirements.resolve())
    except BuildError as e:
        print(f"build_pyz: {e}", file=sys.stderr)
        return 1
    size = args.output.stat().st_size
    print(f"built {args.output} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
