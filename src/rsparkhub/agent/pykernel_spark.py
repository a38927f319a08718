"""pyspark's Connect client imported in the background, in a session whose workspace uses
Spark (the hub sets ``RSPARKHUB_SPARK_PRELOAD``, hub/spark.py ``PRELOAD_ENV``): the import
(pandas, pyarrow, grpc, protobuf: ~0.5 s of a Spark workspace's first statement) runs
while the user reads their code, not when they first run it. Kernel-side code: the rules
of ``pykernel`` apply (stdlib only here, nothing printed).

A statement that imports pyspark while the thread is at it waits for the same modules (the
import system's per-module locks), so it is never slower than without. What the import
prints (pyspark's warnings) goes with the silent request that started the thread, which
nobody shows. Nothing else is started: no Spark session, no connection.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import warnings

PRELOAD_ENV = "RSPARKHUB_SPARK_PRELOAD"
PRELOADED = "pyspark.sql.connect.session"
_started: list[threading.Thread] = []


# PySpark 4.x warns at every import of its pandas paths that pandas >= 3 (what the install
# ships) "is not yet fully supported". The paths sessions use — createDataFrame from pandas,
# toPandas, pandas UDFs, applyInPandas — are tested with it (tests/test_spark.py), so that
# one warning is not shown in consoles; a workspace can pin pandas<3 in its environment.
PANDAS_WARNING = r"PySpark does not yet fully support pandas"


def quiet_pandas_warning() -> None:
    warnings.filterwarnings("ignore", message=PANDAS_WARNING, category=FutureWarning)


def _import() -> None:
    with contextlib.suppress(BaseException):  # a broken pyspark shows at the user's import
        importlib.import_module(PRELOADED)


def preload_spark() -> threading.Thread | None:
    """Start the background import when the session asks for it and it has not started;
    the thread, or None."""
    if os.environ.get(PRELOAD_ENV) != "1" or not os.environ.get("SPARK_REMOTE"):
        return None
    if _started or PRELOADED in sys.modules:
        return None
    thread = threading.Thread(target=_import, name="rsparkhub-spark-preload", daemon=True)
    _started.append(thread)
    thread.start()
    return thread
