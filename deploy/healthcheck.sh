#!/bin/bash
# The image's HEALTHCHECK (installed as echo-healthcheck). Docker runs it every
# few seconds in every container, so it starts no Python: bash asks the
# server's metrics port for /healthz (200 while the server accepts, 503 once it
# drains) and reads the reply to the end, so that both sides close cleanly.
# Where the metrics endpoint is switched off (ECHOSERVER_METRICS_PORT empty),
# it falls back to echo-probe: a real echo round trip, at the cost of a Python
# start-up (~65 ms).
set -u
port=${ECHOSERVER_METRICS_PORT:-}
if [[ -z $port || $port == 0 ]]; then
    exec echo-probe --timeout 2
fi
{ exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || { echo "healthcheck: no /healthz on 127.0.0.1:$port" >&2; exit 1; }
printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
IFS=$' \r' read -r -t 2 _ status _ <&3 || { echo "healthcheck: no answer from 127.0.0.1:$port" >&2; exit 1; }
while IFS= read -r -t 2 _ <&3; do :; done
[[ $status == 200 ]] || { echo "healthcheck: /healthz answered $status" >&2; exit 1; }
