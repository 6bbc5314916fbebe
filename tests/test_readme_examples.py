"""The README's examples are real: every ```sh block of it, command by command, in README order,
run by bash in one reader's shell session against a running `wearable-gateway demo` (a child
process on a free port, a temporary data folder).

The only change made to a command is the port (`localhost:8080` → the demo's). The environment
is what the README tells the reader to set: the demo's `export` lines, then whatever the
examples themselves keep in shell variables (`PSEUDONYM=$(curl … | python3 …)`), carried from
one command to the next as the reader's shell would. Every command must exit 0 (bash with
`-e -o pipefail`), every HTTP answer be 2xx, every variable a command keeps be non-empty; an
ingest answer must match the response the README shows for it, or, where it shows none, store
every reading (no `rejected`).

Blocks not run are recognised by name only: the two set-up commands (the demo this test starts,
and the test run itself) and ```sh production blocks, which only "Running it for real" may hold.
Any other ```sh block is run, so a README command the test skips cannot be added by accident."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.demo_process import Demo, running_demo

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
EXPORT = Path(__file__).parent / "fixtures" / "healthkit" / "ahcd-export.xml"
STATUS = re.compile(r"^@@status (\d{3})$", re.M)
PRODUCTION_SECTION = "\n## Running it for real\n"
SETUP = (
    "pip install -e . && wearable-gateway demo",  # what this test runs, with --port/--data-dir
    "pip install -e '.[test]' && pytest",  # what runs this test
)
FENCES = {"sh", "sh production", "json", ""}
KEPT = re.compile(r"^([A-Z_][A-Z0-9_]*)=\$\(", re.M)


@dataclass
class Block:
    info: str
    body: str
    start: int  # offset in README.md


@dataclass
class Example:
    command: str
    block: int
    expected_summary: dict[str, int] | None  # the response the README shows, if any


def blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    return [
        Block(m.group(1).strip(), m.group(2), m.start())
        for m in re.finditer(r"^```([^\n`]*)\n(.*?)^```$", text, flags=re.S | re.M)
    ]


def is_complete(text: str) -> bool:
    """Whether bash reads `text` as whole commands (no open quote, `$(`, loop or `\\`)."""
    done = subprocess.run(
        ["/bin/bash", "-n"], input=text + "\n", capture_output=True, text=True, check=False
    )
    return done.returncode == 0


def commands_of(body: str) -> list[str]:
    """A block's commands, each with the comment lines that follow it."""
    commands: list[str] = []
    current: list[str] = []
    for line in body.splitlines():
        if not current and commands and (not line.strip() or line.lstrip().startswith("#")):
            commands[-1] += "\n" + line
            continue
        current.append(line)
        text = "\n".join(current)
        if not line.endswith("\\") and is_complete(text):
            if text.strip() and not text.lstrip().startswith("#"):
                commands.append(text)
            current = []
    assert not current, f"a README block ends inside a command:\n{body}"
    return commands


def examples() -> list[Example]:
    found: list[Example] = []
    all_blocks = blocks()
    production_from = README.read_text(encoding="utf-8").index(PRODUCTION_SECTION)
    for index, block in enumerate(all_blocks):
        assert block.info in FENCES, f"unknown code fence ```{block.info}"
        if block.info == "sh production":
            assert block.start > production_from, "only 'Running it for real' is production"
            continue
        if block.info != "sh":
            assert not re.search(r"^\s*(curl|wearable-gateway) ", block.body, re.M), (
                f"commands in a ```{block.info} block are never run:\n{block.body}"
            )
            continue
        if block.body.strip() in SETUP:
            continue
        shown = all_blocks[index + 1] if index + 1 < len(all_blocks) else None
        summary = None
        if shown is not None and shown.info == "json":
            answer = json.loads(re.sub(r'"…"', '""', shown.body).replace("…", ""))
            summary = answer.get("summary")
        commands = commands_of(block.body)
        for n, command in enumerate(commands):
            found.append(Example(command, index, summary if n == len(commands) - 1 else None))
    return found


def test_the_readme_keeps_its_two_set_up_commands() -> None:
    sh = [b.body.strip() for b in blocks() if b.info == "sh"]
    assert sh[:2] == list(SETUP)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with running_demo(tmp_path_factory.mktemp("readme-demo") / "data") as running:
        yield running


def reader_folder(folder: Path) -> dict[str, str]:
    """What the reader brings: their own Apple Health export; and a curlrc that makes curl
    report the HTTP status of each answer on stderr (curl reads $HOME/.curlrc), leaving what
    the reader sees, or keeps in a variable, unchanged."""
    (folder / "export.xml").write_bytes(EXPORT.read_bytes())
    (folder / ".curlrc").write_text('write-out = "%{stderr}@@status %{http_code}\\n"\n')
    return {"HOME": str(folder)}


def test_the_readme_examples_run_in_order_against_the_demo(demo: Demo, tmp_path: Path) -> None:
    # What the README says the demo prints: working keys and the settings that point
    # `wearable-gateway` commands at its databases, keys and URL.
    assert {"VENDOR", "CLINIC", "GATEWAY_ZONES"} <= set(demo.environment)
    assert demo.environment["GATEWAY_PUBLIC_BASE_URL"] == demo.base_url
    port = demo.base_url.rsplit(":", 1)[1]
    # This checkout's `wearable-gateway` (what `pip install -e .` gives the reader).
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    env |= demo.environment | reader_folder(tmp_path)
    state = tmp_path / ".readme-shell-state"
    run_blocks: set[int] = set()
    for example in examples():
        command = example.command.replace("localhost:8080", f"127.0.0.1:{port}")
        # One reader's shell: variables a command sets are exported (-a) and handed on.
        script = f"set -a -e -o pipefail\n{command}\nenv -0 > {state}\n"
        done = subprocess.run(  # noqa: S603 — the README's own command, run by bash
            ["/bin/bash", "-c", script], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        output = f"--- stdout\n{done.stdout[-2000:]}\n--- stderr\n{done.stderr[-2000:]}"
        where = f"{example.command}\n{output}"
        assert done.returncode == 0, where
        statuses = STATUS.findall(done.stderr)
        assert all(s.startswith("2") for s in statuses), where
        if re.search(r"^\s*(?:\w+=\$\()?curl ", command, re.M) and " -w " not in command:
            assert statuses, where
        env = dict(item.split("=", 1) for item in state.read_text().split("\0") if "=" in item)
        for name in KEPT.findall(command):
            assert env.get(name), f"{name} is empty after\n{where}"
        check_answer(done.stdout.strip(), example, where)
        run_blocks.add(example.block)
    every_sh = {i for i, b in enumerate(blocks()) if b.info == "sh" and b.body.strip() not in SETUP}
    assert run_blocks == every_sh
    assert len(every_sh) >= 12


def check_answer(body: str, example: Example, where: str) -> None:
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or "summary" not in answer:
        assert example.expected_summary is None, where
        return
    summary = {k: answer["summary"].get(k, 0) for k in ("created", "duplicate", "rejected")}
    if example.expected_summary is not None:
        assert summary == {k: example.expected_summary.get(k, 0) for k in summary}, where
    else:
        assert summary["rejected"] == 0, where
        assert summary["created"] + summary["duplicate"] >= 1, where
