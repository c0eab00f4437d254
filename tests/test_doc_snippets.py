"""What the docs show is what the code does: the README's Python example is run and every output
it promises in a comment (`print(...)  # a cat -1.84`, `cap.alphas.shape  # (2, 14, 14): ...`) is
compared with the real one, on the shipped default model; every `python -m captioner ...` command
in the README and docs/ is parsed by that command's own parser, so a renamed flag fails here.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def code_blocks(page: Path, language: str) -> list[str]:
    return [
        body for lang, body in BLOCK.findall(page.read_text(encoding="utf-8")) if lang == language
    ]


def promised_output(comment: str) -> str:
    """The output a comment promises: its text up to a ": " outside brackets ("(2, 14, 14): ...")."""
    depth = 0
    for i, ch in enumerate(comment):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and comment.startswith(": ", i):
            return comment[:i].strip()
    return comment.strip()


def matches(promise: str, actual: str) -> bool:
    """'...' in a promise stands for any digits or text ("probability=0.994...")."""
    pattern = ".*?".join(re.escape(part) for part in promise.split("..."))
    return re.fullmatch(pattern, actual.strip(), re.S) is not None


def statements_with_promises(code: str) -> list[tuple[ast.stmt, str | None]]:
    """Each top-level statement with the promise of its last line's comment (print calls and bare
    expressions only: a comment on an assignment explains, it does not promise)."""
    tree = ast.parse(code)
    lines = code.splitlines()
    out = []
    for node in tree.body:
        promise = None
        last = lines[node.end_lineno - 1]
        if "#" in last and isinstance(node, ast.Expr):
            comment = last.split("#", 1)[1]
            promise = promised_output(comment)
        out.append((node, promise))
    return out


def test_the_readme_python_example_prints_what_it_shows(tmp_path, monkeypatch):
    code = next(b for b in code_blocks(ROOT / "README.md", "python") if "Captioner.load()" in b)
    monkeypatch.chdir(tmp_path)  # it writes cat.gif and cat.png
    code = code.replace('"demo/examples/', f'"{ROOT}/demo/examples/')
    namespace: dict = {}
    checked = 0
    for node, promise in statements_with_promises(code):
        source = ast.unparse(node)
        is_print = isinstance(node, ast.Expr) and getattr(node.value, "func", None) is not None
        is_print = is_print and getattr(node.value.func, "id", "") == "print"
        if promise is not None and is_print:
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                exec(compile(source, "README.md", "exec"), namespace)
            actual = buffer.getvalue()
        elif promise is not None:
            actual = repr(eval(compile(source, "README.md", "eval"), namespace))
        else:
            exec(compile(source, "README.md", "exec"), namespace)
            continue
        assert matches(promise, actual), (
            f"README shows {source!r} giving {promise!r}; it gives {actual!r}"
        )
        checked += 1
    assert checked >= 3  # the example keeps promising outputs
    assert (tmp_path / "cat.gif").is_file() and (tmp_path / "cat.png").is_file()


def captioner_commands() -> list[tuple[str, str]]:
    """(page, command) for every `python -m captioner ...` line of a bash block."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in code_blocks(page, "bash"):
            text = block.replace("\\\n", " ")
            for line in text.splitlines():
                line = line.split("  #", 1)[0].strip()
                m = re.search(r"(?:python -m captioner|(?<![\w.-])captioner) (\S.*)", line)
                if m and not line.startswith("#"):
                    found.append((page.name, m.group(1)))
    return found


@pytest.mark.parametrize("page, command", captioner_commands())
def test_every_command_in_the_docs_is_one_the_cli_accepts(page, command):
    import importlib

    from captioner.cli import COMMANDS

    words = shlex.split(command.replace("*.jpg", "photo.jpg"))
    if words[0] in ("--help", "-h"):
        return
    assert words[0] in COMMANDS, f"{page}: unknown command {words[0]!r} in {command!r}"
    parser = importlib.import_module(COMMANDS[words[0]][0]).get_args_parser()
    try:
        parser.parse_args(words[1:])
    except SystemExit as e:
        pytest.fail(f"{page}: `{command}` is refused by its parser (exit {e.code})")


def test_the_docs_show_captioner_commands():
    assert len(captioner_commands()) >= 15
