"""README.md stays true: its config reference is the generated one, its Python session runs."""

from __future__ import annotations

import re
from pathlib import Path

from experiments.config import config_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_config_reference_is_current():
    text = README.read_text()
    block = text.split("<!-- config-reference:start -->")[1].split("<!-- config-reference:end -->")[0]
    assert block.strip() == config_reference().strip(), "regenerate the README's config reference"


def test_first_two_commands():
    text = README.read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1).splitlines()
    assert block[0] == 'python -m pip install -e ".[dev]" && hvsim run experiments/configs/quickstart.toml'
    assert block[1] == "python -m pytest"
    assert (README.parent / "experiments" / "configs" / "quickstart.toml").is_file()


def test_scripting_session_runs(capsys):
    text = README.read_text()
    section = text.split("## Scripting API")[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert int(out[0]) > 16000  # the two VMs' 8192 identical heap pages each, merged
    assert out[1].startswith("['MemTotal:")


def test_readme_says_how_long_the_suite_takes():
    text = README.read_text()
    assert re.search(r"The second command runs the test suite: about \d+ minutes on an\s+idle 2-core machine", text)


def test_readme_says_what_the_model_leaves_out():
    """One line per simplification a researcher must know before citing a figure."""
    section = README.read_text().split("## What the model leaves out", 1)[1].split("\n## ", 1)[0]
    items = [line for line in section.splitlines() if line.startswith("- **")]
    assert len(items) >= 5
    for topic in ("refault", "write", "THP", "cgroups"):
        assert any(topic in item for item in items), topic
