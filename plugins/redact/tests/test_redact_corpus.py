"""Recall and false-positive rate of the built-in detectors on a labeled corpus.

``redact_corpus.jsonl``: one JSON object a line. Positives carry the sensitive ``value`` and the
``placeholder`` expected in its place; a positive counts as found when the value is gone and
the placeholder is there. Negatives are look-alikes (UUIDs, hashes, timestamps, versions,
prices, invalid checksums ...): a negative is a false positive when anything in it changes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aperion_bus_redact import BUILTIN_DETECTORS, Redactor

CORPUS = Path(__file__).with_name("redact_corpus.jsonl")


def _load() -> list[dict[str, Any]]:
    with CORPUS.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


ENTRIES = _load()
POSITIVES = [e for e in ENTRIES if e["label"] == "positive"]
NEGATIVES = [e for e in ENTRIES if e["label"] == "negative"]


def _found(redactor: Redactor, entry: dict[str, Any]) -> bool:
    out = redactor.redact_text(entry["text"])
    return entry["value"] not in out and entry["placeholder"] in out


def test_corpus_is_large_and_covers_every_detector() -> None:
    assert len(POSITIVES) >= 150
    assert len(NEGATIVES) >= 150
    covered = Counter(e["category"] for e in POSITIVES)
    for det in BUILTIN_DETECTORS:
        assert covered[det.name] >= 3, f"corpus has fewer than 3 positives for {det.name}"


def test_recall_and_false_positive_rate(capsys: pytest.CaptureFixture[str]) -> None:
    redactor = Redactor()
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    missed: list[str] = []
    for e in POSITIVES:
        totals[e["category"]] += 1
        if _found(redactor, e):
            hits[e["category"]] += 1
        else:
            missed.append(f"{e['category']}: {e['text']!r} -> {redactor.redact_text(e['text'])!r}")
    fp_by_kind: Counter[str] = Counter()
    neg_totals: Counter[str] = Counter()
    false_pos: list[str] = []
    for e in NEGATIVES:
        neg_totals[e["category"]] += 1
        out = redactor.redact_text(e["text"])
        if out != e["text"]:
            fp_by_kind[e["category"]] += 1
            false_pos.append(f"{e['category']}: {e['text']!r} -> {out!r}")
    recall = sum(hits.values()) / len(POSITIVES)
    fp_rate = sum(fp_by_kind.values()) / len(NEGATIVES)
    with capsys.disabled():
        print(f"\nredact corpus: recall {recall:.1%} ({sum(hits.values())}/{len(POSITIVES)}), "
              f"false positives {fp_rate:.1%} ({sum(fp_by_kind.values())}/{len(NEGATIVES)})")
        for cat in sorted(totals):
            print(f"  {cat:<18} recall {hits[cat]}/{totals[cat]}")
        for kind in sorted(neg_totals):
            print(f"  {kind:<18} false positives {fp_by_kind[kind]}/{neg_totals[kind]}")
        for line in missed:
            print("  MISSED", line)
        for line in false_pos:
            print("  FALSE POSITIVE", line)
    assert recall >= 0.98, missed
    assert fp_rate <= 0.02, false_pos
