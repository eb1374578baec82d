"""The benchmark's own logic (no load, no timing): how the profile groups a sampled stack, and how
the goals read the rows, what the hypervisor took."""

from __future__ import annotations

from collections import Counter

from bench import wrk
from bench.profile import FRAMEWORK, OTHER, Breakdown, Recording, charged, group_of
from bench.rows import ADD, CUSTOM_WORKER, RSS_GROWTH, STATUS, STOCK_WORKER, Row, http_goals
from bench.usage import cpu_ticks, stolen_share

THREAD = "_bootstrap (threading.py:995);_WorkItem.run (concurrent/futures/thread.py:58)"
SERVE = (
    f"{THREAD};GatewayWorker.handle (qs_gateway/serving/worker.py:98);"
    "ThreadWorker.handle_request (gunicorn/workers/gthread.py:756);"
    "GatewayWorker._serve_paced (qs_gateway/serving/worker.py:91);"
    "MetricsListener.__call__ (qs_gateway/api/hooks.py:188);Flask.wsgi_app (flask/app.py:1511)"
)


def group(stack: str) -> str:
    return group_of(stack.split(";"))[0]


def test_the_framework_as_the_server_calls_it_is_the_frameworks():
    assert group(f"{SERVE};RequestContext.match_request (flask/ctx.py:362)") == FRAMEWORK


def test_the_framework_called_by_our_hooks_is_the_hooks_time():
    stack = (
        f"{SERVE};Flask.process_response (flask/app.py:1319);"
        "security_and_cache_headers (qs_gateway/api/hooks.py:110);Headers.add (werkzeug/datastructures/headers.py:349)"
    )
    assert group(stack).startswith("our hooks")


def test_redis_below_the_status_cache_is_redis_and_the_standard_library_is_looked_through():
    stack = (
        f"{SERVE};StatusCache.lookup (qs_gateway/manager/status_cache.py:49);"
        "FastReader._exchange (qs_gateway/redis_fast.py:84);socket.recv_into (socket.py:706)"
    )
    assert group(stack).startswith("Redis")


def test_the_event_loop_and_the_thread_pool():
    loop = (
        "ThreadWorker.run (gunicorn/workers/gthread.py:425);GatewayWorker._read_head (qs_gateway/serving/worker.py:152)"
    )
    assert group(loop).startswith("worker's own reading")
    assert group(f"{loop};ThreadWorker.enqueue_req (gunicorn/workers/gthread.py:314)").startswith("gunicorn")
    assert group("_bootstrap (threading.py:995)") == OTHER


def test_the_goals_read_memory_growth_and_the_worker_rounds():
    rows = [
        Row(RSS_GROWTH, "-", note="60.0 → 63.0, 60.0 → 67.0 (100,000, 100,500 requests answered)"),
        *[Row(what, 32, p99=p99) for what, p99 in ((CUSTOM_WORKER, 20), (STOCK_WORKER, 19), (CUSTOM_WORKER, 90),
                                                   (STOCK_WORKER, 30), (CUSTOM_WORKER, 25), (STOCK_WORKER, 24))],
    ]  # fmt: skip
    checks = {goal: (met, value) for goal, met, value in http_goals(rows)}
    growth = next(value for goal, value in checks.items() if goal.startswith("RSS per worker after"))
    assert growth == (False, "+11.7%")  # the worse worker counts
    worker = next(value for goal, value in checks.items() if goal.startswith("gateway's worker p99"))
    assert worker == (True, "+1.0 ms")  # the median round, not the mean of one bad moment


def test_the_status_goals_read_the_median_of_the_rounds_each_against_the_floor_right_before_it():
    rounds = [(0.70, 25.0), (0.45, 45.0), (0.65, 28.0)]  # one round fell into a bad moment of the machine
    rows = [
        Row(STATUS, 32, rate=100, p99=50.0, ratio=0.40),  # the single row is not what counts then
        *[Row(CUSTOM_WORKER, 32, p99=p99, ratio=ratio) for ratio, p99 in rounds],
        *[Row(STOCK_WORKER, 32, p99=p99) for _, p99 in rounds],
    ]
    checks = {goal: (met, value) for goal, met, value in http_goals(rows)}
    assert checks["`/api/status` @32 >= 0.6 of the framework floor (median of 3 rounds)"] == (True, "0.65")
    assert checks["`/api/status` @32 p99 <= 30 ms (median of 3 rounds)"] == (True, "28.0 ms")
    only_the_row = {goal: (met, value) for goal, met, value in http_goals(rows[:1])}
    assert only_the_row["`/api/status` @32 >= 0.6 of the framework floor"] == (False, "0.40")


def test_the_item_add_goal_reads_the_median_of_its_rounds():
    rows = [Row(ADD, 8, ratio=ratio) for ratio in (0.74, 0.58, 0.81)]  # RE Manager slowed in one window
    checks = {goal: (met, value) for goal, met, value in http_goals(rows)}
    assert checks["`queue/item/add` @8 >= 0.7 of direct ZeroMQ (median of 3 rounds)"] == (True, "0.74")
    one = {goal: (met, value) for goal, met, value in http_goals(rows[1:2])}
    assert one["`queue/item/add` @8 >= 0.7 of direct ZeroMQ"] == (False, "0.58")


def test_the_cpu_the_kernel_charged_is_set_against_what_the_samples_saw():
    def breakdown(requests: int, samples: int, cpu_seconds: float) -> Breakdown:
        recording = Recording(requests, Counter({FRAMEWORK: samples}), {}, cpu_seconds)
        return Breakdown(seconds=5, interval=0.004, cpu=recording, wall=recording)

    # 1,000 requests in 0.4 s of CPU: 400 µs each; 50 samples of 4 ms: 200 µs each, half of it
    line = charged(breakdown(1000, 50, 0.4), breakdown(1000, 50, 0.2))
    assert "gateway **400 µs** per request, floor **200 µs**" in line
    assert "gateway's: 0.50" in line and "account for 50% and 100% of it" in line


def test_the_share_of_cpu_time_the_hypervisor_took_is_read_from_proc_stat():
    before = cpu_ticks("cpu  100 0 50 800 10 0 5 35 7 0\ncpu0 50 0 25 400 5 0 2 18 0 0\n")
    after = cpu_ticks("cpu  200 0 100 1500 10 0 5 185 9 0\ncpu0 100 0 50 750 5 0 2 93 0 0\n")
    assert before == (1000, 35)  # guest time is already inside user time
    assert after == (2000, 185)
    assert stolen_share(before, after) == 0.15
    assert stolen_share(after, after) == 0.0
    assert cpu_ticks("cpu  1 2 3 4\n") == (10, 0)  # an old kernel without the steal column


def test_a_ceiling_is_the_better_of_its_runs(monkeypatch):
    """A floor run in which stock gthread gave every connection to one worker does not halve it."""
    rates = iter([2_400.0, 7_300.0])
    monkeypatch.setattr(wrk, "run", lambda url, **kwargs: wrk.Result(next(rates), 1.0, 2.0, 0))
    assert wrk.ceiling("http://floor/small", connections=32, seconds=1).requests_per_second == 7_300.0


def test_the_in_process_comparison_calls_each_application_alike_with_a_fresh_request():
    from flask import Flask, request

    from bench.inprocess import WARM_UP, environ_of, median_micros

    seen = []
    app = Flask(__name__)

    @app.get("/api/status")
    def status():
        seen.append((request.headers.get("Authorization"), request.environ.get("marked")))
        request.environ["marked"] = True  # an application may change its environ: the next gets a fresh one
        return {"success": True}

    environ = environ_of("/api/status", {"Authorization": "ApiKey k"})
    micros = median_micros({"a": (app, environ), "b": (app, environ)}, batches=3, calls=4)
    assert set(micros) == {"a", "b"} and all(value > 0 for value in micros.values())
    assert len(seen) == 2 * (WARM_UP + 3 * 4) and set(seen) == {("ApiKey k", None)}
