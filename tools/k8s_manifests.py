"""The Kustomize base of deploy/k8s, generated from the code it deploys.

``python -m tools.k8s_manifests --write`` writes deploy/k8s/base/generated/;
``--check`` fails when the committed files differ (a test runs it). Ports
come from each service's settings, the dispatch channels from
``services.dispatch``, the secret keys from the settings' secret fields, the
NATS users from ``tools.nats_permissions``: a new channel or setting reaches
the manifests by ``make docs``, never by hand. Overlays (dev, prod) and the
monitoring files are written by hand.

Beside the services, the Job ``streams`` applies the catalogue's JetStream
streams (``python -m tools.streams apply``) as the NATS user of that name,
the only one allowed to create or update a stream; the services wait for
their streams and are not ready until they exist.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from services.dispatch.__main__ import CHANNELS
from shared.settings import ServiceSettings
from tools.streams import STREAMS_USER

OUT = Path("deploy/k8s/base/generated")
IMAGE = "maillage"  # the overlays pin the registry and tag with `images:`
PART_OF = {"app.kubernetes.io/part-of": "maillage"}
# > shared.service.GRACEFUL_SHUTDOWN_SECONDS + PRESTOP_SECONDS, checked by a test
TERMINATION_GRACE_SECONDS = 45
# the endpoints controller drops a terminating pod from its Service before it stops listening
PRESTOP_SECONDS = 5
NATS_PORT = 4222
POSTGRES_PORT = 5432
URL_FIELDS = ("database_url", "ledger_url")  # carry a password in production
# A finished Job is removed after this long, so that the next `kubectl apply`
# creates it again and the streams are re-applied with the new image (a Job's
# pod template cannot be changed in place).
STREAMS_JOB_TTL_SECONDS = 300


@dataclass
class Workload:
    name: str  # the catalogue's service name, its NATS user and its Kubernetes name
    args: list[str]  # after `python -m`
    settings: type[ServiceSettings]
    public: bool = False  # reached from outside (API, web pages, bounce webhook)
    egress: list[dict] = field(default_factory=list)
    database: bool = False
    migrate: bool = False

    @property
    def port(self) -> int:
        return self.settings.model_fields["http_port"].default

    @property
    def prefix(self) -> str:
        return self.settings.model_config["env_prefix"]

    def secret_keys(self) -> list[str]:
        names = [n for n, f in self.settings.model_fields.items()
                 if "SecretStr" in str(f.annotation) or n in URL_FIELDS]
        return ["MAILLAGE_NATS_PASSWORD"] + [self.prefix + n.upper() for n in names]


# What a volunteer-named address must never reach, as a second layer under
# shared/egress.py: private, loopback, link-local (cloud metadata), shared
# (carrier-grade NAT) and multicast/reserved ranges.
INWARD_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
                 "100.64.0.0/10", "0.0.0.0/8", "224.0.0.0/3"]


def _to_anywhere(*ports: int, public_only: bool = False) -> dict:
    block: dict = {"cidr": "0.0.0.0/0"}
    if public_only:
        block["except"] = INWARD_RANGES
    return {"to": [{"ipBlock": block}], "ports": [{"port": p, "protocol": "TCP"} for p in ports]}


def workloads() -> list[Workload]:
    from services.contacts.settings import ContactsSettings
    from services.dispatch.email.settings import EmailDispatchSettings
    from services.dispatch.social.wiring import NETWORKS
    from services.feed.settings import FeedSettings
    from services.matcher.settings import MatcherSettings

    found = [
        Workload("feed", ["services.feed"], FeedSettings, public=True, database=True, migrate=True),
        Workload("contacts", ["services.contacts"], ContactsSettings, public=True, database=True, migrate=True),
        Workload("matcher", ["services.matcher"], MatcherSettings),
    ]
    for channel in CHANNELS:
        # The campaign's own SMTP relay may sit inside the cluster, so
        # dispatch-email keeps private ranges (a volunteer's own server is
        # held to public addresses by shared/egress.py); the social
        # dispatchers only ever reach networks' public APIs.
        if channel == "email":  # SMTP submission to the relay, the ledger in PostgreSQL
            found.append(Workload("dispatch-email", ["services.dispatch", "email"], EmailDispatchSettings,
                                  public=True, database=True, egress=[_to_anywhere(25, 465, 587)]))
        else:  # the networks' HTTPS APIs
            found.append(Workload(f"dispatch-{channel}", ["services.dispatch", channel],
                                  NETWORKS[channel].settings, egress=[_to_anywhere(443, public_only=True)]))
    return found


def labels(w: Workload) -> dict:
    return {"app.kubernetes.io/name": w.name, **PART_OF}


def container(w: Workload) -> dict:
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 3,
             "failureThreshold": 3}
    env: list[dict[str, object]] = [
        {"name": f"{w.prefix}HTTP_HOST", "value": "0.0.0.0"},
        {"name": f"{w.prefix}HTTP_PORT", "value": str(w.port)},
        {"name": "MAILLAGE_NATS_USER", "value": w.name},
    ]
    if w.name == "matcher":  # the pod's ordinal is its partition (matcher-2 → 2)
        env.append({"name": "MAILLAGE_MATCHER_PARTITION",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    return {
        "name": w.name,
        "image": IMAGE,
        "args": ["python", "-m", *w.args],
        "ports": [{"name": "http", "containerPort": w.port, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": "maillage-common"}}, {"secretRef": {"name": f"maillage-{w.name}"}}],
        "env": env,
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        # the matcher replays every profile before it is ready: give a start its time
        "startupProbe": {**probe, "failureThreshold": 60, "periodSeconds": 5},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"}}


def pod_spec(w: Workload) -> dict:
    spec = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": pod_security(),
        "containers": [container(w)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    if w.migrate:  # the schema is there before this version serves (tools/migrate.py)
        main = container(w)
        spec["initContainers"] = [{
            "name": "migrate", "image": IMAGE, "args": ["python", "-m", "tools.migrate", w.name],
            "envFrom": main["envFrom"], "resources": main["resources"],
            "securityContext": main["securityContext"], "volumeMounts": main["volumeMounts"],
        }]
    return spec


def workload(w: Workload) -> dict:
    meta = {"name": w.name, "labels": labels(w)}
    template = {"metadata": {"labels": labels(w)}, "spec": pod_spec(w)}
    selector = {"matchLabels": labels(w)}
    if w.name == "matcher":  # stable names: partition = ordinal; partitions run independently
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
                "spec": {"serviceName": w.name, "replicas": 1, "podManagementPolicy": "Parallel",
                         "selector": selector, "template": template}}
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            # no replicas: the HPA or KEDA owns them, and an apply must not reset them
            "spec": {"selector": selector, "strategy": strategy, "template": template}}


def service(w: Workload) -> dict:
    spec = {"selector": labels(w), "ports": [{"name": "http", "port": w.port, "targetPort": "http"}]}
    if w.name == "matcher":
        spec["clusterIP"] = "None"  # the StatefulSet's governing (headless) Service
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": w.name, "labels": labels(w)}, "spec": spec}


def disruption_budget(w: Workload) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": w.name, "labels": labels(w)},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels(w)}}}


def autoscaler(w: Workload) -> dict | None:
    """HTTP services scale on CPU; dispatchers on their JetStream backlog
    (KEDA, whose HPA it owns); the matcher's replicas are its partitions."""
    meta = {"name": w.name, "labels": labels(w)}
    if w.name.startswith("dispatch-"):
        return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": meta, "spec": {
            "scaleTargetRef": {"name": w.name},
            "minReplicaCount": 1, "maxReplicaCount": 10, "pollingInterval": 15, "cooldownPeriod": 300,
            "triggers": [{"type": "nats-jetstream", "metadata": {
                "natsServerMonitoringEndpoint": "nats-headless.nats.svc.cluster.local:8222",
                "account": "MAILLAGE", "stream": "DISPATCH_JOBS",
                "consumer": w.name,  # the dispatchers' durable is named after them
                "lagThreshold": "200", "activationLagThreshold": "0"}}]}}
    if w.public:
        return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta, "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": w.name},
            "minReplicas": 2, "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                          "target": {"type": "Utilization", "averageUtilization": 70}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}}
    return None


def nats_and_dns_egress() -> list[dict]:
    return [
        {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}],
         "ports": [{"port": NATS_PORT, "protocol": "TCP"}]},
        {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
    ]


def network_policy(w: Workload) -> dict:
    """What may reach the pod and what it may reach, beyond the namespace's
    default deny (common.yaml): its port from the ingress controller (public
    ones) or Prometheus only; NATS, DNS, PostgreSQL and its channel's peers."""
    port = [{"port": "http", "protocol": "TCP"}]
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ingress = [{"ports": port}] if w.public else [{"from": [monitoring], "ports": port}]
    egress = [*nats_and_dns_egress(), *w.egress]
    if w.database:
        egress.append({"to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "maillage-db"}}}],
                       "ports": [{"port": POSTGRES_PORT, "protocol": "TCP"}]})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": w.name, "labels": labels(w)},
            "spec": {"podSelector": {"matchLabels": labels(w)}, "policyTypes": ["Ingress", "Egress"],
                     "ingress": ingress, "egress": egress}}


def secret_template(w: Workload) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": f"maillage-{w.name}", "labels": labels(w),
                         "annotations": {"maillage/template": "replace every value; see deploy/README.md"}},
            "stringData": {key: "REPLACE_ME" for key in w.secret_keys()}}


def documents(w: Workload) -> list[dict]:
    docs = [workload(w), service(w), disruption_budget(w), autoscaler(w), network_policy(w), secret_template(w)]
    return [d for d in docs if d is not None]


def streams_documents() -> list[dict]:
    """The Job that applies the streams, its Secret template (the password
    of the NATS user ``streams``) and its network policy (NATS and DNS out,
    nothing in). It runs beside the services on every apply; they wait for
    it (shared.messaging.Bus.wait_for_streams)."""
    def lbl() -> dict:  # a fresh dict each time: a shared one is dumped as a YAML alias
        return {"app.kubernetes.io/name": STREAMS_USER, **PART_OF}

    def meta() -> dict:
        return {"name": STREAMS_USER, "labels": lbl()}

    main = {
        "name": STREAMS_USER,
        "image": IMAGE,
        "args": ["python", "-m", "tools.streams", "apply"],
        # MAILLAGE_NATS_URL and MAILLAGE_STREAM_REPLICAS (3 in prod) from the common settings
        "envFrom": [{"configMapRef": {"name": "maillage-common"}}, {"secretRef": {"name": f"maillage-{STREAMS_USER}"}}],
        "env": [{"name": "MAILLAGE_NATS_USER", "value": STREAMS_USER}],
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod = {
        "automountServiceAccountToken": False,
        "restartPolicy": "OnFailure",  # NATS may still be rolling out: retried with backoff
        "securityContext": pod_security(),
        "containers": [main],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(), "spec": {
        "backoffLimit": 10, "ttlSecondsAfterFinished": STREAMS_JOB_TTL_SECONDS,
        "template": {"metadata": {"labels": lbl()}, "spec": pod}}}
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(),
              "spec": {"podSelector": {"matchLabels": lbl()}, "policyTypes": ["Ingress", "Egress"],
                       "ingress": [], "egress": nats_and_dns_egress()}}
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": f"maillage-{STREAMS_USER}", "labels": lbl(),
                           "annotations": {"maillage/template": "replace every value; see deploy/README.md"}},
              "stringData": {"MAILLAGE_NATS_PASSWORD": "REPLACE_ME"}}
    return [job, policy, secret]


def render() -> dict[str, str]:
    """File name → YAML text."""
    header = "# Generated by `python -m tools.k8s_manifests` (make docs): do not edit.\n"
    files = {}
    for w in workloads():
        files[f"{w.name}.yaml"] = header + yaml.safe_dump_all(documents(w), sort_keys=False, width=120)
    files[f"{STREAMS_USER}.yaml"] = header + yaml.safe_dump_all(streams_documents(), sort_keys=False, width=120)
    files["kustomization.yaml"] = header + yaml.safe_dump(
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
         "resources": sorted(f for f in files)}, sort_keys=False)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.k8s_manifests", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="fail if the committed files are stale")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        present = {p.name for p in args.out.glob("*.yaml")} if args.out.exists() else set()
        stale = sorted(n for n, text in files.items() if not (args.out / n).exists()
                       or (args.out / n).read_text() != text) + sorted(present - set(files))
        if stale:
            print(f"stale in {args.out}: {', '.join(stale)}: run `make docs`", file=sys.stderr)
        return 1 if stale else 0
    if args.write:
        args.out.mkdir(parents=True, exist_ok=True)
        for old in set(args.out.glob("*.yaml")) - {args.out / n for n in files}:
            old.unlink()
        for name, text in files.items():
            (args.out / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
