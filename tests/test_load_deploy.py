"""echo-load against deployed-style servers: TLS, the PROXY protocol, a banner, and each injected fault by kind."""

from __future__ import annotations

import pytest

from support import echo_load, port_args

BACKENDS = ["asyncio", "thread"]  # one event loop, one blocking loop: the two code paths of the server
RUN = ("--clients", "4", "--requests", "400")


def tls_server(start_server, backend: str, tls_files: dict, *args: str):
    return start_server("--backend", backend, "--tls-cert", tls_files["cert"], "--tls-key", tls_files["key"], *args)


def assert_clean(code: int, result: dict, stderr: str) -> None:
    assert code == 0, (result and {key: result[key] for key in ("errors", "mismatches", "messages")}, stderr)
    assert result["errors"] == {} and result["mismatches"] == 0
    assert result["messages"] >= 400 and result["clients"] == 4


# -- TLS ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "engine", [(), ("--engine", "blocking"), ("--pipeline", "4")], ids=["epoll", "blocking", "pipeline"]
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_tls_verified_against_the_ca_with_the_handshake_in_connect_latency(start_server, tls_files, backend, engine):
    server = tls_server(start_server, backend, tls_files)
    code, result, stderr = echo_load(
        *port_args(server.address), *RUN, *engine, "--tls", "--tls-ca", tls_files["ca"], "--json"
    )
    assert_clean(code, result, stderr)
    assert result["tls"] is True
    assert 0 < result["connect_us"]["p50"] <= result["connect_us"]["max"]


def test_an_untrusted_certificate_is_refused_unless_insecure(start_server, tls_files):
    server = tls_server(start_server, "asyncio", tls_files)
    code, result, _ = echo_load(*port_args(server.address), *RUN, "--tls", "--json")
    assert code == 1
    assert result["errors"] == {"tls_verify": 4} and result["messages"] == 0
    code, result, stderr = echo_load(*port_args(server.address), *RUN, "--tls", "--tls-insecure", "--json")
    assert_clean(code, result, stderr)


def test_plain_tcp_against_a_tls_server_is_an_error_not_a_hang(start_server, tls_files):
    server = tls_server(start_server, "thread", tls_files)
    code, result, stderr = echo_load(*port_args(server.address), *RUN, "--timeout", "2", "--json")
    assert code == 1 and result["errors"], stderr


def test_tls_options_without_tls_are_a_usage_error():
    code, _, stderr = echo_load("--tls-insecure", "--clients", "1")
    assert code == 2 and "--tls-insecure" in stderr and len(stderr.strip().splitlines()) == 1


# -- PROXY protocol and banner ----------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_send_proxy_satisfies_a_server_that_requires_it(start_server, backend, version):
    server = start_server("--backend", backend, "--proxy-protocol", "required")
    code, result, stderr = echo_load(*port_args(server.address), *RUN, "--send-proxy", version, "--json")
    assert_clean(code, result, stderr)
    assert result["send_proxy"] == version


def test_no_proxy_header_against_required_is_an_error(start_server):
    server = start_server("--backend", "asyncio", "--proxy-protocol", "required")
    code, result, _ = echo_load(*port_args(server.address), *RUN, "--json")
    assert code == 1
    assert sum(result["errors"].values()) + result["mismatches"] > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_banner_lines_are_dropped_before_measuring(start_server, backend):
    server = start_server("--backend", backend, "--banner", "echo from {hostname} ({backend})")
    code, result, stderr = echo_load(*port_args(server.address), *RUN, "--banner-lines", "1", "--json")
    assert_clean(code, result, stderr)
    code, result, _ = echo_load(*port_args(server.address), *RUN, "--json")
    assert code == 1 and result["mismatches"] > 0  # the banner taken for an echo


def test_tls_proxy_header_and_banner_together(start_server, tls_files):
    server = tls_server(start_server, "thread", tls_files, "--proxy-protocol", "required", "--banner", "hi")
    code, result, stderr = echo_load(
        *port_args(server.address),
        *RUN,
        "--tls",
        "--tls-ca",
        tls_files["ca"],
        "--send-proxy",
        "v2",
        "--banner-lines",
        "1",
        "--json",
    )
    assert_clean(code, result, stderr)


# -- each fault, counted by kind ---------------------------------------------------------------------


@pytest.mark.parametrize("engine", [(), ("--engine", "blocking")], ids=["epoll", "blocking"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_injected_resets_are_counted_as_reset(start_server, backend, engine):
    server = start_server("--backend", backend, "--reset-probability", "1")
    code, result, _ = echo_load(*port_args(server.address), *RUN, *engine, "--json")
    assert code == 1
    assert result["errors"] == {"reset": 4}


@pytest.mark.parametrize(
    "backend, mode",
    [("thread", ()), ("thread", ("--engine", "blocking")), ("asyncio", ("--rate", "200"))],
    ids=["thread-epoll", "thread-blocking", "asyncio-open-loop"],
)
def test_a_byte_budget_is_closed_by_server_after_whole_replies(start_server, backend, mode):
    # asyncio closes with the client's next message unread, which the kernel answers with an RST
    # (counted as `reset`); at a low rate no message is in flight when the budget runs out.
    server = start_server("--backend", backend, "--max-bytes-per-connection", str(64 * 10))
    code, result, _ = echo_load(*port_args(server.address), *RUN, *mode, "--json")
    assert code == 1
    assert result["errors"] == {"closed_by_server": 4}
    assert result["mismatches"] == 0


def test_a_reply_cut_in_the_middle_is_a_short_read(start_server):
    server = start_server("--backend", "asyncio", "--max-bytes-per-connection", "100")
    code, result, _ = echo_load(*port_args(server.address), *RUN, "--json")
    assert code == 1
    assert result["errors"] == {"short_read": 4}


def test_echo_bench_passes_tls_on_as_flags():
    from echoclients.bench.cli import _load_args
    from echoclients.load.spec import LoadSpec

    args = _load_args(LoadSpec(tls=True, tls_insecure=True, send_proxy="v1"))
    assert "--tls" in args and "--tls-insecure" in args and "True" not in args
    assert args[args.index("--send-proxy") + 1] == "v1"
