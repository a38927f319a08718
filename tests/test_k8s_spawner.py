"""The Kubernetes spawner (hub/spawners/kubernetes.py and its k8s_* modules).

* Every object it builds (pods for several profiles, Secrets, user volumes) is validated
  against the Kubernetes OpenAPI schema with kubernetes-validate (strict).
* Its lifecycle runs against ``k8s_standin.StandIn``, a stand-in API server (a test double,
  because no Kubernetes cluster runs here) speaking the real HTTP API: start with progress,
  stop (pod Succeeded, exit 0), each failure cause, watch reconnects (dropped connection,
  410 Gone), no per-session polling (API calls counted by the server), orphan clean-up.
* End to end through a real hub (``rsparkhub serve`` with ``spawner = kubernetes``): the
  stand-in runs the real agent for each pod, so sessions execute code; adoption after a hub
  restart, idle culling, start failures, profiles and the package volume.

The same lifecycle against a real cluster is tests/test_k8s_cluster.py (opt-in).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from k8s_standin import Scenario, StandIn
from kubernetes import client as k8s
from pydantic import ValidationError

from rsparkhub.client import HubClient, HubError
from rsparkhub.config import Settings
from rsparkhub.hub.spawners.base import SessionSpec
from rsparkhub.hub.spawners.k8s_cache import PodCache
from rsparkhub.hub.spawners.k8s_objects import (
    CONTAINER,
    PodConfig,
    build_session_pod,
    build_session_secret,
    build_user_pvc,
    label_value,
    pod_name,
    pvc_name,
    session_identity,
)
from rsparkhub.hub.spawners.k8s_profiles import KubernetesProfile, parse_quantity
from rsparkhub.hub.spawners.k8s_status import PodView, end_of, failed_start
from rsparkhub.hub.spawners.kubernetes import KubernetesSpawner

from conftest import HubProcess
from eventually import eventually

NS = "rsh-test"
IMAGE = "registry.example/rsparkhub/session:test"
# \Z, not $: Python's $ also matches before a trailing newline; Kubernetes' (Go) does not.
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
SCHEMA_VERSIONS = ("1.30", "1.33")

PROFILES = {
    "default": KubernetesProfile(name="default", default=True),
    "gpu": KubernetesProfile(
        name="gpu",
        display_name="GPU (1× A100)",
        image="registry.example/rsparkhub/session-gpu:test",
        cpu_request="4",
        cpu_limit="8",
        memory_request="16Gi",
        memory_limit="32Gi",
        gpu=1,
        node_selector={"nvidia.com/gpu.product": "A100-SXM4-40GB"},
        tolerations=[
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},  # type: ignore[list-item]
            {"key": "dedicated", "value": "gpu", "effect": "NoExecute", "tolerationSeconds": 60},  # type: ignore[list-item]
        ],
        users=["bob"],
    ),
    "small": KubernetesProfile(
        name="small",
        cpu_request="100m",
        cpu_limit=None,
        memory_request="512Mi",
        memory_limit="1Gi",
        env={"OMP_NUM_THREADS": "1", "R_DEFAULT_PACKAGES": "stats,utils"},
        node_selector={"kubernetes.io/arch": "amd64"},
        internet=False,
    ),
}


def make_spec(
    session_id: str | None = None,
    user: str = "alice",
    workspace: str | None = None,
    **kw: Any,
) -> SessionSpec:
    return SessionSpec(
        session_id=session_id or uuid.uuid4().hex,
        workspace_id=workspace or uuid.uuid4().hex,
        user=user,
        token="rsa_" + uuid.uuid4().hex,
        hub_agent_url="ws://unused/agent/ws",
        session_dir=Path("/nonexistent/session"),
        log_path=Path("/nonexistent/session/agent.log"),
        **kw,
    )


def pod_config(**kw: Any) -> PodConfig:
    base: dict[str, Any] = {
        "namespace": NS,
        "image": IMAGE,
        "hub_url": "ws://rsparkhub-hub.rsparkhub.svc:8000/agent/ws",
    }
    base.update(kw)
    return PodConfig(**base)


def validate(obj: dict[str, Any]) -> None:
    for version in SCHEMA_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def _env(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


# --------------------------------------------------------------------------- objects


@pytest.mark.parametrize(
    ("profile", "cfg"),
    [
        ("default", {}),
        ("gpu", {"image_pull_secrets": ("regcred", "mirror")}),
        ("small", {"user_volume": True}),
        ("gpu", {"user_volume": True, "user_volume_access_mode": "ReadWriteMany"}),
        ("default", {"max_age_s": 0, "service_account": "sessions-limited"}),
    ],
)
def test_session_pods_validate_and_are_locked_down(profile: str, cfg: dict[str, Any]) -> None:
    secret_env = {
        "PGPASSWORD": "pg-secret-value",
        "DATABASE_URL": "postgresql://u:pw@db/u",
        # A session's driver URL carries its Connect token.
        "SPARK_REMOTE": "sc://spark:15002/;user_id=x;authorization=Bearer%20t0k",
    }
    spec = make_spec(
        user="_weird.user-name-that-is-rather-long-for-a-label-value-really.",
        env={**secret_env, "PGHOST": "db"},
        languages="r,python",
    )
    prof = PROFILES[profile]
    c = pod_config(**cfg)
    pod = build_session_pod(spec, prof, c)
    validate(pod)

    text = json.dumps(pod)
    assert spec.token not in text  # secrets only by reference
    for value in secret_env.values():
        assert value not in text
    meta, ps = pod["metadata"], pod["spec"]
    assert meta["name"] == pod_name(spec.session_id) and meta["namespace"] == NS
    labels = meta["labels"]
    assert labels["app.kubernetes.io/name"] == "rsparkhub"
    assert labels["app.kubernetes.io/component"] == "session"
    assert labels["rsparkhub.io/session"] == spec.session_id
    assert labels["rsparkhub.io/workspace"] == spec.workspace_id
    assert labels["rsparkhub.io/profile"] == prof.name
    # The internet policy (deploy/…/networkpolicies.yaml) selects this label.
    assert labels.get("rsparkhub.io/internet") == ("true" if prof.internet else None)
    assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in labels.values())
    assert labels["rsparkhub.io/user"] != spec.user  # changed to be valid …
    assert meta["annotations"]["rsparkhub.io/user-name"] == spec.user  # … the full name kept
    assert ps["restartPolicy"] == "Never"
    assert ps["automountServiceAccountToken"] is False
    assert ps["serviceAccountName"] == c.service_account
    assert ps["securityContext"]["runAsNonRoot"] is True
    assert ps["securityContext"]["runAsUser"] == 1000
    assert ps["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ps["terminationGracePeriodSeconds"] == 30
    if c.max_age_s:
        assert ps["activeDeadlineSeconds"] == c.max_age_s
    else:
        assert "activeDeadlineSeconds" not in ps
    for container in ps["containers"] + ps.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] is True
    main = ps["containers"][0]
    assert main["image"] == (prof.image or IMAGE)
    assert main["command"][:3] == ["python", "-m", "rsparkhub.agent"]
    args = main["command"]
    assert args[args.index("--hub-url") + 1] == c.hub_url
    assert args[args.index("--session-id") + 1] == spec.session_id
    assert args[args.index("--languages") + 1] == "r,python"
    mounted = {m["mountPath"] for m in main["volumeMounts"]}
    assert {"/tmp", "/home/rsparkhub", "/srv/rsparkhub/session"} <= mounted
    assert args[args.index("--workdir") + 1].startswith("/srv/rsparkhub/session/")
    env = _env(pod)
    for name in ("RSPARKHUB_SESSION_TOKEN", "PGPASSWORD", "DATABASE_URL", "SPARK_REMOTE"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == meta["name"]
    assert env["PGHOST"]["value"] == "db"
    assert env["HOME"]["value"] == "/home/rsparkhub"
    for k, v in prof.env.items():
        assert env[k]["value"] == v
    res = main["resources"]
    assert res["requests"]["cpu"] == prof.cpu_request
    assert res["requests"]["memory"] == prof.memory_request
    assert res.get("limits", {}).get("memory") == prof.memory_limit
    if prof.gpu:
        assert res["limits"]["nvidia.com/gpu"] == str(prof.gpu)
        assert ps["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert ps["tolerations"][1]["tolerationSeconds"] == 60
    else:
        assert "nvidia.com/gpu" not in json.dumps(res)
    assert ps.get("nodeSelector", {}) == prof.node_selector
    assert [s["name"] for s in ps.get("imagePullSecrets", [])] == list(c.image_pull_secrets)
    if c.user_volume:
        claim = next(v for v in ps["volumes"] if "persistentVolumeClaim" in v)
        assert claim["persistentVolumeClaim"]["claimName"] == pvc_name(spec.user)
        assert env["R_LIBS_USER"]["value"].startswith("/home/rsparkhub/lib/")
        assert env["PYTHONUSERBASE"]["value"].startswith("/home/rsparkhub/lib/")
        init = ps["initContainers"][0]
        assert init["command"][:2] == ["mkdir", "-p"]
        assert env["R_LIBS_USER"]["value"] in init["command"]
        assert ("affinity" in ps) == (c.user_volume_access_mode == "ReadWriteOnce")
    else:
        assert "R_LIBS_USER" not in env and "initContainers" not in ps


@pytest.mark.parametrize(
    ("spec_ids", "default_uid", "want"),
    [
        ({}, 1000, (1000, 1000)),  # a user without a uid: the configured default
        ({}, 4242, (4242, 4242)),
        ({"uid": 200123}, 1000, (200123, 200123)),  # the user's own; gid = uid
        ({"uid": 200123, "gid": 300007}, 1000, (200123, 300007)),
    ],
)
def test_session_pods_run_as_the_users_own_uid(
    spec_ids: dict[str, int], default_uid: int, want: tuple[int, int]
) -> None:
    """Every container of a session pod runs as the user's uid/gid (users.uid, passed in
    SessionSpec), never root, with no capabilities, no privilege escalation, RuntimeDefault
    seccomp and no service-account token; the user volume is group-owned by that gid."""
    spec = make_spec(user="alice", **spec_ids)
    cfg = pod_config(user_volume=True, default_uid=default_uid)
    pod = build_session_pod(spec, PROFILES["default"], cfg)
    validate(pod)
    uid, gid = want
    assert session_identity(spec, default_uid) == want
    ps = pod["spec"]
    assert ps["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert ps["automountServiceAccountToken"] is False
    assert not any(ps.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    containers = ps["containers"] + ps["initContainers"]
    assert len(containers) == 2
    for c in containers:
        assert c["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }, c["name"]


@pytest.mark.parametrize("ids", [{"uid": 0}, {"uid": 200123, "gid": 0}, {"uid": -5}])
def test_a_session_pod_never_runs_as_root(ids: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="never run as root"):
        build_session_pod(make_spec(**ids), PROFILES["default"], pod_config())
    with pytest.raises(ValueError, match="never run as root"):
        build_session_pod(make_spec(), PROFILES["default"], pod_config(default_uid=0))


def test_session_pod_volumes_are_sized_like_a_local_session() -> None:
    """session_disk_mb and session_tmp_mb become the emptyDirs' sizeLimit (the kubelet
    evicts a pod past it); 0 leaves them unbounded."""
    pod = build_session_pod(make_spec(), PROFILES["default"], pod_config(disk_mb=300, tmp_mb=64))
    validate(pod)
    sizes = {
        v["name"]: v["emptyDir"].get("sizeLimit") for v in pod["spec"]["volumes"] if "emptyDir" in v
    }
    assert sizes == {"tmp": "64Mi", "home": "300Mi", "session": "300Mi"}
    pod = build_session_pod(make_spec(), PROFILES["default"], pod_config())
    assert all(v["emptyDir"] == {} for v in pod["spec"]["volumes"] if "emptyDir" in v)


def test_secret_and_user_volume_validate() -> None:
    spec = make_spec(env={"PGPASSWORD": "pw", "PGUSER": "u_alice"})
    secret = build_session_secret(spec, NS)
    validate(secret)
    assert secret["immutable"] is True
    assert set(secret["data"]) == {"token", "PGPASSWORD"}  # PGUSER is not a secret
    import base64

    assert base64.b64decode(secret["data"]["token"]).decode() == spec.token
    for sc in (None, "fast-ssd"):
        for mode in ("ReadWriteOnce", "ReadWriteMany"):
            pvc = build_user_pvc("alice", NS, "10Gi", sc, mode)
            validate(pvc)
            assert pvc["spec"]["accessModes"] == [mode]
            assert pvc["spec"].get("storageClassName") == sc
            assert pvc["metadata"]["labels"]["rsparkhub.io/user"] == "alice"


@settings(max_examples=200, deadline=None)
@example("\n")  # once taken for a valid label value by a $-anchored regex
@given(st.one_of(st.from_regex(r"[a-z_][a-z0-9_.-]{0,63}", fullmatch=True), st.text(max_size=80)))
def test_names_and_label_values_are_always_valid(name: str) -> None:
    value = label_value(name)
    assert LABEL_VALUE.match(value) and len(value) <= 63
    if LABEL_VALUE.match(name) and len(name) <= 63:
        assert value == name
    claim = pvc_name(name)
    assert DNS_LABEL.match(claim) and len(claim) <= 63
    assert pvc_name(name) == claim  # stable across hub restarts
    if name:
        assert pvc_name(name + "x") != claim


def test_profiles_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    profiles = [
        {"name": "small", "cpu_request": "250m", "memory_limit": "2Gi", "default": True},
        {
            "name": "gpu",
            "gpu": 1,
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            "admins_only": True,
        },
    ]
    monkeypatch.setenv("RSPARKHUB_SPAWNER", "kubernetes")
    monkeypatch.setenv("RSPARKHUB_KUBERNETES_IMAGE", IMAGE)
    monkeypatch.setenv("RSPARKHUB_KUBERNETES_HUB_URL", "ws://hub:8000/agent/ws")
    monkeypatch.setenv("RSPARKHUB_KUBERNETES_PROFILES", json.dumps(profiles))
    monkeypatch.setenv("RSPARKHUB_KUBERNETES_IMAGE_PULL_SECRETS", '["regcred"]')
    monkeypatch.setenv("RSPARKHUB_KUBERNETES_USER_VOLUME_SIZE", "5Gi")
    monkeypatch.setenv("RSPARKHUB_KUBERNETES_SESSION_UID", "4321")
    s = Settings()
    # Sessions of users without a uid of their own run as kubernetes_session_uid.
    sp = KubernetesSpawner.from_settings(s, configuration=k8s.Configuration(host="http://x:9"))
    assert sp.pod_config.default_uid == 4321
    sp.api_client.close()
    assert [p.name for p in s.kubernetes_profiles] == ["small", "gpu"]
    assert s.kubernetes_profiles[1].gpu == 1 and s.kubernetes_image_pull_secrets == ["regcred"]
    gpu = s.kubernetes_profiles[1]
    assert not gpu.allows("alice", is_admin=False) and gpu.allows("root", is_admin=True)
    assert parse_quantity("500m") == parse_quantity("0.5") and parse_quantity("1Ki") == 1024

    bad: list[tuple[str, str, str]] = [
        ("RSPARKHUB_KUBERNETES_PROFILES", '[{"name": "x", "memory_request": "lots"}]', "quantity"),
        (
            "RSPARKHUB_KUBERNETES_PROFILES",
            '[{"name": "x", "cpu_request": "4", "cpu_limit": "2"}]',
            "above",
        ),
        (
            "RSPARKHUB_KUBERNETES_PROFILES",
            '[{"name": "x"}, {"name": "x"}]',
            "two kubernetes_profiles",
        ),
        ("RSPARKHUB_KUBERNETES_PROFILES", '[{"name": "Big GPU"}]', "profile name"),
        (
            "RSPARKHUB_KUBERNETES_PROFILES",
            '[{"name": "x", "env": {"HOME": "/"}}]',
            "set by rsparkhub",
        ),
        ("RSPARKHUB_KUBERNETES_PROFILES", '[{"name": "x", "surprise": 1}]', "surprise"),
        ("RSPARKHUB_KUBERNETES_USER_VOLUME_SIZE", "ten gigs", "quantity"),
        ("RSPARKHUB_KUBERNETES_SESSION_UID", "0", "greater than or equal to 1"),
        ("RSPARKHUB_KUBERNETES_HUB_URL", "http://hub:8000/agent/ws", "ws://"),
    ]
    for var, value, why in bad:
        with monkeypatch.context() as m:
            m.setenv(var, value)
            with pytest.raises(ValidationError, match=why):
                Settings()
    monkeypatch.delenv("RSPARKHUB_KUBERNETES_HUB_URL")
    with pytest.raises(ValidationError, match="kubernetes_hub_url"):
        Settings()


# --------------------------------------------------------------------------- the spawner


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandIn]:
    with StandIn(step_s=0.02, agent_root=tmp_path / "node") as s:
        yield s


@asynccontextmanager
async def spawner_for(standin: StandIn, **kw: Any) -> AsyncIterator[KubernetesSpawner]:
    cfg = k8s.Configuration(host=standin.url, api_key={"authorization": f"Bearer {standin.token}"})
    pc = kw.pop("pod_config", None) or pod_config()
    sp = KubernetesSpawner(namespace=NS, pod_config=pc, configuration=cfg, **kw)
    try:
        yield sp
    finally:
        await sp.close()


async def test_start_progress_stop_ends_succeeded(standin: StandIn) -> None:
    lines: list[str] = []

    async def progress(line: str) -> None:
        lines.append(line)

    async with spawner_for(standin) as sp:
        spec = make_spec(env={"PGPASSWORD": "pw"}, progress=progress, uid=200042)
        state = await sp.start(spec)
        name = state["pod"]
        assert state["profile"] == "default" and state["uid"]
        # The identity the session's Spark driver takes (hub/spark.py reads it here).
        assert (state["run_as_user"], state["run_as_group"]) == (200042, 200042)
        created = standin.get("pods", NS, name)
        assert created is not None and created["spec"]["securityContext"]["runAsUser"] == 200042
        secret = standin.get("secrets", NS, name)
        assert (
            secret is not None and secret["metadata"]["ownerReferences"][0]["uid"] == state["uid"]
        )
        await standin.until(
            lambda: any(ln.startswith("Container started") for ln in lines), 10, "Started"
        )
        kinds = [ln.split(":")[0] for ln in lines]
        assert kinds[:3] == ["Scheduled", "Pulling the session image", "Image ready"], lines
        assert await sp.poll(state)
        monitor = asyncio.create_task(sp.wait(state))
        await asyncio.sleep(0.2)
        assert not monitor.done()
        assert await sp.stop(state, grace_s=5) == 0
        code, reason = await asyncio.wait_for(monitor, 10)
        assert (code, reason) == (0, "the session's container exited normally (exit code 0)")
        assert not await sp.poll(state)
        final = await standin.until(lambda: standin.finished.get((NS, name)), 5, "removal")
        assert final["status"]["phase"] == "Succeeded"
        assert final["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
        # The pod and (by its ownerReference) its Secret are gone.
        await standin.until(lambda: not standin.list("secrets", NS), 5, "the Secret's removal")
        assert standin.list("pods", NS) == []
        assert standin.invalid == []
        assert standin.count("get", "pods") == 0


FAILURES: dict[str, tuple[Scenario | str, dict[str, Any], int | None, list[str]]] = {
    "unschedulable": (
        "unschedulable",
        {},
        None,
        ["no node can run the session", "Insufficient nvidia.com/gpu"],
    ),
    "image pull": (
        "image_pull_failure",
        {},
        None,
        ["could not be pulled", "ErrImagePull", "not found"],
    ),
    "crash": (
        Scenario("crash", exit_code=2),
        {},
        2,
        ["exited with code 2", "last log line: RuntimeError: the agent crashed"],
    ),
    "out of memory": (
        Scenario("crash", exit_code=137, reason="OOMKilled"),
        {},
        137,
        ["ran out of memory"],
    ),
    "agent gave up": (
        Scenario("crash", exit_code=3, reason="Error", log=""),
        {},
        3,
        ["lost the hub"],
    ),
    "maximum age": ("run", {"max_age_s": 1}, None, ["maximum age of 1 s"]),
}


def test_a_container_stopped_while_its_pod_is_deleted_ended_with_its_last_exit() -> None:
    """Kubernetes 1.20's kubelet (scripts/k8s-lab.sh) reported a session pod stopped with a
    grace period as phase Failed, its container *waiting* and the exit in ``lastState``:
    the session read as "the session's pod failed:" with no exit code. (The stand-in never
    reports that; this is the status the lab's kubelet sent, cut to the fields read.)"""
    pod = build_session_pod(make_spec(), KubernetesProfile(name="default"), pod_config())
    pod["metadata"]["uid"] = "uid-1"
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    pod["status"] = {
        "phase": "Failed",
        "containerStatuses": [
            {
                "name": CONTAINER,
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                "ready": False,
                "restartCount": 0,
            }
        ],
    }
    view = PodView.parse(pod)
    assert view.ended and view.terminated == (0, "Completed", "", CONTAINER)
    assert view.waiting is None
    ended = end_of(view, 3600)
    assert (ended.code, ended.reason) == (
        0,
        "the session's container exited normally (exit code 0)",
    )
    # While the pod still runs, an earlier exit in lastState is not its end.
    pod["status"]["phase"] = "Running"
    assert not PodView.parse(pod).ended


def test_a_kubelet_catching_up_with_its_secret_cache_is_no_failed_start() -> None:
    """A loaded kubelet reports ``CreateContainerConfigError: failed to sync secret cache``
    and retries (seen with kubemark hollow nodes at 1,000 pods, bench §8b): the start waits;
    a configuration that is wrong for good still fails it at once, with the reason."""
    pod: dict[str, Any] = {"metadata": {"name": "p", "uid": "u"}, "spec": {}}

    def waiting(message: str) -> PodView:
        pod["status"] = {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": CONTAINER,
                    "state": {
                        "waiting": {"reason": "CreateContainerConfigError", "message": message}
                    },
                }
            ],
        }
        return PodView.parse(pod)

    lag = "failed to sync secret cache: timed out waiting for the condition"
    assert failed_start(waiting(lag), 60) is None
    wrong = "couldn't find key token in Secret rsparkhub/s-1"
    ended = failed_start(waiting(wrong), 60)
    assert ended is not None and wrong in ended.reason and "could not be created" in ended.reason


def test_a_container_the_kubelet_lost_while_deleting_its_pod_is_no_kill() -> None:
    """Kubernetes' kubelet can remove a stopped container of a pod being deleted before it
    reports how it exited (kubernetes/kubernetes#104107; on the lab cluster about every
    second stop under load): it reports exit 137, reason ContainerStatusUnknown, or deletes
    the pod while its last status still says running. Neither is a kill: the session ended
    with an unknown exit code, and says so. (The statuses the lab's kubelet sent, cut to
    the fields read.)"""
    pod = build_session_pod(make_spec(), KubernetesProfile(name="default"), pod_config())
    pod["metadata"]["uid"] = "uid-1"
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    message = "The container could not be located when the pod was deleted.  The container used to be Running"
    pod["status"] = {
        "phase": "Failed",
        "containerStatuses": [
            {
                "name": CONTAINER,
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": message,
                    }
                },
            }
        ],
    }
    ended = end_of(PodView.parse(pod), 3600)
    assert ended.code is None and "exit code is unknown" in ended.reason, ended
    assert "SIGKILL" not in ended.reason
    # the pod deleted (by the hub's stop) while its status still said running
    pod["status"] = {
        "phase": "Running",
        "containerStatuses": [{"name": CONTAINER, "state": {"running": {}}}],
    }
    cache = PodCache(max_age_s=3600)
    name = pod["metadata"]["name"]
    cache.on_pod_event("ADDED", pod)
    cache.deleting.add(name)
    cache.on_pod_event("DELETED", pod)
    ended = cache.outcome(name, 60)
    assert ended is not None and ended.code is None and "exit code is unknown" in ended.reason


def test_stop_gets_the_exit_code_when_wait_read_the_result_first() -> None:
    """On a real cluster (scripts/k8s-lab.sh) a stopped pod's last MODIFIED event (its
    container terminated, exit 0) and its DELETED event can reach the hub together; the
    session's wait() then read the result and dropped it before stop() looked, and stop()
    returned None instead of 0. The watch callbacks get the events in that order here."""
    cache = PodCache(max_age_s=3600)
    pod = build_session_pod(make_spec(), KubernetesProfile(name="default"), pod_config())
    name = pod["metadata"]["name"]
    pod["metadata"]["uid"] = "uid-1"
    pod["status"] = {
        "phase": "Running",
        "containerStatuses": [{"name": CONTAINER, "state": {"running": {}}}],
    }
    cache.on_pod_event("ADDED", pod)
    cache.stopping.add(name)  # stop() deleted the pod and waits for its end
    cache.deleting.add(name)
    ended = json.loads(json.dumps(pod))
    ended["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    ended["status"] = {
        "phase": "Succeeded",
        "containerStatuses": [
            {"name": CONTAINER, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
        ],
    }
    cache.on_pod_event("MODIFIED", ended)
    cache.on_pod_event("DELETED", ended)
    first = cache.outcome(name, 5)  # wait() reads the result first and forgets the pod
    assert first is not None and first.code == 0
    cache.forget(name)
    assert name not in cache.pods and cache.gone[name].code == 0  # what stop() returns
    cache.stopping.discard(name)
    cache.forget(name)  # without a stop() waiting, forget() drops the result
    assert name not in cache.gone


@pytest.mark.parametrize("cause", list(FAILURES))
async def test_failure_causes_are_reported(standin: StandIn, cause: str) -> None:
    scenario, cfg, code, words = FAILURES[cause]
    standin.set_scenario(scenario, workspace="w-" + cause.replace(" ", "-"))
    async with spawner_for(standin, pod_config=pod_config(**cfg), start_failure_grace_s=0.5) as sp:
        state = await sp.start(make_spec(workspace="w-" + cause.replace(" ", "-")))
        # Long before the start timeout (600 s here): start failures end the wait at once.
        got_code, reason = await asyncio.wait_for(sp.wait(state), 15)
        assert got_code == code, reason
        for w in words:
            assert w in reason, reason
        # The failed pod is removed once its result is read.
        await standin.until(lambda: not standin.list("pods", NS), 5, "the pod's removal")


async def test_pod_deleted_outside_the_hub(standin: StandIn) -> None:
    async with spawner_for(standin) as sp:
        graceful, forced = await sp.start(make_spec()), await sp.start(make_spec())
        for st_ in (graceful, forced):
            await standin.until(
                lambda s=st_: (
                    (standin.get("pods", NS, s["pod"]) or {}).get("status", {}).get("phase")
                    == "Running"
                ),
                5,
            )
        standin.delete_pod(NS, graceful["pod"])  # kubectl delete pod: SIGTERM, agent exits 0
        standin.delete_pod(NS, forced["pod"], grace=0)  # kubectl delete --force
        assert await asyncio.wait_for(sp.wait(graceful), 10) == (
            0,
            "the session's container exited normally (exit code 0)",
        )
        code, reason = await asyncio.wait_for(sp.wait(forced), 10)
        assert (
            code is None and reason == "the session's pod was deleted outside the hub while running"
        )


async def test_watch_reconnects_after_a_dropped_connection(standin: StandIn) -> None:
    async with spawner_for(standin) as sp:
        states = [await sp.start(make_spec()) for _ in range(3)]
        for s in states:
            await standin.until(
                lambda s=s: (
                    (standin.get("pods", NS, s["pod"]) or {}).get("status", {}).get("phase")
                    == "Running"
                ),
                5,
            )
        await asyncio.sleep(0.2)
        lists = standin.count("list", "pods")
        assert standin.drop_watches() == 2  # pods and events
        standin.delete_pod(NS, states[0]["pod"], grace=0)  # while the watch is down
        code, reason = await asyncio.wait_for(sp.wait(states[0]), 10)
        assert code is None and "deleted outside the hub" in reason
        watch = sp.describe()["watches"]["pods"]
        assert watch["reconnects"] >= 1 and watch["gone"] == 0
        assert standin.count("list", "pods") == lists  # resumed from its resourceVersion
        assert await sp.poll(states[1]) and await sp.poll(states[2])
        assert await sp.stop(states[1], 5) == 0


async def test_watch_lists_again_after_410_gone(standin: StandIn) -> None:
    async with spawner_for(standin) as sp:
        states = [await sp.start(make_spec()) for _ in range(3)]
        for s in states:
            await standin.until(
                lambda s=s: (
                    (standin.get("pods", NS, s["pod"]) or {}).get("status", {}).get("phase")
                    == "Running"
                ),
                5,
            )
        await asyncio.sleep(0.2)
        lists = standin.count("list", "pods")
        standin.drop_watches()
        standin.delete_pod(NS, states[0]["pod"], grace=0)  # its DELETED event will be gone …
        standin.expire_history()  # … as after an etcd compaction: the resume gets 410
        code, reason = await asyncio.wait_for(sp.wait(states[0]), 10)
        assert code is None and reason == (
            "the session's pod was deleted outside the hub while running "
            "(noticed when the hub's watch listed the pods again)"
        )
        assert standin.count("list", "pods") == lists + 1
        assert sp.describe()["watches"]["pods"]["gone"] >= 1
        assert await sp.poll(states[1]) and await sp.poll(states[2])
        # Changes after the re-list arrive through the new watch.
        standin.delete_pod(NS, states[1]["pod"])
        assert (await asyncio.wait_for(sp.wait(states[1]), 10))[0] == 0


async def test_no_per_session_polling(standin: StandIn) -> None:
    async with spawner_for(standin) as sp:
        states = [await sp.start(make_spec()) for _ in range(20)]
        await standin.until(
            lambda: sum(p["status"]["phase"] == "Running" for p in standin.list("pods", NS)) == 20,
            20,
            "20 running pods",
        )
        monitors = [asyncio.create_task(sp.wait(s)) for s in states]
        before = dict(standin.calls)
        for _ in range(20):  # a hub's worth of poll/wait/memory calls
            for s in states:
                assert await sp.poll(s)
                sp.memory(s)
            await asyncio.sleep(0.05)
        # steady state: no API request per session; the spawner's metrics loop may list the
        # memory of all pods at once (every 5 s until it has pods) inside this second
        metrics = ("list", "pods.metrics.k8s.io")
        after = dict(standin.calls)
        assert after.get(metrics, 0) - before.get(metrics, 0) <= 1
        after.pop(metrics, None)
        before.pop(metrics, None)
        assert after == before
        assert standin.count("get") == 0
        assert standin.count("watch", "pods") == 1 and standin.count("list", "pods") == 1
        await asyncio.gather(*(sp.stop(s, 5) for s in states))
        results = await asyncio.wait_for(asyncio.gather(*monitors), 20)
        assert all(code == 0 for code, _ in results)


async def test_reconcile_adopts_known_pods_and_removes_orphans(standin: StandIn) -> None:
    async with spawner_for(standin) as first:
        keep, orphan, ended = [await first.start(make_spec()) for _ in range(3)]
    # The same pods seen by a new spawner, as after a hub restart.
    standin.create(
        "secrets",
        NS,
        build_session_secret(make_spec(session_id="f" * 32), NS),  # ownerless leftover
    )
    async with spawner_for(standin) as second:
        assert await second.poll(keep) and await second.poll(orphan) and await second.poll(ended)
        removed = await second.reconcile({pod_session(keep)})
        assert removed == {"pods": 2, "secrets": 1}
        for gone in (orphan, ended):
            await asyncio.wait_for(second.wait(gone), 10)
            assert not await second.poll(gone)
        assert await second.poll(keep)
        assert [p["metadata"]["name"] for p in standin.list("pods", NS)] == [keep["pod"]]
        await standin.until(
            lambda: [s["metadata"]["name"] for s in standin.list("secrets", NS)] == [keep["pod"]],
            5,
            "only the kept session's Secret",
        )
        assert standin.count("list", "pods") == 2  # one per "hub process"


def pod_session(state: dict[str, Any]) -> str:
    return state["pod"].removeprefix("rsparkhub-session-")


async def test_user_volume_is_created_once_per_user(standin: StandIn) -> None:
    async with spawner_for(
        standin, pod_config=pod_config(user_volume=True), user_volume_size="2Gi"
    ) as sp:
        lines: list[str] = []

        async def progress(line: str) -> None:
            lines.append(line)

        a1 = await sp.start(make_spec(user="alice", progress=progress))
        a2 = await sp.start(make_spec(user="alice"))
        b1 = await sp.start(make_spec(user="bob"))
        pvcs = {p["metadata"]["name"]: p for p in standin.list("persistentvolumeclaims", NS)}
        assert set(pvcs) == {pvc_name("alice"), pvc_name("bob")}
        assert pvcs[pvc_name("alice")]["spec"]["resources"]["requests"]["storage"] == "2Gi"
        assert standin.count("create", "persistentvolumeclaims") == 2
        assert standin.count("get", "persistentvolumeclaims") == 2  # once per user, not per session
        assert any(ln.startswith("Creating your package volume (2Gi)") for ln in lines)
        for s in (a1, a2, b1):
            pod = standin.get("pods", NS, s["pod"])
            assert pod is not None
            claim = next(v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v)
            assert claim["persistentVolumeClaim"]["claimName"] == s["user_volume"]
        assert standin.invalid == []


async def test_memory_comes_from_one_metrics_list(standin: StandIn) -> None:
    async with spawner_for(standin, metrics_interval_s=0.2) as sp:
        states = [await sp.start(make_spec()) for _ in range(3)]
        await standin.until(
            lambda: all(
                (standin.get("pods", NS, s["pod"]) or {}).get("status", {}).get("phase")
                == "Running"
                for s in states
            ),
            5,
        )
        await eventually(lambda: all(sp.memory(s) for s in states), 5, 0.05, "pod metrics")
        assert all(sp.memory(s) == standin.memory_bytes for s in states)
        standin.metrics = False  # a cluster without metrics-server
        await eventually(
            lambda: sp.metrics_status.startswith("unavailable"), 5, 0.05, "metrics unavailable"
        )
        assert sp.metrics_status.startswith("unavailable (404")
        assert standin.count("get", "pods") == 0


QUOTA = (
    403,
    "Forbidden",
    'pods "x" is forbidden: exceeded quota: sessions, requested: limits.memory=4Gi, '
    "used: limits.memory=60Gi, limited: limits.memory=64Gi",
)


async def test_refused_pod_is_a_spawn_error_and_leaves_nothing(standin: StandIn) -> None:
    from rsparkhub.hub.spawners.base import SpawnError

    standin.refuse["pods"] = QUOTA
    async with spawner_for(standin) as sp:
        with pytest.raises(SpawnError, match="could not be created: .*exceeded quota: sessions"):
            await sp.start(make_spec())
    assert standin.list("secrets", NS) == [] and standin.list("pods", NS) == []


async def test_unknown_api_server_fails_with_a_clear_error(tmp_path: Path) -> None:
    cfg = k8s.Configuration(host="http://127.0.0.1:9")  # nothing listens there
    sp = KubernetesSpawner(
        namespace=NS, pod_config=pod_config(), configuration=cfg, sync_timeout_s=1
    )
    try:
        from rsparkhub.hub.spawners.base import SpawnError

        with pytest.raises(
            SpawnError,
            match="cannot list the session pods in namespace 'rsh-test' at http://127.0.0.1:9",
        ):
            await sp.start(make_spec())
        check = await sp.check()
        assert check["ok"] is False and "127.0.0.1:9" in check["detail"]
    finally:
        await sp.close()


# --------------------------------------------------------------------------- through a hub


def k8s_hub(tmp_path: Path, standin: StandIn, **env: str) -> HubProcess:
    kubeconfig = standin.kubeconfig(tmp_path / "kubeconfig", NS)
    hub = HubProcess(
        tmp_path / "data",
        {
            "RSPARKHUB_SPAWNER": "kubernetes",
            "RSPARKHUB_KUBERNETES_CREDENTIALS": "kubeconfig",
            "KUBECONFIG": str(kubeconfig),
            "RSPARKHUB_KUBERNETES_NAMESPACE": NS,
            "RSPARKHUB_KUBERNETES_IMAGE": IMAGE,
            "RSPARKHUB_SESSION_LANGUAGES": "python",
            **env,
        },
    )
    hub.env["RSPARKHUB_KUBERNETES_HUB_URL"] = f"ws://127.0.0.1:{hub.port}/agent/ws"
    return hub


@pytest.fixture
def agent_standin(tmp_path: Path) -> Iterator[StandIn]:
    """A stand-in whose pods run the real agent."""
    with StandIn(step_s=0.02, agent_root=tmp_path / "node", validate="1.30") as s:
        s.set_scenario("agent")
        yield s


async def _until_state(
    c: HubClient, wid: str, states: tuple[str, ...], timeout: float = 30
) -> dict[str, Any]:

    async def reached() -> dict[str, Any] | None:
        info: dict[str, Any] | None = await c.request("GET", f"/api/workspaces/{wid}/session")
        return info if info and info["state"] in states else None

    return await eventually(reached, timeout, 0.1, f"the session to reach {states}")


async def test_hub_runs_sessions_as_pods(tmp_path: Path, agent_standin: StandIn) -> None:
    standin = agent_standin
    hub = k8s_hub(tmp_path, standin, RSPARKHUB_KUBERNETES_USER_VOLUME_SIZE="1Gi").start()
    try:
        token = hub.make_user("alice")
        bob = hub.make_user("bob")
        async with HubClient(hub.url, token) as c, HubClient(hub.url, bob) as b:
            wid = (await c.ensure_workspace("pods"))["id"]
            # her workspaces: this one and one of bob's she is a member of; not one deleted
            shared = (await b.ensure_workspace("bobs"))["id"]
            await b.request(
                "PUT", f"/api/workspaces/{shared}/members", json={"user": "alice", "role": "editor"}
            )
            doomed = (await c.ensure_workspace("doomed"))["id"]
            await c.request("DELETE", f"/api/workspaces/{doomed}")
            async with c.attach(wid) as s:
                states = [m for m in s.side if m.get("type") == "session_state"]
                progress: list[str] = [m.get("message") or "" for m in states]
                # "running" may already have arrived while attaching (then it is in side)
                if not any(m.get("state") == "running" for m in states):
                    async for msg in s.messages(timeout=60):
                        if msg.get("type") == "session_state":
                            progress.append(msg.get("message") or "")
                            if msg["state"] == "running":
                                break
                assert any(p.startswith("Scheduled: Successfully assigned") for p in progress), (
                    progress
                )
                assert any(p.startswith("Pulling the session image") for p in progress), progress
                assert any(p.startswith("Creating your package volume (1Gi)") for p in progress), (
                    progress
                )
                r = await s.run("1+1", language="python")
                assert r.results[0].data["text/plain"] == "2"
                # The package volume is mounted where Python installs user packages.
                r = await s.run(
                    "import os, pathlib\n"
                    "p = pathlib.Path(os.environ['PYTHONUSERBASE']) / 'marker.txt'\n"
                    "p.parent.mkdir(parents=True, exist_ok=True); p.write_text('kept')\n"
                    "print(os.environ['R_LIBS_USER'].endswith('/R'), os.path.isdir(os.environ['R_LIBS_USER']))",
                    language="python",
                )
                assert r.stdout == "True True\n", r
            info = await c.request("GET", f"/api/workspaces/{wid}/session")
            assert info["profile"] == "default" and info["state"] == "running"
            pod = f"rsparkhub-session-{info['id']}"
            assert standin.get("pods", NS, pod) is not None
            # The init container keeps the overlays of her workspaces on her volume, and
            # removes the others' (tests/test_k8s_environments.py runs its script).
            [init] = standin.get("pods", NS, pod)["spec"]["initContainers"]
            assert init["env"] == [
                {"name": "RSPARKHUB_KEEP_OVERLAYS", "value": " ".join(sorted([wid, shared]))}
            ]
            stopped = await c.stop_session(wid)
            assert stopped["state"] == "stopped" and stopped["exit_code"] == 0, stopped
            final = await standin.until(
                lambda: standin.finished.get((NS, pod)), 20, "the pod's removal"
            )
            assert final["status"]["phase"] == "Succeeded"
            assert final["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
            await standin.until(lambda: not standin.list("secrets", NS), 5, "the Secret's removal")
            # A new session of the same user sees the package volume of the last one.
            async with c.attach(wid) as s:
                r = await s.run(
                    "import os, pathlib\n"
                    "print((pathlib.Path(os.environ['PYTHONUSERBASE']) / 'marker.txt').read_text())",
                    language="python",
                )
                assert r.stdout == "kept\n", r
            assert standin.count("get", "pods") == 0  # the hub never polled a pod
            assert standin.invalid == []
            # doctor reports the spawner and its watch.
            admin = hub.client(hub.make_user("root", admin=True))
            doctor = admin.get("/api/doctor").json()["sessions"]
            assert doctor["spawner"] == "kubernetes" and doctor["namespace"] == NS
            assert doctor["api_check"]["ok"] is True
            assert doctor["watches"]["pods"]["connected"] is True
            assert standin.token not in json.dumps(doctor)
    finally:
        hub.close()


async def test_hub_adopts_pods_after_restart_and_removes_orphans(
    tmp_path: Path, agent_standin: StandIn
) -> None:
    standin = agent_standin
    hub = k8s_hub(tmp_path, standin).start()
    try:
        token = hub.make_user("carol")
        async with HubClient(hub.url, token) as c:
            wid = (await c.ensure_workspace("adopted"))["id"]
            async with c.attach(wid) as s:
                assert (await s.run("kept = 41", language="python")).ok
                sid = s.session_id
        # A pod of a session the hub never knew (left behind by a crash), running.
        standin.set_scenario("run", workspace="ghost")
        ghost_spec = make_spec(session_id="0" * 32, workspace="ghost", user="ghost")
        ghost = build_session_pod(ghost_spec, KubernetesProfile(name="default"), pod_config())
        standin.create("secrets", NS, build_session_secret(ghost_spec, NS))
        standin.create("pods", NS, ghost)
        await standin.until(
            lambda: (
                (standin.get("pods", NS, ghost["metadata"]["name"]) or {})
                .get("status", {})
                .get("phase")
                == "Running"
            ),
            5,
        )
        lists_before = standin.count("list", "pods")
        hub.restart()
        async with HubClient(hub.url, token) as c:
            async with c.attach(wid) as s:
                assert s.session_id == sid, "the session was not adopted"
                r = await s.run("kept + 1", language="python")
                assert r.results[0].data["text/plain"] == "42"
            final = await standin.until(
                lambda: standin.finished.get((NS, ghost["metadata"]["name"])),
                15,
                "the orphan's deletion",
            )
            assert final["metadata"]["labels"]["rsparkhub.io/session"] == "0" * 32
            # Its ownerless Secret went too.
            await standin.until(
                lambda: standin.get("secrets", NS, ghost["metadata"]["name"]) is None, 5
            )
            assert standin.count("list", "pods") == lists_before + 1  # one list per hub start
            assert standin.count("get", "pods") == 0
            stopped = await c.stop_session(wid)
            assert stopped["exit_code"] == 0 and stopped["state"] == "stopped"
    finally:
        hub.close()


async def test_hub_reports_why_a_session_could_not_start(tmp_path: Path, standin: StandIn) -> None:
    hub = k8s_hub(tmp_path, standin, RSPARKHUB_KUBERNETES_START_FAILURE_GRACE_S="1").start()
    try:
        token = hub.make_user("dora")
        async with HubClient(hub.url, token) as c:
            for scenario, words in (
                ("image_pull_failure", "the session image could not be pulled (ErrImagePull)"),
                (
                    "unschedulable",
                    "no node can run the session (unschedulable for 1 s): 0/1 nodes are available",
                ),
            ):
                wid = (await c.ensure_workspace(scenario))["id"]
                standin.set_scenario(scenario, workspace=wid)
                started = await c.start_session(wid)
                assert started["state"] == "starting"
                info = await _until_state(c, wid, ("dead",), timeout=20)
                assert words in info["reason"], info
                assert standin.get("pods", NS, f"rsparkhub-session-{info['id']}") is None
            standin.refuse["pods"] = QUOTA  # a namespace ResourceQuota says no
            wid = (await c.ensure_workspace("quota"))["id"]
            with pytest.raises(HubError) as err:
                await c.start_session(wid)
            assert err.value.status == 503 and err.value.code == "session_start_failed"
            assert "exceeded quota: sessions" in err.value.message
            info = await c.request("GET", f"/api/workspaces/{wid}/session")
            assert info["state"] == "dead" and "exceeded quota" in info["reason"]
    finally:
        hub.close()


async def test_hub_culls_idle_sessions(tmp_path: Path, agent_standin: StandIn) -> None:
    standin = agent_standin
    hub = k8s_hub(
        tmp_path, standin, RSPARKHUB_IDLE_TIMEOUT_S="2", RSPARKHUB_CULL_INTERVAL_S="0.5"
    ).start()
    try:
        token = hub.make_user("eve")
        async with HubClient(hub.url, token) as c:
            wid = (await c.ensure_workspace("idle"))["id"]
            async with c.attach(wid) as s:
                assert (await s.run("1", language="python")).ok
                sid = s.session_id
            info = await _until_state(c, wid, ("stopped", "dead"), timeout=30)
            assert info["id"] == sid and info["state"] == "stopped", info
            assert info["reason"].startswith("idle for"), info
            pod = f"rsparkhub-session-{sid}"
            final = await standin.until(
                lambda: standin.finished.get((NS, pod)), 10, "the pod's removal"
            )
            assert final["status"]["phase"] == "Succeeded"
    finally:
        hub.close()


async def test_profiles_are_listed_and_picked(tmp_path: Path, standin: StandIn) -> None:
    profiles = [
        {
            "name": "small",
            "display_name": "Small",
            "cpu_request": "100m",
            "memory_request": "256Mi",
            "memory_limit": "1Gi",
            "default": True,
        },
        {"name": "big", "cpu_request": "2", "memory_request": "8Gi", "memory_limit": "8Gi"},
        {"name": "gpu", "gpu": 1, "users": ["bob"]},
    ]
    hub = k8s_hub(tmp_path, standin, RSPARKHUB_KUBERNETES_PROFILES=json.dumps(profiles)).start()
    try:
        alice, bob = hub.make_user("alice"), hub.make_user("bob")
        async with HubClient(hub.url, alice) as c, HubClient(hub.url, bob) as b:
            mine = await c.profiles()
            assert [(p["name"], p["default"]) for p in mine] == [("small", True), ("big", False)]
            assert mine[0]["display_name"] == "Small" and mine[0]["memory_limit"] == "1Gi"
            assert [p["name"] for p in await b.profiles()] == ["small", "big", "gpu"]
            wid = (await c.ensure_workspace("profiles"))["id"]
            for bad in ("gpu", "nope"):  # bob's profile is as unknown to alice as a typo
                with pytest.raises(HubError) as err:
                    await c.start_session(wid, profile=bad)
                assert err.value.status == 422 and err.value.code == "unknown_profile"
                assert "small, big" in str(err.value.message)
            r = await c.http.post(
                f"/api/workspaces/{wid}/session", json={"profile": "big", "extra": 1}
            )
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
            assert (await c.request("GET", f"/api/workspaces/{wid}/session")) is None
            started = await c.start_session(wid, profile="big")
            assert started["profile"] == "big"
            pod = standin.get("pods", NS, f"rsparkhub-session-{started['id']}")
            assert pod is not None
            res = pod["spec"]["containers"][0]["resources"]
            assert res["requests"] == {"cpu": "2", "memory": "8Gi"}
            assert pod["metadata"]["labels"]["rsparkhub.io/profile"] == "big"
            with pytest.raises(HubError) as err:
                await c.start_session(wid, profile="small")
            assert err.value.status == 409 and err.value.code == "session_running"
            assert (await c.start_session(wid))["id"] == started["id"]  # no profile: no-op
            await c.stop_session(wid)
            # Started again without a profile (e.g. by opening the workspace): the last one.
            again = await c.start_session(wid)
            assert again["id"] != started["id"] and again["profile"] == "big"
            await c.stop_session(wid)
    finally:
        hub.close()


def test_local_hub_offers_one_profile(shared_hub: HubProcess, alice: str) -> None:
    c = shared_hub.client(alice)
    assert [p["name"] for p in c.get("/api/profiles").json()] == ["local"]
    pid = c.post("/api/projects", json={"name": f"p-{uuid.uuid4().hex[:6]}"}).json()["id"]
    wid = c.post(f"/api/projects/{pid}/workspaces", json={"name": "w"}).json()["id"]
    r = c.post(f"/api/workspaces/{wid}/session", json={"profile": "gpu"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_profile"
    assert "local" in r.json()["error"]["message"]
