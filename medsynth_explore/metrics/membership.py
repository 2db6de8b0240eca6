"""Membership inference: can an attacker tell a generator's training images from images it never saw?

An attack gives every candidate image a score, higher meaning "more likely a
training image" (a member). Scored on known members and non-members, the
attack's ROC curve says how much the generator gives away: AUC 0.5 and a
true-positive rate of about 1% at a false-positive rate of 1% mean nothing
leaks; AUC 1 means every training image is recognised. The low-FPR number
matters most (Carlini et al. 2022, "Membership Inference Attacks From First
Principles"): an attack that confidently identifies a few patients is a
privacy problem even when its AUC is near 0.5.

Attacks
-------
``"distance"`` (any generator)
    A member's score is minus the distance, in feature space, to its nearest
    synthetic sample: a generator that copies or hugs its training images
    leaves synthetic samples closer to members than to non-members (the
    attack of Hilprecht et al. 2019 and the "DCR" check of tabular synthesis).
``"loss"`` (diffusion models and VAEs)
    The attacker can run the model. Diffusion: the image is noised to chosen
    timesteps ``t`` and the network's denoising error
    ``||eps_hat(x_t, t, c) - eps||^2`` is averaged over the timesteps and
    ``repeats`` noise draws (the same draws for the i-th member and the
    i-th non-member); a member's score is minus that error, since
    models denoise their training images better (the loss-threshold attacks
    on diffusion models of Matsumoto et al. 2023 and Carlini et al. 2023).
    VAE: minus the negative ELBO (reconstruction at the posterior mean plus
    the KL term). Conditions come from each image's metadata when it has them.

Intervals are percentile bootstraps over members and non-members resampled
separately.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import CapabilityError, MetricError
from ._validate import check_features

__all__ = ["membership_inference", "attack_roc", "roc_auc", "tpr_at_fpr", "distance_scores", "loss_scores", "ATTACKS"]

#: Attacks :func:`membership_inference` knows.
ATTACKS = ("distance", "loss")
#: Diffusion timesteps of the loss attack (of 1000), spread over the low-noise half where the error differs most.
DEFAULT_TIMESTEPS = (50, 100, 200, 300)


def roc_auc(member_scores: Any, non_member_scores: Any) -> float:
    """Area under the ROC curve: the chance that a random member outscores a random non-member (ties count half).

    Examples
    --------
    >>> roc_auc([3, 2], [1, 0]), roc_auc([1, 1], [1, 1])
    (1.0, 0.5)
    """
    from scipy.stats import rankdata

    m, n = np.asarray(member_scores, float), np.asarray(non_member_scores, float)
    ranks = rankdata(np.concatenate([m, n]))
    return float((ranks[: len(m)].sum() - len(m) * (len(m) + 1) / 2) / (len(m) * len(n)))


def tpr_at_fpr(member_scores: Any, non_member_scores: Any, fpr: float = 0.01) -> tuple[float, float]:
    """The largest true-positive rate whose false-positive rate is at most ``fpr``, and its score threshold.

    The attack calls "member" every image scoring at or above the threshold;
    thresholds run over the observed scores (as on a ROC curve).

    Returns
    -------
    (tpr, threshold)
        ``threshold`` is ``inf`` when no threshold keeps the false-positive
        rate low enough while calling anything a member (then ``tpr`` is 0).

    Examples
    --------
    >>> tpr_at_fpr([5, 4, 1], [3, 2, 0], fpr=0.0)
    (0.6666666666666666, 4.0)
    """
    m, n = np.asarray(member_scores, float), np.asarray(non_member_scores, float)
    values = np.unique(np.concatenate([m, n]))[::-1]  # candidate thresholds, high to low
    ms, ns = np.sort(m), np.sort(n)
    tp = len(m) - np.searchsorted(ms, values, side="left")  # members with score >= threshold
    fp = len(n) - np.searchsorted(ns, values, side="left")
    ok = fp <= fpr * len(n) + 1e-12
    if not ok.any():
        return 0.0, float("inf")
    j = int(np.flatnonzero(ok)[np.argmax(tp[ok])])
    return float(tp[j] / len(m)), float(values[j])


def attack_roc(
    member_scores: Any, non_member_scores: Any, n_boot: int = 1000, seed: int = 0, level: float = 0.95, fpr: float = 0.01
) -> dict:
    """AUC and TPR at a low FPR of attack scores, with percentile-bootstrap intervals.

    Parameters
    ----------
    member_scores, non_member_scores : array-like
        Attack scores (higher = "member") of known members and non-members.
    n_boot : int
        Bootstrap resamples (0: no intervals).
    fpr : float
        The false-positive rate of ``tpr_at_1pct_fpr`` (default 1%).

    Returns
    -------
    dict
        ``auc``, ``auc_low``, ``auc_high``, ``tpr_at_1pct_fpr``,
        ``tpr_at_1pct_fpr_low``, ``tpr_at_1pct_fpr_high``, ``threshold``,
        ``advantage`` (max over thresholds of TPR - FPR), ``n_members``,
        ``n_non_members``, ``level``, ``n_boot``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> r = attack_roc(rng.normal(1, 1, 500), rng.normal(0, 1, 500), n_boot=200)
    >>> 0.7 < r["auc"] < 0.8, r["auc_low"] < r["auc"] < r["auc_high"]
    (True, True)
    """
    m = np.asarray(member_scores, float).ravel()
    n = np.asarray(non_member_scores, float).ravel()
    for name, v in (("member", m), ("non-member", n)):
        if len(v) < 2:
            raise MetricError(f"membership inference needs at least 2 {name} images, got {len(v)}.")
        if not np.isfinite(v).all():
            raise MetricError(f"the {name} attack scores hold NaN or infinite values.")
    if not 0.0 <= fpr < 1.0:
        raise MetricError(f"fpr must lie in [0, 1), got {fpr}.")
    auc = roc_auc(m, n)
    tpr, thr = tpr_at_fpr(m, n, fpr)
    values = np.unique(np.concatenate([m, n]))
    adv = (len(m) - np.searchsorted(np.sort(m), values)) / len(m) - (len(n) - np.searchsorted(np.sort(n), values)) / len(n)
    out = {
        "auc": auc,
        "tpr_at_1pct_fpr": tpr,
        "threshold": thr,
        "advantage": float(max(adv.max(), 0.0)),
        "n_members": int(len(m)),
        "n_non_members": int(len(n)),
        "fpr": float(fpr),
        "level": float(level),
        "n_boot": int(n_boot),
    }
    if n_boot:
        rng = np.random.default_rng(seed)
        aucs, tprs = np.empty(n_boot), np.empty(n_boot)
        for b in range(n_boot):
            mb, nb = m[rng.integers(0, len(m), len(m))], n[rng.integers(0, len(n), len(n))]
            aucs[b], tprs[b] = roc_auc(mb, nb), tpr_at_fpr(mb, nb, fpr)[0]
        q = [(1 - level) / 2, (1 + level) / 2]
        out["auc_low"], out["auc_high"] = (float(v) for v in np.quantile(aucs, q))
        out["tpr_at_1pct_fpr_low"], out["tpr_at_1pct_fpr_high"] = (float(v) for v in np.quantile(tprs, q))
    else:
        out.update(auc_low=np.nan, auc_high=np.nan, tpr_at_1pct_fpr_low=np.nan, tpr_at_1pct_fpr_high=np.nan)
    return out


def _is_images(x: Any) -> bool:
    return hasattr(x, "images") or np.ndim(x) == 4


def _features(x: Any, encoder: Any, name: str) -> np.ndarray:
    if _is_images(x):
        from ..features import get_encoder

        enc = get_encoder(encoder) if encoder is None or isinstance(encoder, str) else encoder
        x = enc.encode(getattr(x, "images", x))
    return check_features(x, f"{name} features", min_n=1)


def distance_scores(synthetic: Any, members: Any, non_members: Any, encoder: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Distance-attack scores: minus each candidate's distance to its nearest synthetic sample.

    Images (ImageSets or (N, C, H, W) arrays) are encoded with ``encoder``
    (a name or an Encoder; default the package's default encoder); 2-D
    arrays are taken as features.

    Examples
    --------
    >>> s, m = distance_scores([[0.0], [10.0]], [[0.5]], [[4.0]])
    >>> s.tolist(), m.tolist()
    ([-0.5], [-4.0])
    """
    from .privacy import nn_distances

    syn = _features(synthetic, encoder, "synthetic")
    mem = _features(members, encoder, "member")
    non = _features(non_members, encoder, "non-member")
    if not (syn.shape[1] == mem.shape[1] == non.shape[1]):
        raise MetricError(
            f"feature dimensions differ: synthetic {syn.shape[1]}, members {mem.shape[1]}, non-members {non.shape[1]}."
        )
    return -nn_distances(mem, syn)[0], -nn_distances(non, syn)[0]


def _images_and_meta(x: Any, name: str):
    from ..data.imageset import as_image_array

    meta = getattr(x, "metadata", None)
    try:
        images = as_image_array(getattr(x, "images", x), f"{name} images")
    except Exception as exc:  # DataError: say it in the metric's words
        raise MetricError(f"the loss attack needs {name} images (N, C, H, W) in [0, 1]: {exc}") from exc
    return images, meta


def _condition_table(generator: Any, meta: Any, n: int, seed: int):
    """The generator's condition table for the candidates, from their metadata (unconditional without it)."""
    if meta is None:
        return None
    schema = generator.conditions
    cols = [c for c in meta.columns if c in set(schema.columns) | set(schema.finding_names)]
    if not cols:
        return None
    # the generator's own resolution of conditions (the one sampling uses), so the inputs match training
    return generator._resolve(n, generator.conditions.validate(meta[cols]), None, seed)


def _diffusion_loss(generator, images, meta, timesteps, repeats, seed, batch_size, progress):
    import torch
    from diffusers import DDPMScheduler

    from ..generators.base import image_seeds, randn_per_image

    cfg = generator.config
    bad = [t for t in timesteps if not (isinstance(t, (int, np.integer)) and 0 <= t < cfg.num_train_timesteps)]
    if bad or not len(timesteps):
        raise MetricError(f"timesteps must be whole numbers in 0..{cfg.num_train_timesteps - 1}, got {list(timesteps)}.")
    if images.shape[1:] != generator.image_shape:
        raise MetricError(f"images have shape {images.shape[1:]} but {generator.name} works on {generator.image_shape}.")
    n = len(images)
    table = _condition_table(generator, meta, n, seed)
    if table is not None:
        cond = generator._cond_inputs(table)
    else:  # no labels: the unconditional prediction (every condition group dropped, as in training)
        width = generator.net.cond[0].in_features
        cond = torch.zeros(n, width)
    sched = DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule, prediction_type=cfg.prediction_type
    )
    ac = sched.alphas_cumprod
    x0 = torch.from_numpy(images) * 2 - 1
    err = np.zeros(n)
    total, done = len(timesteps) * repeats * n, 0
    for r in range(repeats):
        noise_all = randn_per_image(image_seeds(seed, n, stream=100 + r), x0.shape[1:])
        for t in timesteps:
            a = ac[int(t)]
            for i in range(0, n, batch_size):
                xb, nb = x0[i : i + batch_size], noise_all[i : i + batch_size]
                xt = a.sqrt() * xb + (1 - a).sqrt() * nb
                tt = torch.full((len(xb),), int(t), dtype=torch.long)
                with torch.no_grad():
                    out = generator.net(xt, tt, cond[i : i + batch_size])
                eps = out if cfg.prediction_type == "epsilon" else a.sqrt() * out + (1 - a).sqrt() * xt
                err[i : i + len(xb)] += ((eps - nb) ** 2).flatten(1).mean(1).double().numpy()
                done += len(xb)
                progress(done, total)
    return -err / (len(timesteps) * repeats)


def _vae_loss(generator, images, meta, seed, batch_size, progress):
    import torch

    if images.shape[1:] != generator.image_shape:
        raise MetricError(f"images have shape {images.shape[1:]} but {generator.name} works on {generator.image_shape}.")
    n = len(images)
    table = _condition_table(generator, meta, n, seed)
    if table is None:
        raise MetricError(f"{generator.name} is conditional: the loss attack needs each image's conditions in its metadata.")
    cond = generator._cond(table)
    text = str((generator.card.get("training") or {}).get("likelihood", ""))
    found = re.search(r"sigma=([0-9.]+)", text)
    sigma = float(found.group(1)) if found else 0.2
    x = torch.from_numpy(images)
    out = np.empty(n)
    for i in range(0, n, batch_size):
        with torch.no_grad():
            mu, logvar = generator.net.encode(x[i : i + batch_size], cond[i : i + batch_size])
            recon = generator.net.decode(mu, cond[i : i + batch_size])
        rec = ((recon - x[i : i + batch_size]) ** 2).flatten(1).sum(1) / (2 * sigma**2)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        out[i : i + len(mu)] = -(rec + kl).double().numpy()
        progress(min(n, i + batch_size), n)
    return out


def loss_scores(
    generator: Any,
    members: Any,
    non_members: Any,
    timesteps: Sequence[int] = DEFAULT_TIMESTEPS,
    repeats: int = 2,
    seed: int = 0,
    batch_size: int = 64,
    callback: Callable[[int, int], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loss-attack scores: minus the model's own loss on each candidate (see the module notes)."""
    from ..generators.base import check_callback

    family = getattr(generator, "family", None)
    if family not in ("diffusion", "vae"):
        raise CapabilityError(
            f"the loss attack runs the model's own loss, which a {family or type(generator).__name__} model does not give; "
            "it needs a diffusion model or a VAE. Use attack='distance' for this generator."
        )
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise MetricError(f"repeats must be a positive whole number, got {repeats!r}.")
    mi, mm = _images_and_meta(members, "member")
    ni, nm = _images_and_meta(non_members, "non-member")
    total = len(mi) + len(ni)

    def part(offset, size):
        # progress of one half (members, then non-members) as images scored out of all candidates
        return lambda done, tot: check_callback(callback, offset + (done * size) // max(tot, 1), total, "membership attack")

    if family == "diffusion":
        s_m = _diffusion_loss(generator, mi, mm, list(timesteps), repeats, seed, batch_size, part(0, len(mi)))
        s_n = _diffusion_loss(generator, ni, nm, list(timesteps), repeats, seed, batch_size, part(len(mi), len(ni)))
    else:
        s_m = _vae_loss(generator, mi, mm, seed, batch_size, part(0, len(mi)))
        s_n = _vae_loss(generator, ni, nm, seed, batch_size, part(len(mi), len(ni)))
    return s_m, s_n


def membership_inference(
    synthetic: Any = None,
    members: Any = None,
    non_members: Any = None,
    attack: str = "distance",
    generator: Any = None,
    *,
    encoder: Any = None,
    timesteps: Sequence[int] = DEFAULT_TIMESTEPS,
    repeats: int = 2,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    batch_size: int = 64,
    callback: Callable[[int, int], Any] | None = None,
) -> dict:
    """Run a membership-inference attack and report how well it separates members from non-members.

    Parameters
    ----------
    synthetic : ImageSet, images or features
        The generator's samples (the distance attack; unused by the loss attack).
    members, non_members : ImageSet, images or features
        Images the generator was trained on (e.g. its training set rebuilt
        from its card) and comparable images it never saw (held-out patients
        from the same population). The loss attack needs images; it reads
        each image's conditions from an ImageSet's metadata.
    attack : {"distance", "loss"}
        See the module notes.
    generator : Generator
        The model under attack (required for ``"loss"``: a diffusion model or a VAE).
    encoder : str or Encoder, optional
        Features of the distance attack when images are given (default: the package default encoder).
    timesteps, repeats :
        Diffusion loss attack: noise levels (of 1000 training timesteps) and noise draws per image.
    n_boot, seed, level :
        Bootstrap of the intervals.
    callback : callable(done, total), optional
        Progress of the loss attack; returning ``False`` cancels.

    Returns
    -------
    dict
        As :func:`attack_roc` (``auc``, ``tpr_at_1pct_fpr`` and their
        ``_low`` / ``_high`` bounds, ``advantage``, counts), plus ``attack``,
        ``member_scores``, ``non_member_scores`` and ``settings``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> train, held = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    >>> copier = membership_inference(train + 1e-3, train, held, n_boot=100)
    >>> independent = membership_inference(rng.normal(size=(400, 8)), train, held, n_boot=100)
    >>> round(copier["auc"], 2), 0.4 < independent["auc"] < 0.6
    (1.0, True)
    """
    if attack not in ATTACKS:
        raise MetricError(f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}.")
    if members is None or non_members is None:
        raise MetricError("membership inference needs members= (training images) and non_members= (held-out images).")
    if attack == "distance":
        if synthetic is None:
            raise MetricError("the distance attack needs synthetic samples of the generator (synthetic=...).")
        s_m, s_n = distance_scores(synthetic, members, non_members, encoder)
        settings = {
            "encoder": getattr(encoder, "id", encoder) if encoder is not None else "default",
            "n_synthetic": int(len(getattr(synthetic, "images", synthetic))),
        }
    else:
        if generator is None:
            raise MetricError("the loss attack runs the model: pass generator=<its diffusion model or VAE>.")
        s_m, s_n = loss_scores(generator, members, non_members, timesteps, repeats, seed, batch_size, callback)
        settings = {"generator": generator.name, "checkpoint_sha256": generator.sha256}
        if generator.family == "diffusion":
            settings.update(timesteps=[int(t) for t in timesteps], repeats=int(repeats))
    out = attack_roc(s_m, s_n, n_boot=n_boot, seed=seed, level=level)
    out.update(attack=attack, member_scores=s_m, non_member_scores=s_n, settings=settings)
    return out
