"""Configuration: environment variables, and a YAML file or directory that overrides them.

The names are bluesky-httpserver's (``QSERVER_*`` variables, the sections of its YAML schema),
so a facility's existing configuration works unchanged. The gateway's own settings live in the
``gateway`` YAML section and in ``QS_GATEWAY_*`` variables; :data:`GATEWAY_OPTIONS` lists them
all (the README's configuration table follows it).

Precedence: YAML file > environment > default. ``${VAR}`` inside YAML strings is replaced by the
variable's value. An unknown key anywhere stops start-up with a message naming it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

CONFIG_PATH_ENV = "QSERVER_HTTP_SERVER_CONFIG"


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the offending key or variable."""


# --------------------------------------------------------------------------------------------
# Value parsing


def _parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return bool(value)
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name}: expected a boolean (1/0, true/false), got {value!r}")


def _parser(kind: type, *, minimum: float | None = None) -> Callable[[Any, str], Any]:
    def parse(value: Any, name: str) -> Any:
        if isinstance(value, bool) or value is None:
            raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}")
        try:
            parsed = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}") from None
        if minimum is not None and parsed < minimum:
            raise ConfigError(f"{name}: must be at least {minimum}, got {parsed}")
        return parsed

    return parse


def _parse_str(value: Any, name: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    return str(value)


def _choice(*choices: str) -> Callable[[Any, str], str]:
    def parse(value: Any, name: str) -> str:
        text = _parse_str(value, name).strip().lower()
        if text not in choices:
            raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def _parse_method_timeouts(value: Any, name: str) -> dict[str, float]:
    """``{"plans_existing": 5}`` in YAML, ``plans_existing=5,devices_existing=5`` in the environment."""
    if isinstance(value, str):
        pairs = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            method, sep, seconds = item.partition("=")
            if not sep:
                raise ConfigError(f"{name}: expected 'method=seconds' items, got {item!r}")
            pairs[method.strip()] = seconds.strip()
        value = pairs
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping of RE Manager method to seconds, got {value!r}")
    from .manager import ALL_METHODS

    result = {}
    for method, seconds in value.items():
        if method not in ALL_METHODS:
            raise ConfigError(f"{name}: unknown RE Manager method {method!r}")
        result[method] = _parser(float, minimum=0.01)(seconds, f"{name}.{method}")
    return result


def _parse_list(value: Any, name: str) -> tuple[str, ...]:
    """A YAML list, or a string separated by ``:``, ``,`` or white space (environment)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part for part in re.split(r"[\s,:]+", value) if part)
    if isinstance(value, (list, tuple)):
        return tuple(_parse_str(v, f"{name}[{i}]") for i, v in enumerate(value))
    raise ConfigError(f"{name}: expected a list, got {value!r}")


# --------------------------------------------------------------------------------------------
# The gateway's own options


@dataclass(frozen=True)
class Option:
    key: str  # in the YAML ``gateway`` section
    env: str
    default: Any
    parse: Callable[[Any, str], Any]
    help: str


GATEWAY_OPTIONS: tuple[Option, ...] = (
    Option(
        "bind",
        "QS_GATEWAY_BIND",
        "127.0.0.1:60610",
        _parse_str,
        "Address gunicorn listens on: host:port or unix:/path/to/socket.",
    ),
    Option("workers", "QS_GATEWAY_WORKERS", 2, _parser(int, minimum=1), "gunicorn worker processes."),
    Option("threads", "QS_GATEWAY_THREADS", 16, _parser(int, minimum=1), "Request threads per worker (gthread)."),
    Option(
        "redis_url",
        "QS_GATEWAY_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        _parse_str,
        "Redis shared by all workers and hosts of one gateway.",
    ),
    Option(
        "redis_prefix",
        "QS_GATEWAY_REDIS_PREFIX",
        "qs_gateway",
        _parse_str,
        "Prefix of every Redis key; give each gateway (each RE Manager) its own.",
    ),
    Option(
        "pool_size",
        "QS_GATEWAY_POOL_SIZE",
        4,
        _parser(int, minimum=1),
        "ZeroMQ sockets to RE Manager per worker process.",
    ),
    Option(
        "pool_timeout",
        "QS_GATEWAY_POOL_TIMEOUT",
        1.0,
        _parser(float, minimum=0.0),
        "Seconds a request waits for a free socket before it is answered 503.",
    ),
    Option(
        "timeout_receive",
        "QS_GATEWAY_TIMEOUT_RECEIVE",
        2.0,
        _parser(float, minimum=0.01),
        "Seconds to wait for RE Manager's reply (then 408).",
    ),
    Option(
        "timeout_send",
        "QS_GATEWAY_TIMEOUT_SEND",
        0.5,
        _parser(float, minimum=0.01),
        "Seconds to wait until RE Manager takes a request (then 408; nothing was sent).",
    ),
    Option(
        "method_timeouts",
        "QS_GATEWAY_METHOD_TIMEOUTS",
        {},
        _parse_method_timeouts,
        "Receive timeouts of single methods, e.g. `plans_existing=5,devices_existing=5`.",
    ),
    Option(
        "breaker_threshold",
        "QS_GATEWAY_BREAKER_THRESHOLD",
        3,
        _parser(int, minimum=1),
        "Consecutive RE Manager timeouts after which requests fail at once.",
    ),
    Option(
        "breaker_open_seconds",
        "QS_GATEWAY_BREAKER_OPEN_SECONDS",
        0.5,
        _parser(float, minimum=0.0),
        "Seconds requests fail at once before one request probes RE Manager again.",
    ),
    Option(
        "status_ttl",
        "QS_GATEWAY_STATUS_TTL",
        0.4,
        _parser(float, minimum=0.0),
        "Seconds a fetched RE Manager status is served to all workers (writes invalidate it).",
    ),
    Option(
        "published_status_max_age",
        "QS_GATEWAY_PUBLISHED_STATUS_MAX_AGE",
        1.5,
        _parser(float, minimum=0.0),
        "Seconds the status RE Manager published is served without asking it (it publishes at least once a "
        "second); 0 turns this off.",
    ),
    Option(
        "console_stream_length",
        "QS_GATEWAY_CONSOLE_STREAM_LENGTH",
        10_000,
        _parser(int, minimum=100),
        "Console messages kept in Redis (what `console_output_update` with `ALL` and stream resumes can reach).",
    ),
    Option(
        "info_stream_length",
        "QS_GATEWAY_INFO_STREAM_LENGTH",
        1_000,
        _parser(int, minimum=10),
        "Published status messages kept in Redis for status streams to resume from.",
    ),
    Option(
        "ingest_lease_seconds",
        "QS_GATEWAY_INGEST_LEASE_SECONDS",
        2.0,
        _parser(float, minimum=0.2),
        "Lease of the one worker that subscribes to RE Manager; another takes over within about this long.",
    ),
    Option(
        "stream_limit",
        "QS_GATEWAY_STREAM_LIMIT",
        8,
        _parser(int, minimum=0),
        "Open streams (NDJSON, SSE, websockets) per worker; each holds a thread, keep it below `threads`. "
        "Over it: 503.",
    ),
    Option(
        "stream_queue_length",
        "QS_GATEWAY_STREAM_QUEUE_LENGTH",
        1_000,
        _parser(int, minimum=1),
        "Messages buffered for one slow stream consumer before its oldest are dropped.",
    ),
    Option(
        "sse_heartbeat_seconds",
        "QS_GATEWAY_SSE_HEARTBEAT_SECONDS",
        15.0,
        _parser(float, minimum=0.1),
        "Seconds between heartbeat comments on quiet Server-Sent Event streams.",
    ),
    Option(
        "gzip_min_bytes",
        "QS_GATEWAY_GZIP_MIN_BYTES",
        4096,
        _parser(int, minimum=0),
        "Answers at least this large are gzip-compressed for clients that accept it (0: never).",
    ),
    Option(
        "worker_header",
        "QS_GATEWAY_WORKER_HEADER",
        False,
        _parse_bool,
        "Add `X-Gateway-Worker: host:pid` to every response (to see which worker answered).",
    ),
    Option(
        "max_body_bytes",
        "QS_GATEWAY_MAX_BODY_BYTES",
        64 * 1024 * 1024,
        _parser(int, minimum=1024),
        "Largest accepted request body (then 413).",
    ),
    Option(
        "proxy_hops",
        "QS_GATEWAY_PROXY_HOPS",
        0,
        _parser(int, minimum=0),
        "Proxies in front of the gateway whose X-Forwarded-For/-Proto/-Host/-Port/-Prefix are trusted.",
    ),
    Option("docs", "QS_GATEWAY_DOCS", True, _parse_bool, "Serve `/openapi.json` and the Swagger UI page `/docs`."),
    Option("ui", "QS_GATEWAY_UI", True, _parse_bool, "Serve the control room web page at `/` and `/ui/`."),
    Option(
        "metrics",
        "QS_GATEWAY_METRICS",
        False,
        _parse_bool,
        "Collect Prometheus metrics, served at `/metrics` to the `admin:metrics` scope.",
    ),
    Option(
        "metrics_bind",
        "QS_GATEWAY_METRICS_BIND",
        "",
        _parse_str,
        "A second address serving only `/metrics`, without credentials (turns metrics on).",
    ),
    Option("log_format", "QS_GATEWAY_LOG_FORMAT", "text", _choice("text", "json"), "Log lines as `text` or `json`."),
)


# --------------------------------------------------------------------------------------------
# The YAML schema (bluesky-httpserver's sections plus ``gateway``)

_SECTION_KEYS: dict[str, frozenset[str] | None] = {
    "qserver_zmq_configuration": frozenset({"control_address", "info_address", "encoding", "public_key"}),
    "server_configuration": frozenset({"custom_routers", "custom_modules"}),
    "authentication": frozenset(
        {
            "providers",
            "secret_keys",
            "allow_anonymous_access",
            "single_user_api_key",
            "access_token_max_age",
            "refresh_token_max_age",
            "session_max_age",
        }
    ),
    "database": frozenset({"uri", "pool_pre_ping", "pool_size"}),
    "allow_origins": None,  # a list
    "uvicorn": frozenset(
        {
            "host",
            "port",
            "workers",
            "root_path",
            "proxy_headers",
            "forwarded_allow_ips",
            "ssl_keyfile",
            "ssl_certfile",
            "ssl_keyfile_password",
            "ssl_version",
            "ssl_cert_reqs",
            "ssl_ca_certs",
            "ssl_ciphers",
        }
    ),
    "api_access": frozenset({"policy", "args"}),
    "resource_access": frozenset({"policy", "args"}),
    "metrics": frozenset({"prometheus"}),
    "gateway": frozenset(option.key for option in GATEWAY_OPTIONS),
}

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


def read_config_files(path: str | os.PathLike, environ: Mapping[str, str]) -> dict[str, Any]:
    """Merge the YAML files at ``path`` into one mapping; validate keys; expand ``${VAR}``."""
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
            if section not in _SECTION_KEYS:
                raise ConfigError(f"{file}: unknown configuration key {section!r}")
            allowed = _SECTION_KEYS[section]
            if allowed is None:
                merged.setdefault(section, [])
                merged[section] = list(merged[section]) + list(_parse_list(value, f"{file}: {section}"))
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


# --------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class ZmqSettings:
    control_address: str = "tcp://localhost:60615"
    info_address: str = "tcp://localhost:60625"
    encoding: str = "json"
    public_key: str | None = None


@dataclass(frozen=True)
class PolicySettings:
    policy: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthSettings:
    single_user_api_key: str | None = None
    allow_anonymous_access: bool = False
    providers: tuple[Mapping[str, Any], ...] = ()
    secret_keys: tuple[str, ...] = ()
    access_token_max_age: float = 900.0
    refresh_token_max_age: float = 7 * 24 * 3600.0
    session_max_age: float = 365 * 24 * 3600.0
    api_access: PolicySettings = PolicySettings()
    resource_access: PolicySettings = PolicySettings()


@dataclass(frozen=True)
class Settings:
    zmq: ZmqSettings = ZmqSettings()
    auth: AuthSettings = AuthSettings()
    gateway: Mapping[str, Any] = field(default_factory=lambda: {o.key: o.default for o in GATEWAY_OPTIONS})
    allow_origins: tuple[str, ...] = ()
    custom_modules: tuple[str, ...] = ()
    custom_routers: tuple[str, ...] = ()
    prometheus: bool = False
    config_path: str | None = None

    @property
    def metrics_enabled(self) -> bool:
        return bool(self.prometheus or self.gateway["metrics"] or self.gateway["metrics_bind"])

    def with_gateway(self, **overrides: Any) -> "Settings":
        """A copy with some gateway options replaced (tests, the demo)."""
        unknown = set(overrides) - set(self.gateway)
        if unknown:
            raise ConfigError(f"unknown gateway option(s): {sorted(unknown)}")
        from dataclasses import replace

        return replace(self, gateway={**self.gateway, **overrides})


def _env_first(environ: Mapping[str, str], name: str, *deprecated: str) -> str | None:
    if name in environ:
        return environ[name]
    for old in deprecated:
        if old in environ:
            logger.warning("Environment variable %s is deprecated; use %s", old, name)
            return environ[old]
    return None


def _pick(section: Mapping[str, Any], key: str, env_value: Any, default: Any) -> Any:
    if key in section and section[key] is not None:
        return section[key]
    if env_value is not None:
        return env_value
    return default


def load_settings(environ: Mapping[str, str] | None = None, config_path: str | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``) and the YAML config."""
    environ = os.environ if environ is None else environ
    config_path = config_path or environ.get(CONFIG_PATH_ENV) or None
    config = read_config_files(config_path, environ) if config_path else {}

    zmq_cfg = config.get("qserver_zmq_configuration", {})
    encoding = _pick(zmq_cfg, "encoding", environ.get("QSERVER_ZMQ_ENCODING"), "json")
    if encoding not in ("json", "msgpack"):
        raise ConfigError(f"qserver_zmq_configuration.encoding / QSERVER_ZMQ_ENCODING: unsupported {encoding!r}")
    public_key = _pick(zmq_cfg, "public_key", environ.get("QSERVER_ZMQ_PUBLIC_KEY"), None) or None
    if public_key is not None:
        from .transport import InvalidCurveKey, validate_public_key

        try:
            validate_public_key(public_key)
        except InvalidCurveKey as exc:
            raise ConfigError(str(exc)) from None
    zmq = ZmqSettings(
        control_address=_pick(
            zmq_cfg,
            "control_address",
            _env_first(environ, "QSERVER_ZMQ_CONTROL_ADDRESS", "QSERVER_ZMQ_ADDRESS_CONTROL", "QSERVER_ZMQ_ADDRESS"),
            ZmqSettings.control_address,
        ),
        info_address=_pick(
            zmq_cfg,
            "info_address",
            _env_first(environ, "QSERVER_ZMQ_INFO_ADDRESS", "QSERVER_ZMQ_ADDRESS_CONSOLE"),
            ZmqSettings.info_address,
        ),
        encoding=encoding,
        public_key=public_key,
    )

    auth = _auth_settings(config, environ)

    gateway_cfg = dict(config.get("gateway", {}))
    uvicorn_cfg = config.get("uvicorn", {})
    if uvicorn_cfg:
        # bluesky-httpserver's launcher settings, honoured where gunicorn has an equivalent.
        if "bind" not in gateway_cfg and ("host" in uvicorn_cfg or "port" in uvicorn_cfg):
            gateway_cfg["bind"] = f"{uvicorn_cfg.get('host', '127.0.0.1')}:{uvicorn_cfg.get('port', 60610)}"
        if "workers" not in gateway_cfg and "workers" in uvicorn_cfg:
            gateway_cfg["workers"] = uvicorn_cfg["workers"]
    gateway = {}
    for option in GATEWAY_OPTIONS:
        if option.key in gateway_cfg:
            gateway[option.key] = option.parse(gateway_cfg[option.key], f"gateway.{option.key}")
        elif option.env in environ:
            gateway[option.key] = option.parse(environ[option.env], option.env)
        else:
            gateway[option.key] = option.default

    server_cfg = config.get("server_configuration", {})
    custom_modules = _pick(
        server_cfg, "custom_modules", _env_first(environ, "QSERVER_CUSTOM_MODULES", "QSERVER_CUSTOM_MODULE"), ()
    )
    custom_routers = _pick(server_cfg, "custom_routers", environ.get("QSERVER_HTTP_CUSTOM_ROUTERS"), ())
    origins = config.get("allow_origins")
    if origins is None:
        origins = environ.get("QSERVER_HTTP_SERVER_ALLOW_ORIGINS", "")
        origins = tuple(origins.split())
    if "database" in config:
        logger.info("The 'database' section is accepted for compatibility; qs-gateway keeps its state in Redis")

    return Settings(
        zmq=zmq,
        auth=auth,
        gateway=gateway,
        allow_origins=tuple(origins),
        custom_modules=tuple(m.replace("-", "_") for m in _parse_list(custom_modules, "custom_modules")),
        custom_routers=_parse_list(custom_routers, "custom_routers"),
        prometheus=_parse_bool(config.get("metrics", {}).get("prometheus", False), "metrics.prometheus"),
        config_path=str(config_path) if config_path else None,
    )


def _auth_settings(config: Mapping[str, Any], environ: Mapping[str, str]) -> AuthSettings:
    auth_cfg = config.get("authentication", {})

    key = _pick(auth_cfg, "single_user_api_key", environ.get("QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY"), None)
    if key is not None:
        key = _parse_str(key, "single_user_api_key")
        if not key.isalnum():
            raise ConfigError("single_user_api_key / QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY must be alphanumeric")

    anonymous_env = environ.get("QSERVER_HTTP_SERVER_ALLOW_ANONYMOUS_ACCESS")
    anonymous = _pick(auth_cfg, "allow_anonymous_access", anonymous_env, False)

    providers = auth_cfg.get("providers") or ()
    if not isinstance(providers, (list, tuple)):
        raise ConfigError("authentication.providers must be a list")

    secret_keys = auth_cfg.get("secret_keys")
    if secret_keys is None:
        env_keys = environ.get("QSERVER_HTTP_SERVER_SERVER_SECRET_KEYS")
        secret_keys = [k for k in env_keys.split(";") if k] if env_keys else []
    if not isinstance(secret_keys, (list, tuple)):
        raise ConfigError("authentication.secret_keys must be a list")

    def age(key: str, env: str, default: float) -> float:
        return _parser(float, minimum=1)(_pick(auth_cfg, key, environ.get(env), default), key)

    def policy(section: str) -> PolicySettings:
        cfg = config.get(section, {})
        args = cfg.get("args") or {}
        if not isinstance(args, dict):
            raise ConfigError(f"{section}.args must be a mapping")
        return PolicySettings(policy=cfg.get("policy"), args=args)

    return AuthSettings(
        single_user_api_key=key,
        allow_anonymous_access=_parse_bool(anonymous, "allow_anonymous_access"),
        providers=tuple(providers),
        secret_keys=tuple(str(k) for k in secret_keys),
        access_token_max_age=age("access_token_max_age", "QSERVER_HTTP_SERVER_ACCESS_TOKEN_MAX_AGE", 900.0),
        refresh_token_max_age=age(
            "refresh_token_max_age", "QSERVER_HTTP_SERVER_REFRESH_TOKEN_MAX_AGE", 7 * 24 * 3600.0
        ),
        session_max_age=age("session_max_age", "QSERVER_HTTP_SERVER_SESSION_MAX_AGE", 365 * 24 * 3600.0),
        api_access=policy("api_access"),
        resource_access=policy("resource_access"),
    )
