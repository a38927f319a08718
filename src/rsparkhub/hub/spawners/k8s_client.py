"""The Kubernetes spawner's connection to the API server: credentials
(``load_client_configuration``), the client, and ``KubernetesApi.call`` — one request in the
spawner's own thread pool (not the event loop's default executor, which the rest of the hub
uses), counted by verb, answered as decoded JSON.

Answers are read as JSON (``_preload_content=False``) rather than as client models: the
cache keeps only the few fields it needs, which keeps a hub with 1,000 pods small. This
module knows nothing of sessions or pods.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from rsparkhub.hub.spawners.base import SpawnError


def api_message(exc: ApiException) -> str:
    """The API server's own sentence for a failed request (else its status line)."""
    try:
        body = json.loads(exc.body or "")
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except (TypeError, ValueError):
        pass
    return f"{exc.status} {exc.reason}".strip()


def read_json(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call an API function and decode its raw JSON answer (blocking: runs in a thread)."""
    resp = fn(*args, _preload_content=False, **kwargs)
    try:
        data = resp.data
        return json.loads(data) if data else None
    finally:
        resp.release_conn()


def load_client_configuration(
    credentials: str = "auto", context: str | None = None
) -> k8s.Configuration:
    """The client's configuration: in-cluster (service account) or a kubeconfig
    (``KUBECONFIG``, else ``~/.kube/config``). ``auto`` = in-cluster inside a pod."""
    cfg = k8s.Configuration()
    in_cluster = credentials == "in-cluster" or (
        credentials == "auto" and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    try:
        if in_cluster:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(context=context, client_configuration=cfg)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError, TypeError, ValueError) as exc:
        where = "the in-cluster service account" if in_cluster else "KUBECONFIG/~/.kube/config"
        raise SpawnError(f"cannot load Kubernetes credentials from {where}: {exc}") from exc
    return cfg


class KubernetesApi:
    """The API client, its core and custom-object APIs, and a thread pool of ``threads``
    workers for blocking requests (the connection pool is sized to match)."""

    def __init__(self, configuration: k8s.Configuration, threads: int) -> None:
        configuration.connection_pool_maxsize = max(
            configuration.connection_pool_maxsize or 0, threads + 4
        )
        self.configuration = configuration
        self.client = k8s.ApiClient(configuration)
        self.core = k8s.CoreV1Api(self.client)
        self.custom = k8s.CustomObjectsApi(self.client)
        self.calls: Counter[str] = Counter()  # requests made, by verb
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="k8s-api")

    async def call(self, verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API request in the thread pool; the decoded JSON answer. An ``ApiException``
        is the server's refusal; a ``SpawnError`` means it did not answer."""
        self.calls[verb] += 1
        kwargs.setdefault("_request_timeout", (10, 60))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._pool, functools.partial(read_json, fn, *args, **kwargs)
            )
        except (ApiException, SpawnError):
            raise
        except Exception as exc:  # noqa: BLE001 - unreachable, TLS, timeout, bad answer
            raise SpawnError(
                f"the Kubernetes API at {self.configuration.host} did not answer: {exc}"
            ) from exc

    def close(self) -> None:
        """Drop queued requests and close the client's connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        try:
            self.client.close()  # type: ignore[no-untyped-call]
        except Exception:  # noqa: BLE001
            pass
