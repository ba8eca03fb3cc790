"""The README opens with exactly two set-up commands, and CI runs the second verbatim."""

import re

from conftest import ROOT


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README has no sh block"
    assert text.index(block.group(0)) < text.index("## "), "set-up block must come first"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_has_exactly_two_setup_commands():
    main_job, tests = setup_commands()
    assert "vmbtool save" in main_job and "vmbtool inspect" in main_job
    assert "vmbtool restore" in main_job
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = setup_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def test_ci_checks_a_wheel_outside_the_checkout():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip wheel" in ci and "vmbtool\" --version" in ci


def test_the_readme_library_example_runs():
    """The KMCL example saves a channel through the free functions, as written."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The KMCL contract as a library"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["status"].name == "SUCCESS" and b"".join(scope["chunks"])
