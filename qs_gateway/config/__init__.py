"""Configuration: environment variables, and a YAML file or directory that overrides them.

* :mod:`.parsers` turns configured values into typed ones;
* :mod:`.options` says what a setting is; :mod:`.shared`, :mod:`.redis`, :mod:`.notifications` and
  the modules :mod:`.gateway` gathers (one per concern) declare every setting once, as a field of a
  frozen dataclass per concern; :mod:`.settings` gathers them;
* :mod:`.yaml_reader` reads and checks the YAML; :mod:`.loader` applies the precedence
  (YAML beats environment beats default) in one loop;
* :mod:`.reference` renders docs/configuration.md's tables from all of them (and from the
  :class:`.options.Documented` entries of :mod:`.loader` and :mod:`.environment`).
"""

from .loader import CONFIG_PATH_ENV, all_options, load_settings
from .options import Option
from .parsers import ConfigError
from .settings import Settings
from .shared import AuthSettings, PolicySettings, ZmqSettings

__all__ = [
    "CONFIG_PATH_ENV",
    "AuthSettings",
    "ConfigError",
    "Option",
    "PolicySettings",
    "Settings",
    "ZmqSettings",
    "all_options",
    "load_settings",
]
