"""The ``medsynth`` command line.

Every command is a thin layer over a Python function of the package, so what
the command line does can also be done (and tested) from Python.

Examples
--------
``medsynth simulate --n 500 --size 64 --seed 0 --out data/phantom``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .errors import DataError, MedsynthError

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str):
    """Register a sub-command: the decorated function fills its parser; ``run`` executes it."""

    def wrap(add_arguments):
        def register(run):
            COMMANDS[name] = (help, add_arguments, run)
            return run

        add_arguments.register = register
        return add_arguments

    return wrap


# --------------------------------------------------------------------------- simulate
@command("simulate", "simulate PhantomCXR chest radiographs into a folder")
def _simulate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (32-256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--population", type=Path, help="JSON file with a Population spec")
    p.add_argument("--out", type=Path, required=True, help="output folder (PNG-16 images, metadata.csv, provenance.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty folder")


@_simulate_args.register
def _simulate(a: argparse.Namespace) -> int:
    from .phantom import Population, simulate

    population = None
    if a.population is not None:
        try:
            population = Population.from_dict(json.loads(Path(a.population).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise MedsynthError(f"cannot read population spec {str(a.population)!r}: {exc}") from exc
    ds = simulate(a.n, seed=a.seed, size=a.size, population=population)
    out = ds.to_folder(a.out, overwrite=a.overwrite)
    print(f"wrote {len(ds)} images of {a.size}x{a.size} to {out}")
    return 0


# --------------------------------------------------------------------------- helpers
def _progress(desc: str):
    """A ``callback(done, total)`` that drives a tqdm bar on stderr."""
    from tqdm.auto import tqdm

    bar = {"bar": None}

    def callback(done: int, total: int) -> bool:
        if bar["bar"] is None:
            bar["bar"] = tqdm(total=total, desc=desc, unit="it", leave=False)
        bar["bar"].n = done
        bar["bar"].refresh()
        if done >= total:
            bar["bar"].close()
        return True

    return callback


class _TrainingProgress:
    """Progress of a training run on stderr, the same for every trainer.

    Pass the object as the trainer's ``callback`` (``(done, total)``) and its
    :meth:`log` as the trainer's ``log``. The trainer's lines (one per epoch,
    or every 50 steps, with the loss) are printed at most once every
    ``every_s`` seconds; the first line and the line at the last step always.

    Examples
    --------
    >>> p = _TrainingProgress("training vae", every_s=30, clock=lambda: 0.0)
    >>> p(3, 3)  # never cancels
    True
    """

    def __init__(self, desc: str, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.desc, self.every_s, self.clock = desc, float(every_s), clock
        self.done = self.total = 0
        self._printed_at: float | None = None

    def __call__(self, done: int, total: int) -> bool:
        self.done, self.total = done, total
        return True

    def log(self, line: str) -> None:
        now = self.clock()
        if self._printed_at is None or now - self._printed_at >= self.every_s or self.done >= self.total:
            self._printed_at = now
            print(f"{self.desc}: {line}", file=sys.stderr, flush=True)


def _json_arg(text: str | None, what: str):
    if text is None:
        return None
    path = Path(text)
    try:
        return json.loads(path.read_text() if path.suffix == ".json" and path.exists() else text)
    except json.JSONDecodeError as exc:
        raise MedsynthError(
            f'{what} must be JSON (or a .json file), e.g. \'{{"age": 70, "findings": ["effusion"]}}\': {exc}'
        ) from exc


# --------------------------------------------------------------------------- train
TRAINERS = {
    "vae": "medsynth_explore.generators.vae:train_vae",
    "gan": "medsynth_explore.generators.gan:train_gan",
    "diffusion": "medsynth_explore.generators.diffusion:train_diffusion",
    "clip": "medsynth_explore.features.domain_clip:train_clip",
    "classifier": "medsynth_explore.features.reference_classifier:train_reference_classifier",
    "segmenter": "medsynth_explore.anatomy.training:train_segmenter",
}


#: Options of ``medsynth train`` that only some models take: option -> (attribute, models).
_MODEL_OPTIONS = {
    "--init-from": ("init_from", ("diffusion", "gan")),
    "--mismatch-weight": ("mismatch_weight", ("gan",)),
    "--lesion-weights": ("lesion_weights", ("diffusion",)),
    "--lr": ("lr", ("diffusion",)),
    "--clip": ("clip", ("diffusion",)),
}


@command("train", "train a model on a data set (reproduces the shipped checkpoints)")
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=sorted(TRAINERS), required=True)
    p.add_argument("--data", required=True, help="a data folder, a .npz, or 'phantomcxr'")
    p.add_argument("--n", type=int, default=6000, help="images to simulate when --data is phantomcxr")
    p.add_argument(
        "--split",
        choices=["train", "val", "test"],
        help="train on one part of the patient-wise 70/15/15 split (seed 0), as the shipped VAE and GAN were",
    )
    p.add_argument("--out", type=Path, required=True, help="output .safetensors file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="training epochs (vae, gan, clip, classifier, segmenter)")
    p.add_argument("--batch-size", type=int, help="images per training step (default: the trainer's own)")
    p.add_argument(
        "--minutes",
        type=float,
        help="wall-clock budget in minutes: training stops after the epoch (diffusion: the step) "
        "that passes it (default: none; diffusion 40)",
    )
    p.add_argument("--clip", type=Path, help="domain CLIP checkpoint for the diffusion model's text encoder")
    p.add_argument(
        "--init-from",
        help="diffusion, gan: start from this checkpoint's weights (a path or built-in name); the card records the earlier run",
    )
    p.add_argument(
        "--mismatch-weight", type=float, help="gan: weight of real images with shuffled conditions as negatives (default 0.5)"
    )
    p.add_argument(
        "--lesion-weights",
        help="diffusion: extra loss weight on simulator finding masks, e.g. nodule=30,effusion=8 (needs PhantomCXR metadata)",
    )
    p.add_argument("--lr", type=float, help="learning rate (diffusion)")


def _parse_weights(text: str) -> dict:
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            if not name.strip():
                raise ValueError
            out[name.strip()] = float(value)  # float("") when "=" is missing
        except ValueError:
            raise DataError(f"--lesion-weights wants name=number pairs such as nodule=30,effusion=8; got {part!r}.") from None
    return out


def _check_model_options(a: argparse.Namespace) -> None:
    wrong: dict[tuple, list] = {}
    for option, (attr, models) in _MODEL_OPTIONS.items():
        if getattr(a, attr) is not None and a.model not in models:
            wrong.setdefault(models, []).append(option)
    for models, options in wrong.items():
        names = options[0] if len(options) == 1 else ", ".join(options[:-1]) + " and " + options[-1]
        verb = "applies" if len(options) == 1 else "apply"
        raise DataError(f"{names} {verb} to --model {' or '.join(models)} only; got --model {a.model}.")
    if a.model == "diffusion" and a.epochs is not None:
        raise DataError("--epochs does not apply to --model diffusion: it trains in steps until --minutes run out.")
    if a.batch_size is not None and a.batch_size < 1:
        raise DataError(f"--batch-size must be a positive number of images, got {a.batch_size}.")


def _training_data(a: argparse.Namespace):
    from .data import load_dataset

    data = load_dataset(a.data, n=a.n) if str(a.data).lower() == "phantomcxr" else load_dataset(a.data)
    return data.split((0.7, 0.15, 0.15), seed=0)[a.split] if a.split else data


def _trainer_kwargs(a: argparse.Namespace, data) -> dict:
    """Keyword arguments of the trainer from the command line (everything but data, out and progress)."""
    kwargs: dict = {"seed": a.seed}
    for attr, key in (
        ("epochs", "epochs"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("mismatch_weight", "mismatch_weight"),
        ("clip", "clip_path"),
    ):
        if getattr(a, attr) is not None:
            kwargs[key] = getattr(a, attr)
    if a.minutes is not None:
        kwargs["max_seconds"] = 60.0 * a.minutes
    if a.init_from:
        from .generators import load_generator

        kwargs["init_from"] = load_generator(a.init_from)
        if kwargs["init_from"].card.get("family") != a.model:
            raise DataError(
                f"--init-from wants a {a.model} checkpoint; {a.init_from} is a {kwargs['init_from'].card.get('family')} model."
            )
    if a.lesion_weights:
        from .generators.diffusion import DiffusionConfig
        from .phantom import lesion_weights

        need = [c for c in ("anatomy_seed", "nodule", "effusion") if c not in data.metadata.columns]
        if need:
            raise DataError(
                f"--lesion-weights needs PhantomCXR patient metadata (the simulator re-draws the masks); {a.data} lacks {need}."
            )
        kwargs["pixel_weights"] = lesion_weights(
            data.metadata, size=DiffusionConfig().image_size, weights=_parse_weights(a.lesion_weights)
        )
    return kwargs


@_train_args.register
def _train(a: argparse.Namespace) -> int:
    import importlib

    _check_model_options(a)
    data = _training_data(a)
    module, name = TRAINERS[a.model].split(":")
    trainer = getattr(importlib.import_module(module), name)
    kwargs = _trainer_kwargs(a, data)
    progress = _TrainingProgress(f"training {a.model}")
    _, card = trainer(data, a.out, callback=progress, log=progress.log, **kwargs)
    training = card.get("training") or {}
    seconds = training.get("seconds", training.get("time_seconds"))
    print(
        f"wrote {a.out} ({a.model}, {len(data)} images"
        + (f", {seconds:.1f} s" if seconds else "")
        + f"), sha256 {card['sha256']}"
    )
    return 0


# --------------------------------------------------------------------------- evaluate
@command("evaluate", "compare a synthetic data set with a real one (FID, KID, PRDC, per subgroup)")
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--real", required=True, help="real images: a folder, a .npz, or 'phantomcxr'")
    p.add_argument("--synthetic", required=True, help="synthetic images: a folder (e.g. written by medsynth generate)")
    p.add_argument("--train", help="the generator's training images, for privacy metrics")
    p.add_argument("--encoder", help="feature encoder, e.g. phantomcxr-clip, pixels, inception")
    p.add_argument("--metrics", help="comma-separated metric names")
    p.add_argument("--by", help="comma-separated metadata columns for per-subgroup results, e.g. sex,age_group")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="report file (.json; an .html twin is written too)")
    p.add_argument(
        "--layout", help="layout of the real data when it cannot be told from the files: chexpert, mimic-cxr-jpg, nih-cxr14, ..."
    )
    p.add_argument("--size", type=int, help="resize every image of the real and training data on load (pixels, square)")
    p.add_argument("--aspect", choices=["crop", "pad", "stretch"], default="crop", help="how --size treats other aspect ratios")
    p.add_argument(
        "--on-error", choices=["raise", "skip"], default="raise", help="unreadable real image files: stop, or leave them out"
    )
    p.add_argument("--uncertain", choices=["ignore", "ones", "zeros"], default="ignore", help="CheXpert / MIMIC uncertain labels")


def _load_side(source: str, a: argparse.Namespace, real: bool):
    """A data set for ``medsynth evaluate``: folders come back file-backed when large and stream through the encoder."""
    from .data import load_dataset
    from .data.registry import is_registered

    if is_registered(source) or not real:
        return load_dataset(source)
    kwargs: dict = {"on_error": a.on_error}
    if a.size is not None:
        kwargs.update(size=a.size, aspect=a.aspect)
    if a.layout:
        kwargs["layout"] = a.layout
    if a.uncertain != "ignore":
        kwargs["uncertain"] = a.uncertain
    return load_dataset(source, **kwargs)


@_evaluate_args.register
def _evaluate(a: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .threads import streaming_threads

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    real = _load_side(a.real, a, real=True)
    synthetic = _load_side(a.synthetic, a, real=False)
    train = _load_side(a.train, a, real=True) if a.train else None
    streamed = [s for s in (real, synthetic, train) if getattr(s, "file_backed", False)]
    with streaming_threads() if streamed else contextlib.nullcontext() as torch_threads:
        if torch_threads is not None:  # this process is ours: the decoding threads get the cores torch does not use
            print(f"streaming {sum(len(s) for s in streamed):,} images from disk: torch on {torch_threads} thread(s)")
        report = evaluate(real, synthetic, encoder=a.encoder, metrics=split(a.metrics), by=split(a.by), seed=a.seed, train=train)
    if real.provenance.get("skipped"):
        print(f"left out {len(real.provenance['skipped'])} unreadable real image file(s); see the report's provenance")
    report.to_json(a.out)
    report.to_html(a.out.with_suffix(".html"))
    print(report.table.to_string(index=False, max_rows=40))
    print(f"wrote {a.out} and {a.out.with_suffix('.html')}")
    return 0


# --------------------------------------------------------------------------- generate / verify
@command("generate", "draw a synthetic data set from a generator, with provenance")
def _generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="built-in name (phantomcxr-diffusion, -vae, -gan, -physics) or checkpoint path")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--conditions", help='JSON, e.g. \'{"sex": "F", "findings": ["effusion"]}\'')
    p.add_argument("--prompt", help="free-text prompt (text-conditioned models)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--npz", action="store_true", help="also write NPZ shards")
    p.add_argument("--scheduler", help="Dask scheduler address; local without it")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--sign-cert", type=Path, help="PEM certificate chain (signing certificate first): sign every image (C2PA)")
    p.add_argument("--sign-key", type=Path, help="PEM private key of the signing certificate (with --sign-cert)")
    p.add_argument("--tsa-url", help="time-stamp authority for C2PA signing (needs the network; none by default)")
    p.add_argument("--no-watermark", action="store_true", help="do not embed the invisible watermark")
    p.add_argument("--watermark-key", help="watermark key (default: the public key, readable by anyone)")


def _signer(a: argparse.Namespace):
    if (a.sign_cert is None) != (a.sign_key is None):
        raise DataError("--sign-cert and --sign-key go together: give the certificate chain and its private key.")
    if a.sign_cert is None:
        if a.tsa_url:
            raise DataError("--tsa-url applies to C2PA signing only; give --sign-cert and --sign-key too.")
        return None
    from .provenance import C2PASigner

    return C2PASigner.from_files(a.sign_cert, a.sign_key, tsa_url=a.tsa_url)


@_generate_args.register
def _generate(a: argparse.Namespace) -> int:
    from .export import export

    out = export(
        a.checkpoint,
        a.n,
        a.out,
        conditions=_json_arg(a.conditions, "--conditions"),
        prompt=a.prompt,
        seed=a.seed,
        steps=a.steps,
        guidance=a.guidance,
        shard_size=a.shard_size,
        npz=a.npz,
        client=a.scheduler,
        callback=_progress("generating"),
        overwrite=a.overwrite,
        watermark=not a.no_watermark,
        **({"watermark_key": a.watermark_key} if a.watermark_key else {}),
        signer=_signer(a),
    )
    from .export import read_manifest

    prov = read_manifest(out).get("provenance", {})
    wm, c2 = prov.get("watermark", {}), prov.get("c2pa", {})
    marks = ["watermarked" if wm.get("embedded") else f"no watermark ({wm.get('reason', 'not embedded')})"]
    marks.append(f"C2PA-signed by {c2['signer']['subject']}" if c2.get("signed") else "not C2PA-signed")
    print(f"wrote {a.n} images to {out}: " + ", ".join(marks))
    return 0


@command("verify", "check an exported data set against its manifest (hashes, counts, AI labels, C2PA, watermark)")
def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", type=Path)
    p.add_argument("--per-file", action="store_true", help="print one line per image: bytes, label, C2PA, watermark")
    p.add_argument("--watermark", action="store_true", help="also read every image's watermark")
    p.add_argument("--watermark-key", help="the key the export was marked with (default: the public key)")
    p.add_argument("--trust-anchors", type=Path, help="PEM root certificate(s): signers must chain to them")


def _read_anchors(path: Path | None):
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the trust anchors {str(path)!r}: {exc}") from exc


@_verify_args.register
def _verify(a: argparse.Namespace) -> int:
    from .export import verify

    kw = {"watermark_key": a.watermark_key} if a.watermark_key else {}
    result = verify(a.folder, check_watermark=a.watermark, trust_anchors=_read_anchors(a.trust_anchors), **kw)
    print(result)
    if a.per_file:
        table = result.table()
        if len(table):
            print(table.to_string(index=False))
    return 0 if result.ok else 1


@command("detect", "is an image synthetic? its watermark, C2PA manifest and AI label, one line per file")
def _detect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--key", help="watermark key (default: the public key)")
    p.add_argument("--trust-anchors", type=Path, help="PEM root certificate(s) whose signers count as trusted")
    p.add_argument("--json", action="store_true", help="one JSON object per line (with the C2PA manifest) instead of text")


@_detect_args.register
def _detect(a: argparse.Namespace) -> int:
    from .provenance import detect, format_detection

    anchors, status = _read_anchors(a.trust_anchors), 0
    kw = {"key": a.key} if a.key else {}
    for f in a.files:
        try:
            r = detect(f, trust_anchors=anchors, **kw)
        except MedsynthError as exc:
            print(f"{f}: error: {exc}")
            status = 2
            continue
        if a.json:
            print(json.dumps(r, default=str))
        else:
            print(format_detection(r))
    return status


# --------------------------------------------------------------------------- models
@command("models", "list the built-in generators and whether their weights are installed")
def _models_args(p: argparse.ArgumentParser) -> None:
    pass


@_models_args.register
def _models(a: argparse.Namespace) -> int:
    from .generators import list_generators

    print(list_generators().to_string(index=False))
    return 0


@command("card", "show a generator's model card and SHA-256")
def _card_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="built-in name or checkpoint path")
    p.add_argument("--allow-pickle", action="store_true", help="allow .pt/.ckpt files (loaded with weights_only=True)")


@_card_args.register
def _card(a: argparse.Namespace) -> int:
    from .checkpoint import format_card
    from .generators import load_generator

    gen = load_generator(a.model, allow_pickle=a.allow_pickle)
    print(format_card(gen.card, sha256=gen.sha256))
    return 0


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``medsynth`` with every registered sub-command."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="medsynth", description="Explore and measure medical image generators.")
    parser.add_argument("--version", action="version", version=f"medsynth-explore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, add_arguments, _run) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medsynth`` console script; returns the exit status.

    Errors a user can cause are printed as one line (``error: ...``) with exit
    status 2, without a traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 1
    _help, _add, run = COMMANDS[args.command]
    try:
        return int(run(args) or 0)
    except MedsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
