"""deploy/kubernetes.yaml: the restricted Pod Security Standard, a clean rollout, and the API schemas.

The restricted profile's rules (Kubernetes docs, "Pod Security Standards",
baseline plus restricted) are checked here on every pod template, by a
checker that is itself shown to catch a violation, so that a manifest which
would be refused by a namespace with ``pod-security.kubernetes.io/enforce:
restricted`` fails here first.
"""

from __future__ import annotations

import copy

import pytest
from dockertools import REPO, load_yaml_documents, need_tool, run

MANIFEST = REPO / "deploy" / "kubernetes.yaml"
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SCHEMA_VERSIONS = ["1.27.0", "1.30.0", "1.37.0"]


def manifests() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in load_yaml_documents(MANIFEST)}


def restricted_violations(pod: dict) -> list[str]:
    """What in a pod spec the restricted Pod Security Standard (baseline included) refuses."""
    problems = []
    context = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{flag} is set")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']} is of type {sorted(kinds)}")
    if set(context.get("sysctls") or []):
        problems.append("pod sets sysctls")
    containers = [
        *(pod.get("initContainers") or []),
        *pod.get("containers", []),
        *(pod.get("ephemeralContainers") or []),
    ]
    for c in containers:
        sc = c.get("securityContext") or {}
        where = f"container {c['name']}"
        if sc.get("privileged"):
            problems.append(f"{where} is privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where} does not set allowPrivilegeEscalation: false")
        if sc.get("runAsNonRoot", context.get("runAsNonRoot")) is not True:
            problems.append(f"{where} may run as root (runAsNonRoot)")
        if sc.get("runAsUser", context.get("runAsUser")) == 0:
            problems.append(f"{where} runs as uid 0")
        seccomp = (sc.get("seccompProfile") or context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where} has seccompProfile {seccomp!r}, not RuntimeDefault or Localhost")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{where} does not drop ALL capabilities")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{where} adds capabilities {capabilities['add']}")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            problems.append(f"{where} uses a hostPort")
        if (sc.get("procMount") or "Default") != "Default":
            problems.append(f"{where} unmasks /proc")
    return problems


def pod_template() -> dict:
    return manifests()["Deployment"]["spec"]["template"]["spec"]


def test_the_pod_passes_the_restricted_pod_security_standard():
    assert restricted_violations(pod_template()) == []


@pytest.mark.parametrize(
    "breach, expected",
    [
        (
            lambda pod: (
                pod["securityContext"].pop("seccompProfile"),
                pod["containers"][0]["securityContext"].pop("seccompProfile"),
            ),
            "seccompProfile None",
        ),
        (
            lambda pod: pod["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
            "allowPrivilegeEscalation",
        ),
        (lambda pod: pod["containers"][0]["securityContext"]["capabilities"].update(add=["NET_ADMIN"]), "adds"),
        (lambda pod: pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}}), "hostPath"),
    ],
    ids=["no-seccomp", "escalation", "capability", "hostPath"],
)
def test_the_checker_catches_a_breach(breach, expected):
    pod = copy.deepcopy(pod_template())
    breach(pod)
    assert any(expected in problem for problem in restricted_violations(pod))


def test_no_service_account_token_is_mounted():
    assert pod_template()["automountServiceAccountToken"] is False


def test_probes_read_healthz_over_http_on_the_metrics_port():
    container = pod_template()["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["ECHOSERVER_METRICS_PORT"]) == ports["metrics"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe


def test_a_pod_leaves_the_service_before_it_drains_and_drains_before_it_is_killed():
    pod = pod_template()
    container = pod["containers"][0]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    grace = float({e["name"]: e["value"] for e in container["env"]}["ECHOSERVER_GRACE"])
    # terminationGracePeriodSeconds counts from the start of preStop.
    assert float(command[1]) + grace < pod["terminationGracePeriodSeconds"]


def test_a_disruption_budget_keeps_replicas_serving():
    docs = manifests()
    budget, deployment = docs["PodDisruptionBudget"], docs["Deployment"]
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_manifests_match_the_api_schemas(version, tmp_path):
    need_tool("kubernetes-validate")
    run(["kubernetes-validate", "--strict", "--quiet", "-k", version, MANIFEST])
    # --strict refuses a misspelt field, so the check above can fail.
    typo = tmp_path / "typo.yaml"
    typo.write_text(MANIFEST.read_text().replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"))
    assert run(["kubernetes-validate", "--strict", "--quiet", "-k", version, typo], check=False).returncode != 0
