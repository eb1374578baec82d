"""Reading the YAML configuration: one file, or every ``.yml``/``.yaml`` file of a directory.

Each section may be defined in one file only; a list at the top level (``allow_origins``) is
joined across files. ``${VAR}`` inside a string is replaced by the variable's value. An unknown
key anywhere stops start-up with a message naming it and the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .options import Documented
from .parsers import ConfigError

CONFIG_PATH_ENV = "QSERVER_HTTP_SERVER_CONFIG"
CONFIG_PATH = Documented(
    env=CONFIG_PATH_ENV,
    help="YAML file, or directory of `*.yml`/`*.yaml` files (each section in one file only; top-level lists "
    "such as `allow_origins` are joined).",
    shown_default="none",
)

# A section's allowed keys, or LIST_SECTION for a top-level list.
LIST_SECTION = None
SectionKeys = Mapping[str, frozenset[str] | None]

_VAR_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, where: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{where}: environment variable {name!r} is not set")
            return environ[name]

        return _VAR_PATTERN.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", environ) for i, v in enumerate(value)]
    return value


def _config_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix in {".yml", ".yaml"}
        )
    if path.is_file():
        return [path]
    raise ConfigError(f"{CONFIG_PATH_ENV}: {str(path)!r} is neither a file nor a directory")


def read_config_files(path: str | os.PathLike, environ: Mapping[str, str], sections: SectionKeys) -> dict[str, Any]:
    """Merge the YAML files at ``path`` into one mapping; check keys against ``sections``; expand ``${VAR}``."""
    merged: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for file in _config_files(Path(path)):
        try:
            content = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        if not isinstance(content, dict):
            raise ConfigError(f"{file}: the top level must be a mapping")
        for section, value in content.items():
            if section not in sections:
                raise ConfigError(f"{file}: unknown configuration key {section!r}")
            allowed = sections[section]
            if allowed is LIST_SECTION:
                # lists are joined across files; the setting's parser judges what is there
                if isinstance(value, list) and isinstance(merged.get(section, []), list):
                    merged[section] = list(merged.get(section, [])) + _expand(value, f"{file}: {section}", environ)
                elif section in merged:
                    raise ConfigError(f"{file}: {section!r} is also defined in {origin[section]}")
                else:
                    merged[section] = _expand(value, f"{file}: {section}", environ)
                origin.setdefault(section, file)
                continue
            if section in merged:
                raise ConfigError(f"{file}: section {section!r} is also defined in {origin[section]}")
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{file}: {section!r} must be a mapping")
            for key in value:
                if key not in allowed:
                    raise ConfigError(f"{file}: unknown configuration key {section}.{key!r}")
            merged[section] = _expand(value, f"{file}: {section}", environ)
            origin[section] = file
    return merged
