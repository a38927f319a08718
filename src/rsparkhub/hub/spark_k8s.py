"""One Spark Connect driver per session on Kubernetes (``spark = 'kubernetes'``): the
public face of ``spark_k8s_objects.py`` (pure builders of the objects) and
``spark_k8s_api.py`` (idempotent create/delete through the official ``kubernetes``
client, run in threads off the event loop), re-exported here. The Kubernetes Spark service
(``spark_kubernetes.py``) calls :func:`create_driver` when a session starts and
:func:`delete_driver` when it stops, and hands the session ``SPARK_REMOTE`` =
:func:`remote_url`.

What runs:

* a **driver pod** (``component=spark-driver``) running ``spark-submit --class
  …SparkConnectServer`` from an ``apache/spark`` image in **client mode** against
  ``k8s://https://kubernetes.default.svc`` with the ``rsparkhub-spark`` service account
  (the API credentials come from its mounted token: the Kubernetes client inside Spark
  configures itself in-cluster and refreshes the rotated token). It runs under the
  session's identity (the session pod's uid and gid, passed by the caller) with the
  session pod's restrictions, through the image's ``/opt/entrypoint.sh``, which gives a
  uid without a passwd entry a name (libnss_wrapper) as Hadoop's login needs;
* a **headless Service** of the same name giving the driver a stable DNS name
  (``spark.driver.host``) that executors dial back on the fixed driver (7078) and block
  manager (7079) ports, and sessions reach on Spark Connect's 15002; 4040 is the UI, which
  the hub proxies at ``/spark-ui/<user>`` (``spark.ui.proxyBase``);
* **executors** created by the driver under dynamic allocation with shuffle tracking (no
  external shuffle service on Kubernetes), from an executor pod template of the session
  (:func:`executor_pod_template`: the session's uid and gid, the same restrictions, no API
  token). The template travels in an annotation of the driver pod, which a downward API
  volume turns into the file ``spark.kubernetes.executor.podTemplateFile`` names: no
  ConfigMap per session, and it lives and dies with the pod.
  ``spark.kubernetes.driver.pod.name`` makes Spark give every executor an ownerReference
  to the driver pod, so executors go when the driver goes;
* a **Secret** of the same name (:func:`build_driver_secret`, owned by the session pod and
  made first) holding the session's Spark Connect token, which the driver reads into
  ``SPARK_CONNECT_AUTHENTICATE_TOKEN``: Spark Connect then answers only calls carrying
  ``Authorization: Bearer <token>``, which only the session's ``SPARK_REMOTE`` has (see
  :func:`remote_url`). Driver and executors authenticate to each other with
  ``spark.authenticate`` (Spark on Kubernetes makes that secret per application);
* a **NetworkPolicy** of the same name (:func:`build_network_policy`) that admits, into
  this session's driver and executors, only this session's pod (Spark Connect) and each
  other (driver and block manager ports). The manifests' namespace-wide policies admit
  nobody else but the hub (Spark Connect and the UI port) into any driver and nobody into
  an executor, so a session reaches its own driver only, and a driver is reached by its
  own session (and the hub) only.

Ownership chain: session pod → driver pod (when the caller passes the session pod as
``owner``) → Service, NetworkPolicy and executors; session pod → Secret. Deleting the session pod
garbage-collects all of it; :func:`delete_driver` also deletes explicitly, tolerating 404.
"""

from __future__ import annotations

from rsparkhub.hub.spark import connect_token
from rsparkhub.hub.spark_k8s_api import (
    DriverHandle,
    SparkDriverError,
    create_driver,
    delete_driver,
)
from rsparkhub.hub.spark_k8s_objects import (
    API_TIMEOUT_S,
    APP,
    BLOCK_MANAGER_PORT,
    CONNECT_PORT,
    DEFAULT_IMAGE,
    DEFAULT_UI_URL,
    DRIVER_PORT,
    ENTRYPOINT,
    EXECUTOR_TEMPLATE_ANNOTATION,
    EXECUTOR_TEMPLATE_DIR,
    EXECUTOR_TEMPLATE_KEY,
    LABEL_COMPONENT,
    LABEL_NAME,
    LABEL_SESSION,
    LABEL_USER,
    LABEL_WORKSPACE,
    MASTER,
    SERVER_CLASS,
    SERVICE_ACCOUNT,
    SPARK_SUBMIT,
    SPARK_UID,
    TOKEN_ENV,
    TOKEN_KEY,
    UI_KEY_ENV,
    UI_KEY_KEY,
    UI_PORT,
    WORK_DIR,
    Owner,
    SparkK8sConfig,
    build_driver_pod,
    build_driver_secret,
    build_driver_service,
    build_network_policy,
    driver_name,
    executor_pod_template,
    labels,
    memory_mib,
    pod_memory_mib,
    remote_url,
    service_host,
    spark_conf,
    ui_proxy_base,
    ui_url,
)
from rsparkhub.hub.spawners.k8s_objects import label_value

__all__ = [
    "API_TIMEOUT_S",
    "APP",
    "BLOCK_MANAGER_PORT",
    "CONNECT_PORT",
    "DEFAULT_IMAGE",
    "DEFAULT_UI_URL",
    "DRIVER_PORT",
    "DriverHandle",
    "ENTRYPOINT",
    "EXECUTOR_TEMPLATE_ANNOTATION",
    "EXECUTOR_TEMPLATE_DIR",
    "EXECUTOR_TEMPLATE_KEY",
    "LABEL_COMPONENT",
    "LABEL_NAME",
    "LABEL_SESSION",
    "LABEL_USER",
    "LABEL_WORKSPACE",
    "MASTER",
    "Owner",
    "SERVER_CLASS",
    "SERVICE_ACCOUNT",
    "SPARK_SUBMIT",
    "SPARK_UID",
    "SparkDriverError",
    "SparkK8sConfig",
    "TOKEN_ENV",
    "TOKEN_KEY",
    "UI_KEY_ENV",
    "UI_KEY_KEY",
    "UI_PORT",
    "WORK_DIR",
    "build_driver_pod",
    "build_driver_secret",
    "build_driver_service",
    "build_network_policy",
    "connect_token",
    "create_driver",
    "delete_driver",
    "driver_name",
    "executor_pod_template",
    "label_value",
    "labels",
    "memory_mib",
    "pod_memory_mib",
    "remote_url",
    "service_host",
    "spark_conf",
    "ui_proxy_base",
    "ui_url",
]
