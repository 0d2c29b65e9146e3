"""Plain-text rendering of a result, for people (``--json`` is for programs)."""

from __future__ import annotations


def format_summary(result: dict) -> str:
    mode = (
        f"open loop at {result['rate']:,.0f} msg/s"
        if result.get("rate")
        else f"closed loop, {result.get('pipeline', 1)} in flight"
    )
    label = f" backend={result['backend']}" if result.get("backend") else ""
    label += " TLS" if result.get("tls") else ""
    label += f" PROXY {result['send_proxy']}" if result.get("send_proxy") else ""
    lat, conn, fair = result["latency_us"], result["connect_us"], result["fairness"]
    lines = [
        f"echo-load: {result.get('target', '?')}{label}  {result['clients']} clients, "
        f"{result['processes']} process(es), {result.get('threads', '?')} thread(s) in all, "
        f"{result['size']:,} B, {mode}",
        f"  messages   {result['messages']:,} in {result['duration_s']:.2f} s: "
        f"{result['msgs_per_s']:,.1f} msg/s, {result['mb_per_s']:.2f} MB/s",
        f"  latency    {_percentiles(lat)}",
        f"  connect    {_percentiles(conn)}",
        *([f"  sent late  {_percentiles(result['send_lateness_us'])}"] if "send_lateness_us" in result else []),
        f"  fairness   {fair['served']:,}/{fair['connections']:,} connections served; msg/s per connection "
        f"min {_num(fair['rate_min'])} median {_num(fair['rate_median'])} max {_num(fair['rate_max'])}",
        f"  cpu        {_cpu(result)}",
        f"  python     {_python(result)}",
        f"  errors     {_errors(result['errors'])}"
        + (f"; {result['reconnects']:,} connections replaced (--reconnect)" if result.get("reconnects") else ""),
        f"  mismatches {result['mismatches']:,}",
    ]
    return "\n".join(lines)


def _percentiles(summary: dict) -> str:
    if summary.get("p50") is None:
        return "none recorded"
    return (
        f"p50 {summary['p50']:,} us  p90 {summary['p90']:,}  p99 {summary['p99']:,}  "
        f"p99.9 {summary['p999']:,}  max {summary['max']:,} us"
    )


def _num(value) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _cpu(result: dict) -> str:
    cpu = result.get("cpu") or {}
    per_process = cpu.get("per_process_percent") or []
    text = "client " + (" + ".join(f"{p:.0f}%" for p in per_process) if per_process else "?")
    server = result.get("server") or {}
    if server.get("cpu_percent") is not None:
        text += f"; server {server['cpu_percent']:.0f}%, {server['pss_mb']:.1f} MiB PSS"
        if server.get("bytes_per_connection") is not None:
            text += f" ({server['bytes_per_connection'] / 1024:.1f} KiB per connection)"
    text += " (100% = one core)"
    if result.get("client_bytes_per_connection") is not None:
        text += f"; client memory {result['client_bytes_per_connection'] / 1024:.1f} KiB per connection"
    return text


def _python(result: dict) -> str:
    """The load generator's own interpreter: a GIL here throttles the client, not the server."""
    python = result.get("python") or {}
    if not python:
        return "?"
    build = " free-threaded" if python.get("free_threaded") else ""
    return f"{python['version']}{build}, GIL {'on' if python['gil'] else 'off'} (this load generator)"


def _errors(errors: dict) -> str:
    return ", ".join(f"{kind} {count:,}" for kind, count in sorted(errors.items())) if errors else "none"
