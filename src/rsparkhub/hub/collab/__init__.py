"""Shared documents: real-time co-editing of workspace text files (Yjs in the browser,
pycrdt in the hub). ``Collab`` (service.py) is the entry point; room.py one document,
log.py its update log, wire.py the socket's messages, textdiff.py the edits a file change
becomes."""

from rsparkhub.hub.collab.service import Collab

__all__ = ["Collab"]
