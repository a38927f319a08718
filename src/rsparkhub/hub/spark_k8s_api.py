"""Creating and deleting a session's Spark driver through the Kubernetes API
(``spark = 'kubernetes'``; what the objects are: ``spark_k8s_objects.py``).

Owns: the idempotent create and delete calls of the official ``kubernetes`` client, run in
threads off the event loop, and turning the API's refusals into errors a user can act on
(:class:`SparkDriverError`). Must not: decide when a driver exists (the Kubernetes Spark
service, ``spark_kubernetes.py``, does).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.spark_k8s_objects import (
    API_TIMEOUT_S,
    Owner,
    SparkK8sConfig,
    build_driver_pod,
    build_driver_secret,
    build_driver_service,
    build_network_policy,
    driver_name,
)

log = logging.getLogger("rsparkhub.spark_k8s")


class SparkDriverError(ApiError):
    """The Kubernetes API refused or failed a driver operation; the message says why."""

    def __init__(self, code: str, message: str, status: int = 503) -> None:
        super().__init__(status, code, message)


@dataclass(frozen=True)
class DriverHandle:
    pod_name: str
    pod_uid: str | None
    service_name: str


def _api_error(action: str, exc: Any) -> SparkDriverError:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or type(exc).__name__
    if status == 403:
        return SparkDriverError(
            "spark_driver_forbidden",
            f"Kubernetes refused to {action} (403 Forbidden): the hub's service account needs "
            "the rsparkhub-hub Role of the manifests (pods, services and networkpolicies in "
            "its namespace).",
        )
    if status == 422:
        return SparkDriverError(
            "spark_driver_invalid",
            f"Kubernetes rejected the object when asked to {action} (422 {reason}); check the "
            "spark_kubernetes_* settings (image, memory sizes, extra conf).",
        )
    where = f"{status} {reason}" if status else str(reason)
    return SparkDriverError(
        "spark_driver_api_error",
        f"Could not {action}: the Kubernetes API answered {where}. The hub retries on the "
        "next session start; see the hub log for details.",
    )


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


async def create_driver(
    api: Any,
    cfg: SparkK8sConfig,
    user: str,
    session_id: str,
    *,
    token: str,
    ui_key: str,
    owner: Owner | None = None,
    workspace: str | None = None,
    proxy_base: str | None = None,
    uid: int | None = None,
    gid: int | None = None,
) -> DriverHandle:
    """Create the driver's Secret (the session's Connect ``token`` and its UI's
    ``ui_key``, owned by ``owner``), the driver pod (as ``uid``:``gid``, the session's
    identity), then its Service and
    NetworkPolicy owned by the pod. ``api`` is a ``kubernetes.client.CoreV1Api`` (the
    NetworkPolicy goes through its API client). Idempotent: objects that already exist
    (409) are kept, so a retried start or a restarted hub gets the same driver (the token
    is derived, so a kept Secret holds the same one)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name = driver_name(session_id)
    try:
        secret = build_driver_secret(
            cfg, user, session_id, token, ui_key=ui_key, owner=owner, workspace=workspace
        )
        pod = build_driver_pod(
            cfg,
            user,
            session_id,
            owner=owner,
            workspace=workspace,
            proxy_base=proxy_base,
            uid=uid,
            gid=gid,
        )
    except ValueError as exc:
        raise SparkDriverError("spark_driver_invalid", str(exc)) from exc
    await _create_kept(
        api.create_namespaced_secret,
        cfg.namespace,
        client.V1Secret.from_dict(secret),
        f"the Spark driver's Secret {name}",
    )
    try:
        created = await asyncio.to_thread(
            api.create_namespaced_pod,
            cfg.namespace,
            client.V1Pod.from_dict(pod),
            _request_timeout=API_TIMEOUT_S,
        )
    except ApiException as exc:
        if _status(exc) != 409:
            raise _api_error(f"create the Spark driver pod {name}", exc) from exc
        try:
            created = await asyncio.to_thread(
                api.read_namespaced_pod, name, cfg.namespace, _request_timeout=API_TIMEOUT_S
            )
        except ApiException as exc2:
            raise _api_error(f"read the Spark driver pod {name}", exc2) from exc2
    pod_uid = getattr(getattr(created, "metadata", None), "uid", None)
    svc_owner = Owner(name=name, uid=pod_uid) if pod_uid else owner
    svc = build_driver_service(cfg, user, session_id, owner=svc_owner, workspace=workspace)
    await _create_kept(
        api.create_namespaced_service,
        cfg.namespace,
        client.V1Service.from_dict(svc),
        f"the Spark driver service {name}",
    )
    policy = client.V1NetworkPolicy.from_dict(
        build_network_policy(cfg, user, session_id, owner=svc_owner, workspace=workspace)
    )
    assert policy is not None  # from_dict returns None for None only
    await _create_kept(
        client.NetworkingV1Api(api.api_client).create_namespaced_network_policy,
        cfg.namespace,
        policy,
        f"the Spark driver's NetworkPolicy {name}",
    )
    log.info("spark driver %s for session %s created", name, session_id)
    return DriverHandle(pod_name=name, pod_uid=pod_uid, service_name=name)


async def _create_kept(call: Any, namespace: str, body: Any, what: str) -> None:
    """Create ``body`` in a thread; one that exists already (409) is kept."""
    from kubernetes.client.exceptions import ApiException

    try:
        await asyncio.to_thread(call, namespace, body, _request_timeout=API_TIMEOUT_S)
    except ApiException as exc:
        if _status(exc) != 409:
            raise _api_error(f"create {what}", exc) from exc


def _delete(call: Any, *args: Any, **kwargs: Any) -> None:
    """A DELETE call whose answer is read as bytes, not as a client model (blocking: runs
    in a thread). The body is read before the connection goes back to the pool."""
    resp = call(*args, _preload_content=False, **kwargs)
    try:
        resp.read()
    finally:
        resp.release_conn()


async def delete_driver(api: Any, namespace: str, session_id: str, *, grace_s: int = 30) -> None:
    """Delete the driver pod (its executors follow through their ownerReference), its
    Service, its NetworkPolicy and its Secret. Idempotent: objects already gone (404) are
    fine."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name = driver_name(session_id)
    pod_kwargs: dict[str, Any] = {
        "grace_period_seconds": grace_s,
        "propagation_policy": "Background",
    }
    calls: list[tuple[str, Any, dict[str, Any]]] = [
        ("pod", api.delete_namespaced_pod, pod_kwargs),
        ("service", api.delete_namespaced_service, {}),
        (
            "NetworkPolicy",
            client.NetworkingV1Api(api.api_client).delete_namespaced_network_policy,
            {},
        ),
        ("Secret", api.delete_namespaced_secret, {}),
    ]
    for what, call, kwargs in calls:
        try:
            # The answer is not read as a client model: Kubernetes 1.20 answers a Service's
            # DELETE with a Status, which the client fails to read as the V1Service it expects.
            await asyncio.to_thread(
                _delete, call, name, namespace, _request_timeout=API_TIMEOUT_S, **kwargs
            )
        except ApiException as exc:
            if _status(exc) != 404:
                raise _api_error(f"delete the Spark driver {what} {name}", exc) from exc
    log.info("spark driver %s for session %s deleted", name, session_id)
