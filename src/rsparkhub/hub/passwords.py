"""The password policy: what a new password must be, checked wherever one is set (the
login page's "choose your password", a change, an admin, the CLI). It never sees stored
passwords and logs nothing.

A password is refused when it is shorter than ``MIN_LENGTH``; when it is one of the 20,000
most common passwords (``common-passwords.txt.gz``, shipped with the package: see
``common-passwords.NOTICE``), also once digits and symbols at its ends are taken off
("Monkey2024!" is "monkey"); when it contains the user's name; or when it is too simple
to guess slowly (fewer than ``MIN_DISTINCT`` different characters, or a run like "abcdefgh"
or "13579135"). Each refusal is a 400 ``weak_password`` with the rule in ``reason`` and a
sentence saying what to do instead.
"""

from __future__ import annotations

import gzip
import re
from functools import cache
from pathlib import Path

from rsparkhub.hub.errors import ApiError

MIN_LENGTH = 8
MAX_LENGTH = 1024
MIN_DISTINCT = 5
_LIST = Path(__file__).with_name("common-passwords.txt.gz")
_ENDS = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_ADVICE = "Choose a longer phrase of several unrelated words, e.g. 'lamp-orbit-tulip-42'."


@cache
def common_passwords() -> frozenset[str]:
    with gzip.open(_LIST, "rt", encoding="utf-8") as f:
        return frozenset(line.strip().lower() for line in f if line.strip())


def _refuse(reason: str, message: str) -> ApiError:
    return ApiError(400, "weak_password", message, reason=reason, min_length=MIN_LENGTH)


def _is_run(password: str) -> bool:
    """Characters with one constant step between neighbours: 'abcdefgh', '97531975'."""
    codes = [ord(c) for c in password.lower()]
    pairs = zip(codes, codes[1:], strict=False)
    steps = {(b - a) % 10 if chr(a).isdigit() else b - a for a, b in pairs}
    return len(steps) == 1


def check_password(password: str, user_name: str | None = None) -> None:
    """Raise a 400 ``weak_password`` ApiError unless ``password`` may be used."""
    if len(password) > MAX_LENGTH:
        raise ApiError(
            400, "invalid_password", f"Passwords are limited to {MAX_LENGTH} characters."
        )
    if len(password) < MIN_LENGTH:
        raise _refuse(
            "too_short",
            f"The password has {len(password)} characters; it needs at least {MIN_LENGTH}. "
            + _ADVICE,
        )
    lowered = password.lower()
    stem = _ENDS.sub("", lowered)
    common = common_passwords()
    if lowered in common or (len(stem) >= 4 and stem in common):
        raise _refuse(
            "common",
            "This password is on the list of the 20,000 most common passwords, which "
            "attackers try first. " + _ADVICE,
        )
    if user_name and len(user_name) >= 3 and user_name.lower() in lowered:
        raise _refuse("contains_name", "The password must not contain your user name. " + _ADVICE)
    if len(set(lowered)) < MIN_DISTINCT or _is_run(password):
        raise _refuse(
            "too_simple",
            f"The password is too simple to guess slowly: use at least {MIN_DISTINCT} "
            "different characters and no run like 'abcdefgh' or '12345678'. " + _ADVICE,
        )
