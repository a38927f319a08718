"""Workspace environments in a session pod: the directories ``hub/environments`` hands a
session (``SessionSpec.ro_binds`` and ``binds``) as Kubernetes volumes.

* **Declared environments** (``ro_binds``): the hub builds them, as a local hub does, into
  ``DATA_DIR/environments``, which on Kubernetes is a volume — the PersistentVolumeClaim
  ``kubernetes_environments_claim``, mounted in the hub's pod there. A session pod mounts
  that claim **read-only** once per environment, ``subPath`` the environment's directory
  (``python/<key>``), at the same path the hub has, so ``RSPARKHUB_ENV_PYTHON``/``_R``
  (which ``agent/packages.kernel_vars`` turns into the kernels' ``PYTHONPATH``/``R_LIBS``
  in the pod) point at it unchanged.
* **The overlay** (``binds``: ``DATA_DIR/overlays/<workspace>``) becomes the writable
  ``subPath`` ``overlays/<workspace>`` of the user's package volume (``kubernetes_user_volume_size``),
  at the same path; ``python/`` and ``r/`` are made by the pod's init container as the
  session's uid (a ``subPath`` the kubelet makes itself would be root's). It is the user's
  volume, not the hub's disk: the overlay of a workspace is per user there (another member's
  session of the workspace has its own), which is what "a session installs into its own
  volume" already meant on Kubernetes.

The overlays of workspaces that are gone (deleted, or the user is no longer a member) would
stay on the user's volume forever: the hub cannot reach that volume, only the user's own
pods do. So the init container that prepares the volume also removes them
(:func:`prepare_user_volume`): every ``overlays/<id>`` whose id is not in
``SessionSpec.keep_overlays`` and that nothing changed for :data:`PRUNE_AFTER_MIN`
minutes (a workspace made after the list was taken is never touched). It runs as the
session's uid on that user's volume only, and a failure to remove is reported in its log,
never a reason for the session not to start.

What cannot be mapped is left out with its variable, so the kernels never get a path that
is not there: an environment outside ``DATA_DIR/environments`` or with no claim set, an
overlay without a user volume. Nothing here talks to the API server; pure functions of
the spec, tested as pod-spec shapes (tests/test_k8s_environments.py).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from rsparkhub.hub.spawners.base import SessionSpec

ENV_VOLUME = "environments"
USER_VOLUME = "user-lib"  # k8s_objects' name of the user's package volume
ENV_VARS = ("RSPARKHUB_ENV_PYTHON", "RSPARKHUB_ENV_R")
OVERLAY_VAR = "RSPARKHUB_OVERLAY"
KEEP_VAR = "RSPARKHUB_KEEP_OVERLAYS"  # the init container's: space-separated workspace ids
PRUNE_AFTER_MIN = 10
# $1: the overlays' directory; the rest: directories to make. Workspace ids are hex.
_PREPARE = f"""\
overlays=$1; shift
mkdir -p "$@" || exit 1
for d in "$overlays"/*; do
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  case " ${KEEP_VAR} " in *" ${{d##*/}} "*) continue ;; esac
  [ -n "$(find "$d" -maxdepth 0 -mmin +{PRUNE_AFTER_MIN} 2>/dev/null)" ] || continue
  if rm -rf -- "$d"; then echo "removed the overlay of ${{d##*/}} (no such workspace of this user)"
  else echo "could not remove $d" >&2; fi
done
"""


@dataclass
class EnvironmentMounts:
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    # subPaths of the user volume the init container makes (as the session's uid)
    user_dirs: list[str] = field(default_factory=list)
    # variables of spec.env to leave out: their directory is not in the pod
    drop_env: set[str] = field(default_factory=set)


def prepare_user_volume(
    volume_mount: str, dirs: list[str], keep: tuple[str, ...] | None
) -> tuple[list[str], list[dict[str, str]]]:
    """The command and environment of the init container that prepares the user's volume
    (mounted at ``volume_mount``): make ``dirs`` and, when ``keep`` is known, remove the
    overlays of other workspaces (see the module docstring)."""
    if keep is None:
        return ["mkdir", "-p", *dirs], []
    overlays = posixpath.join(volume_mount, "overlays")
    command = ["sh", "-c", _PREPARE, "prepare-user-lib", overlays, *dirs]
    return command, [{"name": KEEP_VAR, "value": " ".join(keep)}]


def _under(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` when it is strictly inside it (normalised), else None."""
    path, root = posixpath.normpath(path), posixpath.normpath(root)
    if not path.startswith(root + "/"):
        return None
    rel = path[len(root) + 1 :]
    return rel if rel and ".." not in rel.split("/") else None


def environment_mounts(
    spec: SessionSpec,
    claim: str | None,
    environments_root: str,
    user_volume: bool,
    user_volume_mount: str,
) -> EnvironmentMounts:
    """The volumes and mounts that give a session pod its declared environments and its
    overlay (see the module docstring)."""
    out = EnvironmentMounts()
    for source, target in spec.ro_binds:
        rel = _under(str(source), environments_root) if claim else None
        if rel is None:
            out.drop_env.update(v for v in ENV_VARS if spec.env.get(v, "").startswith(target))
            continue
        out.mounts.append(
            {"name": ENV_VOLUME, "mountPath": target, "subPath": rel, "readOnly": True}
        )
    if out.mounts:
        out.volumes.append(
            {
                "name": ENV_VOLUME,
                "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
            }
        )
    for _source, target in spec.binds:
        overlay = spec.env.get(OVERLAY_VAR)
        if overlay != target or not user_volume:
            if overlay == target:
                out.drop_env.add(OVERLAY_VAR)
            continue
        rel = posixpath.join("overlays", spec.workspace_id)
        out.mounts.append({"name": USER_VOLUME, "mountPath": target, "subPath": rel})
        out.user_dirs += [
            posixpath.join(user_volume_mount, rel, "python"),
            posixpath.join(user_volume_mount, rel, "r"),
        ]
    return out
