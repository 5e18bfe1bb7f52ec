"""The gateway's users: a small JSON file of scrypt password hashes.

Add (or update) a user; without PASSWORD it is asked for:

    python -m users USERS_FILE USERNAME [PASSWORD]

The gateway reads the file once, at start-up.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

#: scrypt cost: 16 MiB and ~50 ms per hash.
_N, _R, _P = 2**14, 8, 1


@dataclass(frozen=True)
class User:
    id: int
    name: str
    salt: bytes
    digest: bytes


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)


#: Checked against for an unknown name, so it costs as long as a known one.
_NOBODY = User(0, "", b"\0" * 16, b"\0" * 32)


def verify(user: User | None, password: str) -> bool:
    """Whether ``password`` is ``user``'s (``None``: an unknown name, always False)."""
    target = user or _NOBODY
    matches = hmac.compare_digest(_hash(password, target.salt), target.digest)
    return matches and user is not None


def load(path: str | Path) -> dict[str, User]:
    """Every user of the file by name; no file means no users."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return {
        name: User(e["id"], name, bytes.fromhex(e["salt"]), bytes.fromhex(e["hash"]))
        for name, e in entries.items()
    }


def add(path: str | Path, name: str, password: str) -> User:
    """Add ``name`` (or give it a new password, keeping its id); the file is replaced whole."""
    users = load(path)
    known = users.get(name)
    user_id = known.id if known else max((u.id for u in users.values()), default=0) + 1
    salt = secrets.token_bytes(16)
    users[name] = User(user_id, name, salt, _hash(password, salt))
    entries = {
        u.name: {"id": u.id, "salt": u.salt.hex(), "hash": u.digest.hex()} for u in users.values()
    }
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        json.dump(entries, out, indent=2)
    os.replace(temporary, target)
    return users[name]


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or not argv[1]:
        print(__doc__, file=sys.stderr)
        return 2
    password = argv[2] if len(argv) == 3 else getpass.getpass(f"password for {argv[1]}: ")
    if not password:
        print("the password must not be empty", file=sys.stderr)
        return 2
    user = add(argv[0], argv[1], password)
    print(f"user {user.name} has id {user.id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
