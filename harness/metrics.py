"""A component's Prometheus metrics, read over HTTP (OPS-METRICS; the perf report's plot).

The text format is parsed by prometheus-client's own parser. A value is looked up by
sample name (``gateway_requests_total``, ``..._count``) and the labels a caller names;
labels it does not name are summed over (a ``pid`` label under several workers, a
route the caller does not care about).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Scrape:
    """One scrape: every family's type, and every sample."""

    types: Mapping[str, str]
    samples: tuple[Sample, ...]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def label_values(self, label: str) -> set[str]:
        """Every value ``label`` takes in this scrape, any metric."""
        return {s.labels[label] for s in self.samples if label in s.labels}


class MetricsUnavailable(Exception):
    """The URL did not answer 200 with the text format."""


def read_metrics(url: str, *, timeout: float = 5.0) -> Scrape:
    try:
        response = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise MetricsUnavailable(f"GET {url}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise MetricsUnavailable(f"GET {url}: {response.status_code} {response.text[:200]}")
    types: dict[str, str] = {}
    samples: list[Sample] = []
    for family in text_string_to_metric_families(response.text):
        types[family.name] = family.type
        samples.extend(family.samples)
    return Scrape(types, tuple(samples))
