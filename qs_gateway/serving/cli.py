"""The ``qs-gateway`` command: ``serve`` (gunicorn), ``demo`` (a private stack) and
``config-reference`` (docs/configuration.md's tables of settings)."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from gunicorn.app.wsgiapp import WSGIApplication

from .stack import (
    STOP_SIGNALS,
    ManagedProcess,
    PortInUse,
    ensure_port_free,
    start_gateway,
    start_re_manager,
    start_redis,
    stop_all,
)

GUNICORN_CONFIG = "python:qs_gateway.serving.gunicorn_config"
DEMO_HOST = "127.0.0.1"
# What the demo's processes get to stop after SIGTERM, before they are killed: all of it is
# done within 10 s of the signal.
STOP_SECONDS = 6.0


class GatewayApplication(WSGIApplication):
    """gunicorn's own WSGI application; its master stops on SIGHUP like on SIGTERM, unless
    ``reload_on_hup`` (for ``systemctl reload``: new workers with the new configuration). The
    choice is applied by the ``on_starting`` hook of :mod:`.gunicorn_config`."""

    def __init__(self, *, reload_on_hup: bool) -> None:
        self.reload_on_hup = reload_on_hup
        super().__init__("%(prog)s [OPTIONS] [APP_MODULE]")


def serve(args: argparse.Namespace) -> int:
    for value, name in (
        (args.bind, "QS_GATEWAY_BIND"),
        (args.workers, "QS_GATEWAY_WORKERS"),
        (args.threads, "QS_GATEWAY_THREADS"),
        (args.config, "QSERVER_HTTP_SERVER_CONFIG"),
    ):
        if value is not None:
            os.environ[name] = str(value)
    sys.argv = ["qs-gateway", "-c", GUNICORN_CONFIG]
    GatewayApplication(reload_on_hup=args.reload_on_hup).run()
    return 0


class StopRequested(BaseException):
    """Raised by the signal handlers; like KeyboardInterrupt, no ``except Exception`` (a readiness
    check that may fail) swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _request_stop(signum: int, frame: FrameType | None) -> None:
    # One request is enough: the stopping that follows is not interrupted by another.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise StopRequested(signum)


def stop_on_signals() -> None:
    """Stop on SIGINT, SIGTERM and SIGHUP, set explicitly: a process started in the background,
    by nohup or by a service manager may inherit SIGINT ignored, and Python keeps an inherited
    SIG_IGN. (The processes started afterwards begin with the default actions again: a caught
    signal is reset by exec, an ignored one would not be.)"""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _request_stop)


def _say(text: str, *, error: bool = False) -> None:
    """Print, but never fail: after a hang-up the terminal may be gone, and stopping goes on."""
    try:
        print(text, file=sys.stderr if error else sys.stdout, flush=True)
    except OSError:
        pass


def demo(args: argparse.Namespace) -> int:
    stop_on_signals()
    try:
        ensure_port_free(DEMO_HOST, args.port)
    except PortInUse as exc:
        _say(f"qs-gateway demo: {exc} (a gateway or demo still running?), or choose another with --port", error=True)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="qs-gateway-demo-"))
    key = os.environ.get("QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY") or secrets.token_hex(16)
    processes: list[ManagedProcess] = []
    try:
        _say("Starting Redis ...")
        redis, redis_port = start_redis(workdir / "redis")
        processes.append(redis)
        _say("Starting RE Manager with the simulated profile (takes a few seconds) ...")
        manager, ports = start_re_manager(workdir, redis_port=redis_port, name_prefix="qs_gateway_demo")
        processes.append(manager)
        _say("Starting the gateway under gunicorn ...")
        gateway, url = start_gateway(
            workdir,
            {
                "QSERVER_ZMQ_CONTROL_ADDRESS": ports.control_address,
                "QSERVER_ZMQ_INFO_ADDRESS": ports.info_address,
                "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": key,
                "QS_GATEWAY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            },
            port=args.port,
            host=DEMO_HOST,
        )
        processes.append(gateway)
        _say(
            f"""
qs-gateway demo is running.
  gateway     {url}   (log {gateway.log_path})
  API key     {key}
  RE Manager  {ports.control_address}, simulated devices   (log {manager.log_path})
  Redis       redis://127.0.0.1:{redis_port}

Try it:
  curl -s -H "Authorization: ApiKey {key}" {url}/api/status
  curl -s -H "Authorization: ApiKey {key}" -X POST {url}/api/environment/open
  curl -s -H "Authorization: ApiKey {key}" -X POST {url}/api/queue/item/add \\
       -d '{{"item": {{"item_type": "plan", "name": "count", "args": [["det1", "det2"]], "kwargs": {{"num": 5}}}}}}'
  curl -s -H "Authorization: ApiKey {key}" -X POST {url}/api/queue/start

Or from Python (bluesky-queueserver-api, HTTP mode):
  from bluesky_queueserver_api.http import REManagerAPI
  RM = REManagerAPI(http_server_uri="{url}"); RM.set_authorization_key(api_key="{key}"); RM.status()

Press Ctrl-C to stop all three (or send SIGTERM or SIGHUP to process {os.getpid()})."""
        )
        while all(p.running() for p in processes):
            time.sleep(0.5)
        stopped = next(p for p in processes if not p.running())
        _say(f"\n{stopped.name} exited unexpectedly:\n{stopped.log_tail()}", error=True)
        return 1
    except StopRequested as stop:
        _say(f"\nStopping ({stop}) ...")
        return 0
    finally:
        for sig in STOP_SIGNALS:  # stopping is not interrupted
            signal.signal(sig, signal.SIG_IGN)
        stop_all(processes, timeout=STOP_SECONDS)
        shutil.rmtree(workdir, ignore_errors=True)


def config_reference(args: argparse.Namespace) -> int:
    from ..config.reference import configuration_tables, write_reference

    if args.write is None:
        sys.stdout.write(configuration_tables())
        return 0
    try:
        changed = write_reference(args.write)
    except (OSError, ValueError) as exc:
        _say(f"qs-gateway config-reference: {args.write}: {exc}", error=True)
        return 1
    _say(f"{args.write}: {'tables rewritten' if changed else 'already up to date'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qs-gateway", description="HTTP gateway to the Bluesky Queue Server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the gateway under gunicorn")
    serve_parser.add_argument("--bind", help="host:port or unix:/path (QS_GATEWAY_BIND)")
    serve_parser.add_argument("--workers", type=int, help="worker processes (QS_GATEWAY_WORKERS)")
    serve_parser.add_argument("--threads", type=int, help="threads per worker (QS_GATEWAY_THREADS)")
    serve_parser.add_argument("--config", help="YAML file or directory (QSERVER_HTTP_SERVER_CONFIG)")
    serve_parser.add_argument(
        "--reload-on-hup",
        action="store_true",
        help="SIGHUP starts new workers with the new configuration (systemctl reload) instead of stopping",
    )
    serve_parser.set_defaults(func=serve)
    demo_parser = commands.add_parser("demo", help="run Redis + RE Manager (simulated) + the gateway")
    demo_parser.add_argument("--port", type=int, default=60610, help="gateway port (default 60610)")
    demo_parser.set_defaults(func=demo)
    reference_parser = commands.add_parser(
        "config-reference", help="the tables of every setting, as docs/configuration.md holds them"
    )
    reference_parser.add_argument(
        "--write", metavar="PATH", help="put them between the markers of this page (docs/configuration.md)"
    )
    reference_parser.set_defaults(func=config_reference)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
