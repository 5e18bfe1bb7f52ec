"""Parse spec/requirements.md: the numbered requirements the suites check."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "spec" / "requirements.md"
#: The suites that name requirements with ``@pytest.mark.req``: the contract suites,
#: and the ones measured on their own (PERF-*, FUZZ-*, SOAK-*, CLUSTER-*; each its own nox session).
CONTRACT_SUITE = "contract_tests"
OWN_SUITES = ("perf_tests", "fuzz_tests", "soak_tests", "cluster_tests")
_MARKER = re.compile(r"""mark\.req\(([^)]*)\)""")
_ID = re.compile(r"""["']([A-Z0-9-]+-\d+)["']""")

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


def marked_ids(suites: tuple[str, ...] = (CONTRACT_SUITE, *OWN_SUITES)) -> dict[str, list[str]]:
    """Requirement IDs named by ``@pytest.mark.req(...)`` in the suites' test files, per file.

    A scan of the source rather than a collection, so it also sees suites
    that are not part of the current run.
    """
    found: dict[str, list[str]] = {}
    paths = sorted(p for suite in suites for p in (ROOT / suite).rglob("test_*.py"))
    for path in paths:
        for args in _MARKER.findall(path.read_text(encoding="utf-8")):
            for rid in _ID.findall(args):
                found.setdefault(rid, []).append(str(path.relative_to(ROOT)))
    return found


def own_suite(files: list[str]) -> str | None:
    """The separately run suite (``fuzz_tests``...) that holds all of ``files``, if one does."""
    suites = {file.split("/", 1)[0] for file in files}
    if len(suites) == 1 and (suite := suites.pop()) in OWN_SUITES:
        return suite
    return None


# -- the metrics table (spec/requirements.md, "The metrics"; OPS-METRICS-1) ----------------------
_METRIC_ROW = re.compile(
    r"^\| `(?P<name>[a-z_]+)` \| (?P<type>counter|gauge|histogram) \|(?P<labels>[^|]*)\|"
)
_LABEL = re.compile(r"`([a-z_]+)`(?: \(([^)]*)\))?")
#: OPS-METRICS-3: the values ``method`` may take.
METRIC_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"})


@dataclass(frozen=True)
class Metric:
    """One row of the spec's metrics table."""

    name: str
    type: str  # counter, gauge or histogram
    labels: tuple[str, ...]
    #: The values the table lists for a label (``end``: done, error, ...); open labels absent.
    values: Mapping[str, frozenset[str]] = field(default_factory=dict, compare=False)

    @property
    def family(self) -> str:
        """The name the text format's ``# TYPE`` line uses (a counter's without ``_total``)."""
        return self.name.removesuffix("_total") if self.type == "counter" else self.name

    def sample_names(self) -> frozenset[str]:
        """The names its samples carry in a scrape."""
        if self.type == "histogram":
            return frozenset(f"{self.name}_{part}" for part in ("bucket", "count", "sum"))
        return frozenset({self.name})


def metric_table(path: Path = SPEC) -> tuple[Metric, ...]:
    """Every metric the spec's table names, in table order."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := _METRIC_ROW.match(line):
            cells = _LABEL.findall(match["labels"])
            values = {
                label: frozenset(re.findall(r"`([a-z_]+)`", listed))
                for label, listed in cells
                if listed
            }
            labels = tuple(label for label, _ in cells)
            found.append(Metric(match["name"], match["type"], labels, values))
    return tuple(found)
