"""What a session pod's status means — pure functions, no API calls, no cache:

* ``PodView`` — the few fields of a pod (from its JSON) that decide its fate;
* ``failed_start`` — whether a pending pod's start has failed for good (an image that cannot
  be pulled, a container that cannot be created, unschedulable past the grace period);
* ``end_of`` and ``deleted_pod_result`` — how a session ended, in words a user can act on
  (exit code, out of memory, maximum age, eviction, deleted outside the hub …);
* ``describe_exit`` and ``progress_line`` — a container's exit and a pod Event as sentences.

It must not keep state: the cache (``k8s_cache``) holds what it learnt from the watches
and passes it in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rsparkhub.hub.spawners.k8s_objects import CONTAINER, SESSION_ANNOTATION, SESSION_LABEL

# Container waiting reasons that end a start at once (kubelet would only retry them).
PULL_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
CREATE_FAILURES = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
# Create failures the kubelet meets while its caches catch up (a loaded node: "failed to
# sync secret cache: timed out waiting for the condition"); it retries them, and so does
# the start (bounded by the start timeout), instead of failing the session.
TRANSIENT_CREATE = ("failed to sync secret cache", "failed to sync configmap cache")
TERMINAL = ("Succeeded", "Failed")
_PROGRESS_LABELS = {
    "Scheduled": "Scheduled",
    "FailedScheduling": "Waiting for a node",
    "Pulling": "Pulling the session image",
    "Pulled": "Image ready",
    "Created": "Container created",
    "Started": "Container started; waiting for the session to connect",
    "BackOff": "Back-off",
    "Failed": "Failed",
    "FailedMount": "Waiting for a volume",
    "FailedAttachVolume": "Waiting for a volume",
    "SuccessfulAttachVolume": "Volume attached",
    "Killing": "Stopping",
}


@dataclass(slots=True)
class PodView:
    """What the cache keeps of a pod: the few fields that decide its fate."""

    name: str
    uid: str
    session_id: str
    phase: str
    deleting: bool
    node: str | None
    reason: str | None  # status.reason: DeadlineExceeded, Evicted …
    message: str | None
    unschedulable: str | None  # the PodScheduled=False message
    unschedulable_since: float | None  # epoch seconds
    waiting: tuple[str, str, str] | None  # (reason, message, container)
    running: bool
    terminated: tuple[int, str, str, str] | None  # (exit code, reason, message, container)

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> PodView:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        st = obj.get("status") or {}
        labels = meta.get("labels") or {}
        ann = meta.get("annotations") or {}
        unsched = since = None
        for c in st.get("conditions") or ():
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                unsched = c.get("message") or c.get("reason") or "unschedulable"
                since = _epoch(c.get("lastTransitionTime"))
        waiting: tuple[str, str, str] | None = None
        terminated: tuple[int, str, str, str] | None = None
        running = False
        for cs in st.get("initContainerStatuses") or ():
            state = cs.get("state") or {}
            w, t = state.get("waiting"), state.get("terminated")
            if w and waiting is None:
                waiting = (w.get("reason") or "", w.get("message") or "", cs.get("name") or "")
            if t and int(t.get("exitCode") or 0) != 0 and terminated is None:
                terminated = (
                    int(t.get("exitCode") or 0),
                    t.get("reason") or "",
                    t.get("message") or "",
                    cs.get("name") or "",
                )
        phase = st.get("phase") or "Pending"
        for cs in st.get("containerStatuses") or ():
            if cs.get("name") != CONTAINER:
                continue
            state = cs.get("state") or {}
            w, r, t = state.get("waiting"), state.get("running"), state.get("terminated")
            if t is None and phase in TERMINAL:
                # A kubelet (seen with 1.20) can report the container it stopped while
                # deleting the pod as waiting, its exit in lastState (session pods never
                # restart, so that is the one run's exit).
                t = (cs.get("lastState") or {}).get("terminated")
                if t is not None:
                    w = None
            if w and waiting is None:
                waiting = (w.get("reason") or "", w.get("message") or "", CONTAINER)
            running = r is not None
            if t:
                terminated = (
                    int(t.get("exitCode") or 0),
                    t.get("reason") or "",
                    t.get("message") or "",
                    CONTAINER,
                )
        return cls(
            name=meta.get("name") or "",
            uid=meta.get("uid") or "",
            session_id=ann.get(SESSION_ANNOTATION) or labels.get(SESSION_LABEL) or "",
            phase=phase,
            deleting=bool(meta.get("deletionTimestamp")),
            node=spec.get("nodeName"),
            reason=st.get("reason"),
            message=st.get("message"),
            unschedulable=unsched,
            unschedulable_since=since,
            waiting=waiting,
            running=running,
            terminated=terminated,
        )

    @property
    def ended(self) -> bool:
        return self.phase in TERMINAL or (
            self.terminated is not None and self.terminated[3] == CONTAINER
        )


@dataclass(slots=True)
class Ended:
    code: int | None
    reason: str
    remove: bool = True  # delete the pod now that its result is known


def _epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def describe_exit(code: int, reason: str = "", message: str = "", container: str = "") -> str:
    """Why a container ended, in words (with its last log line on errors)."""
    what = (
        "the session's container"
        if container in ("", CONTAINER)
        else f"init container '{container}'"
    )
    if code == 0:
        return f"{what} exited normally (exit code 0)"
    if reason == "OOMKilled":
        text = f"{what} ran out of memory (OOMKilled: the profile's memory limit was reached)"
    elif code == 3 and container in ("", CONTAINER):
        text = "the agent lost the hub and gave up re-dialling (exit code 3)"
    elif code == 137:
        text = f"{what} was killed (SIGKILL, exit code 137)"
    elif code == 143:
        text = f"{what} was stopped by SIGTERM (exit code 143)"
    else:
        text = f"{what} exited with code {code}"
        if reason and reason not in ("Error", "Completed"):
            text += f" ({reason})"
    last = _last_line(message)
    return f"{text}; last log line: {last}" if last else text


def progress_line(reason: str, message: str) -> str:
    label = _PROGRESS_LABELS.get(reason, reason)
    if reason in ("Created", "Started"):
        return label  # "Created container session": nothing to add
    message = " ".join(message.split())[:300]
    return f"{label}: {message}" if message else label


def start_stage(view: PodView, warning: str | None) -> str:
    """Where a pod that did not get to run was in its start (``warning``: its last
    Warning event)."""
    if view.unschedulable:
        return f"waiting for a node ({view.unschedulable})"
    if view.waiting and view.waiting[0] not in ("ContainerCreating", "PodInitializing", ""):
        return f"starting ({view.waiting[0]}: {view.waiting[1]})".replace(": )", ")")
    if view.running:
        return "running"
    if warning:
        return f"starting (last warning: {warning})"
    if not view.node:
        return "waiting to be scheduled"
    return "starting (pulling the image, preparing volumes)"


# A kubelet removes the stopped container of a pod being deleted, and can do so before it
# reports how the container exited; it then reports it terminated with this reason and exit
# code 137, which is not a kill (kubernetes/kubernetes#104107; 1.20 on this lab, once in
# two stops under load). The exit status is lost: say so rather than "killed".
STATUS_UNKNOWN = "ContainerStatusUnknown"
EXIT_LOST = (
    "the session's pod was deleted, and Kubernetes removed its container before reporting "
    "how it exited (kubelet status ContainerStatusUnknown): the exit code is unknown"
)


def end_of(view: PodView, max_age_s: int) -> Ended:
    """How a pod that ended (``view.ended``) ended."""
    if view.reason == "DeadlineExceeded":
        return Ended(
            None,
            f"the session reached its maximum age of {max_age_s} s (kubernetes_max_session_age_s)",
        )
    if view.reason == "Evicted":
        return Ended(None, f"the session's pod was evicted: {view.message or 'no reason given'}")
    if view.terminated is not None:
        code, reason, message, container = view.terminated
        if reason == STATUS_UNKNOWN and view.deleting:
            return Ended(None, EXIT_LOST)
        return Ended(code, describe_exit(code, reason, message, container))
    if view.phase == "Succeeded":
        return Ended(0, "the session's pod succeeded")
    return Ended(
        None, f"the session's pod failed: {view.reason or ''} {view.message or ''}".strip()
    )


def deleted_pod_result(
    view: PodView, why: str, *, by_hub: bool, warning: str | None, max_age_s: int
) -> Ended:
    """The result of a pod that has been deleted (``view``: its last state; ``why``: how we
    learnt it; ``by_hub``: the hub deleted it itself)."""
    if view.phase in TERMINAL or view.ended:
        return end_of(view, max_age_s)
    if by_hub and view.running:
        # The kubelet deleted the pod before it reported the container's end (the same
        # race as STATUS_UNKNOWN): a stopped session whose exit status is unknown.
        return Ended(None, EXIT_LOST, False)
    if by_hub:
        return Ended(
            None, f"the pod was deleted by the hub while {start_stage(view, warning)}", False
        )
    extra = f" ({why})" if why else ""
    return Ended(
        None,
        f"the session's pod was deleted outside the hub while {start_stage(view, warning)}{extra}",
        False,
    )


def failed_start(view: PodView, grace_s: float) -> Ended | None:
    """Why a pending pod will never run, or None while it may still start."""
    if view.phase != "Pending" or view.deleting:
        return None
    if view.waiting is not None:
        reason, message, container = view.waiting
        if reason in PULL_FAILURES:
            return Ended(
                None,
                f"the session image could not be pulled ({reason}): {message}".rstrip(": "),
            )
        if reason in CREATE_FAILURES and not any(t in message for t in TRANSIENT_CREATE):
            return Ended(
                None,
                f"the session's container '{container}' could not be created ({reason}): "
                f"{message}".rstrip(": "),
            )
    if view.unschedulable is not None:
        since = view.unschedulable_since or time.time()
        if time.time() - since >= grace_s:
            return Ended(
                None,
                "no node can run the session (unschedulable for "
                f"{grace_s:g} s): {view.unschedulable}",
            )
    return None


def recheck_in(view: PodView | None, grace_s: float) -> float:
    """Seconds until ``failed_start`` may change its answer without a watch event: when an
    unschedulable pod's grace period ends (else a long safety interval)."""
    if view is not None and view.unschedulable is not None and view.phase == "Pending":
        since = view.unschedulable_since or time.time()
        return max(0.05, since + grace_s - time.time() + 0.05)
    return 300.0
