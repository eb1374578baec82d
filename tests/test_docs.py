"""The documentation, checked like code.

* No relative link or anchor in README.md and docs/*.md is broken (anchors as GitHub makes them).
* docs/configuration.md's tables are what :mod:`qs_gateway.config.reference` renders from the settings
  now: every setting, every variable and YAML key the code reads besides, the code's defaults.

The README's quick start is run in tests/test_docs_quick_start.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import qs_gateway.config
from qs_gateway.config import reference
from qs_gateway.config.loader import all_options, section_keys
from qs_gateway.config.options import default_of, options_of
from qs_gateway.config.settings import GROUPS

ROOT = Path(__file__).parents[1]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
CONFIGURATION = ROOT / "docs" / "configuration.md"

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


# -- Markdown, as GitHub reads it ------------------------------------------------------------------


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if marker:
            if fence is None:
                fence = marker.group(1)
                continue
            if stripped.startswith(fence):
                fence = None
                continue
        if fence is None:
            yield number, line


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: its text without markup, lower case, punctuation removed,
    spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = _CODE_SPAN.sub(lambda m: m.group(2), text).replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(text):
        match = _HEADING.match(line)
        if not match:
            continue
        anchor = github_anchor(match.group(2))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def relative_links(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every link and image that is not a URL with a scheme."""
    for number, line in prose_lines(text):
        for match in _LINK.finditer(_CODE_SPAN.sub("", line)):
            target = match.group(1)
            if not _SCHEME.match(target):
                yield number, target


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for number, target in relative_links(page.read_text()):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(root)}:{number}: {target}"
        if not destination.exists():
            problems.append(f"{where}: no such file")
        elif anchor and destination.suffix != ".md":
            problems.append(f"{where}: an anchor into a file that is not Markdown")
        elif anchor and anchor not in anchors(destination.read_text()):
            problems.append(f"{where}: no heading with this anchor in {destination.name}")
    return problems


def test_github_anchors():
    assert github_anchor("Refusals in RE Manager's shape") == "refusals-in-re-managers-shape"
    assert github_anchor("Bounds (with the defaults)") == "bounds-with-the-defaults"
    assert github_anchor("`redis_url` and **TLS**") == "redis_url-and-tls"
    assert github_anchor("A beamline host: nginx and systemd") == "a-beamline-host-nginx-and-systemd"
    assert anchors("# Limits\n```sh\n# not a heading\n```\n## Limits\n") == {"limits", "limits-1"}


def test_the_link_check_finds_what_is_broken(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[fine](other.md#a-section) [fine](#page) [web](https://example.org/x#y) `[code](nowhere.md)`\n"
        "[no file](missing.md) [no anchor](other.md#no-section) ![no picture](pic.png)\n"
        "```md\n[in a fence](missing.md)\n```\n"
    )
    assert [problem.split(": ", 1)[1] for problem in broken_links(page, tmp_path)] == [
        "missing.md: no such file",
        "other.md#no-section: no heading with this anchor in other.md",
        "pic.png: no such file",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_no_broken_relative_link_or_anchor(page):
    assert broken_links(page) == []


def test_the_readme_reaches_every_page_in_one_click():
    linked = {target.partition("#")[0] for _, target in relative_links((ROOT / "README.md").read_text())}
    assert {f"docs/{page.name}" for page in PAGES[1:]} <= linked
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


# -- docs/configuration.md and the settings ---------------------------------------------------------


def documented_settings(text: str | None = None) -> list[dict[str, Any]]:
    """The rows of the tables of settings in docs/configuration.md: ``env`` (the variable and its
    deprecated names), ``yaml`` (full YAML names), ``default`` and ``meaning`` (the cells as written)."""
    rows: list[dict[str, Any]] = []
    chapter, section, header = "", "", None
    for _, line in prose_lines(CONFIGURATION.read_text() if text is None else text):
        heading = _HEADING.match(line)
        if heading:
            chapter = heading.group(2) if len(heading.group(1)) == 2 else chapter
            section = heading.group(2)
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if header is None:
            header = cells
            continue
        if set(cells) <= {"---"} or not {"variable", "YAML key"} <= set(header):
            continue
        row = dict(zip(header, cells, strict=True))
        in_gateway = chapter == "The gateway's own settings" and section != "Outside the `gateway:` section"
        rows.append(
            {
                "env": [span for span in _spans(row["variable"]) if re.fullmatch(r"[A-Z][A-Z0-9_]+", span)],
                "yaml": [("gateway." if in_gateway else "") + span for span in _spans(row["YAML key"])],
                "default": row["default"],
                "meaning": row["meaning"],
            }
        )
    return rows


def _spans(cell: str) -> list[str]:
    return [match.group(2) for match in _CODE_SPAN.finditer(cell)]


def _config_constants(value: str) -> set[str]:
    """The names of the config package's constants that hold ``value`` (``CONFIG_PATH_ENV``)."""
    names = set()
    for module in pkgutil.iter_modules(qs_gateway.config.__path__, "qs_gateway.config."):
        names |= {name for name, held in vars(importlib.import_module(module.name)).items() if held == value}
    return {name for name in names if name.isupper()}


def _read_by_the_code(variable: str) -> bool:
    """Whether a variable that is no option's is read from the environment somewhere in the package
    (the config path, gunicorn's log level, prometheus_client's directory): by its name, or by a
    constant of the config package that holds it."""
    said = [re.escape(f'"{variable}"'), *(rf"\b{name}\b" for name in _config_constants(variable))]
    reading = re.compile(rf"(?:environ\.get\(|environ\[|getenv\()\s*(?:{'|'.join(said)})")
    sources = [*(ROOT / "qs_gateway").rglob("*.py"), ROOT / "gunicorn.conf.py"]
    return any(reading.search(source.read_text()) for source in sources)


def _known_yaml_name(name: str) -> bool:
    """A YAML name the loader accepts: a section, and a key of it (``*``: any)."""
    keys = section_keys()
    section, _, rest = name.partition(".")
    if section not in keys:
        return False
    allowed = keys[section]
    key = rest.split(".")[0]
    return not rest or key == "*" or not isinstance(allowed, frozenset) or key in allowed


def test_the_tables_are_rendered_from_the_settings():
    page = CONFIGURATION.read_text()
    assert reference.generated_block(page) == reference.configuration_tables(), (
        "docs/configuration.md's tables are not what the settings say; run "
        "`qs-gateway config-reference --write docs/configuration.md` (and edit the settings' help, not the page)"
    )
    assert reference.with_tables(page) == page


def test_the_markers_are_required():
    with pytest.raises(ValueError, match="generated by"):
        reference.with_tables("# Configuration\n\nno markers\n")
    page = f"intro\n{reference.BEGIN}\nold\n{reference.END}\noutro\n"
    rendered = f"intro\n{reference.BEGIN}\n\n| new |\n\n{reference.END}\noutro\n"
    assert reference.with_tables(page, "| new |\n") == rendered


def test_the_command_prints_and_writes_the_tables(tmp_path, capsys):
    from qs_gateway.serving.cli import main

    assert main(["config-reference"]) == 0
    assert capsys.readouterr().out == reference.configuration_tables()
    page = tmp_path / "configuration.md"
    page.write_text(f"# Configuration\n\n{reference.BEGIN}\nold tables\n{reference.END}\n\n## An example file\n")
    assert main(["config-reference", "--write", str(page)]) == 0
    assert reference.generated_block(page.read_text()) == reference.configuration_tables()
    assert page.read_text().endswith(f"{reference.END}\n\n## An example file\n")
    assert "tables rewritten" in capsys.readouterr().out
    assert main(["config-reference", "--write", str(tmp_path / "missing.md")]) == 1


def test_every_setting_is_in_the_tables_and_nothing_else():
    rows = documented_settings()
    variables = {env for row in rows for env in row["env"]}
    yaml_names = {name for row in rows for name in row["yaml"]}
    assert len(rows) > 60
    options = list(all_options())
    for option in options:
        assert option.yaml_name in yaml_names, f"{option.yaml_name} is not in docs/configuration.md"
        for env in (option.env, *option.deprecated_env):
            assert env is None or env in variables, f"{env} is not in docs/configuration.md"
    read_as_options = {env for option in options for env in (option.env, *option.deprecated_env)}
    for env in variables - read_as_options:
        assert _read_by_the_code(env), f"docs/configuration.md names {env}, which the code does not read"
    for name in yaml_names:
        assert _known_yaml_name(name), f"docs/configuration.md names the YAML key {name}, which the code does not read"
    sections = {name.partition(".")[0] for name in yaml_names}
    assert set(section_keys()) <= sections, "a YAML section the loader reads is not in docs/configuration.md"


def test_the_check_of_variables_can_fail():
    assert _read_by_the_code("PROMETHEUS_MULTIPROC_DIR")  # by a constant of config, in metrics.py
    assert _read_by_the_code("QSERVER_HTTP_SERVER_CONFIG")
    assert not _read_by_the_code("QS_GATEWAY_NO_SUCH_VARIABLE")
    assert not _known_yaml_name("gateway.no_such_key") and not _known_yaml_name("no_such_section")


def test_every_row_reads_as_prose():
    for row in documented_settings():
        where = row["env"] or row["yaml"]
        assert row["meaning"] and row["default"], f"{where}: an empty cell"
        assert not re.search(r"\bNone\b|\bTrue\b|\bFalse\b|\(\)|\{\}|mappingproxy|<", row["default"]), where
        assert row["meaning"][-1] in ".)", f"{where}: the meaning is not a sentence"


def _with_defaults(group: type, **defaults: Any) -> type:
    """A copy of a settings group with other defaults."""
    fields = []
    for field in dataclasses.fields(group):
        if field.name in defaults:
            value = defaults[field.name]
            new = dataclasses.field(default_factory=lambda value=value: value, metadata=field.metadata)
        else:
            kept = {"default": field.default, "default_factory": field.default_factory}
            new = dataclasses.field(**kept, metadata=field.metadata)
        fields.append((field.name, field.type, new))
    return dataclasses.make_dataclass(group.__name__, fields, frozen=True, namespace={"__doc__": group.__doc__})


def _row_of(tables: str, yaml_name: str) -> dict[str, Any]:
    return next(row for row in documented_settings(tables) if yaml_name in row["yaml"])


def test_the_rendered_defaults_are_the_codes():
    groups = dict(GROUPS)
    groups["manager"] = _with_defaults(
        GROUPS["manager"], pool_size=7, timeout_receive=2.5, method_timeouts={"plans_existing": 5.0}
    )
    groups["http"] = _with_defaults(GROUPS["http"], worker_header=True, trusted_hosts=("a.example", "b.example"))
    groups["auth"] = _with_defaults(GROUPS["auth"], secret_keys=("k1", "k2"), session_max_age=2 * 86400.0)
    now, changed = reference.configuration_tables(), reference.configuration_tables(groups)
    expected = {
        "gateway.pool_size": ("`4`", "`7`"),
        "gateway.timeout_receive": ("`2` s", "`2.5` s"),
        "gateway.method_timeouts": ("none", "`plans_existing=5`"),
        "gateway.worker_header": ("`0`", "`1`"),
        "gateway.trusted_hosts": ("none", "`a.example b.example`"),
        "authentication.session_max_age": ("`31536000` s (1 year)", "`172800` s (2 days)"),
        # worded defaults stay as worded
        "authentication.secret_keys": ("generated", "generated"),
    }
    for name, (before, after) in expected.items():
        assert (_row_of(now, name)["default"], _row_of(changed, name)["default"]) == (before, after), name


def test_a_rendered_default_given_to_the_variable_is_the_default():
    """What the tables show as a default, set in the variable, is the code's default again."""
    groups = {**GROUPS, "http": _with_defaults(GROUPS["http"], trusted_hosts=("a.example", "b.example"))}
    groups["manager"] = _with_defaults(GROUPS["manager"], method_timeouts={"plans_existing": 5.0})
    checked = 0
    for group in groups.values():
        for field, option in options_of(group):
            value = default_of(field)
            shown = reference.shown_default(value, option)
            if option.shown_default is not None or shown == reference.NONE:
                assert option.shown_default is not None or value in (None, "", (), {}), option.yaml_name
                continue
            written = _spans(shown)[0]
            assert option.parse(written if option.env else yaml.safe_load(written), option.yaml_name) == value, (
                f"{option.yaml_name}: shown as {shown}, the default is {value!r}"
            )
            checked += 1
    assert checked > 50


def test_the_documented_policy_defaults_are_the_authenticators():
    """``config`` may not import ``auth``, so the defaults the tables show for the two policies
    are written in the config entries: they must name what an authenticator uses when the
    configuration names no policy."""
    from qs_gateway.auth.authenticator import Authenticator
    from qs_gateway.config.loader import DOCUMENTED_KEYS

    shown = {name: entry.shown_default for entry in DOCUMENTED_KEYS for name in entry.yaml_names}
    authenticator = Authenticator(single_user_api_key=None, allow_anonymous_access=False, throttle=None)
    assert shown["api_access.policy"] == f"`{type(authenticator.api_access).__name__}`"
    assert shown["resource_access.policy"] == f"`{authenticator.resource_access.get_resource_group('anyone')}`"
