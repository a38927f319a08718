"""The Kubernetes objects of a session's Spark driver (``spark = 'kubernetes'``), as
plain dicts: the driver pod, its headless Service, its NetworkPolicy and the executors'
pod template, plus the names, labels, Spark settings and URLs derived from a session id.

Owns: what those objects say (see ``spark_k8s.py`` for what runs and why). Must not: call
the Kubernetes API (``spark_k8s_api.py`` does) or keep state: every function is pure, so
creating and deleting agree on names without stored state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from rsparkhub.hub.spark import ui_filter_conf

# The session pods' label values: a driver's rsparkhub.io/user and rsparkhub.io/session
# labels equal its session pod's (user names may start with "_" or be 64 characters long).
from rsparkhub.hub.spawners.k8s_objects import (
    container_security_context,
    label_value,
    pod_security_context,
)
from rsparkhub.hub.userdb import role_name

if TYPE_CHECKING:
    from rsparkhub.config import Settings

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
SPARK_SUBMIT = "/opt/spark/bin/spark-submit"
# The apache/spark images' entrypoint; with any other first argument than driver/executor
# it names an unknown uid (libnss_wrapper), then runs the command.
ENTRYPOINT = "/opt/entrypoint.sh"
MASTER = "k8s://https://kubernetes.default.svc"
CONNECT_PORT = 15002
DRIVER_PORT = 7078
BLOCK_MANAGER_PORT = 7079
UI_PORT = 4040
SPARK_UID = 185  # the `spark` user of the apache/spark images: for callers with no uid
DEFAULT_IMAGE = "apache/spark:4.0.1"
SERVICE_ACCOUNT = "rsparkhub-spark"
EXECUTOR_TEMPLATE_ANNOTATION = "rsparkhub.io/executor-pod-template"
# The driver's Secret holds its session's Spark Connect token under this key; Spark Connect
# reads the token from this variable and then answers only calls that carry
# ``Authorization: Bearer <token>`` (Spark >= 4.0, PreSharedKeyAuthenticationInterceptor).
TOKEN_KEY = "connect-token"
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
# … and its UI's key (spark.ui_key) under this one: the driver's UI answers only requests
# the hub's proxy signs with it (Spark's JWSFilter). The pod spec names the variable, and
# the kubelet puts its value into the command (``$(VAR)``), so no spec holds the key.
UI_KEY_KEY = "ui-key"
UI_KEY_ENV = "RSPARKHUB_SPARK_UI_KEY"
EXECUTOR_TEMPLATE_KEY = "executor-pod-template.yaml"
EXECUTOR_TEMPLATE_DIR = "/opt/rsparkhub/spark"
WORK_DIR = "/opt/spark/work-dir"
APP = "rsparkhub"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_USER = "rsparkhub.io/user"
LABEL_WORKSPACE = "rsparkhub.io/workspace"
LABEL_SESSION = "rsparkhub.io/session"
API_TIMEOUT_S = 30.0
# The driver Service's in-cluster address (the hub runs in the same namespace).
DEFAULT_UI_URL = f"http://{{service}}.{{namespace}}.svc:{UI_PORT}"

_MEMORY = re.compile(r"^\s*(\d+)\s*([kmgtp]?)b?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Owner:
    """An object the driver objects belong to (garbage-collected with it): normally the
    session pod."""

    name: str
    uid: str
    kind: str = "Pod"
    api_version: str = "v1"

    def reference(self) -> dict[str, Any]:
        # blockOwnerDeletion stays false: setting it true needs `update` on the owner's
        # finalizers, which the hub's Role deliberately does not grant.
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "blockOwnerDeletion": False,
        }


@dataclass(frozen=True)
class SparkK8sConfig:
    """Everything the builders need; :meth:`from_settings` maps the hub's settings."""

    namespace: str
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    driver_memory: str = "2g"
    driver_cores: int = 1
    executor_memory: str = "2g"
    executor_cores: int = 1
    min_executors: int = 0
    max_executors: int = 4
    executor_idle_timeout: str = "60s"
    service_account: str = SERVICE_ACCOUNT
    warehouse_dir: str = f"{WORK_DIR}/warehouse"
    # Give executors the session's identity through a pod template (off: Spark's defaults).
    executor_template: bool = True
    hub_base_path: str = ""  # the path of the hub's public URL ("" at the root)
    extra_conf: Mapping[str, str] = field(default_factory=dict)
    # Where the hub reaches a driver's UI; {service} and {namespace} are filled in.
    ui_url_template: str = DEFAULT_UI_URL

    @classmethod
    def from_settings(cls, settings: Settings, namespace: str | None = None) -> SparkK8sConfig:
        ns = namespace or getattr(settings, "kubernetes_namespace", None) or "default"
        return cls(
            namespace=str(ns),
            image=settings.spark_kubernetes_image,
            driver_memory=settings.spark_kubernetes_driver_memory,
            executor_memory=settings.spark_kubernetes_executor_memory,
            executor_cores=settings.spark_kubernetes_executor_cores,
            max_executors=settings.spark_kubernetes_max_executors,
            warehouse_dir=settings.spark_kubernetes_warehouse_dir,
            hub_base_path=urlsplit(settings.base_url).path.rstrip("/"),
            extra_conf=dict(settings.spark_kubernetes_conf),
            ui_url_template=settings.spark_kubernetes_ui_url,
        )


# ---------------------------------------------------------------------- names and labels
def driver_name(session_id: str) -> str:
    """``rsparkhub-spark-<10 hex>``: a DNS-1035 label (Service names must start with a
    letter), derived from the session id so create and delete agree without stored
    state. (Executor pods are named by Spark from the app name plus an id unique to each
    driver JVM, so a driver restarted in the same pod never collides with the executors
    of its previous run.)"""
    return f"rsparkhub-spark-{hashlib.sha256(session_id.encode()).hexdigest()[:10]}"


def labels(
    user: str, session_id: str, component: str, workspace: str | None = None
) -> dict[str, str]:
    out = {
        LABEL_NAME: APP,
        LABEL_COMPONENT: component,
        LABEL_USER: label_value(user),
        LABEL_SESSION: label_value(session_id),
    }
    if workspace is not None:
        out[LABEL_WORKSPACE] = label_value(workspace)
    return out


def service_host(cfg: SparkK8sConfig, session_id: str) -> str:
    return f"{driver_name(session_id)}.{cfg.namespace}.svc"


def ui_proxy_base(user: str, hub_base_path: str = "") -> str:
    """Where the hub serves the user's Spark UI (its ``/spark-ui/<user>`` route)."""
    return f"{hub_base_path.rstrip('/')}/spark-ui/{quote(user, safe='')}"


def memory_mib(spark_memory: str) -> int:
    """A Spark memory string (``512m``, ``2g``, ``2048`` = MiB) in MiB."""
    m = _MEMORY.match(spark_memory)
    if not m:
        raise ValueError(f"not a Spark memory size: {spark_memory!r} (use e.g. 512m or 2g)")
    n, unit = int(m.group(1)), m.group(2).lower()
    factor = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024**2, "p": 1024**3}[unit]
    return max(1, int(n * factor))


def pod_memory_mib(spark_memory: str) -> int:
    """JVM heap plus Spark's default overhead (10 %, at least 384 MiB)."""
    heap = memory_mib(spark_memory)
    return heap + max(384, heap // 10)


# ---------------------------------------------------------------------- Spark settings
def spark_conf(
    cfg: SparkK8sConfig,
    user: str,
    session_id: str,
    *,
    proxy_base: str | None = None,
) -> dict[str, str]:
    """The driver's Spark settings (all values strings), ``cfg.extra_conf`` last."""
    name = driver_name(session_id)
    conf: dict[str, str] = {
        "spark.master": MASTER,
        "spark.submit.deployMode": "client",
        "spark.app.name": f"rsparkhub-{label_value(user)[:30].rstrip('-_.')}",
        "spark.kubernetes.namespace": cfg.namespace,
        "spark.kubernetes.container.image": cfg.image,
        "spark.kubernetes.container.image.pullPolicy": cfg.image_pull_policy,
        "spark.kubernetes.driver.pod.name": name,
        "spark.kubernetes.authenticate.driver.serviceAccountName": cfg.service_account,
        "spark.driver.host": service_host(cfg, session_id),
        "spark.driver.bindAddress": "0.0.0.0",
        # Executors dial the driver by spark.driver.host (the Service): Spark >= 4.1 hands
        # them the bind address (0.0.0.0 here) otherwise (found on the lab cluster).
        "spark.kubernetes.executor.useDriverPodIP": "false",
        "spark.driver.port": str(DRIVER_PORT),
        "spark.driver.blockManager.port": str(BLOCK_MANAGER_PORT),
        "spark.blockManager.port": str(BLOCK_MANAGER_PORT),
        "spark.driver.memory": cfg.driver_memory,
        "spark.driver.cores": str(cfg.driver_cores),
        "spark.executor.memory": cfg.executor_memory,
        "spark.executor.cores": str(cfg.executor_cores),
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.shuffleTracking.enabled": "true",
        "spark.dynamicAllocation.minExecutors": str(cfg.min_executors),
        "spark.dynamicAllocation.initialExecutors": str(cfg.min_executors),
        "spark.dynamicAllocation.maxExecutors": str(cfg.max_executors),
        "spark.dynamicAllocation.executorIdleTimeout": cfg.executor_idle_timeout,
        "spark.kubernetes.executor.deleteOnTermination": "true",
        # Driver <-> executor RPC and block transfers authenticate with a secret Spark on
        # Kubernetes makes per application and hands its executors (their pod's env).
        "spark.authenticate": "true",
        "spark.connect.grpc.binding.port": str(CONNECT_PORT),
        "spark.connect.session.manager.defaultSessionTimeout": "7d",
        "spark.ui.port": str(UI_PORT),
        "spark.ui.proxyBase": (
            proxy_base if proxy_base is not None else ui_proxy_base(user, cfg.hub_base_path)
        ),
        # The UI is read-only through the hub (its proxy passes GET and HEAD only), and
        # answers only requests the proxy signs.
        "spark.ui.killEnabled": "false",
        **ui_filter_conf(f"$({UI_KEY_ENV})"),
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": f"{cfg.warehouse_dir.rstrip('/')}/{role_name(user)}",
        "spark.hadoop.javax.jdo.option.ConnectionURL":
            f"jdbc:derby:;databaseName={WORK_DIR}/metastore;create=true",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={WORK_DIR}",
        "spark.local.dir": "/tmp",
        "spark.jars.ivy": "/tmp/.ivy2",
    }  # fmt: skip
    for key, value in labels(user, session_id, "spark-executor").items():
        conf[f"spark.kubernetes.executor.label.{key}"] = value
    if cfg.executor_template:
        conf["spark.kubernetes.executor.podTemplateFile"] = (
            f"{EXECUTOR_TEMPLATE_DIR}/{EXECUTOR_TEMPLATE_KEY}"
        )
    conf.update({str(k): str(v) for k, v in cfg.extra_conf.items()})
    return conf


def executor_pod_template(uid: int = SPARK_UID, gid: int | None = None) -> dict[str, Any]:
    """The executor pod template of a session's driver: Spark fills in image, command,
    resources and labels; this adds the session's identity (``uid``:``gid``) and the
    restrictions of session pods: no API token, no capabilities, no privilege escalation,
    RuntimeDefault seccomp, a read-only root filesystem. Executors write to ``/tmp`` (the
    volume name ``spark-local-dir-1`` makes Spark use it as its local directory instead of
    adding one) and their working directory, both emptyDirs."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security_context(uid, gid),
            "containers": [
                {
                    "name": "spark-kubernetes-executor",
                    "securityContext": container_security_context(uid, gid),
                    "volumeMounts": [
                        {"name": "spark-local-dir-1", "mountPath": "/tmp"},
                        {"name": "work", "mountPath": WORK_DIR},
                    ],
                }
            ],
            "volumes": [
                {"name": "spark-local-dir-1", "emptyDir": {}},
                {"name": "work", "emptyDir": {}},
            ],
        },
    }


# ---------------------------------------------------------------------- objects
def _metadata(
    name: str,
    namespace: str,
    lbls: dict[str, str],
    owner: Owner | None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": lbls}
    if annotations:
        meta["annotations"] = annotations
    if owner is not None:
        meta["ownerReferences"] = [owner.reference()]
    return meta


def build_driver_pod(
    cfg: SparkK8sConfig,
    user: str,
    session_id: str,
    *,
    owner: Owner | None = None,
    workspace: str | None = None,
    proxy_base: str | None = None,
    uid: int | None = None,
    gid: int | None = None,
) -> dict[str, Any]:
    """The driver pod; ``owner`` (normally the session pod) takes it down with it. It runs
    as ``uid``:``gid`` — the session's identity — (default: the image's ``spark`` user)."""
    name = driver_name(session_id)
    if uid is None:
        uid = SPARK_UID
    if gid is None:
        gid = uid
    if uid <= 0 or gid <= 0:
        raise ValueError(f"Spark drivers never run as root: uid {uid}, gid {gid}")
    conf = spark_conf(cfg, user, session_id, proxy_base=proxy_base)
    command = [
        ENTRYPOINT,
        SPARK_SUBMIT,
        "--class", SERVER_CLASS,
        "--name", conf["spark.app.name"],
        "--driver-memory", conf["spark.driver.memory"],
    ]  # fmt: skip
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    command.append("spark-internal")
    memory = f"{pod_memory_mib(conf['spark.driver.memory'])}Mi"
    volume_mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "work", "mountPath": WORK_DIR},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "work", "emptyDir": {}},
    ]
    annotations: dict[str, str] = {}
    if cfg.executor_template:
        # JSON is YAML: Spark reads the file as a pod manifest.
        annotations[EXECUTOR_TEMPLATE_ANNOTATION] = json.dumps(
            executor_pod_template(uid, gid), indent=2
        )
        volume_mounts.append(
            {"name": "executor-template", "mountPath": EXECUTOR_TEMPLATE_DIR, "readOnly": True}
        )
        volumes.append(
            {
                "name": "executor-template",
                "downwardAPI": {
                    "items": [
                        {
                            "path": EXECUTOR_TEMPLATE_KEY,
                            "fieldRef": {
                                "fieldPath": (
                                    f"metadata.annotations['{EXECUTOR_TEMPLATE_ANNOTATION}']"
                                )
                            },
                        }
                    ]
                },
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(
            name,
            cfg.namespace,
            labels(user, session_id, "spark-driver", workspace),
            owner,
            annotations,
        ),
        "spec": {
            "serviceAccountName": cfg.service_account,
            "automountServiceAccountToken": True,
            # The Spark Connect server exits non-zero when it fails: start it again in the
            # same pod (same name, Service and executors' owner), never after a clean exit.
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 30,
            "enableServiceLinks": False,
            "securityContext": pod_security_context(uid, gid),
            "containers": [
                {
                    "name": "spark-connect",
                    "image": cfg.image,
                    "imagePullPolicy": cfg.image_pull_policy,
                    "command": command,
                    "workingDir": WORK_DIR,
                    "env": [
                        {"name": "SPARK_USER", "value": label_value(user)},
                        {"name": "HOME", "value": WORK_DIR},
                        {
                            "name": TOKEN_ENV,
                            "valueFrom": {"secretKeyRef": {"name": name, "key": TOKEN_KEY}},
                        },
                        {
                            "name": UI_KEY_ENV,
                            "valueFrom": {"secretKeyRef": {"name": name, "key": UI_KEY_KEY}},
                        },
                    ],
                    "ports": [
                        {"name": "spark-connect", "containerPort": CONNECT_PORT},
                        {"name": "driver", "containerPort": DRIVER_PORT},
                        {"name": "blockmanager", "containerPort": BLOCK_MANAGER_PORT},
                        {"name": "spark-ui", "containerPort": UI_PORT},
                    ],
                    "readinessProbe": {
                        "tcpSocket": {"port": "spark-connect"},
                        "periodSeconds": 5,
                        "failureThreshold": 3,
                    },
                    "resources": {
                        "requests": {"cpu": str(cfg.driver_cores), "memory": memory},
                        "limits": {"memory": memory},
                    },
                    "securityContext": container_security_context(uid, gid),
                    "volumeMounts": volume_mounts,
                }
            ],
            "volumes": volumes,
        },
    }


def build_driver_secret(
    cfg: SparkK8sConfig,
    user: str,
    session_id: str,
    token: str,
    *,
    ui_key: str,
    owner: Owner | None = None,
    workspace: str | None = None,
) -> dict[str, Any]:
    """The driver's Secret: its session's Spark Connect token (:func:`connect_token`),
    which the driver pod reads into ``SPARK_CONNECT_AUTHENTICATE_TOKEN``, and its UI's
    key (:func:`ui_key`). ``owner`` is the session pod: the Secret exists before the
    driver pod, and goes with the session."""
    if not token:
        raise ValueError("a Spark driver needs its session's Connect token")
    if not ui_key:
        raise ValueError("a Spark driver needs its UI's key")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(
            driver_name(session_id),
            cfg.namespace,
            labels(user, session_id, "spark-driver", workspace),
            owner,
        ),
        "type": "Opaque",
        "immutable": True,
        "data": {
            TOKEN_KEY: base64.b64encode(token.encode()).decode(),
            UI_KEY_KEY: base64.b64encode(ui_key.encode()).decode(),
        },
    }


def build_driver_service(
    cfg: SparkK8sConfig,
    user: str,
    session_id: str,
    *,
    owner: Owner | None = None,
    workspace: str | None = None,
) -> dict[str, Any]:
    """The driver's headless Service (the driver pod as ``owner`` ties their lifetimes)."""
    name = driver_name(session_id)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            name, cfg.namespace, labels(user, session_id, "spark-driver", workspace), owner
        ),
        "spec": {
            "clusterIP": "None",
            # Executors resolve the driver before it is Ready (it only becomes Ready once
            # Spark Connect listens).
            "publishNotReadyAddresses": True,
            "selector": {
                LABEL_NAME: APP,
                LABEL_COMPONENT: "spark-driver",
                LABEL_SESSION: label_value(session_id),
            },
            "ports": [
                {"name": "spark-connect", "port": CONNECT_PORT, "targetPort": CONNECT_PORT},
                {"name": "driver", "port": DRIVER_PORT, "targetPort": DRIVER_PORT},
                {
                    "name": "blockmanager",
                    "port": BLOCK_MANAGER_PORT,
                    "targetPort": BLOCK_MANAGER_PORT,
                },
                {"name": "spark-ui", "port": UI_PORT, "targetPort": UI_PORT},
            ],
        },
    }


def build_network_policy(
    cfg: SparkK8sConfig,
    user: str,
    session_id: str,
    *,
    owner: Owner | None = None,
    workspace: str | None = None,
) -> dict[str, Any]:
    """The session's Spark NetworkPolicy: into this session's driver and executors, only
    this session's pod (Spark Connect, 15002) and each other (driver RPC 7078, block
    manager 7079). NetworkPolicies add up, and a selector cannot say "the same session as
    me", so this per-session grant is what ties a session to its own driver; the
    namespace-wide policies of the manifests add the hub (15002 and the UI) and limit
    where each side may connect out to."""
    session = label_value(session_id)

    def peer(component: str) -> dict[str, Any]:
        return {
            "podSelector": {
                "matchLabels": {
                    LABEL_NAME: APP,
                    LABEL_COMPONENT: component,
                    LABEL_SESSION: session,
                }
            }
        }

    def tcp(*ports: int) -> list[dict[str, Any]]:
        return [{"protocol": "TCP", "port": p} for p in ports]

    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(
            driver_name(session_id),
            cfg.namespace,
            labels(user, session_id, "spark-driver", workspace),
            owner,
        ),
        "spec": {
            "podSelector": {
                "matchLabels": {LABEL_NAME: APP, LABEL_SESSION: session},
                "matchExpressions": [
                    {
                        "key": LABEL_COMPONENT,
                        "operator": "In",
                        "values": ["spark-driver", "spark-executor"],
                    }
                ],
            },
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [peer("session")], "ports": tcp(CONNECT_PORT)},
                {
                    "from": [peer("spark-driver"), peer("spark-executor")],
                    "ports": tcp(DRIVER_PORT, BLOCK_MANAGER_PORT),
                },
            ],
        },
    }


def remote_url(
    cfg: SparkK8sConfig, user: str, session_id: str, spark_session_id: str, token: str
) -> str:
    """``SPARK_REMOTE`` for the session: its own driver, its own server-side session, its
    token. ``spark_session_id`` must be a UUID (Spark Connect's rule).

    The token rides as the ``authorization`` parameter, which pyspark sends as gRPC
    metadata on every call: its own ``token`` parameter would switch the channel to TLS,
    which the driver does not serve. So the URL is a secret (the session's Secret holds
    it)."""
    sid = str(uuid.UUID(spark_session_id))
    return (
        f"sc://{service_host(cfg, session_id)}:{CONNECT_PORT}/"
        f";user_id={quote(user, safe='')};session_id={sid}"
        f";authorization={quote('Bearer ' + token, safe='')}"
    )


def ui_url(cfg: SparkK8sConfig, session_id: str) -> str:
    """Where the hub's ``/spark-ui/…`` proxy reaches the driver's UI: by default its
    Service's port 4040 (``cfg.ui_url_template``, e.g. an API server proxy URL for a hub
    outside the cluster, may say otherwise)."""
    url = cfg.ui_url_template.format(service=driver_name(session_id), namespace=cfg.namespace)
    return url.rstrip("/")
