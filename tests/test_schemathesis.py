"""schemathesis against /openapi.json: generated and mutated requests to every endpoint of a
gateway under gunicorn; no 5xx, and every answer as the document describes it. A second run
covers the auth endpoints of a gateway with a login provider (in single-user mode most of them
only answer "not available").

The run is bounded (a few examples per operation, a fixed seed, so a failure can be replayed)
and has an RE Manager of its own: it locks it with random keys, fills and empties its queue.

Left out, and why:
* ``POST /api/manager/stop`` and ``POST /api/test/manager/kill`` stop RE Manager (or freeze it
  until its watchdog restarts it), after which every later case would only time out;
* ``POST /api/environment/destroy`` kills the worker process; RE Manager then stops answering
  for seconds while it cleans up (a destroy during an open takes about ten);
* ``GET /api/test/server/sleep`` sleeps up to 300 s by design;
* the streams (``/api/stream_console_output``, ``.../events``, ``.../ws``) never end by design;
  they have their own tests in test_console_streams.py and test_console.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from qs_gateway.serving.stack import start_gateway, start_re_manager, stop_all, stopped_on_failure

from .auth_support import PASSWORDS, private_prefix, toy_config, write_config
from .support import API_KEY, Manager

# A longer or different run: FUZZ_EXAMPLES=100 FUZZ_SEED=1 scripts/test tests/test_schemathesis.py
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "5"))
SEED = int(os.environ.get("FUZZ_SEED", "20261125"))

EXCLUDED_PATHS = (
    r"^/api/(manager/stop|test/manager/kill|environment/destroy|test/server/sleep|stream_console_output)$"
    r"|/events$|/ws$"
)

# schemathesis.toml for the run.
CONFIG = """
[checks]
# A malformed Authorization header is answered 400, as bluesky-httpserver does (clients match
# its text); this check expects 401/403 for any bad credentials.
ignored_auth.enabled = false
# gunicorn refuses a URL longer than its limit_request_line (4094 bytes) with 414, documented:
# a refusal of invalid data, and an answer a valid request may get too (the document bounds
# each parameter, not the whole URL; a long valid string percent-encodes to many more bytes).
negative_data_rejection.expected-statuses = [
  "400", "401", "403", "404", "405", "406", "409", "414", "415", "422", "428", "429", "5xx",
]
positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "414", "429", "5xx"]

[[operations]]
# Without login providers (single-user mode) these answer 400 "Not available in single-user
# mode" to any request, valid or not.
include-path-regex = "^/api/auth/(apikey|session/)"
checks.positive_data_acceptance.enabled = false
"""


@pytest.fixture(scope="module")
def fuzzed_gateway(tmp_path_factory, redis_port):
    workdir = tmp_path_factory.mktemp("fuzzed")
    manager_process, ports = start_re_manager(workdir, redis_port=redis_port, name_prefix="qs_gateway_fuzz")
    # the single-user key may also submit and decide, so that the submission endpoints are fuzzed too
    roles = {"unauthenticated_single_user": {"scopes_add": ["write:queue:submit", "write:queue:approve"]}}
    config = {"api_access": {"args": {"roles": roles}}}
    env = Manager(manager_process, ports, workdir, redis_port).gateway_env(
        QS_GATEWAY_WORKERS="2", QS_GATEWAY_THREADS="4", QSERVER_HTTP_SERVER_CONFIG=write_config(workdir, config)
    )
    with stopped_on_failure(manager_process):
        gateway, url = start_gateway(workdir, env, log_name="gateway-fuzzed.log")
    yield url, workdir
    stop_all([gateway, manager_process])


def refusing_operations(url: str) -> str:
    """schemathesis.toml entries for the operations that may answer a wrong value 200 in RE
    Manager's refusal shape (the document's ``x-refusal``; tests/schemathesis_hooks.py checks
    that such an answer really is that refusal)."""
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    names = sorted(
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "x-refusal" in operation
    )
    listed = ", ".join(f'"{name}"' for name in names)
    return f"""
[[operations]]
include-name = [{listed}]
checks.negative_data_rejection.expected-statuses = [
  "200", "400", "401", "403", "404", "405", "406", "409", "414", "415", "422", "428", "429", "5xx",
]
"""


def run_schemathesis(url: str, workdir: Path, config: str, authorization: str, *arguments: str) -> str:
    """A bounded, seeded schemathesis run against ``url``'s document; its report if it passed."""
    config_file = workdir / "schemathesis.toml"
    config_file.write_text(config + refusing_operations(url))
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config_file),
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: {authorization}",
        *arguments,
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        # One worker: with two threads, hypothesis's concurrent ast.parse calls can trip CPython
        # 3.11's shared AST recursion counter ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
    ]
    hooks = {"SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(Path(__file__).parents[1])}
    run = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600, env={**os.environ, **hooks})
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20000:]
    return report


def operations_tested(report: str) -> int:
    """How many operations the run selected, after checking that it tested each of them."""
    selected = int(re.search(r"Selected: (\d+)/\d+", report).group(1))
    assert f"Tested: {selected}\n" in report, report[-3000:]
    return selected


def test_generated_requests_get_documented_answers_and_no_5xx(fuzzed_gateway):
    url, workdir = fuzzed_gateway
    report = run_schemathesis(url, workdir, CONFIG, f"ApiKey {API_KEY}", "--exclude-path-regex", EXCLUDED_PATHS)
    assert operations_tested(report) >= 60  # nearly all of them


# With login providers the auth endpoints do their real work: logins, refreshes, keys, principals.
AUTH_CONFIG = """
[checks]
ignored_auth.enabled = false  # as above: a malformed Authorization header is a 400
negative_data_rejection.expected-statuses = ["400", "401", "403", "404", "405", "409", "414", "415", "422", "5xx"]
# 429: a longer run makes more failed logins from one address than the throttle allows
positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "414", "429", "5xx"]

[[operations]]
# A key's scopes must be a subset of its owner's, which depend on who asks: the document can
# only say "strings", so a well-formed request for scopes the owner lacks is a 400 (with the
# reference server's text).
include-name = ["POST /api/auth/apikey", "POST /api/auth/principal/{principal_id}/apikey"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "414"]
"""


@pytest.fixture(scope="module")
def fuzzed_auth_gateway(tmp_path_factory, re_manager):
    workdir = tmp_path_factory.mktemp("fuzzed-auth")
    env = re_manager.gateway_env(
        QSERVER_HTTP_SERVER_CONFIG=write_config(workdir, toy_config()),
        QS_GATEWAY_WORKERS="2",
        QS_GATEWAY_THREADS="4",
        QS_GATEWAY_REDIS_PREFIX=private_prefix(),
        # generated refresh tokens are failed checks: a long run would spend the address's budget
        # and have the administrator's key refused (429) at the end
        QS_GATEWAY_CREDENTIAL_FAILURES_PER_ADDRESS="",
    )
    gateway, url = start_gateway(workdir, env, log_name="gateway-fuzzed-auth.log")
    yield url, workdir
    gateway.stop()


def test_generated_requests_to_the_auth_endpoints_with_login_providers(fuzzed_auth_gateway):
    url, workdir = fuzzed_auth_gateway
    form = {"username": "bob", "password": PASSWORDS["bob"]}  # an administrator
    tokens = httpx.post(f"{url}/api/auth/provider/toy/token", data=form).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    key = httpx.post(f"{url}/api/auth/apikey", json={"expires_in": 3600}, headers=bearer).json()["secret"]
    report = run_schemathesis(url, workdir, AUTH_CONFIG, f"ApiKey {key}", "--include-path-regex", "^/api/auth/")
    assert operations_tested(report) >= 11
    # the run neither revoked nor spoiled the administrator's key
    assert httpx.get(f"{url}/api/auth/whoami", headers={"Authorization": f"ApiKey {key}"}).status_code == 200
