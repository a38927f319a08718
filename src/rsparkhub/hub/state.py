"""The hub's process-wide state, built once by ``create_app``: settings, database, blob
store, workspace files, sessions, per-user databases, sandboxes, users' host identities and
the re-runs in progress. Routes reach it as ``request.app.state.hub``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rsparkhub.config import Settings
from rsparkhub.hub.blobs import BlobStore
from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.files import Files
from rsparkhub.hub.login_limits import LoginLimiter
from rsparkhub.hub.runs.rerun import Reruns

if TYPE_CHECKING:
    from rsparkhub.hub.collab import Collab
    from rsparkhub.hub.identities import Identities
    from rsparkhub.hub.sandbox import Sandboxes
    from rsparkhub.hub.sessions import Sessions
    from rsparkhub.hub.spark import SparkService
    from rsparkhub.hub.userdb import UserDatabases


@dataclass
class Hub:
    settings: Settings
    db: Database
    blobs: BlobStore
    files: Files
    collab: Collab  # shared documents: the editors' live text of workspace files
    sessions: Sessions
    userdb: UserDatabases
    spark: SparkService
    sandboxes: Sandboxes  # every process running a user's code starts through it
    identities: Identities  # each user's host uid
    login_limits: LoginLimiter  # failed password logins per account and address
    reruns: Reruns = field(default_factory=Reruns)  # re-runs in progress (hub/runs/rerun.py)
