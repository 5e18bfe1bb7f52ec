"""The spec's metrics table (OPS-METRICS-1): parsed rows, and the README's copy of it."""

from __future__ import annotations

from pathlib import Path

from harness.requirements import ROOT, SPEC, Metric, metric_table


def _table_rows(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        line for line in lines if line.startswith("| `gateway_") or line.startswith("| `service_")
    ]


def test_the_spec_names_each_metric_once_with_a_type_and_bounded_labels() -> None:
    table = metric_table()
    names = [m.name for m in table]
    assert len(names) == len(set(names)), "a metric is named twice"
    assert {m.type for m in table} <= {"counter", "gauge", "histogram"}
    for metric in table:
        assert metric.name.startswith(("gateway_", "service_")), metric
        assert metric.name.endswith("_total") == (metric.type == "counter"), metric
        assert not {"user", "user_id", "path", "request_id", "session"} & set(metric.labels)


def test_a_row_gives_its_name_type_labels_and_the_names_of_its_samples(tmp_path: Path) -> None:
    spec = tmp_path / "requirements.md"
    spec.write_text(
        "| metric | type | labels | what |\n|---|---|---|---|\n"
        "| `gateway_x_total` | counter | `route`, `end` (`done`, `error`) | x |\n"
        "| `gateway_y_seconds` | histogram | | y |\n",
        encoding="utf-8",
    )
    x, y = metric_table(spec)
    assert x == Metric("gateway_x_total", "counter", ("route", "end"))
    assert (x.family, x.sample_names()) == ("gateway_x", {"gateway_x_total"})
    assert y.labels == ()
    assert y.sample_names() == {
        "gateway_y_seconds_bucket",
        "gateway_y_seconds_count",
        "gateway_y_seconds_sum",
    }


def test_the_readme_shows_the_spec_s_table_unchanged() -> None:
    assert _table_rows(ROOT / "README.md") == _table_rows(SPEC)
