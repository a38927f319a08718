"""What a completion request may hand to a kernel.

bash_kernel completes by pasting the word under the cursor, unquoted, into ``compgen``
commands it runs in the session's shell (``compgen -f WORD``): ``x$(touch f)``, a backtick,
``a&&cmd`` or ``-C cmd`` would run. Quoting would not be enough either: bash expands
``$var`` and ``$(…)`` in a directory name while completing it. So only a *plain* word
reaches the kernel — letters, digits and ``._/+,:@%~-`` (a path or a command name, not
starting with ``-``), or ``$NAME`` to complete a variable name — and anything else gets
no completions. This holds for every caller, editors included; viewers are refused by the
hub before any completion request reaches an agent.
"""

from __future__ import annotations

import re

# How bash_kernel (0.10) finds the word it completes: the text after the last separator.
_BASH_SEPARATORS = re.compile("[\t \n;=\"'><]+")
_PLAIN_WORD = re.compile(r"\$[A-Za-z0-9_]*|(?!-)[A-Za-z0-9._/+,:@%~-]*")


def bash_word(code: str, cursor_pos: int) -> str:
    """The word bash_kernel would complete for ``code`` with the cursor at ``cursor_pos``."""
    return _BASH_SEPARATORS.split(code[:cursor_pos])[-1]


def bash_completion_is_safe(code: str, cursor_pos: int) -> bool:
    """True when completing at ``cursor_pos`` runs nothing but ``compgen`` on a plain word."""
    return _PLAIN_WORD.fullmatch(bash_word(code, cursor_pos)) is not None
