"""Workspace environments in a Kubernetes session pod (hub/spawners/k8s_environments.py):
pod-spec shapes, unit tests — the same ``build_session_pod`` the spawner sends, validated
against the Kubernetes schemas like tests/test_k8s_spawner.py's. A declared environment is
a read-only subPath of ``kubernetes_environments_claim`` at the path the hub built it at;
the overlay a writable subPath of the user's package volume, made by the init container;
what cannot be mounted loses its variable, so the kernels never get a missing path."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any, cast

from test_k8s_spawner import PROFILES, _env, make_spec, pod_config, validate

from rsparkhub.config import Settings
from rsparkhub.hub.environments import Environments, Prepared, build_sandboxes
from rsparkhub.hub.sandbox import Sandboxes
from rsparkhub.hub.spawners.k8s_objects import USER_LIB_DIR, build_session_pod

DATA = "/var/lib/rsparkhub"
ROOT = f"{DATA}/environments"
KEY_PY = "a" * 64
KEY_R = "b" * 64


def _spec(workspace: str = "w0rkspace", **env: str) -> Any:
    py, r = Path(f"{ROOT}/python/{KEY_PY}"), Path(f"{ROOT}/r/{KEY_R}")
    overlay = Path(f"{DATA}/overlays/{workspace}")
    return make_spec(
        workspace=workspace,
        env={
            "RSPARKHUB_ENV_PYTHON": f"{py}/site",
            "RSPARKHUB_ENV_R": f"{r}/library",
            "RSPARKHUB_OVERLAY": str(overlay),
            **env,
        },
        ro_binds=[(py, str(py)), (r, str(r))],
        binds=[(overlay, str(overlay))],
    )


def _mounts(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}


def test_environments_are_read_only_subpaths_and_the_overlay_is_on_the_user_volume() -> None:
    cfg = pod_config(
        environments_claim="rsparkhub-environments", environments_root=ROOT, user_volume=True
    )
    pod = build_session_pod(_spec(), PROFILES["default"], cfg)
    validate(pod)
    mounts = _mounts(pod)
    assert mounts[f"{ROOT}/python/{KEY_PY}"] == {
        "name": "environments",
        "mountPath": f"{ROOT}/python/{KEY_PY}",
        "subPath": f"python/{KEY_PY}",
        "readOnly": True,
    }
    assert mounts[f"{ROOT}/r/{KEY_R}"]["subPath"] == f"r/{KEY_R}"
    assert mounts[f"{ROOT}/r/{KEY_R}"]["readOnly"] is True
    [claim] = [v for v in pod["spec"]["volumes"] if v["name"] == "environments"]
    assert claim["persistentVolumeClaim"] == {
        "claimName": "rsparkhub-environments",
        "readOnly": True,
    }
    overlay = mounts[f"{DATA}/overlays/w0rkspace"]
    assert overlay == {
        "name": "user-lib",
        "mountPath": f"{DATA}/overlays/w0rkspace",
        "subPath": "overlays/w0rkspace",
    }  # writable: no readOnly
    [init] = pod["spec"]["initContainers"]
    assert init["command"][-2:] == [
        f"{USER_LIB_DIR}/overlays/w0rkspace/python",
        f"{USER_LIB_DIR}/overlays/w0rkspace/r",
    ]
    env = _env(pod)
    # the agent in the pod turns these into the kernels' paths (agent/packages.kernel_vars)
    assert env["RSPARKHUB_ENV_PYTHON"]["value"] == f"{ROOT}/python/{KEY_PY}/site"
    assert env["RSPARKHUB_ENV_R"]["value"] == f"{ROOT}/r/{KEY_R}/library"
    assert env["RSPARKHUB_OVERLAY"]["value"] == f"{DATA}/overlays/w0rkspace"


def test_what_cannot_be_mounted_loses_its_variable() -> None:
    # no claim, no user volume: neither environments nor the overlay, and no variable
    pod = build_session_pod(_spec(), PROFILES["default"], pod_config())
    validate(pod)
    env = _env(pod)
    assert not {"RSPARKHUB_ENV_PYTHON", "RSPARKHUB_ENV_R", "RSPARKHUB_OVERLAY"} & set(env)
    assert not any("environments" in p or "overlays" in p for p in _mounts(pod))
    assert "initContainers" not in pod["spec"]
    # a claim, but an environment outside its root: that one is left out, the other kept
    spec = _spec()
    spec.ro_binds[1] = (Path("/elsewhere/r/x"), "/elsewhere/r/x")
    spec.env["RSPARKHUB_ENV_R"] = "/elsewhere/r/x/library"
    cfg = pod_config(environments_claim="envs", environments_root=ROOT)
    pod = build_session_pod(spec, PROFILES["default"], cfg)
    validate(pod)
    env = _env(pod)
    assert "RSPARKHUB_ENV_R" not in env and "RSPARKHUB_ENV_PYTHON" in env
    assert "/elsewhere/r/x" not in _mounts(pod)
    # a path that climbs out of the root is not a subPath
    spec = _spec()
    spec.ro_binds[0] = (Path(f"{ROOT}/../secrets"), f"{ROOT}/../secrets")
    spec.env["RSPARKHUB_ENV_PYTHON"] = f"{ROOT}/../secrets/site"
    pod = build_session_pod(spec, PROFILES["default"], cfg)
    assert all(".." not in m.get("subPath", "") for m in _mounts(pod).values())
    assert "RSPARKHUB_ENV_PYTHON" not in _env(pod)


def test_a_kubernetes_hub_builds_only_with_the_claim_set(tmp_path: Path) -> None:
    base = {
        "data_dir": tmp_path,
        "spawner": "kubernetes",
        "kubernetes_hub_url": "ws://h/agent/ws",
        "kubernetes_image": "rsparkhub-session:test",
    }
    assert build_sandboxes(Settings(**base), object()) is None
    with_claim = Settings(**base, kubernetes_environments_claim="envs")
    assert isinstance(build_sandboxes(with_claim, object()), Sandboxes)


def test_a_kubernetes_hub_makes_no_overlay_of_its_own(tmp_path: Path) -> None:
    """The pod's overlay is on the user's volume: the hub only names the path (even a
    root hub pod mounts no overlay disk and makes no directory in its data volume)."""
    settings = Settings(
        data_dir=tmp_path,
        spawner="kubernetes",
        kubernetes_hub_url="ws://h/agent/ws",
        kubernetes_image="rsparkhub-session:test",
        kubernetes_environments_claim="envs",
    )
    envs = Environments(settings, cast(Any, None), cast(Any, None), build_sandboxes(settings, 0))
    out = Prepared()
    asyncio.run(envs._prepare_overlay("w0rkspace", out))
    overlay = tmp_path / "overlays" / "w0rkspace"
    assert out.binds == [(overlay, str(overlay))] and not out.notices
    assert out.env["RSPARKHUB_OVERLAY"] == str(overlay)
    assert not (tmp_path / "overlays").exists() and not (tmp_path / "session-disks").exists()


def _age(path: Path, minutes: float) -> None:
    t = time.time() - minutes * 60
    os.utime(path, (t, t), follow_symlinks=False)


def test_the_init_container_removes_only_overlays_of_workspaces_that_are_gone(
    tmp_path: Path,
) -> None:
    """The pod's init container command, run for real (``sh``, GNU ``find``) on a directory
    standing in for the user's volume: the overlay of a workspace the user no longer has is
    removed once nothing changed it for 10 minutes; the user's workspaces', a fresh one
    (made after the list was taken) and a symbolic link (and what it points to) stay."""
    mine, gone, fresh, other = "a" * 32, "b" * 32, "c" * 32, "d" * 32
    this = "e" * 32
    spec = _spec(workspace=this)
    spec.keep_overlays = (mine, this)
    cfg = pod_config(user_volume=True)
    pod = build_session_pod(spec, PROFILES["default"], cfg)
    validate(pod)
    [init] = pod["spec"]["initContainers"]
    assert init["env"] == [{"name": "RSPARKHUB_KEEP_OVERLAYS", "value": f"{mine} {this}"}]
    volume = tmp_path / "volume"
    overlays = volume / "overlays"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the overlay's")
    for ws in (mine, gone, fresh):
        (overlays / ws / "python" / "pkg").mkdir(parents=True)
        (overlays / ws / "python" / "pkg" / "__init__.py").write_text("x = 1\n")
    (overlays / other).symlink_to(outside)
    for ws in (mine, gone, other):
        _age(overlays / ws, 11)
    # the container's paths, mapped onto the stand-in volume
    command = [a.replace(USER_LIB_DIR, str(volume)) for a in init["command"]]
    env = {"PATH": os.environ["PATH"], **{e["name"]: e["value"] for e in init["env"]}}
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in overlays.iterdir()) == sorted([mine, fresh, other, this])
    assert (overlays / mine / "python" / "pkg" / "__init__.py").exists()
    assert (outside / "keep.txt").read_text() == "not the overlay's"
    assert (overlays / this / "python").is_dir() and (overlays / this / "r").is_dir()
    assert (volume / "R").is_dir() and (volume / "python").is_dir()
    assert out.stdout == f"removed the overlay of {gone} (no such workspace of this user)\n"
    # a directory it cannot make fails the container (the session says why)
    (volume / "R").rmdir()
    (volume / "R").write_text("a file where the library should be")
    failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert failed.returncode != 0 and "R" in failed.stderr


def test_without_the_list_the_init_container_only_makes_directories() -> None:
    pod = build_session_pod(_spec(), PROFILES["default"], pod_config(user_volume=True))
    [init] = pod["spec"]["initContainers"]
    assert init["command"][:2] == ["mkdir", "-p"] and "env" not in init
