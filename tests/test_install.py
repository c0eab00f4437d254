"""The package as a user installs it (`pip install .`): the library, the `captioner` command and
the default model, found inside the installed package rather than in this checkout."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CAT = ROOT / "demo" / "examples" / "cat.jpg"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    # --no-build-isolation: build with this environment's setuptools, no download
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("CAPTIONER_CHECKPOINT", None)
    return target, env


def test_the_installed_package_captions_with_its_own_copy_of_the_default_model(installed, tmp_path):
    target, env = installed
    code = (
        "import captioner; print(captioner.__file__); print(captioner.default_checkpoint_dir()); "
        f"print(captioner.Captioner.load().caption({str(CAT)!r}).text)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert Path(out[0]).is_relative_to(target)  # not this checkout's package
    assert Path(out[1]) == target / "captioner" / "checkpoints" / "default"
    assert "cat" in out[2].split()


def test_the_installed_console_script_runs_the_cli(installed, tmp_path):
    target, env = installed
    script = target / "bin" / "captioner"
    assert script.is_file()
    result = subprocess.run(
        [sys.executable, str(script), "caption", str(CAT), "--beam-size", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "beam_size must be at least 1" in result.stderr
    result = subprocess.run(
        [sys.executable, str(script), "caption", str(CAT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith(f"{CAT}\t") and "cat" in result.stdout.split()


def test_every_package_of_the_library_is_installed(installed):
    """pyproject lists the packages: a new subpackage must be added there too."""
    target, _ = installed
    packages = {
        p.parent.relative_to(ROOT).as_posix().replace("/", ".")
        for p in (ROOT / "captioner").rglob("__init__.py")
    }
    missing = [p for p in packages if not (target / p.replace(".", "/") / "__init__.py").is_file()]
    assert not missing, f"not installed (add them to pyproject.toml's packages): {missing}"
    data = [
        p.relative_to(ROOT)
        for p in (ROOT / "captioner").rglob("*")
        if p.suffix in (".json", ".tsv") and "__pycache__" not in p.parts
    ]
    assert data and all((target / p).is_file() for p in data)
