"""rsparkhub: a multi-user data-science platform."""

__version__ = "0.1.0"
