"""Parse spec/requirements.md: the numbered requirements the suites check."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SPEC = Path(__file__).resolve().parents[2] / "spec" / "requirements.md"

_LINE = re.compile(
    r"^- \*\*(?P<id>[A-Z0-9]+(?:-[A-Z0-9]+)*-\d+)\*\* \((?P<level>MUST|SHOULD)\): "
    r"(?P<text>.+)$"
)
_LOOKS_LIKE = re.compile(r"^- \*\*[A-Z0-9]+-[A-Z0-9-]*\d+\*\*")


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str  # "MUST" or "SHOULD"
    text: str

    @property
    def test_prefix(self) -> str:
        """How the names of this requirement's tests start: ``test_gw_proxy_3_``."""
        return "test_" + self.id.lower().replace("-", "_") + "_"


def load_requirements(path: Path = SPEC) -> dict[str, Requirement]:
    """Every requirement in the spec, in document order; duplicate IDs are an error."""
    found: dict[str, Requirement] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = _LINE.match(line)
        if not match:
            if _LOOKS_LIKE.match(line):
                raise ValueError(f"{path.name}:{number}: requirement line not in the set format")
            continue
        req = Requirement(match["id"], match["level"], match["text"])
        if req.id in found:
            raise ValueError(f"{path.name}:{number}: duplicate requirement ID {req.id}")
        found[req.id] = req
    return found
