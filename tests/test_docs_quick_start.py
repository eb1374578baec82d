"""The README's quick start, run as a reader would: its curl lines one after the other, then its
Python, against the gateway under gunicorn and the suite's RE Manager."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from .support import API_KEY, wait_for

ROOT = Path(__file__).parents[1]


def quick_start_block(language: str) -> str:
    """The first fenced block in ``language`` under the README's "Using it"."""
    section = (ROOT / "README.md").read_text().split("\n## Using it\n", 1)[1]
    return re.search(rf"^```{language}\n(.*?)^```", section, re.MULTILINE | re.DOTALL).group(1)


def quick_start_commands() -> list[str]:
    """The commands of the quick start's ``sh`` block, continuation lines joined."""
    block = quick_start_block("sh")
    return [command.strip() for command in block.replace("\\\n", " ").splitlines() if command.strip()]


def test_the_quick_start_works(gateway_url, manager_closed):
    commands = quick_start_commands()
    assert commands[0].startswith("KEY=")  # the key the demo printed: here the suite's
    curls = [command for command in commands[1:] if command.startswith("curl ")]
    assert len(curls) == len(commands) - 1 >= 5, commands
    for command in curls:
        # one after the other, as a person types them: each once RE Manager is done with the last
        wait_for(lambda: manager_closed.status()["manager_state"] == "idle", 60, "RE Manager idle")
        command = command.replace("http://127.0.0.1:60610", gateway_url) + " -w '\\n%{http_code}'"
        done = subprocess.run(
            ["bash", "-c", command],
            env={"KEY": API_KEY, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, (command, done.stderr)
        body, _, status = done.stdout.rpartition("\n")
        assert status.startswith("2"), (command, status, body)
        answer = json.loads(body)
        assert answer.get("success", True) is True, (command, answer)
    # what the example says it does: the plan ran
    wait_for(lambda: manager_closed.status()["items_in_history"] == 1, 60, "the plan in the history")
    finished = manager_closed.request("history_get")["items"][-1]
    assert (finished["name"], finished["result"]["exit_status"]) == ("count", "completed")


def test_the_quick_start_in_python_works(gateway_url, manager_closed, capsys):
    code = quick_start_block("python").replace("http://127.0.0.1:60610", gateway_url)
    code = code.replace('api_key="..."', f'api_key="{API_KEY}"')
    namespace: dict = {}
    try:
        exec(compile(code, "README.md (Using it)", "exec"), namespace)
    finally:
        if "RM" in namespace:
            namespace["RM"].close()
    assert capsys.readouterr().out.strip() == "completed"
