"""The Docker files, checked without an engine: compose, Dockerfile, lock files, HAProxy, health check.

What the compose file promises people (loopback-only ports below the kernel's
ephemeral range, one build of the server image, limits and log rotation on
every service, a bench that is not root) is read back from ``docker compose
config``, which is what the engine would be given.
"""

from __future__ import annotations

import json
import re
import socket
import sys

import pytest
from dockertools import REPO, compose_env, need_tool, run, tool_env

BACKEND_PORTS = {"thread": 9101, "threadpool": 9102, "fork": 9103, "gevent": 9104, "asyncio": 9105, "uvloop": 9106}
PROFILES = {
    "default": [],
    "bench": ["--profile", "bench"],
    "scaled": ["--profile", "scaled"],
    "all": ["--profile", "*"],
}
LOCKS = REPO / "deploy" / "requirements"


@pytest.fixture(scope="module")
def compose_cli() -> dict[str, str]:
    return compose_env()


def compose_config(env, *profile: str) -> dict:
    return json.loads(run(["docker", "compose", *profile, "config", "--format", "json"], env=env).stdout)


@pytest.mark.parametrize("profile", PROFILES)
def test_compose_config_is_valid(compose_cli, profile):
    run(["docker", "compose", *PROFILES[profile], "config", "-q"], env=compose_cli)


def test_ports_are_on_loopback_and_below_the_ephemeral_range(compose_cli):
    services = compose_config(compose_cli, "--profile", "*")["services"]
    for name, port in BACKEND_PORTS.items():
        assert [(p["host_ip"], p["published"]) for p in services[name]["ports"]] == [("127.0.0.1", str(port))]
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
        ephemeral_start = int(ports.read().split()[0])
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", name
            # A fixed port or range: "127.0.0.1::9090" would draw from the ephemeral range.
            assert port["published"], f"{name} publishes {port['target']} on a random port"
            assert int(port["published"].split("-")[-1]) < ephemeral_start, name


def test_the_server_image_is_built_once_and_never_pulled(compose_cli):
    default = compose_config(compose_cli)["services"]
    assert [name for name, s in default.items() if s.get("build")] == ["thread"]
    services = compose_config(compose_cli, "--profile", "*")["services"]
    servers = {name: s for name, s in services.items() if s["image"] == "echoserver:latest"}
    assert set(servers) == {*BACKEND_PORTS, "replica"}
    # `echoserver:latest` on a registry is someone else's image.
    assert {s["pull_policy"] for s in servers.values()} == {"never"}
    builds = [s["build"] for s in services.values() if s.get("build")]
    # The engine the docs start has no default bridge: every build uses the host's network.
    assert builds and all(b["network"] == "host" for b in builds)
    assert services["bench"]["build"]["target"] == "bench"


def test_every_service_has_limits_rotated_logs_and_no_privileges(compose_cli):
    services = compose_config(compose_cli, "--profile", "*")["services"]
    for name, s in services.items():
        assert s.get("cpus") and s.get("mem_limit") and s.get("pids_limit"), name
        assert s["logging"]["driver"] == "json-file" and s["logging"]["options"]["max-size"], name
        assert s["read_only"] and s["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in s["security_opt"], name
    # The bench runs as the image's user, or as whoever `run --user` names: never root by default.
    assert services["bench"].get("user") in (None, "10001:10001")


def test_compose_file_matches_the_compose_spec():
    need_tool("check-jsonschema")
    run(["check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"])


def test_dockerfile_passes_hadolint():
    need_tool("hadolint")
    run(["hadolint", "Dockerfile"])


def dockerfile_stage(name: str) -> list[str]:
    """The instructions of one stage of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    start = next(i for i, line in enumerate(lines) if re.fullmatch(rf"FROM \S+ AS {name}", line))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("FROM ")), len(lines))
    return lines[start:end]


def test_dependencies_are_installed_from_the_lock_before_the_source_is_copied():
    deps = dockerfile_stage("deps")
    assert not any(line.startswith("COPY") and ("echoserver" in line or "clients" in line) for line in deps)
    assert any("pip install" in line and "requirements/image.txt" in line for line in deps)
    server = dockerfile_stage("server")
    copies = [line for line in server if line.startswith("COPY")]
    assert copies[0].startswith("COPY --from=runtime-deps") and copies[1].startswith("COPY --from=app")


def test_the_image_defaults_suit_a_plain_docker_run():
    env = " ".join(line for line in dockerfile_stage("server") if line.startswith("ENV"))
    # The drain must end inside `docker stop`'s default 10 s, with room to exit.
    assert 0 < float(re.search(r"ECHOSERVER_GRACE=(\S+)", env).group(1)) <= 5
    # Setting ECHOSERVER_PORT in the image would hide a platform's $PORT.
    assert "ECHOSERVER_PORT=" not in env
    assert re.search(r"ECHOSERVER_METRICS_PORT=9090", env), "the health check reads /healthz there"
    assert dockerfile_stage("runtime") == ["FROM server AS runtime"], "the last stage is what `docker build .` makes"


def pins(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", r).group()).lower() for r in requirements}


def test_the_lock_files_pin_every_dependency_of_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    image = pins(LOCKS / "image.txt")
    assert requirement_names(project["dependencies"] + extras["gevent"] + extras["uvloop"]) <= set(image)
    assert requirement_names(extras["plot"]) <= set(pins(LOCKS / "plot.txt"))
    assert not set(image) & set(pins(LOCKS / "plot.txt")), "plot.txt is installed on top of image.txt"


def test_haproxy_config_is_valid():
    need_tool("haproxy")
    run(["haproxy", "-c", "-f", "deploy/haproxy.cfg"])


def test_scaled_replicas_require_the_header_haproxy_sends(compose_cli):
    env = compose_config(compose_cli, "--profile", "scaled")["services"]["replica"]["environment"]
    assert env["ECHOSERVER_PROXY_PROTOCOL"] == "required"
    assert env["ECHOSERVER_BANNER"] == "", "load clients would count a banner as a wrong echo"
    lines = [line.split() for line in (REPO / "deploy/haproxy.cfg").read_text().splitlines()]
    server = next(line for line in lines if line[:1] == ["server-template"])
    assert "send-proxy-v2" in server
    # `default`: the check sends the header too (a bare `connect` would not, and fail).
    # `linger`: it ends with a FIN, not an RST each replica would count as a reset.
    assert ["tcp-check", "connect", "default", "linger"] in lines


# ---------------------------------------------------------------- health check


def healthcheck(**env: str):
    return run(["bash", "deploy/healthcheck.sh"], env={**tool_env(), **env}, timeout=30, check=False)


def test_healthcheck_reads_healthz_on_the_metrics_port(start_server):
    from support import metrics_url, scrape

    server = start_server("--backend", "asyncio", "--metrics-port", "0")
    metrics_port = int(metrics_url(server).rpartition(":")[2])
    assert healthcheck(ECHOSERVER_METRICS_PORT=str(metrics_port)).returncode == 0
    # It closed cleanly: nothing counted as an error.
    assert not any(v for k, v in scrape(server).items() if k.startswith("echoserver_errors_total"))
    server.stop()
    result = healthcheck(ECHOSERVER_METRICS_PORT=str(metrics_port))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr


def test_healthcheck_falls_back_to_an_echo_round_trip_without_metrics(start_server):
    server = start_server("--backend", "thread")
    assert healthcheck(ECHOSERVER_METRICS_PORT="", ECHOSERVER_PORT=str(server.port)).returncode == 0
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    assert healthcheck(ECHOSERVER_METRICS_PORT="", ECHOSERVER_PORT=str(port)).returncode == 1


# ------------------------------------------------------------------- bench.sh


def test_bench_script_parses():
    run(["sh", "-n", "deploy/bench.sh"])


@pytest.mark.parametrize("tool", ["echo-bench", "echo-load"])
def test_bench_script_measures_running_servers_with_either_tool(start_server, tmp_path, tool):
    servers = {name: start_server("--backend", name) for name in ("thread", "asyncio")}
    targets = " ".join(f"{name}=127.0.0.1:{server.port}" for name, server in servers.items())
    env = dict(
        tool_env(),
        BENCH_TOOL=tool,
        BENCH_TARGETS=targets,
        BENCH_CLIENTS="2",
        BENCH_DURATION="0.5",
        BENCH_WARMUP="0",
        RESULTS_DIR=str(tmp_path),
        BENCH_BASE_IMAGE="test",
    )
    run(["sh", "deploy/bench.sh"], env=env, timeout=60)
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [(r["label"], r["mismatches"]) for r in runs] == [("thread", 0), ("asyncio", 0)]
    assert all(r["messages"] > 0 for r in runs)
    table = (tmp_path / "results.md").read_text()
    assert "| asyncio |" in table
    # The results say which Python really ran, whatever the base image's tag claims.
    python = ".".join(map(str, sys.version_info[:3]))
    assert f"Python {python} in the echoserver image (base test)" in table
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")


def test_bench_script_says_how_to_run_it_when_it_cannot_write(tmp_path):
    blocked = tmp_path / "results"
    blocked.write_text("a file where the folder should be")  # unwritable even for root
    env = dict(tool_env(), BENCH_TARGETS="x=127.0.0.1:1", RESULTS_DIR=str(blocked))
    result = run(["sh", "deploy/bench.sh"], env=env, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--user" in result.stderr
