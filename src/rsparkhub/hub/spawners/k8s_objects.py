"""The Kubernetes objects of a session, built by pure functions (no API calls) so tests can
validate every one of them against the Kubernetes OpenAPI schema:

* ``build_session_pod`` — one pod per session: the agent (``python -m rsparkhub.agent``)
  dialling the hub, a restrictive security context under the user's own uid
  (``session_identity``), the profile's resources, emptyDirs for everything it writes (the
  root filesystem is read-only), and optionally the user's package volume;
* ``build_session_secret`` — the session token and the secret part of the session's
  environment (``PGPASSWORD``, ``DATABASE_URL``, ``SPARK_REMOTE`` …), read by the pod through
  ``secretKeyRef`` so no secret value is in the pod spec;
* ``build_user_pvc`` — the user's package volume (``R_LIBS_USER``, ``PYTHONUSERBASE``).

Names and label values are derived so that any user name stays valid: label values are
cut to 63 characters and get a hash suffix when they had to be changed; the full names
are in annotations.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from rsparkhub.hub.spawners.base import SessionSpec
from rsparkhub.hub.spawners.k8s_environments import environment_mounts, prepare_user_volume
from rsparkhub.hub.spawners.k8s_profiles import KubernetesProfile

APP_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
USER_LABEL = "rsparkhub.io/user"
WORKSPACE_LABEL = "rsparkhub.io/workspace"
SESSION_LABEL = "rsparkhub.io/session"
PROFILE_LABEL = "rsparkhub.io/profile"
# "true" on session pods whose profile allows the internet: the namespace policy
# rsparkhub-session-internet (deploy/kustomize/base/networkpolicies.yaml) selects it.
INTERNET_LABEL = "rsparkhub.io/internet"
USER_ANNOTATION = "rsparkhub.io/user-name"
WORKSPACE_ANNOTATION = "rsparkhub.io/workspace-id"
SESSION_ANNOTATION = "rsparkhub.io/session-id"
PROFILE_ANNOTATION = "rsparkhub.io/profile-name"

APP = "rsparkhub"
SESSION_COMPONENT = "session"
USER_VOLUME_COMPONENT = "user-volume"
SESSION_SELECTOR = f"{APP_LABEL}={APP},{COMPONENT_LABEL}={SESSION_COMPONENT}"

CONTAINER = "session"
RUN_AS = 1000  # the session images' user; the uid of sessions whose user has none
HOME = "/home/rsparkhub"
SESSION_DIR = "/srv/rsparkhub/session"  # the agent keeps runtime/ and its pid file here
WORKDIR = f"{SESSION_DIR}/work"
USER_LIB_DIR = f"{HOME}/lib"  # the user's package volume
R_LIBS_USER = f"{USER_LIB_DIR}/R"
PYTHONUSERBASE = f"{USER_LIB_DIR}/python"
TOKEN_KEY = "token"
GPU_RESOURCE = "nvidia.com/gpu"

# Environment variables that go into the session's Secret instead of the pod spec.
_SECRET_ENV = frozenset({"PGPASSWORD", "DATABASE_URL", "SPARK_REMOTE"})  # URLs with credentials
_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "_KEY", "CREDENTIAL")
_LABEL_BAD = re.compile(r"[^A-Za-z0-9_.-]")
_DNS_BAD = re.compile(r"[^a-z0-9-]")


@dataclass(frozen=True)
class PodConfig:
    """The admin's settings that shape every session pod (from ``Settings``)."""

    namespace: str
    image: str | None
    hub_url: str
    service_account: str = "rsparkhub-session"
    max_age_s: int = 86400
    image_pull_secrets: tuple[str, ...] = ()
    user_volume: bool = False
    user_volume_access_mode: str = "ReadWriteOnce"
    termination_grace_s: int = 30
    default_uid: int = RUN_AS  # kubernetes_session_uid: for a SessionSpec without a uid
    disk_mb: int = 0  # session_disk_mb: sizeLimit of the session's and home's emptyDirs
    tmp_mb: int = 0  # session_tmp_mb: sizeLimit of /tmp's
    # kubernetes_environments_claim: the PVC the hub builds environments on, mounted in
    # the hub at environments_root (DATA_DIR/environments); k8s_environments
    environments_claim: str | None = None
    environments_root: str = ""


def _sized(mb: int) -> dict[str, str]:
    """An emptyDir of at most ``mb`` MiB (the kubelet evicts a pod that writes more; the
    user is told why); no limit for 0."""
    return {"sizeLimit": f"{mb}Mi"} if mb > 0 else {}


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def label_value(text: str) -> str:
    """A valid label value standing for ``text`` (unchanged when it already is one)."""
    clean = _LABEL_BAD.sub("-", text).strip("-_.")
    if clean == text and len(clean) <= 63:
        return clean
    cut = clean[:54].strip("-_.")
    return f"{cut}-{_short_hash(text)}" if cut else _short_hash(text)


def pod_name(session_id: str) -> str:
    """The pod (and Secret) of a session: ``rsparkhub-session-<id>`` (a DNS label)."""
    return f"rsparkhub-session-{_DNS_BAD.sub('-', session_id.lower())}"[:63].rstrip("-")


def pvc_name(user: str) -> str:
    """The user's package volume: stable for a user name, a valid DNS label."""
    slug = _DNS_BAD.sub("-", user.lower()).strip("-")[:36].strip("-")
    return (
        f"rsparkhub-lib-{slug}-{_short_hash(user)}"
        if slug
        else f"rsparkhub-lib-{_short_hash(user)}"
    )


def is_secret_env(name: str) -> bool:
    upper = name.upper()
    return name in _SECRET_ENV or any(w in upper for w in _SECRET_WORDS)


def split_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(plain, secret) parts of a session's environment."""
    plain = {k: v for k, v in env.items() if not is_secret_env(k)}
    secret = {k: v for k, v in env.items() if is_secret_env(k)}
    return plain, secret


def session_labels(spec: SessionSpec, profile: str | None = None) -> dict[str, str]:
    labels = {
        APP_LABEL: APP,
        COMPONENT_LABEL: SESSION_COMPONENT,
        MANAGED_BY_LABEL: "rsparkhub-hub",
        USER_LABEL: label_value(spec.user),
        WORKSPACE_LABEL: label_value(spec.workspace_id),
        SESSION_LABEL: label_value(spec.session_id),
    }
    if profile is not None:
        labels[PROFILE_LABEL] = label_value(profile)
    return labels


def session_annotations(spec: SessionSpec, profile: str | None = None) -> dict[str, str]:
    ann = {
        USER_ANNOTATION: spec.user,
        WORKSPACE_ANNOTATION: spec.workspace_id,
        SESSION_ANNOTATION: spec.session_id,
    }
    if profile is not None:
        ann[PROFILE_ANNOTATION] = profile
    return ann


def session_identity(spec: SessionSpec, default_uid: int = RUN_AS) -> tuple[int, int]:
    """(uid, gid) a session's pods run as: the user's own (``spec.uid``/``spec.gid``; the
    gid defaults to the uid), else ``default_uid`` for both. Never 0: a ValueError says so."""
    uid = spec.uid if spec.uid is not None else default_uid
    gid = spec.gid if spec.gid is not None else uid
    if uid <= 0 or gid <= 0:
        raise ValueError(
            f"session pods never run as root: uid {uid}, gid {gid} for user '{spec.user}'"
        )
    return uid, gid


def pod_security_context(uid: int, gid: int | None = None, **extra: Any) -> dict[str, Any]:
    """The pod-level security context of every pod the hub makes (sessions, Spark drivers
    and executors): non-root as ``uid``:``gid`` (volumes group-owned by ``gid``),
    RuntimeDefault seccomp."""
    if gid is None:
        gid = uid
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        **extra,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(uid: int, gid: int | None = None) -> dict[str, Any]:
    """The security context of every container the hub makes: no capabilities, no
    privilege escalation (``no_new_privs``), a read-only root filesystem, RuntimeDefault
    seccomp, non-root as ``uid``:``gid`` (repeated from the pod level so that no container
    can differ)."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid if gid is None else gid,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(profile: KubernetesProfile) -> dict[str, Any]:
    requests: dict[str, str] = {"cpu": profile.cpu_request, "memory": profile.memory_request}
    limits: dict[str, str] = {}
    if profile.cpu_limit is not None:
        limits["cpu"] = profile.cpu_limit
    if profile.memory_limit is not None:
        limits["memory"] = profile.memory_limit
    if profile.gpu:
        # Extended resources: the limit is what counts; a request must equal it.
        limits[GPU_RESOURCE] = str(profile.gpu)
        requests[GPU_RESOURCE] = str(profile.gpu)
    out: dict[str, Any] = {"requests": requests}
    if limits:
        out["limits"] = limits
    return out


def agent_command(spec: SessionSpec, hub_url: str) -> list[str]:
    """The container's command: the agent, as the local spawner runs it."""
    cmd = [
        "python",
        "-m",
        "rsparkhub.agent",
        "--hub-url",
        hub_url,
        "--session-id",
        spec.session_id,
        "--workdir",
        WORKDIR,
        "--redial-timeout",
        str(spec.redial_timeout_s),
        "--max-file-bytes",
        str(spec.max_file_bytes),
    ]
    if spec.languages:
        cmd += ["--languages", spec.languages]
    if spec.prestart:
        cmd += ["--prestart", ",".join(spec.prestart)]
    return cmd


def _env(
    spec: SessionSpec, profile: KubernetesProfile, cfg: PodConfig, drop: set[str]
) -> list[dict[str, Any]]:
    name = pod_name(spec.session_id)
    entries: dict[str, dict[str, Any]] = {}

    def plain(k: str, v: str) -> None:
        entries[k] = {"name": k, "value": v}

    def secret(k: str) -> None:
        entries[k] = {"name": k, "valueFrom": {"secretKeyRef": {"name": name, "key": k}}}

    plain("LANG", "C.UTF-8")
    plain("TMPDIR", "/tmp")
    plain("PYTHONUNBUFFERED", "1")
    plain("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # Lowest precedence first: the profile's variables, then the hub's (database, Spark).
    for k, v in sorted(profile.env.items()):
        plain(k, v)
    plain_env, secret_env = split_env({k: v for k, v in spec.env.items() if k not in drop})
    for k, v in sorted(plain_env.items()):
        plain(k, v)
    for k in sorted(secret_env):
        secret(k)
    # Set by rsparkhub, never overridden.
    plain("HOME", HOME)
    plain("USER", spec.user)
    plain("RSPARKHUB_SESSION_ID", spec.session_id)
    plain("RSPARKHUB_WORKSPACE_ID", spec.workspace_id)
    entries["RSPARKHUB_SESSION_TOKEN"] = {
        "name": "RSPARKHUB_SESSION_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": name, "key": TOKEN_KEY}},
    }
    if cfg.user_volume:
        plain("R_LIBS_USER", R_LIBS_USER)
        plain("PYTHONUSERBASE", PYTHONUSERBASE)
    return list(entries.values())


def build_session_pod(
    spec: SessionSpec, profile: KubernetesProfile, cfg: PodConfig
) -> dict[str, Any]:
    """The pod of one session (a plain dict in Kubernetes' JSON form)."""
    image = profile.image or cfg.image
    if not image:
        raise ValueError(f"profile '{profile.name}' has no image and kubernetes_image is unset")
    name = pod_name(spec.session_id)
    uid, gid = session_identity(spec, cfg.default_uid)
    envs = environment_mounts(
        spec, cfg.environments_claim, cfg.environments_root, cfg.user_volume, USER_LIB_DIR
    )
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "home", "mountPath": HOME},
        {"name": "session", "mountPath": SESSION_DIR},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": _sized(cfg.tmp_mb)},
        {"name": "home", "emptyDir": _sized(cfg.disk_mb)},
        {"name": "session", "emptyDir": _sized(cfg.disk_mb)},
    ]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": agent_command(spec, cfg.hub_url),
        "workingDir": SESSION_DIR,
        "env": _env(spec, profile, cfg, envs.drop_env),
        "resources": _resources(profile),
        "securityContext": container_security_context(uid, gid),
        "volumeMounts": mounts,
        # On a crash the last lines of the agent's log become the termination message,
        # which the hub shows as the reason the session died.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": cfg.service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # The pause container becomes PID 1 and reaps orphaned processes of the session;
        # there is no other container to share anything with.
        "shareProcessNamespace": True,
        "terminationGracePeriodSeconds": cfg.termination_grace_s,
        # fsGroupChangePolicy: a user volume is re-owned (group) only when its root is not
        # already the user's, e.g. the first session after the user got a uid of their own.
        "securityContext": pod_security_context(uid, gid, fsGroupChangePolicy="OnRootMismatch"),
        "containers": [container],
        "volumes": volumes,
    }
    if cfg.user_volume:
        mounts.append({"name": "user-lib", "mountPath": USER_LIB_DIR})
        volumes.append(
            {"name": "user-lib", "persistentVolumeClaim": {"claimName": pvc_name(spec.user)}}
        )
        # R ignores an R_LIBS_USER that does not exist: create both library directories on
        # the (possibly fresh) volume first; and remove overlays of workspaces now gone.
        command, init_env = prepare_user_volume(
            USER_LIB_DIR, [R_LIBS_USER, PYTHONUSERBASE, *envs.user_dirs], spec.keep_overlays
        )
        pod_spec["initContainers"] = [
            {
                "name": "prepare-user-lib",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": command,
                **({"env": init_env} if init_env else {}),
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"cpu": "100m", "memory": "64Mi"},
                },
                "securityContext": container_security_context(uid, gid),
                "volumeMounts": [{"name": "user-lib", "mountPath": USER_LIB_DIR}],
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ]
        if cfg.user_volume_access_mode == "ReadWriteOnce":
            # A ReadWriteOnce volume attaches to one node: a user's sessions go together.
            pod_spec["affinity"] = {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {
                                "matchLabels": {
                                    COMPONENT_LABEL: SESSION_COMPONENT,
                                    USER_LABEL: label_value(spec.user),
                                }
                            },
                            "topologyKey": "kubernetes.io/hostname",
                        }
                    ]
                }
            }
    # declared environments (read-only) and the workspace's overlay; after user-lib's own
    # mount, which the overlay's subPath mount shares a volume with
    mounts += envs.mounts
    volumes += envs.volumes
    if cfg.max_age_s > 0:
        pod_spec["activeDeadlineSeconds"] = int(cfg.max_age_s)
    if profile.node_selector:
        pod_spec["nodeSelector"] = dict(profile.node_selector)
    if profile.tolerations:
        pod_spec["tolerations"] = [t.to_k8s() for t in profile.tolerations]
    if cfg.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in cfg.image_pull_secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": cfg.namespace,
            "labels": {
                **session_labels(spec, profile.name),
                **({INTERNET_LABEL: "true"} if profile.internet else {}),
            },
            "annotations": session_annotations(spec, profile.name),
        },
        "spec": pod_spec,
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def build_session_secret(spec: SessionSpec, namespace: str) -> dict[str, Any]:
    """The session's Secret: the agent's token and the secret environment variables.
    The spawner makes the pod its owner once the pod exists, so it is deleted with it."""
    _plain, secret_env = split_env(spec.env)
    data = {TOKEN_KEY: _b64(spec.token)}
    data.update({k: _b64(v) for k, v in secret_env.items()})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": pod_name(spec.session_id),
            "namespace": namespace,
            "labels": session_labels(spec),
            "annotations": session_annotations(spec),
        },
        "type": "Opaque",
        "immutable": True,
        "data": data,
    }


def owner_reference(pod: dict[str, Any]) -> dict[str, Any]:
    """An ownerReference to a created pod (metadata.uid must be set)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": pod["metadata"]["name"],
        "uid": pod["metadata"]["uid"],
        "blockOwnerDeletion": False,
    }


def build_user_pvc(
    user: str,
    namespace: str,
    size: str,
    storage_class: str | None = None,
    access_mode: str = "ReadWriteOnce",
) -> dict[str, Any]:
    """The user's package volume (kept across sessions; never deleted by the hub)."""
    spec: dict[str, Any] = {
        "accessModes": [access_mode],
        "volumeMode": "Filesystem",
        "resources": {"requests": {"storage": size}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": pvc_name(user),
            "namespace": namespace,
            "labels": {
                APP_LABEL: APP,
                COMPONENT_LABEL: USER_VOLUME_COMPONENT,
                MANAGED_BY_LABEL: "rsparkhub-hub",
                USER_LABEL: label_value(user),
            },
            "annotations": {USER_ANNOTATION: user},
        },
        "spec": spec,
    }
