"""The documentation stays true to the repository.

README.md stays short and starts with the two set-up commands; every relative link and picture in
README.md, docs/*.md and the model cards (checkpoints/*/README.md) points to a file that exists; no
page leaks an absolute path of the machine it was written on; docs/architecture.md names every
module of the package, so a module added without a line there fails here.

Each check is a function that returns the problems it finds; the tests at the bottom plant one
problem of each kind in a scratch folder and make sure the check reports it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_BYTES = 12_000
SETUP_COMMANDS = (
    "pip install -r requirements.txt && python app.py",
    "pip install -r requirements-dev.txt && python -m pytest",
)

FENCE = re.compile(r"^ {0,3}(```+|~~~+).*?^ {0,3}\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+).+?\1", re.S)
# [text](target) and ![alt](target "title"); reference definitions [id]: target; <img src="...">
INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML_SRC = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.I)  # http:, https:, mailto:, //host
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|home|root)/")


def doc_pages(root: Path = ROOT) -> list[Path]:
    return [
        root / "README.md",
        *sorted((root / "docs").glob("*.md")),
        *sorted((root / "checkpoints").glob("*/README.md")),
    ]


def without_code(text: str) -> str:
    """The text with fenced blocks and `inline code` blanked out (links there are not links)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return INLINE_CODE.sub("", text)


def link_targets(text: str) -> list[str]:
    prose = without_code(text)
    return [*INLINE_LINK.findall(prose), *REFERENCE_LINK.findall(prose), *HTML_SRC.findall(prose)]


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Relative links and pictures on `page` whose file does not exist."""
    broken = []
    for target in link_targets(page.read_text(encoding="utf-8")):
        if EXTERNAL.match(target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        resolved = root / path.lstrip("/") if path.startswith("/") else page.parent / path
        if not resolved.exists():
            broken.append(f"{page.relative_to(root)}: {target}")
    return broken


def machine_paths(page: Path, root: Path = ROOT) -> list[str]:
    """Lines of `page` that name an absolute path of a particular machine (/work/, /home/, /root/)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    return [
        f"{page.relative_to(root)}:{n}: {line.strip()}"
        for n, line in enumerate(lines, 1)
        if MACHINE_PATH.search(line)
    ]


def oversize(path: Path) -> list[str]:
    size = path.stat().st_size
    return (
        [f"{path.name} is {size} bytes (at most {README_MAX_BYTES}); move detail into docs/"]
        if size > README_MAX_BYTES
        else []
    )


def first_block_after_title(readme: str) -> tuple[str | None, str]:
    """(the first fenced block after the '# ' title, the text between the title and it)."""
    title = re.search(r"^# .+$", readme, re.M)
    if title is None:
        return None, ""
    rest = readme[title.end() :]
    block = FENCE.search(rest)
    if block is None:
        return None, rest
    return block.group(0), rest[: block.start()]


def setup_problems(readme: str) -> list[str]:
    block, before = first_block_after_title(readme)
    if block is None:
        return ["no title followed by a fenced code block"]
    problems = [
        f"the first block after the title lacks {cmd!r}"
        for cmd in SETUP_COMMANDS
        if cmd not in block
    ]
    if before.strip():
        problems.append(f"text comes before the set-up commands: {before.strip()[:60]!r}")
    return problems


def package_modules(root: Path = ROOT) -> list[str]:
    """Top-level modules (captioner/*.py) and subpackages (captioner/*/__init__.py) of the package."""
    package = root / "captioner"
    modules = [p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")]
    packages = [p.parent.name for p in package.glob("*/__init__.py")]
    return sorted(modules + packages)


def unnamed_modules(architecture: str, modules: list[str]) -> list[str]:
    """Modules that the page names neither as captioner/NAME(.py or /) nor as captioner.NAME."""
    return [
        m for m in modules if not re.search(rf"captioner[./]{re.escape(m)}(?!\w)", architecture)
    ]


# ---------------------------------------------------------------------------- the repository


def test_readme_is_short():
    assert oversize(ROOT / "README.md") == []


def test_readme_is_a_space_card():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\n"), "the Hugging Face front matter must open README.md"
    front = readme.split("\n---\n", 1)[0]
    assert "sdk: gradio" in front and "app_file: app.py" in front


def test_readme_starts_with_the_setup_commands():
    assert setup_problems((ROOT / "README.md").read_text(encoding="utf-8")) == []


def test_pages_exist():
    pages = doc_pages()
    missing = [str(p.relative_to(ROOT)) for p in pages if not p.is_file()]
    assert not missing
    for name in ("training", "performance", "robustness", "architecture", "app"):
        assert ROOT / "docs" / f"{name}.md" in pages


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_files(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_absolute_machine_paths(page):
    assert machine_paths(page) == []


def test_architecture_names_every_module():
    modules = package_modules()
    assert "model" in modules and "beam" in modules, modules
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert unnamed_modules(architecture, modules) == []


# ---------------------------------------------------------------------------- the checks can fail


def test_size_check_fails_on_a_long_readme(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("x" * README_MAX_BYTES)
    assert oversize(readme) == []
    readme.write_text("x" * (README_MAX_BYTES + 1))
    assert oversize(readme) != []


def test_setup_check_fails_without_the_commands():
    good = "---\na: b\n---\n\n# captioner\n\n```bash\n" + "\n".join(SETUP_COMMANDS) + "\n```\n"
    assert setup_problems(good) == []
    assert setup_problems(good.replace("python app.py", "python -m demo")) != []
    assert setup_problems(good.replace("python -m pytest", "pytest")) != []
    assert setup_problems(good.replace("# captioner\n", "# captioner\n\nSome words first.\n")) != []
    assert setup_problems("# captioner\n\nno code at all\n") != []


def test_link_check_fails_on_a_missing_file(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.png").write_bytes(b"")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "![ok](there.png) [ok](there.png#top) [web](https://example.org/x) [a](#anchor)\n"
        "`[code](nowhere.md)`\n\n```\n[code](nowhere.md)\n```\n"
    )
    assert broken_links(page, tmp_path) == []
    page.write_text(
        "See [this](../docs/gone.md#part) and ![pic](missing.png).\n\n[ref]: other.md\n"
    )
    assert broken_links(page, tmp_path) == [
        "docs/page.md: ../docs/gone.md#part",
        "docs/page.md: missing.png",
        "docs/page.md: other.md",
    ]


def test_path_check_fails_on_machine_paths(tmp_path):
    page = tmp_path / "README.md"
    page.write_text("checkpoints/default\nhttps://github.com/root/repo\n")
    assert machine_paths(page, tmp_path) == []
    for path in ("/work/main/checkpoints/default", "`/home/me/x`", "(/root/.cache/y)"):
        page.write_text(f"checkpoint {path}\n")
        assert machine_paths(page, tmp_path) != [], path


def test_module_check_fails_on_an_unnamed_module(tmp_path):
    (tmp_path / "captioner" / "scenes").mkdir(parents=True)
    for name in (
        "__init__.py",
        "__main__.py",
        "beam.py",
        "evaluate.py",
        "evaluate_photos.py",
        "scenes/__init__.py",
    ):
        (tmp_path / "captioner" / name).write_text("")
    modules = package_modules(tmp_path)
    assert modules == ["beam", "evaluate", "evaluate_photos", "scenes"]
    page = "`captioner/beam.py`, `captioner.evaluate`, `captioner/evaluate_photos.py`, `captioner/scenes/`"
    assert unnamed_modules(page, modules) == []
    assert unnamed_modules(page.replace("`captioner.evaluate`", ""), modules) == ["evaluate"]
    assert unnamed_modules(page.replace("captioner/scenes/", "scenes"), modules) == ["scenes"]
