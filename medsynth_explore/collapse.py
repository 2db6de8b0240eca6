"""Model collapse across generations: a generator trained on its own samples, again and again.

Generation 0 is trained on real images. In the *self-consuming* chain each
later generation is trained on samples of the one before, drawn with the
conditions (age, sex, findings) of the real training set, so the labels stay
fixed and only the images are synthetic. In the *fresh-real* chain each
generation is trained on a new set of real images of the same size, which
separates what feeding a model its own output does from what retraining
alone does (the control of Shumailov et al. 2024, "AI models collapse when
trained on recursively generated data", and Alemohammad et al. 2024,
"Self-consuming generative models go MAD").

Every generation is measured the same way against held-out real images:
FID, precision, recall and coverage in the encoder's features, and
per-finding fidelity: the AUROC of the reference classifier's probability of
each finding against the finding requested (samples drawn with the held-out
set's conditions).

Examples
--------
>>> from medsynth_explore.phantom import simulate
>>> r = model_collapse(simulate(48, seed=0), simulate(32, seed=1), generations=1, epochs=1,
...                    train_kwargs={"width": 4, "latent_dim": 4}, encoder="pixels", n_eval=32)  # doctest: +SKIP
>>> r.table[["chain", "generation"]].values.tolist()  # doctest: +SKIP
[['self-consuming', 0], ['self-consuming', 1], ['fresh real', 1]]
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .errors import DataError

__all__ = ["CollapseResult", "model_collapse", "measure_generation", "COLLAPSE_METRICS"]

#: Distribution metrics measured per generation (from the metric registry).
COLLAPSE_METRICS = ("fid", "precision", "recall", "coverage")
_FINDINGS = ("cardiomegaly", "nodule", "effusion", "pneumothorax")


@dataclass
class CollapseResult:
    """Per-generation measurements of both chains.

    Attributes
    ----------
    table : DataFrame
        One row per (chain, generation): ``chain`` ("self-consuming" or
        "fresh real"; generation 0 is shared and listed once, under
        "self-consuming"), ``generation``, ``trained_on``, the values of
        :data:`COLLAPSE_METRICS`, ``auroc_<finding>`` and ``auroc_mean``,
        ``pixel_std`` (mean per-pixel standard deviation of the samples, a
        crude diversity measure), ``train_seconds`` and ``checkpoint_sha256``.
    settings : dict
        Sizes, epochs, seeds, encoder and trainer settings: the provenance of every number.
    checkpoints : dict
        (chain, generation) -> path, when ``out_dir`` was given.
    """

    table: pd.DataFrame
    settings: dict
    checkpoints: dict

    def pivot(self, value: str) -> pd.DataFrame:
        """One metric as generation x chain (generation 0 filled in for both chains).

        Examples
        --------
        >>> t = pd.DataFrame({"chain": ["self-consuming", "self-consuming", "fresh real"], "generation": [0, 1, 1],
        ...                   "fid": [1.0, 2.0, 1.1]})
        >>> CollapseResult(t, {}, {}).pivot("fid").values.tolist()
        [[1.0, 1.0], [1.1, 2.0]]
        """
        t = self.table
        zero = t[t["generation"] == 0]
        both = pd.concat([t, zero.assign(chain="fresh real")]) if "fresh real" in set(t["chain"]) else t
        return both.pivot_table(index="generation", columns="chain", values=value).sort_index(axis=1)


def _conditions(meta: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("age", "sex", *_FINDINGS) if c in meta.columns]
    missing = {"age", "sex"} - set(cols)
    if missing:
        raise DataError(f"the training set lacks the condition columns {sorted(missing)}.")
    return meta[cols].reset_index(drop=True)


def measure_generation(
    generator: Any, heldout: Any, encoder: Any, judge: Any, held_features: np.ndarray, n_eval: int, seed: int, k: int = 5
) -> dict:
    """Distribution metrics and per-finding AUROC of one generator against held-out real images.

    The samples are drawn with the conditions of the first ``n_eval`` held-out images.
    """
    from sklearn.metrics import roc_auc_score

    from .metrics.registry import compute_metrics

    cond = _conditions(heldout.metadata.iloc[:n_eval])
    out = generator.sample(len(cond), conditions=cond, seed=seed)
    feats = encoder.encode(out.images)
    kk = int(min(k, len(feats) - 1, len(held_features) - 1))
    row = compute_metrics(COLLAPSE_METRICS, held_features, feats, seed=seed, k=kk)
    if judge is not None:
        seen = judge.predict(out.images)
        aucs = []
        for f in _FINDINGS:
            y = out.metadata[f].to_numpy() if f in out.metadata else None
            if y is None or not 0 < y.sum() < len(y):
                row[f"auroc_{f}"] = float("nan")
                continue
            row[f"auroc_{f}"] = float(roc_auc_score(y, seen[f"p_{f}"]))
            aucs.append(row[f"auroc_{f}"])
        row["auroc_mean"] = float(np.mean(aucs)) if aucs else float("nan")
    row["pixel_std"] = float(out.images.std(0).mean())
    return row


def model_collapse(
    real_train: Any,
    heldout: Any,
    generations: int = 5,
    epochs: int = 4,
    *,
    fresh_real: Callable[[int], Any] | None = None,
    trainer: Callable | None = None,
    train_kwargs: Mapping[str, Any] | None = None,
    encoder: Any = None,
    judge: Any = "reference",
    n_eval: int = 512,
    seed: int = 0,
    out_dir: Any = None,
    log: Callable[[str], Any] | None = None,
    callback: Callable[[int, int], Any] | None = None,
) -> CollapseResult:
    """Train a generator on its own samples for several generations, beside a chain trained on fresh real data.

    Parameters
    ----------
    real_train : ImageSet
        Real training images with ``age``, ``sex`` and finding columns
        (e.g. the PhantomCXR train split).
    heldout : ImageSet
        Real images no generation sees, for the measurements.
    generations : int
        Generations after generation 0 (at least 1).
    epochs : int
        Training epochs of every generation.
    fresh_real : callable(generation) -> ImageSet, optional
        Fresh real training data of the fresh-real chain; default: PhantomCXR
        patients simulated from the training set's population with seed
        ``seed + 1000 + generation``, as many as ``real_train`` has. ``None``
        with non-PhantomCXR data: pass it, or the chain is skipped.
    trainer : callable, optional
        ``trainer(data, out, epochs=..., seed=..., **train_kwargs) -> (generator, card)``;
        default :func:`~medsynth_explore.generators.vae.train_vae`.
    encoder : str or Encoder, optional
        Features of FID / precision / recall / coverage (default: the package default).
    judge : "reference", None or an object with ``predict``
        The classifier of per-finding fidelity (default the shipped reference classifier).
    n_eval : int
        Samples measured per generation (at most the held-out size).
    out_dir : path, optional
        Keep every generation's checkpoint there (else a temporary folder).
    log, callback :
        One line per generation; ``callback(done, total)`` after each
        trained generation (returning ``False`` cancels).

    Returns
    -------
    CollapseResult
    """
    from .features import get_encoder
    from .generators.base import check_callback

    if isinstance(generations, bool) or not isinstance(generations, (int, np.integer)) or generations < 1:
        raise DataError(f"generations must be a whole number >= 1, got {generations!r}.")
    if trainer is None:
        from .generators.vae import train_vae as trainer
    kwargs = dict(train_kwargs or {})
    enc = get_encoder(encoder) if encoder is None or isinstance(encoder, str) else encoder
    if isinstance(judge, str) and judge == "reference":
        from .features.reference_classifier import ReferenceClassifier

        judge = ReferenceClassifier()
    n_eval = int(min(n_eval, len(heldout)))
    if n_eval < 8:
        raise DataError(f"the held-out set needs at least 8 images to measure a generation, got {len(heldout)}.")
    if fresh_real is None and real_train.provenance.get("source") == "phantomcxr":
        fresh_real = _phantom_fresh(real_train, seed)
    held_f = enc.encode(heldout.images[:n_eval])
    cond = _conditions(real_train.metadata)
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="medsynth-collapse-")
        folder = Path(tmp.name)
    else:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
    total = 1 + generations * (2 if fresh_real is not None else 1)
    done = 0
    rows, checkpoints = [], {}

    def train(data, chain, g):
        nonlocal done
        path = folder / f"{chain.replace(' ', '-')}-gen{g}.safetensors"
        t0 = time.perf_counter()
        gen, card = trainer(data, path, epochs=epochs, seed=seed + g, **kwargs)
        seconds = time.perf_counter() - t0
        row = {"chain": chain, "generation": g, "trained_on": _source(data, chain, g)}
        row.update(measure_generation(gen, heldout, enc, judge, held_f, n_eval, seed=seed + 500))
        row.update(train_seconds=round(seconds, 1), checkpoint_sha256=card.get("sha256"))
        rows.append(row)
        if out_dir is not None:
            checkpoints[(chain, g)] = str(path)
        done += 1
        if log is not None:
            log(
                f"{chain} generation {g}: fid {row['fid']:.4g}, recall {row['recall']:.3f}, coverage {row['coverage']:.3f}, "
                f"AUROC {row.get('auroc_mean', float('nan')):.3f} ({seconds:.0f} s)"
            )
        check_callback(callback, done, total, "model collapse")
        return gen

    try:
        check_callback(callback, 0, total, "model collapse")
        current = train(real_train, "self-consuming", 0)
        for g in range(1, generations + 1):
            synthetic = current.sample(len(cond), conditions=cond, seed=seed + 100 + g)
            current = train(synthetic, "self-consuming", g)
        if fresh_real is not None:
            for g in range(1, generations + 1):
                train(fresh_real(g), "fresh real", g)
    finally:
        if tmp is not None:
            tmp.cleanup()
    settings = {
        "generations": int(generations),
        "epochs": int(epochs),
        "n_train": int(len(real_train)),
        "n_eval": n_eval,
        "seed": int(seed),
        "encoder": getattr(enc, "id", str(enc)),
        "judge": getattr(judge, "path", None) if judge is not None else None,
        "trainer": f"{trainer.__module__}.{trainer.__name__}",
        "train_kwargs": {k: v for k, v in kwargs.items()},
        "real_train_content_hash": real_train.content_hash,
        "heldout_content_hash": heldout.content_hash,
        "fresh_real": "PhantomCXR simulated, seed + 1000 + generation" if fresh_real is not None else None,
        "conditions": "every self-consuming generation is sampled with the real training set's conditions",
    }
    return CollapseResult(pd.DataFrame(rows), settings, checkpoints)


def _source(data: Any, chain: str, g: int) -> str:
    if g == 0:
        return "real"
    return "samples of generation " + str(g - 1) if chain == "self-consuming" else "fresh real"


def _phantom_fresh(real_train: Any, seed: int) -> Callable[[int], Any]:
    from .phantom import Population, simulate

    pop = Population.from_dict(real_train.provenance.get("population")) if real_train.provenance.get("population") else None
    size = int(real_train.images.shape[-1])

    def fresh(g: int):
        return simulate(len(real_train), seed=seed + 1000 + g, size=size, population=pop)

    return fresh
