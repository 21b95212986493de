"""Reading a ``/metrics`` answer in tests: every sample by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when absent (a counter not yet incremented)."""
    return found.get((name, frozenset(labels.items())), 0.0)


def route_value(found: Samples, name: str, suffix: str, **labels: str) -> float:
    """The sum over route templates ending in ``suffix`` (with the other labels as given)."""
    return sum(
        v
        for (n, got), v in found.items()
        if n == name and dict(got).get("route", "").endswith(suffix) and set(labels.items()) <= got
    )
