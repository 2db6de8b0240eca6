"""The visual Turing test: can a reader tell real from synthetic images?

A :class:`TuringStudy` shows a seeded, shuffled mix of real and synthetic
images one at a time and records each answer (``"real"`` or ``"synthetic"``,
optionally a confidence) to a JSON-lines file per reader, written as each
answer is given, so a class or a reader study can pool the files with
:func:`load_answers` and :func:`score_answers`.

"Positive" means synthetic: sensitivity is the share of synthetic images the
reader called synthetic, specificity the share of real images called real.
A reader who cannot tell them apart sits near 0.5 accuracy.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .data import ImageSet
from .errors import DataError

__all__ = ["TuringStudy", "load_answers", "score_answers", "proportion_ci"]

LABELS = ("real", "synthetic")


def proportion_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (scipy's ``binomtest``).

    Examples
    --------
    >>> lo, hi = proportion_ci(8, 10)
    >>> round(lo, 3), round(hi, 3)
    (0.49, 0.943)
    """
    if n == 0:
        return (float("nan"), float("nan"))
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


def _rate(hits: np.ndarray) -> dict:
    k, n = int(hits.sum()), int(hits.size)
    lo, hi = proportion_ci(k, n)
    return {"value": k / n if n else float("nan"), "ci_low": lo, "ci_high": hi, "n": n}


def score_answers(answers: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Accuracy, sensitivity and specificity with Wilson 95% intervals.

    Parameters
    ----------
    answers : DataFrame
        Columns ``truth`` and ``answer`` (each ``"real"`` or ``"synthetic"``)
        and any metadata columns to group by.
    by : str or list of str, optional
        Metadata column(s); rows are added per group (``group`` column).

    Returns
    -------
    DataFrame with columns group, measure, value, ci_low, ci_high, n.

    Examples
    --------
    >>> a = pd.DataFrame({"truth": ["real", "synthetic"] * 2, "answer": ["real", "real", "synthetic", "synthetic"]})
    >>> score_answers(a).set_index("measure")["value"].to_dict()
    {'accuracy': 0.5, 'sensitivity': 0.5, 'specificity': 0.5}
    """
    for col in ("truth", "answer"):
        if col not in answers.columns:
            raise DataError(f"answers need a {col!r} column; got {list(answers.columns)}.")
    bad = set(answers["truth"]).union(answers["answer"]) - set(LABELS)
    if bad:
        raise DataError(f"answers must be 'real' or 'synthetic'; found {sorted(map(str, bad))}.")
    by = [by] if isinstance(by, str) else list(by or [])
    missing = [c for c in by if c not in answers.columns]
    if missing:
        raise DataError(f"cannot group by {missing}: not in the answers' columns {list(answers.columns)}.")

    def measures(df: pd.DataFrame, group: str) -> list[dict]:
        correct = (df["truth"] == df["answer"]).to_numpy()
        syn = (df["truth"] == "synthetic").to_numpy()
        return [
            {"group": group, "measure": "accuracy", **_rate(correct)},
            {"group": group, "measure": "sensitivity", **_rate(correct[syn])},
            {"group": group, "measure": "specificity", **_rate(correct[~syn])},
        ]

    rows = measures(answers, "overall")
    for col in by:
        for value, df in answers.groupby(col, sort=True, dropna=False):
            rows += measures(df, f"{col}={value}")
    return pd.DataFrame(rows)


def load_answers(paths: Sequence[Any] | Any) -> pd.DataFrame:
    """Pool answer files (JSON lines written by :class:`TuringStudy`) into one table."""
    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        paths = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    rows = []
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise DataError(f"cannot read answer file {str(path)!r}: {exc}") from exc
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{str(path)!r} line {i} is not valid JSON: {exc}") from exc
    if not rows:
        raise DataError("no answers found in the given files.")
    return pd.DataFrame(rows)


class TuringStudy:
    """A seeded real-vs-synthetic reading session for one reader.

    Parameters
    ----------
    real, synthetic : ImageSet
        Images to draw from; ``n`` of the study's items come from each (fewer
        if a set is smaller).
    n : int
        Items per source.
    seed : int
        Seed of the draw and the order: the same seed gives every reader the
        same sequence.
    reader : str
        Reader name; answers go to ``<out_dir>/<reader>.jsonl``.
    out_dir : path-like, optional
        Folder of answer files; without it answers stay in memory.
    columns : list of str, optional
        Metadata columns copied into each answer (for per-subgroup results);
        default: those present in both sets among sex, age, site and findings.

    Examples
    --------
    >>> real = ImageSet(np.zeros((4, 1, 8, 8)), pd.DataFrame({"sex": list("FMFM")}))
    >>> syn = ImageSet(np.ones((4, 1, 8, 8)), pd.DataFrame({"sex": list("FFMM")}))
    >>> study = TuringStudy(real, syn, n=2, seed=0)
    >>> while not study.finished:
    ...     _ = study.answer("synthetic" if study.current_image().mean() > 0.5 else "real")
    >>> float(study.results().set_index("measure").loc["accuracy", "value"])
    1.0
    """

    def __init__(
        self,
        real: ImageSet,
        synthetic: ImageSet,
        n: int = 20,
        seed: int = 0,
        reader: str = "reader",
        out_dir: Any = None,
        columns: Sequence[str] | None = None,
    ) -> None:
        if n < 1:
            raise DataError(f"n must be at least 1, got {n}.")
        if len(real) == 0 or len(synthetic) == 0:
            raise DataError("a Turing test needs at least one real and one synthetic image.")
        if not str(reader).strip() or any(c in str(reader) for c in "/\\"):
            raise DataError(f"reader name {reader!r} must be non-empty and contain no path separators.")
        rng = np.random.default_rng(seed)
        if columns is None:
            wanted = ["sex", "age", "site", "cardiomegaly", "nodule", "effusion", "pneumothorax"]
            columns = [c for c in wanted if c in real.metadata.columns and c in synthetic.metadata.columns]
        self.columns = list(columns)
        items = []
        for source, data in (("real", real), ("synthetic", synthetic)):
            take = rng.choice(len(data), size=min(n, len(data)), replace=False)
            for i in take:
                row = {c: data.metadata.iloc[int(i)].get(c) for c in self.columns}
                items.append({"truth": source, "index": int(i), **row})
        order = rng.permutation(len(items))
        self.items = pd.DataFrame([items[i] for i in order]).reset_index(drop=True)
        self._sets = {"real": real, "synthetic": synthetic}
        self.seed, self.reader = seed, str(reader)
        self.path = Path(out_dir) / f"{self.reader}.jsonl" if out_dir is not None else None
        self.answers: list[dict] = []
        self.position = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():  # resume a reader's earlier session with the same seed
                done = [a for a in load_answers(self.path).to_dict("records") if a.get("seed") == seed]
                self.answers = done
                self.position = min(len(done), len(self.items))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def finished(self) -> bool:
        """Whether every item has been answered."""
        return self.position >= len(self.items)

    def current_image(self) -> np.ndarray:
        """The image to show now, float32 (C, H, W)."""
        if self.finished:
            raise DataError("the study is finished; see results().")
        item = self.items.iloc[self.position]
        return self._sets[item["truth"]].images[int(item["index"])]

    def answer(self, label: str, confidence: float | None = None) -> dict:
        """Record the answer for the current image and move on.

        Parameters
        ----------
        label : {"real", "synthetic"}
        confidence : float in [0, 1], optional
        """
        if label not in LABELS:
            raise DataError(f"answer must be 'real' or 'synthetic', got {label!r}.")
        if confidence is not None and not (0.0 <= float(confidence) <= 1.0):
            raise DataError(f"confidence must lie in [0, 1], got {confidence}.")
        if self.finished:
            raise DataError("the study is finished; no more answers are taken.")
        item = self.items.iloc[self.position].to_dict()
        record = {
            "reader": self.reader,
            "seed": self.seed,
            "item": self.position,
            "answer": label,
            "confidence": None if confidence is None else float(confidence),
            "time": time.time(),
            **{k: (v.item() if hasattr(v, "item") else v) for k, v in item.items()},
        }
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        self.answers.append(record)
        self.position += 1
        return record

    def results(self, by: Sequence[str] | None = None) -> pd.DataFrame:
        """Scores of the answers so far (see :func:`score_answers`)."""
        if not self.answers:
            raise DataError("no answers yet.")
        return score_answers(pd.DataFrame(self.answers), by=by)
