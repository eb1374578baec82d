"""Configuration: environment, YAML (file beats env), ${VAR}, unknown keys, deprecated names."""

from __future__ import annotations

import pytest
import zmq

from qs_gateway.config import ConfigError, load_settings


def write(path, text):
    path.write_text(text)
    return path


def test_defaults():
    settings = load_settings(environ={})
    assert settings.zmq.control_address == "tcp://localhost:60615"
    assert settings.zmq.info_address == "tcp://localhost:60625"
    assert settings.zmq.encoding == "json" and settings.zmq.public_key is None
    assert settings.auth.single_user_api_key is None and settings.auth.allow_anonymous_access is False
    assert settings.serving.bind == "127.0.0.1:60610"
    assert settings.manager.timeout_receive == 2.0 and settings.manager.timeout_send == 0.5


def test_environment_and_deprecated_fallbacks(caplog):
    settings = load_settings(
        environ={
            "QSERVER_ZMQ_ADDRESS": "tcp://old:1",
            "QSERVER_ZMQ_ADDRESS_CONSOLE": "tcp://old:2",
            "QSERVER_HTTP_SERVER_ALLOW_ANONYMOUS_ACCESS": "1",
            "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": "abc123abc123abc123abc123abc123ab",
            "QSERVER_HTTP_SERVER_ALLOW_ORIGINS": "http://a http://b",
            "QS_GATEWAY_POOL_SIZE": "7",
            "QS_GATEWAY_METHOD_TIMEOUTS": "plans_existing=5, devices_existing=6.5",
        }
    )
    assert settings.zmq.control_address == "tcp://old:1"
    assert settings.zmq.info_address == "tcp://old:2"
    assert "deprecated" in caplog.text
    assert settings.auth.allow_anonymous_access is True
    assert settings.auth.single_user_api_key == "abc123abc123abc123abc123abc123ab"
    assert settings.browser.allow_origins == ("http://a", "http://b")
    assert settings.manager.pool_size == 7
    assert settings.manager.method_timeouts == {"plans_existing": 5.0, "devices_existing": 6.5}
    newer = load_settings(environ={"QSERVER_ZMQ_CONTROL_ADDRESS": "tcp://new:1", "QSERVER_ZMQ_ADDRESS": "tcp://x:1"})
    assert newer.zmq.control_address == "tcp://new:1"


def test_yaml_file_beats_environment_and_expands_variables(tmp_path):
    config = write(
        tmp_path / "config.yml",
        """
qserver_zmq_configuration:
  control_address: tcp://from-file:60615
  encoding: msgpack
authentication:
  single_user_api_key: ${MY_KEY}
  allow_anonymous_access: false
gateway:
  workers: 5
  status_ttl: 0.25
""",
    )
    settings = load_settings(
        environ={
            "QSERVER_HTTP_SERVER_CONFIG": str(config),
            "QSERVER_ZMQ_CONTROL_ADDRESS": "tcp://from-env:1",
            "QSERVER_HTTP_SERVER_ALLOW_ANONYMOUS_ACCESS": "1",
            "QS_GATEWAY_WORKERS": "9",
            "MY_KEY": "SecretFromEnv1SecretFromEnv1Long",
        }
    )
    assert settings.zmq.control_address == "tcp://from-file:60615"
    assert settings.zmq.encoding == "msgpack"
    assert settings.auth.single_user_api_key == "SecretFromEnv1SecretFromEnv1Long"
    assert settings.auth.allow_anonymous_access is False
    assert settings.serving.workers == 5 and settings.manager.status_ttl == 0.25


def test_directory_of_files_and_sections(tmp_path):
    write(tmp_path / "a.yml", "allow_origins: [http://a]\nqserver_zmq_configuration: {encoding: json}\n")
    write(tmp_path / "b.yaml", "allow_origins: [http://b]\nuvicorn: {host: 0.0.0.0, port: 8000}\n")
    write(tmp_path / ".hidden.yml", "nonsense: 1\n")
    write(tmp_path / "notes.py", "not: yaml: at all")
    settings = load_settings(environ={"QSERVER_HTTP_SERVER_CONFIG": str(tmp_path)})
    assert settings.browser.allow_origins == ("http://a", "http://b")
    assert settings.serving.bind == "0.0.0.0:8000"  # bluesky-httpserver's uvicorn section honoured
    write(tmp_path / "c.yml", "qserver_zmq_configuration: {encoding: msgpack}\n")
    with pytest.raises(ConfigError, match="also defined"):
        load_settings(environ={"QSERVER_HTTP_SERVER_CONFIG": str(tmp_path)})


@pytest.mark.parametrize(
    "text, message",
    [
        ("unknown_section: 1\n", "unknown configuration key 'unknown_section'"),
        ("gateway:\n  wokers: 2\n", "unknown configuration key gateway.'wokers'"),
        ("authentication:\n  single_user_api_key: ${NOT_SET_ANYWHERE}\n", "'NOT_SET_ANYWHERE' is not set"),
        ("authentication:\n  single_user_api_key: not-alnum!\n", "alphanumeric"),
        ("gateway:\n  pool_size: 0\n", "gateway.pool_size"),
        ("gateway:\n  method_timeouts: {no_such_method: 3}\n", "unknown RE Manager method 'no_such_method'"),
        ("qserver_zmq_configuration:\n  encoding: xml\n", "unsupported 'xml'"),
        ("qserver_zmq_configuration:\n  public_key: abc\n", "QSERVER_ZMQ_PUBLIC_KEY"),
        ("- a list\n", "top level must be a mapping"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path, text, message):
    config = write(tmp_path / "config.yml", text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_settings(environ={"QSERVER_HTTP_SERVER_CONFIG": str(config)})


def test_public_key_validation():
    public, _ = zmq.curve_keypair()
    assert load_settings(environ={"QSERVER_ZMQ_PUBLIC_KEY": public.decode()}).zmq.public_key == public.decode()
    assert load_settings(environ={"QSERVER_ZMQ_PUBLIC_KEY": ""}).zmq.public_key is None
    with pytest.raises(ConfigError, match="40 characters"):
        load_settings(environ={"QSERVER_ZMQ_PUBLIC_KEY": "abc"})
    with pytest.raises(ConfigError, match="not a valid z85"):
        load_settings(environ={"QSERVER_ZMQ_PUBLIC_KEY": "~" * 40})


# APIKEYFORTESTS is bluesky-httpserver's own test suite's key: a key that server accepts must work.
@pytest.mark.parametrize(
    "key, refused",
    [("test", True), ("Short12", True), ("Short123", False), ("APIKEYFORTESTS", False), ("a1" * 8, False)],
)
def test_only_a_placeholder_single_user_key_stops_start_up(key, refused, caplog):
    environ = {"QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": key}
    if refused:
        # the message names the setting to change
        with pytest.raises(ConfigError, match=r"QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY: .* at least 8 are required"):
            load_settings(environ=environ)
        return
    assert load_settings(environ=environ).auth.single_user_api_key == key
    assert "32 or more are recommended" in caplog.text  # 8 to 31: a warning
    caplog.clear()
    load_settings(environ={"QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": "a1" * 16})
    assert "recommended" not in caplog.text
