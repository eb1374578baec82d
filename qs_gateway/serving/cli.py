"""The ``qs-gateway`` command: ``serve`` (gunicorn) and ``demo`` (a private stack)."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from gunicorn.app.wsgiapp import run

from .stack import start_gateway, start_re_manager, start_redis

GUNICORN_CONFIG = "python:qs_gateway.serving.gunicorn_config"


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
    run()
    return 0


def demo(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="qs-gateway-demo-"))
    key = os.environ.get("QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY") or secrets.token_hex(16)
    processes = []
    try:
        print("Starting Redis ...", flush=True)
        redis, redis_port = start_redis(workdir / "redis")
        processes.append(redis)
        print("Starting RE Manager with the simulated profile (takes a few seconds) ...", flush=True)
        manager, ports = start_re_manager(workdir, redis_port=redis_port, name_prefix="qs_gateway_demo")
        processes.append(manager)
        print("Starting the gateway under gunicorn ...", flush=True)
        gateway, url = start_gateway(
            workdir,
            {
                "QSERVER_ZMQ_CONTROL_ADDRESS": ports.control_address,
                "QSERVER_ZMQ_INFO_ADDRESS": ports.info_address,
                "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": key,
                "QS_GATEWAY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            },
            port=args.port,
        )
        processes.append(gateway)
        print(
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

Press Ctrl-C to stop all three.""",
            flush=True,
        )
        while all(p.running() for p in processes):
            time.sleep(0.5)
        stopped = next(p for p in processes if not p.running())
        print(f"\n{stopped.name} exited unexpectedly:\n{stopped.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
        return 0
    finally:
        for process in reversed(processes):
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qs-gateway", description="HTTP gateway to the Bluesky Queue Server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the gateway under gunicorn")
    serve_parser.add_argument("--bind", help="host:port or unix:/path (QS_GATEWAY_BIND)")
    serve_parser.add_argument("--workers", type=int, help="worker processes (QS_GATEWAY_WORKERS)")
    serve_parser.add_argument("--threads", type=int, help="threads per worker (QS_GATEWAY_THREADS)")
    serve_parser.add_argument("--config", help="YAML file or directory (QSERVER_HTTP_SERVER_CONFIG)")
    serve_parser.set_defaults(func=serve)
    demo_parser = commands.add_parser("demo", help="run Redis + RE Manager (simulated) + the gateway")
    demo_parser.add_argument("--port", type=int, default=60610, help="gateway port (default 60610)")
    demo_parser.set_defaults(func=demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
