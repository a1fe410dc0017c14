"""deploy/k8s renders and validates offline: every overlay through kubectl's
kustomize, built-in kinds against the Kubernetes schemas in strict mode
(kubernetes-validate), the operators' kinds (KEDA, prometheus-operator,
CloudNativePG), whose CRD schemas are not shipped offline, against the
structural schemas below; and what the manifests promise about the code is
checked against the code."""

from __future__ import annotations

import re
import subprocess

import jsonschema
import pytest

from services.dispatch.__main__ import CHANNELS
from services.matcher.domain import Partition
from services.matcher.settings import MatcherSettings
from shared.catalogue import SERVICES
from shared.service import GRACEFUL_SHUTDOWN_SECONDS
from tests.support.manifests import (
    BIN,
    OVERLAYS,
    WORKLOADS,
    containers,
    env_of,
    objects,
    of_kind,
    rendered,
)
from tests.support.paths import ROOT
from tools import k8s_manifests


def test_the_generated_base_is_current():
    assert k8s_manifests.main(["--check", "--out", str(ROOT / k8s_manifests.OUT)]) == 0, "run `make docs`"


def test_overlays_dev_and_prod_exist():
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_built_in_kinds_validate_strictly(overlay, tmp_path):
    out = tmp_path / f"{overlay}.yaml"
    out.write_text(rendered(overlay))
    done = subprocess.run([BIN / "kubernetes-validate", "--strict", "--quiet", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ERROR" not in done.stdout + done.stderr, done.stdout + done.stderr
    # the check is not blind: a misspelt field fails it
    broken = tmp_path / "broken.yaml"
    broken.write_text(rendered(overlay).replace("readOnlyRootFilesystem", "readOnlyRootFileSystem", 1))
    bad = subprocess.run([BIN / "kubernetes-validate", "--strict", "--quiet", str(broken)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "readOnlyRootFileSystem" in bad.stdout + bad.stderr


# -- the operators' kinds: what we use of their CRDs, structurally ----------------------------------

_STR = {"type": "string"}
_INT = {"type": "integer"}
_META = {"type": "object", "required": ["name"], "properties": {"name": _STR}}


def _crd(spec: dict, api: str) -> dict:
    return {"type": "object", "required": ["apiVersion", "metadata", "spec"],
            "properties": {"apiVersion": {"const": api}, "metadata": _META, "spec": spec}}


def _strict(required: list[str], **props) -> dict:
    return {"type": "object", "required": required, "properties": props, "additionalProperties": False}


CRD_SCHEMAS = {
    "ScaledObject": _crd(_strict(
        ["scaleTargetRef", "triggers"], scaleTargetRef=_strict(["name"], name=_STR),
        minReplicaCount=_INT, maxReplicaCount=_INT, pollingInterval=_INT, cooldownPeriod=_INT,
        triggers={"type": "array", "minItems": 1, "items": _strict(
            ["type", "metadata"], type={"const": "nats-jetstream"},
            metadata=_strict(["natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"],
                             natsServerMonitoringEndpoint=_STR, account=_STR, stream=_STR, consumer=_STR,
                             lagThreshold=_STR, activationLagThreshold=_STR, useHttps=_STR))}),
        "keda.sh/v1alpha1"),
    "ServiceMonitor": _crd(_strict(
        ["selector", "endpoints"], selector={"type": "object"}, namespaceSelector={"type": "object"},
        endpoints={"type": "array", "minItems": 1, "items": _strict(
            ["port"], port=_STR, path=_STR, interval=_STR, honorLabels={"type": "boolean"})}),
        "monitoring.coreos.com/v1"),
    "PrometheusRule": _crd(_strict(["groups"], groups={"type": "array", "minItems": 1, "items": _strict(
        ["name", "rules"], name=_STR, rules={"type": "array", "minItems": 1, "items": _strict(
            ["alert", "expr"], alert=_STR, expr=_STR, labels={"type": "object"},
            annotations={"type": "object"}, **{"for": _STR})})}), "monitoring.coreos.com/v1"),
    "Cluster": _crd({"type": "object", "required": ["instances", "storage", "bootstrap"],
                     "properties": {"instances": {"type": "integer", "minimum": 1},
                                    "storage": _strict(["size"], size=_STR, storageClass=_STR)}},
                    "postgresql.cnpg.io/v1"),
    "ScheduledBackup": _crd(_strict(["schedule", "cluster"], schedule=_STR, cluster=_strict(["name"], name=_STR),
                                    backupOwnerReference=_STR, immediate={"type": "boolean"}),
                            "postgresql.cnpg.io/v1"),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_operator_kinds_match_their_structural_schemas(overlay):
    seen = set()
    for obj in objects(overlay):
        group = obj["apiVersion"].rpartition("/")[0]
        if "." in group and not group.endswith(".k8s.io"):  # not a built-in API group
            assert obj["kind"] in CRD_SCHEMAS, f"no schema for {obj['apiVersion']} {obj['kind']}"
            jsonschema.validate(obj, CRD_SCHEMAS[obj["kind"]])
            seen.add(obj["kind"])
    assert {"ScaledObject", "ServiceMonitor", "PrometheusRule"} <= seen


# -- what the manifests promise ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_and_channel_runs_hardened_with_probes_on_its_port(overlay):
    found = {o["metadata"]["name"]: o for o in of_kind(overlay, *WORKLOADS)}
    assert set(found) == set(SERVICES)
    assert found["matcher"]["kind"] == "StatefulSet"
    ports = {w.name: w.port for w in k8s_manifests.workloads()}
    for name, obj in found.items():
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["terminationGracePeriodSeconds"] > GRACEFUL_SHUTDOWN_SECONDS + k8s_manifests.PRESTOP_SECONDS
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
        for c in containers(obj):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
            assert not sc["allowPrivilegeEscalation"]
            assert c["resources"]["requests"] and c["resources"]["limits"]
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
        main = pod["containers"][0]
        settings = next(w for w in k8s_manifests.workloads() if w.name == name).settings
        prefix = settings.model_config["env_prefix"]
        assert env_of(main)[f"{prefix}HTTP_PORT"]["value"] == str(ports[name])
        assert main["ports"] == [{"name": "http", "containerPort": ports[name], "protocol": "TCP"}]
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert env_of(main)["MAILLAGE_NATS_USER"]["value"] == name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_workload_has_a_budget_a_policy_and_a_scaler(overlay):
    names = set(SERVICES)
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        assert names <= {o["metadata"]["name"] for o in of_kind(overlay, kind)}, kind
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in of_kind(overlay, "ScaledObject")}
    assert set(scaled) == {f"dispatch-{c}" for c in CHANNELS}
    for name, obj in scaled.items():  # the dispatchers' durable consumer, named after them
        assert obj["spec"]["triggers"][0]["metadata"]["consumer"] == name
    assert {o["spec"]["scaleTargetRef"]["name"] for o in of_kind(overlay, "HorizontalPodAutoscaler")} == \
        {"feed", "contacts", "dispatch-email"} - set(scaled)
    deny = [o for o in of_kind(overlay, "NetworkPolicy") if o["spec"]["podSelector"] == {}]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_social_dispatchers_reach_no_inward_range(overlay):
    """A second layer under shared/egress.py: even if the application's
    check were bypassed, the cluster drops a social dispatcher's packets to
    private, loopback, link-local (metadata), shared and multicast ranges."""
    import ipaddress

    inward = [ipaddress.ip_network(c) for c in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                "127.0.0.0/8", "169.254.169.254/32", "100.64.0.0/10")]
    for channel in set(CHANNELS) - {"email"}:
        policy = next(o for o in of_kind(overlay, "NetworkPolicy") if o["metadata"]["name"] == f"dispatch-{channel}")
        for rule in policy["spec"]["egress"]:
            for peer in rule.get("to", []):
                block = peer.get("ipBlock")
                if block is None:
                    continue
                excepted = [ipaddress.ip_network(c) for c in block.get("except", [])]
                allowed = ipaddress.ip_network(block["cidr"])
                for net in inward:
                    if net.subnet_of(allowed):
                        assert any(net.subnet_of(e) for e in excepted), (channel, str(net))


def test_the_dispatchers_durables_are_named_after_them():
    """KEDA reads the lag of consumer dispatch-<channel>; the NATS
    permissions let a dispatcher pull only from that consumer."""
    for path in (ROOT / "services/dispatch").rglob("*worker*.py"):
        for durable in re.findall(r'durable=(f?"[^"]+")', path.read_text()):
            assert durable in ('"dispatch-email"', 'f"dispatch-{post.network.value}"'), (path, durable)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_matcher_partitions_are_the_pod_ordinals(overlay):
    [matcher] = of_kind(overlay, "StatefulSet")
    env = env_of(matcher["spec"]["template"]["spec"]["containers"][0])
    assert env["MAILLAGE_MATCHER_PARTITION"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    partitions = int(env.get("MAILLAGE_MATCHER_PARTITIONS", {"value": "1"})["value"])
    assert matcher["spec"]["replicas"] == partitions
    for ordinal in range(partitions):
        owned = MatcherSettings(partition=f"matcher-{ordinal}", partitions=partitions).owned
        assert owned == Partition(ordinal, partitions)


def test_a_pod_name_outside_the_partitions_is_refused():
    with pytest.raises(ValueError):
        MatcherSettings(partition="matcher-3", partitions=3)
    with pytest.raises(ValueError):
        MatcherSettings(partition="matcher", partitions=3)
    assert MatcherSettings(partition="2", partitions=3).partition == 2


def test_prod_runs_replicated_streams_postgres_and_no_secret_template():
    prod = objects("prod")
    [common] = [o for o in prod if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "maillage-common"]
    assert common["data"]["MAILLAGE_STREAM_REPLICAS"] == "3"
    assert not [o for o in prod if o["kind"] == "Secret"], "prod takes its Secrets from outside"
    [cluster] = [o for o in prod if o["kind"] == "Cluster"]
    assert cluster["spec"]["instances"] >= 3
    for obj in of_kind("prod", "Deployment"):
        for c in containers(obj):
            for name, e in env_of(c).items():
                if name.endswith(("DATABASE_URL", "LEDGER_URL")):
                    assert e["value"].startswith("postgresql+psycopg://$(DB_USER):$(DB_PASSWORD)@maillage-db-rw")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secret_templates_hold_no_secret(overlay):
    for obj in of_kind(overlay, "Secret"):
        assert set(obj.get("stringData", {}).values()) <= {"REPLACE_ME"}, obj["metadata"]["name"]
        assert "data" not in obj
