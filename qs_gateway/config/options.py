"""What a setting is: where it is read from (a YAML key, an environment variable and its deprecated
names), its default, its parser and its description.

A setting is declared once, as a field of a settings dataclass (:mod:`.settings`) made with
:func:`setting`; the option table, the loader's precedence loop and docs/configuration.md's tables all
come from those fields (:mod:`.reference` renders the tables). What is configurable but no setting (a
YAML key the loader reads itself, a variable read outside the settings) is declared as a
:class:`Documented` entry beside what reads it, and rendered with them.
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
    help: str  # Markdown: what the setting does, as docs/configuration.md says it (links relative to docs/)
    deprecated_env: tuple[str, ...] = ()  # older names of ``env``, still read (with a warning)
    # The default as the documentation words it where the value would not say it ("generated" for a
    # key made at start-up); None: rendered from the value.
    shown_default: str | None = None
    unit: str | None = None  # of a number: "s", "bytes", "bytes/s" (shown with the default)

    @property
    def yaml_name(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key

    @property
    def yaml_names(self) -> tuple[str, ...]:
        return (self.yaml_name,)


@dataclass(frozen=True)
class Documented:
    """Something configurable that is no setting: YAML keys the loader reads itself, or an environment
    variable read outside the settings. Declared beside what reads it; docs/configuration.md lists it
    with the settings of ``group`` (a name of :data:`.settings.GROUPS`; None: first)."""

    help: str  # Markdown, as for Option.help
    env: str | None = None
    yaml_names: tuple[str, ...] = ()  # full names (``uvicorn.host``); ``database.*``: any key of the section
    default: Any = None
    shown_default: str | None = None  # as for Option; "—" where no default applies
    group: str | None = None
    deprecated_env: tuple[str, ...] = ()
    unit: str | None = None


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
    shown_default: str | None = None,
    unit: str | None = None,
) -> Any:
    """A dataclass field that is a configurable setting."""
    option = Option(section, key, env, parse, help, deprecated_env, shown_default, unit)
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={OPTION: option})
    return dataclasses.field(default=default, metadata={OPTION: option})


def options_of(settings_class: type) -> Iterator[tuple[dataclasses.Field, Option]]:
    """The fields of a settings dataclass that are settings, with their options."""
    for field in dataclasses.fields(settings_class):
        option = field.metadata.get(OPTION)
        if option is not None:
            yield field, option


def option_named(settings_class: type, field_name: str) -> Option:
    """The option of one field of a settings dataclass (to name it in a message)."""
    return next(option for field, option in options_of(settings_class) if field.name == field_name)


def default_of(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default
