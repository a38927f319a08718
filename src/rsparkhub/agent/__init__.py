"""The session agent: one process per running workspace session.

It links the session's Jupyter kernels (R, Python, bash) to the hub over a WebSocket.
Entry point: ``python -m rsparkhub.agent`` (see ``__main__``); the class is
``rsparkhub.agent.main.Agent``.
"""
