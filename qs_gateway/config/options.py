"""What a setting is: where it is read from (a YAML key, an environment variable and its deprecated
names), its default, its parser and its help text.

A setting is declared once, as a field of a settings dataclass (:mod:`.settings`) made with
:func:`setting`; the option table, the loader's precedence loop and docs/configuration.md's table all come
from those fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .parsers import Parser

OPTION = "qs_gateway.option"  # the key of a field's metadata that holds its Option

GATEWAY_SECTION = "gateway"  # the YAML section of the gateway's own settings
TOP_LEVEL = ""  # a setting that is a top-level YAML key (``allow_origins``)


@dataclass(frozen=True)
class Option:
    section: str  # the YAML section, or TOP_LEVEL
    key: str  # the key in that section
    env: str | None  # the environment variable, if any
    parse: Parser
    help: str
    deprecated_env: tuple[str, ...] = ()  # older names of ``env``, still read (with a warning)

    @property
    def yaml_name(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key


def setting(
    key: str,
    env: str | None,
    default: Any,
    parse: Parser,
    help: str,
    *,
    section: str = GATEWAY_SECTION,
    deprecated_env: tuple[str, ...] = (),
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """A dataclass field that is a configurable setting."""
    option = Option(section, key, env, parse, help, deprecated_env)
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={OPTION: option})
    return dataclasses.field(default=default, metadata={OPTION: option})


def options_of(settings_class: type) -> Iterator[tuple[dataclasses.Field, Option]]:
    """The fields of a settings dataclass that are settings, with their options."""
    for field in dataclasses.fields(settings_class):
        option = field.metadata.get(OPTION)
        if option is not None:
            yield field, option


def default_of(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default
