"""The one typed settings object of rsparkhub.

Values come from, highest priority first: explicit keyword arguments (the CLI's flags),
environment variables ``RSPARKHUB_<NAME>``, a TOML config file (``--config FILE`` or
``RSPARKHUB_CONFIG``), then the defaults below. Every field is documented in
docs/configuration.md; keep the two in step.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rsparkhub.hub.spawners.k8s_profiles import (
    KubernetesProfile,
    check_profiles,
    parse_quantity,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RSPARKHUB_", extra="forbid")

    # --- server
    host: str = Field("127.0.0.1", description="Address the hub listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the hub listens on.")
    public_url: str | None = Field(
        None, description="URL users reach the hub at (default http://HOST:PORT)."
    )
    data_dir: Path = Field(
        Path("./data"), description="Where the database, blobs and session dirs live."
    )

    # --- storage
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL. Default: sqlite+aiosqlite:///DATA_DIR/rsparkhub.db",
    )

    # --- auth
    cookie_secure: bool = Field(False, description="Mark cookies Secure (behind HTTPS).")
    login_session_hours: float = Field(24 * 7, gt=0, description="Browser login lifetime.")
    token_default_days: float = Field(90, gt=0, description="Default API token lifetime.")
    login_attempts_per_account: int = Field(
        10,
        gt=0,
        description="Password logins that may fail for one account within "
        "`login_attempts_window_s` before more are refused (429 `too_many_attempts`).",
    )
    login_attempts_per_address: int = Field(
        100,
        gt=0,
        description="Password logins that may fail from one client address within "
        "`login_attempts_window_s` (a classroom behind one NAT shares an address).",
    )
    login_attempts_window_s: float = Field(
        300, gt=0, description="The window the failed logins above are counted in."
    )

    # --- limits
    max_file_bytes: int = Field(50 * 1024 * 1024, gt=0, description="Largest single file.")
    max_workspace_bytes: int = Field(
        500 * 1024 * 1024, gt=0, description="Largest total size of a workspace's files."
    )
    max_user_bytes: int = Field(
        5 * 1024 * 1024 * 1024,
        gt=0,
        description="Largest total size of the files in all workspaces a user owns.",
    )
    max_upload_bytes: int = Field(
        200 * 1024 * 1024, gt=0, description="Largest request body for uploads/imports."
    )

    # --- sessions
    spawner: Literal["local", "kubernetes"] = Field(
        "local", description="Where sessions run: local processes or Kubernetes pods."
    )
    idle_timeout_s: float = Field(
        3600, ge=0, description="Stop a session with no client and nothing running after this."
    )
    cull_interval_s: float = Field(30, gt=0, description="How often idle sessions are checked.")
    credential_check_s: float = Field(
        15,
        gt=0,
        description="How often open workspace and document sockets are checked against their "
        "login or API token: one that expired, or revoked from the command line "
        "(`rsparkhub login-link`, `rsparkhub user disable`), closes its sockets within this "
        "time. Revoked in the browser or the API, it closes them at once.",
    )
    stop_sessions_on_exit: bool = Field(
        False,
        description="Stop every session cleanly when the hub stops (`rsparkhub serve "
        "--stop-sessions`). Off: sessions keep running and the next hub adopts them.",
    )
    session_start_timeout_s: float = Field(
        60, gt=0, description="How long an agent may take to connect after start."
    )
    agent_redial_timeout_s: float = Field(
        600, gt=0, description="How long an agent re-dials a lost hub before exiting."
    )
    sandbox: Literal["auto", "bwrap", "none"] = Field(
        "auto", description="Sandbox local sessions with bubblewrap: auto = when installed."
    )
    session_memory_mb: int = Field(
        4096,
        ge=0,
        description="Memory limit of a whole session, its /tmp and /dev/shm included (0 = none).",
    )
    session_cpu_seconds: int = Field(0, ge=0, description="CPU-time limit per process (0 = none).")
    session_max_processes: int = Field(
        1024, ge=0, description="Processes and threads a session may have at once (0 = none)."
    )
    session_cpu_weight: int = Field(
        100, ge=1, le=10000, description="CPU weight of a session against the others (cgroup)."
    )
    session_cpu_quota: float = Field(
        0, ge=0, description="CPU cores a session may use at most (0 = no quota)."
    )
    session_tmp_mb: int = Field(
        512, ge=1, description="Size of a session's private /tmp and of its /dev/shm (tmpfs)."
    )
    session_disk_mb: int = Field(
        4096,
        ge=0,
        description="Disk space of a session's directory (working directory, home): a file "
        "system of its own, so a write past it fails with 'No space left on device' (a root "
        "hub; 0 = no cap).",
    )
    overlay_disk_mb: int = Field(
        4096,
        ge=0,
        description="Disk space of a workspace's package overlay (what pip install and "
        "install.packages put there): a file system of its own that outlives sessions, so a "
        "write past it fails with 'No space left on device' (a root hub; 0 = no cap).",
    )
    session_network: Literal["internet", "hub-only"] = Field(
        "internet",
        description="Outbound network of sessions: internet, or only the hub and their services.",
    )
    session_ipv6: bool = Field(
        False,
        description="IPv6 in sandboxes' network namespaces (pasta). Off: sessions, builds and "
        "Spark servers go out over IPv4 only, as on Docker's default network; on costs about "
        "10 MiB more per sandbox (pasta's IPv6 buffers).",
    )
    session_uid_min: int = Field(
        200000, ge=1000, description="Lowest host uid given to a user's sessions (root hub)."
    )
    session_uid_max: int = Field(
        299999, ge=1000, description="Highest host uid given to a user's sessions (root hub)."
    )
    session_languages: str | None = Field(
        None, description="Comma-separated languages sessions offer (default: every installed one)."
    )
    session_prestart_kernel: bool = Field(
        True,
        description="Start the kernel of the workspace's most recently changed script or "
        "document when its session starts, before the first run asks for it.",
    )
    session_pool_size: int = Field(
        0,
        ge=0,
        le=16,
        description="Warm sessions kept ready for each user who logged in or started a session (local "
        "spawner, root hub or sandbox = 'none'): a sandboxed agent with the "
        "session_pool_kernels started, handed to the user's next session. 0 turns the pool off.",
    )
    session_pool_kernels: str = Field(
        "python",
        description="Comma-separated kernels a pooled session starts ahead (r, python, bash).",
    )
    session_pool_idle_s: float = Field(
        1800.0,
        gt=0,
        description="A pooled session not handed out within this many seconds is stopped.",
    )
    event_fsync: bool = Field(
        True, description="fsync the session output log before acknowledging to the agent."
    )

    # --- workspace environments (hub/environments/, docs/environments.md)
    environments: bool = Field(
        True,
        description="Build the packages a workspace declares (requirements.txt, DESCRIPTION "
        "…) into shared, read-only environments when a session starts (local spawner).",
    )
    environment_build_uid: int = Field(
        65534,
        ge=1,
        description="Host uid (and gid) environment builds run under on a root hub; never "
        "a user's (outside session_uid_min..max).",
    )
    environment_build_timeout_s: float = Field(
        900, gt=0, description="Longest an environment build may take before it is stopped."
    )
    environment_failed_retry_s: float = Field(
        600,
        ge=0,
        description="After a build failed, sessions with the same declaration start without "
        "retrying it for this long (0 = retry at every start); Restart to rebuild retries now.",
    )
    environment_gc_after_days: float = Field(
        0,
        ge=0,
        description="Remove an environment no session was given for this many days and "
        "no running session mounts (checked at a session start, at most hourly); 0 = never.",
    )
    rerun_timeout_s: float = Field(
        3600,
        gt=0,
        description="Longest a re-run's recorded request may run; then the re-run is "
        "reported failed (rerun_timeout) and its session stopped.",
    )
    r_repos: str | None = Field(
        None,
        description="A CRAN or Posit Package Manager mirror URL R packages a workspace "
        "declares are installed from when this machine does not have them (repos=).",
    )

    # --- Kubernetes spawner (spawner = "kubernetes"; see docs/configuration.md)
    kubernetes_namespace: str = Field(
        default_factory=lambda: _in_cluster_namespace() or "default",
        description="Namespace of the session pods (default: the hub's own, else 'default').",
    )
    kubernetes_image: str | None = Field(
        None, description="Session image of profiles that name none."
    )
    kubernetes_hub_url: str | None = Field(
        None, description="WebSocket URL session pods reach the hub's /agent/ws at."
    )
    kubernetes_profiles: list[KubernetesProfile] = Field(
        default_factory=list,
        description="Session profiles users pick from (JSON list; none = one 'default').",
    )
    kubernetes_service_account: str = Field(
        "rsparkhub-session", description="Service account of session pods (no API token)."
    )
    kubernetes_session_uid: int = Field(
        1000,
        ge=1,
        description="uid and gid of session pods (and their Spark pods) whose user has no uid.",
    )
    kubernetes_user_volume_size: str | None = Field(
        None, description="Size of each user's package volume (PVC), e.g. 10Gi; None = none."
    )
    kubernetes_user_volume_storage_class: str | None = Field(
        None, description="Storage class of the user volumes (None = the cluster default)."
    )
    kubernetes_user_volume_access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = Field(
        "ReadWriteOnce", description="Access mode of the user volumes (ReadWriteMany: any node)."
    )
    kubernetes_environments_claim: str | None = Field(
        None,
        description="PersistentVolumeClaim mounted in the hub's pod at DATA_DIR/environments: "
        "the hub builds workspace environments there and session pods mount each read-only "
        "(subPath). None = Kubernetes sessions get no declared environments.",
    )
    kubernetes_max_session_age_s: int = Field(
        86400, ge=0, description="activeDeadlineSeconds of session pods (0 = no limit)."
    )
    kubernetes_image_pull_secrets: list[str] = Field(
        default_factory=list, description="Secrets for pulling session images (JSON list)."
    )
    kubernetes_start_failure_grace_s: float = Field(
        60, ge=0, description="How long a session pod may stay unschedulable before failing."
    )
    kubernetes_start_timeout_s: float = Field(
        600, gt=0, description="How long a session pod may take to connect (image pull included)."
    )
    kubernetes_credentials: Literal["auto", "in-cluster", "kubeconfig"] = Field(
        "auto", description="API credentials: in-cluster service account, else KUBECONFIG."
    )
    kubernetes_context: str | None = Field(
        None, description="kubeconfig context to use (default: the current one)."
    )

    # --- per-user PostgreSQL databases
    user_databases: Literal["embedded", "external", "off"] = Field(
        "embedded",
        description="Per-user PostgreSQL databases: embedded server, an external one, or off.",
    )
    user_databases_admin_url: SecretStr | None = Field(
        None,
        description="external: admin URL (superuser or CREATEROLE+CREATEDB) of the server.",
    )
    user_databases_bindir: Path | None = Field(
        None,
        description="embedded: directory of initdb/pg_ctl/postgres (default: found).",
    )

    # --- Spark (Spark Connect)
    spark: Literal["embedded", "external", "kubernetes", "off"] = Field(
        "embedded",
        description="Spark for sessions: an embedded Spark Connect server, an external one, "
        "one driver per session on Kubernetes, or off.",
    )
    spark_remote_url: str | None = Field(
        None, description="external: the Spark Connect URL (sc://HOST:PORT) sessions use."
    )
    spark_master: str = Field(
        "local[*]",
        description="embedded: each user's server's Spark master (local[N] on this machine).",
    )
    spark_driver_memory: str = Field(
        "1g", description="embedded: each user's server's driver memory (JVM heap), e.g. 2g."
    )
    spark_memory_mb: int = Field(
        3072,
        ge=0,
        description="embedded: memory limit of each user's server, its JVM, Python workers and "
        "/tmp included (0 = none); keep it above spark_driver_memory.",
    )
    spark_idle_timeout_s: float = Field(
        1800,
        gt=0,
        description="embedded: stop a user's server after this long with no live session of "
        "theirs and no Spark operation running.",
    )
    spark_class_archive_dir: Path | None = Field(
        None,
        description="embedded: where the class-data archive that speeds up server starts is "
        "kept (default DATA_DIR/spark/cds); made once per Java and pyspark install.",
    )
    spark_kubernetes_image: str = Field(
        "apache/spark:4.0.1",
        description="kubernetes: image of the Spark Connect driver and its executors.",
    )
    spark_kubernetes_driver_memory: str = Field(
        "2g", description="kubernetes: driver JVM heap per session, e.g. 2g."
    )
    spark_kubernetes_executor_memory: str = Field(
        "2g", description="kubernetes: executor JVM heap, e.g. 4g."
    )
    spark_kubernetes_executor_cores: int = Field(
        1, ge=1, description="kubernetes: cores per executor."
    )
    spark_kubernetes_max_executors: int = Field(
        4, ge=0, description="kubernetes: dynamic allocation's upper bound per driver."
    )
    spark_kubernetes_warehouse_dir: str = Field(
        "/opt/spark/work-dir/warehouse",
        description="kubernetes: base of the per-user warehouse (shared storage, e.g. s3a://…).",
    )
    spark_kubernetes_conf: dict[str, str] = Field(
        default_factory=dict,
        description="kubernetes: extra Spark settings for every driver (JSON object).",
    )
    spark_kubernetes_ui_url: str = Field(
        "http://{service}.{namespace}.svc:4040",
        description="kubernetes: where the hub reaches a driver's web UI ({service} and "
        "{namespace} are filled in).",
    )

    # --- first start
    admin_user: str = Field("admin", description="Name of the admin created on first start.")

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("session_pool_kernels", mode="after")
    @classmethod
    def _pool_kernels(cls, v: str) -> str:
        names = [x.strip() for x in v.split(",") if x.strip()]
        bad = [x for x in names if x not in ("r", "python", "bash")]
        if bad:
            raise ValueError(f"unknown kernel(s) {', '.join(bad)}: use r, python or bash")
        return ",".join(names)

    @model_validator(mode="after")
    def _external_needs_url(self) -> Settings:
        if self.user_databases == "external" and self.user_databases_admin_url is None:
            raise ValueError(
                "user_databases = 'external' needs user_databases_admin_url "
                "(postgresql://ADMIN:PASSWORD@HOST:PORT/postgres)"
            )
        if self.spark == "external" and not self.spark_remote_url:
            raise ValueError("spark = 'external' needs spark_remote_url (sc://HOST:PORT)")
        try:
            probe = self.spark_kubernetes_ui_url.format(service="s", namespace="n")
        except (KeyError, IndexError, ValueError):
            probe = ""
        if not probe.startswith(("http://", "https://")):
            raise ValueError(
                "spark_kubernetes_ui_url must be an http(s):// URL using only the "
                "placeholders {service} and {namespace}, e.g. "
                "http://{service}.{namespace}.svc:4040"
            )
        if self.spark == "kubernetes" and str(self.spawner) != "kubernetes":
            raise ValueError(
                "spark = 'kubernetes' needs spawner = 'kubernetes' (Spark drivers run next "
                "to the session pods in the hub's namespace)"
            )
        return self

    @model_validator(mode="after")
    def _build_uid_is_no_users(self) -> Settings:
        if self.session_uid_min <= self.environment_build_uid <= self.session_uid_max:
            raise ValueError(
                "environment_build_uid must lie outside session_uid_min..session_uid_max: "
                "a user whose uid it is could write into environments while they are built"
            )
        if self.r_repos is not None and not self.r_repos.startswith(
            ("https://", "http://", "file://")
        ):
            raise ValueError(
                "r_repos must be an http(s):// or file:// URL of a CRAN-like repository"
            )
        return self

    @model_validator(mode="after")
    def _kubernetes_spawner(self) -> Settings:
        check_profiles(self.kubernetes_profiles)
        if self.kubernetes_user_volume_size is not None:
            parse_quantity(self.kubernetes_user_volume_size)
        if self.kubernetes_hub_url is not None and not self.kubernetes_hub_url.startswith(
            ("ws://", "wss://")
        ):
            raise ValueError("kubernetes_hub_url must be a ws:// or wss:// URL")
        if self.spawner == "kubernetes":
            if not self.kubernetes_hub_url:
                raise ValueError(
                    "spawner = 'kubernetes' needs kubernetes_hub_url, the URL pods reach the "
                    "hub at (e.g. ws://rsparkhub-hub.rsparkhub.svc:8000/agent/ws)"
                )
            if not self.kubernetes_image and (
                not self.kubernetes_profiles or any(not p.image for p in self.kubernetes_profiles)
            ):
                raise ValueError(
                    "spawner = 'kubernetes' needs kubernetes_image (or an image in every profile)"
                )
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'rsparkhub.db'}"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


def _in_cluster_namespace() -> str | None:
    """The namespace of the pod the hub runs in (its service account's namespace file)."""
    try:
        return Path(_NAMESPACE_FILE).read_text().strip() or None
    except OSError:
        return None


_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the file named by RSPARKHUB_CONFIG (the CLI sets it for --config)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("RSPARKHUB_CONFIG")
        if not path:
            return {}
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        section = data.get("rsparkhub", data)
        return {k.replace("-", "_"): v for k, v in section.items()}


def load_settings(**overrides: Any) -> Settings:
    """Settings from env + config file, with explicit overrides (None values ignored)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
