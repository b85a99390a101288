""".env.example and README's settings table document exactly the settings config.py declares, with its defaults."""

from __future__ import annotations

import re

from config import declared_settings
from tests.support.servers import ROOT

DECLARED = {item.env: item for item in declared_settings()}
# README describes these defaults in words: long prompts, and TIMEZONE's "the machine's zone".
DESCRIBED_IN_WORDS = {"SYSTEM_PROMPT", "SCHEDULED_MESSAGE_PROMPT", "TIMEZONE"}
# .env.example names a zone on purpose: containers run in UTC, so reminders would otherwise come at the wrong hour.
EXAMPLE_DIFFERS_ON_PURPOSE = {"TIMEZONE"}
README_EMPTY = "（空）"


def env_example_values() -> dict[str, str]:
    """`NAME=value` and commented `# NAME=value` lines of .env.example."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return dict(re.findall(r"(?m)^(?:#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", text))


def readme_rows() -> list[tuple[list[str], str]]:
    """(variable names, default cell) of every row of README's settings tables (header `| 变量 |` or `| Variable |`)."""
    rows: list[tuple[list[str], str]] = []
    in_table = False
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if not cells:
            in_table = False
        elif cells[0] in ("变量", "Variable"):
            in_table = True
        elif in_table and not set(cells[0]) <= set("-: "):
            rows.append((re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0]), cells[1]))
    return rows


def readme_defaults(names: list[str], cell: str) -> list[str] | None:
    """The defaults a row states, one per name, or None when the cell describes them in words."""
    if cell == README_EMPTY:
        return [""] * len(names)
    if not re.fullmatch(r"`[^`]*`( / `[^`]*`)*", cell):
        return None
    values = re.findall(r"`([^`]*)`", cell)
    if len(values) == 1 and len(names) > 1:  # the cron row: `0 0 9 * * *`
        values = values[0].split()
    return values


def test_env_example_documents_exactly_the_declared_settings():
    documented = set(env_example_values())
    assert sorted(set(DECLARED) - documented) == [], "declared in config.py but missing from .env.example"
    assert sorted(documented - set(DECLARED)) == [], "in .env.example but not declared in config.py"


def test_env_example_values_are_the_defaults():
    wrong = {
        name: (value, DECLARED[name].default_text)
        for name, value in env_example_values().items()
        if name in DECLARED and name not in EXAMPLE_DIFFERS_ON_PURPOSE and value != DECLARED[name].default_text
    }
    assert wrong == {}, "(.env.example, config.py) defaults differ"


def test_readme_table_documents_exactly_the_declared_settings():
    rows = readme_rows()
    assert rows, "README's settings table (header | 变量 | 默认值 | 说明 |) was not found"
    documented = [name for names, _ in rows for name in names]
    assert sorted(set(DECLARED) - set(documented)) == [], "declared in config.py but missing from README's table"
    assert sorted(set(documented) - set(DECLARED)) == [], "in README's table but not declared in config.py"


def test_readme_defaults_are_the_declared_defaults():
    for names, cell in readme_rows():
        values = readme_defaults(names, cell)
        if values is None:
            assert set(names) <= DESCRIBED_IN_WORDS, f"README row {names}: state the default as `value` or （空）"
            continue
        assert len(values) == len(names), f"README row {names}: one default per variable, got {cell}"
        for name, value in zip(names, values, strict=True):
            if name in DECLARED:  # an undeclared name is the table test's finding
                assert value == DECLARED[name].default_text, f"README says {name} defaults to {value!r}"


def test_every_setting_has_one_short_english_sentence_of_help():
    def fits(text: str) -> bool:
        return text.isascii() and text.endswith(".") and ". " not in text and len(text) <= 100

    assert [name for name, item in DECLARED.items() if not fits(item.help)] == []
