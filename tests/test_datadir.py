"""The hub's data directory (hub/datadir.py): made private, except a volume's root the hub
does not own, whose mode only its owner may change (a Kubernetes volume with fsGroup: root's
directory, group-writable for the hub). Found by the hub Deployment on the lab cluster."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rsparkhub.hub import datadir


def test_the_hubs_own_data_dir_is_made_private(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir(mode=0o755)
    (d / "hub.db").write_text("x")
    (d / "hub.db").chmod(0o644)
    old = os.umask(0o022)
    try:
        datadir.make_private(d)
    finally:
        os.umask(old)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "hub.db").stat().st_mode) == 0o600


def test_a_volume_root_owned_by_another_account_keeps_its_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "data"
    d.mkdir()
    d.chmod(0o2775)  # as the kubelet leaves a volume's root for fsGroup
    other = d.stat().st_uid + 1
    monkeypatch.setattr(datadir.os, "geteuid", lambda: other)  # the hub is not its owner
    old = os.umask(0o022)
    try:
        datadir.make_private(d)  # no PermissionError from chmod
    finally:
        os.umask(old)
    assert stat.S_IMODE(d.stat().st_mode) == 0o2775
