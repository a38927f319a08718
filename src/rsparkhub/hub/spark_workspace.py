"""Whether a workspace uses Spark: its sessions then start Spark work at once, in the
background, instead of at the first Spark call (the user's embedded server, and in every
mode pyspark's import in the Python kernel: ``PRELOAD_ENV``, hub/spark.py).

Owns: the scan of a workspace's source files for Spark's names. Must not: change files.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rsparkhub.hub.spark import SparkHub

# What marks a workspace as using Spark: its source files mention it.
SPARK_WORDS = re.compile(rb"spark|rspark_", re.IGNORECASE)
SCAN_EXTENSIONS = (".py", ".r", ".rmd", ".qmd", ".ipynb", ".sql", ".md")
SCAN_MAX_FILES = 200
SCAN_MAX_BYTES = 1 << 20


async def workspace_uses_spark(hub: SparkHub, workspace_id: str) -> bool:
    """Whether a workspace's source files mention Spark (``spark``, ``SparkSession``,
    ``pyspark``, ``rspark_`` …): its sessions then start the user's server at once."""
    from rsparkhub.hub.files import list_files

    async with hub.db.session() as db:
        entries = await list_files(db, workspace_id)
    checked = 0
    for f in entries:
        if not f.path.lower().endswith(SCAN_EXTENSIONS) or f.size > SCAN_MAX_BYTES:
            continue
        if SPARK_WORDS.search(f.path.encode()):
            return True
        try:
            data = await hub.blobs.get(f.sha256)
        except (OSError, ValueError):
            continue
        if SPARK_WORDS.search(data):
            return True
        checked += 1
        if checked >= SCAN_MAX_FILES:
            break
    return False
