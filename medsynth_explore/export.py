"""Export synthetic data sets with provenance, and verify them.

:func:`export` samples a generator shard by shard (locally or on Dask
workers) into a folder::

    out/
      images/000000.png ...        16-bit grey PNG (8-bit RGB for colour models),
                                   each labelled AI-generated in PNG text chunks and
                                   XMP, with an invisible watermark in its pixels and,
                                   when a signer is given, a signed C2PA manifest
      shards/shard-00000.npz ...   optional (npz=True): uint16 images + image index
      metadata.csv                 one row per image, "filename" column first
      metadata.parquet             the same table
      manifest.json                generator SHA-256 and card, sampler settings,
                                   per-shard seeds, package version, every file
                                   with its SHA-256 and size, counts

:func:`medsynth_explore.data.load_dataset` reads the folder back,
:func:`read_manifest` and :func:`read_shard` (from
:mod:`medsynth_explore.shards`, which export shares with
:mod:`medsynth_explore.scale`) read it shard by shard, and :func:`verify`
checks it against its manifest (hashes, counts, labels, and per file the
C2PA manifest: missing, invalid or tampered).

Provenance (:mod:`medsynth_explore.provenance`): every image large enough
(64 blocks of 8 x 8 pixels, e.g. 64 x 64) carries an invisible watermark
(the AI-generated flag and the checkpoint SHA-256's first 4 hex digits),
embedded before the PNG (and NPZ) is written, so both hold the same marked
pixels. With ``signer=`` each PNG is then signed with a C2PA manifest (a
``c2pa.created`` action, trainedAlgorithmicMedia, with generator,
checkpoint SHA-256, model-card digest, seed, sampler settings and
conditions); the SHA-256 in ``manifest.json`` is of the final, signed file.

Determinism: the same seed gives byte-identical files whatever the workers,
except inside the C2PA manifest store of signed images, where c2pa-rs draws
random salts (see :mod:`medsynth_explore.provenance.c2pa`); for those files
``manifest.json`` also records ``sha256_without_c2pa``, the hash of the file
with its manifest store removed, which is the same from run to run.

Robustness: every file is written to a temporary name and renamed into
place. A shard counts as complete once a record of it (with the hashes of
its files) has been written, after all its files are in place; an
interrupted export run again with the same settings skips complete shards.
The manifest, written last, marks a finished export.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import os
import shutil
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .errors import CancelledError, DataError
from .provenance import watermark as _wm
from .provenance.c2pa import C2PASigner, created_manifest, read_c2pa, sign_bytes
from .shards import (
    DEFAULT_SHARD_SIZE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ClientScope,
    ProgressCallback,
    check_int,
    conditions_table,
    plan_shards,
    read_manifest,
    read_shard,
    remote_ref,
    resolve_generator,
    run_shards,
    sample_shard,
    shard_conditions,
    shard_seed,
)

__all__ = ["export", "verify", "VerifyResult", "read_manifest", "read_shard", "read_png_labels", "DIGITAL_SOURCE_TYPE"]

#: IPTC digital source type of images made by a trained model.
DIGITAL_SOURCE_TYPE = "trainedAlgorithmicMedia"
DIGITAL_SOURCE_TYPE_URI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PROGRESS_DIR = ".progress"
_TMP_SUFFIX = ".tmp"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


# --------------------------------------------------------------------------- small helpers
def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("medsynth-explore")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        from . import __version__

        return __version__


def _jsonable(value: Any) -> Any:
    """Plain-JSON version of a metadata value (numpy scalars, NaN -> None, containers)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (pd.Timestamp, _dt.datetime, _dt.date)):
        return value.isoformat()
    return str(value)


def _dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True, allow_nan=False, **kw)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary sibling, then rename it onto ``path``."""
    tmp = path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{_TMP_SUFFIX}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def _remove_temporaries(out: Path) -> None:
    for p in out.rglob(f".*{_TMP_SUFFIX}"):
        try:
            p.unlink()
        except OSError:
            pass


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An ``.npz`` (zip of ``.npy``) with fixed timestamps, so equal arrays give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


# --------------------------------------------------------------------------- PNG labelling
def _png_bytes(image: np.ndarray, text: Mapping[str, str]) -> tuple[bytes, int]:
    """Encode one (C, H, W) image in [0, 1] as PNG with text chunks; returns bytes and bit depth."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        if key == "XML:com.adobe.xmp" or not value.isascii():
            info.add_itxt(key, value)
        else:
            info.add_text(key, value)
    if image.shape[0] == 1:
        pil, bits = Image.fromarray(np.rint(image[0] * 65535.0).astype(np.uint16)), 16
    elif image.shape[0] == 3:
        pil, bits = Image.fromarray(np.rint(image.transpose(1, 2, 0) * 255.0).astype(np.uint8), mode="RGB"), 8
    else:
        raise DataError(f"can only write 1- or 3-channel images as PNG; the generator made {image.shape[0]} channels.")
    buf = io.BytesIO()
    pil.save(buf, format="PNG", pnginfo=info, compress_level=6)
    return buf.getvalue(), bits


def _xmp_packet(generator_name: str) -> str:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        f'Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE_URI}">'
        f"<dc:description>Synthetic image made by the generative model {_xml_escape(generator_name)}; "
        "it shows no real patient.</dc:description>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def read_png_labels(path: Any) -> dict:
    """The text chunks of a PNG (where :func:`export` stores the AI label and provenance).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    dict
        Keyword -> text, e.g. ``ai_generated``, ``DigitalSourceType``,
        ``generator``, ``checkpoint_sha256``, ``seed``, ``conditions``.

    Raises
    ------
    DataError
        When the file cannot be read as PNG.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.png"
    >>> _ = p.write_bytes(_png_bytes(np.zeros((1, 4, 4), np.float32), {"ai_generated": "true"})[0])
    >>> read_png_labels(p)["ai_generated"]
    'true'
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return {str(k): v for k, v in im.info.items() if isinstance(v, str)}
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read PNG {str(path)!r}: {exc}") from exc


# --------------------------------------------------------------------------- the shard task
def _write_shard(
    gen_ref: Any, out: str, token: str, k: int, start: int, count: int, seed: int, conditions: Any, settings: Mapping[str, Any]
) -> dict:
    """Sample shard ``k``, write its files, then its completion record. Runs on a worker."""
    folder = Path(out)
    progress = folder / PROGRESS_DIR
    try:
        plan = json.loads((progress / "plan.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(
            f"the export folder {out!r} is not visible from this worker ({exc}); "
            "workers must write to a file system they share with the client (e.g. an NFS/Lustre path)."
        ) from exc
    if plan.get("token") != token:
        raise DataError(f"the export folder {out!r} was changed by another export while this one ran; run again.")
    done = _load_record(folder, k, token)
    if done is not None:  # run again after it finished (e.g. a retried task): keep the files as they are
        return done
    gen = resolve_generator(gen_ref)
    ims = sample_shard(gen, count, seed, conditions, settings.get("prompt"), settings.get("steps"), settings.get("guidance"))
    width = int(settings["name_width"])
    gen_name = str(getattr(gen, "name", "generator"))
    files: dict[str, dict] = {}
    rows, bits_seen = [], set()
    meta = ims.metadata.reset_index(drop=True)
    sampler_settings = {"steps": settings.get("steps"), "guidance": settings.get("guidance"), "prompt": settings.get("prompt")}
    sampler = _dumps(sampler_settings)
    xmp = _xmp_packet(gen_name)
    images = ims.images
    marked = bool(settings.get("watermark")) and _wm.can_embed(images.shape)
    if marked:  # before anything is written, so that PNG and NPZ hold the same marked pixels
        images = _wm.embed(images, settings["watermark_prefix"], settings["watermark_key"])
    signer = settings.get("signer")
    for i in range(count):
        index = start + i
        name = f"images/{index:0{width}d}.png"
        row = {str(c): _jsonable(v) for c, v in meta.iloc[i].items()} if meta.shape[1] else {}
        requested = (
            conditions
            if isinstance(conditions, Mapping)
            else ({str(c): _jsonable(v) for c, v in conditions.iloc[i].items()} if isinstance(conditions, pd.DataFrame) else None)
        )
        text = {
            "ai_generated": "true",
            "DigitalSourceType": DIGITAL_SOURCE_TYPE,
            "DigitalSourceTypeURI": DIGITAL_SOURCE_TYPE_URI,
            "Software": f"medsynth-explore {settings['package_version']}",
            "Description": f"Synthetic image made by the generative model {gen_name}; it shows no real patient.",
            "generator": gen_name,
            "checkpoint_sha256": str(settings["checkpoint_sha256"]),
            "seed": str(seed),
            "export_seed": str(settings["seed"]),
            "shard": str(k),
            "index": str(index),
            "index_in_shard": str(i),
            "conditions": _dumps(requested if requested is not None else {}),
            "metadata": _dumps(row),
            "sampler": sampler,
            "XML:com.adobe.xmp": xmp,
        }
        if marked:
            text["watermark"] = (
                f"invisible-watermark dwtDctSvd, medsynth-explore format {_wm.VERSION}, "
                f"model SHA-256 prefix {settings['watermark_prefix']}"
            )
        data, bits = _png_bytes(images[i], text)
        bits_seen.add(bits)
        entry: dict = {}
        if signer is not None:
            unsigned = data
            params = {
                "generator": gen_name,
                "checkpoint_sha256": str(settings["checkpoint_sha256"]),
                "model_card_sha256": settings.get("model_card_sha256"),
                "seed": seed,
                "export_seed": settings["seed"],
                "shard": k,
                "index": index,
                "image_seed": row.get("image_seed"),
                "sampler": sampler_settings,
                "conditions": requested if requested is not None else {},
                "watermark": {"embedded": marked, "model_sha256_prefix": settings["watermark_prefix"] if marked else None},
            }
            manifest = created_manifest(
                Path(name).name,
                "image/png",
                _jsonable(params),
                label_parts=(token, name),
                software={"name": "medsynth-explore", "version": str(settings["package_version"])},
            )
            data = sign_bytes(unsigned, signer, manifest, fmt="image/png")
            entry = {"sha256_without_c2pa": _sha256_bytes(unsigned)}
        _atomic_write(folder / name, data)
        files[name] = {"sha256": _sha256_bytes(data), "bytes": len(data), **entry}
        rows.append(
            {
                "filename": name,
                **{c: v for c, v in row.items() if c != "filename"},
                "image_index": index,
                "shard": k,
                "shard_seed": seed,
            }
        )
    if settings.get("npz"):
        name = f"shards/shard-{k:05d}.npz"
        if images.shape[1] == 1:
            q = np.rint(images * 65535.0).astype(np.uint16)
        else:
            q = np.rint(images * 255.0).astype(np.uint8)
        data = _npz_bytes({"images": q, "index": np.arange(start, start + count, dtype=np.int64)})
        _atomic_write(folder / name, data)
        files[name] = {"sha256": _sha256_bytes(data), "bytes": len(data)}
    record = {
        "index": k,
        "start": start,
        "count": count,
        "seed": seed,
        "bits": max(bits_seen),
        "channels": int(ims.images.shape[1]),
        "height": int(ims.images.shape[2]),
        "width": int(ims.images.shape[3]),
        "watermark": marked,
        "signed": signer is not None,
        "files": files,
        "rows": rows,
        "token": token,
        "columns": list(dict.fromkeys(c for r in rows for c in r)),  # JSON objects lose their order
    }
    # The record is the mark of a complete shard: written last, atomically.
    _atomic_write(progress / f"shard-{k:05d}.json", _dumps(record).encode())
    return record


def _load_record(folder: Path, k: int, token: str) -> dict | None:
    """A shard's completion record, if present, for this export, and its files are intact."""
    path = folder / PROGRESS_DIR / f"shard-{k:05d}.json"
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if rec.get("token") != token:
        return None
    for name, info in rec.get("files", {}).items():
        f = folder / name
        if not f.is_file() or f.stat().st_size != info["bytes"] or _sha256_file(f) != info["sha256"]:
            return None
    return rec


# --------------------------------------------------------------------------- export
def export(
    generator: Any,
    n: int,
    out: Any,
    conditions: Any = None,
    prompt: str | None = None,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    npz: bool = False,
    client: Any = None,
    callback: ProgressCallback | None = None,
    overwrite: bool = False,
    watermark: bool = True,
    watermark_key: str = _wm.DEFAULT_KEY,
    signer: C2PASigner | None = None,
) -> Path:
    """Sample ``n`` images from a generator into a data set folder with full provenance.

    Parameters
    ----------
    generator : str, path or Generator
        A name or checkpoint path for :func:`medsynth_explore.load_generator`,
        or a generator object (``.sample``, ``.name``, ``.sha256``, ``.card``).
    n : int
        Number of images.
    out : path-like
        Output folder (see the module docstring for its layout).
    conditions : dict, DataFrame or list of dict, optional
        One set of conditions for every image, or one row per image.
    prompt : str, optional
        Text prompt for text-conditioned models.
    seed : int
        Seed of the run; shard ``k`` is sampled with
        :func:`medsynth_explore.shards.shard_seed` ``(seed, k)``, so the same
        seed and shard size give the same files whatever the workers.
    steps, guidance : optional
        Sampler settings passed to ``generator.sample``.
    shard_size : int
        Images per shard (one task, one optional NPZ file).
    npz : bool
        Also write each shard's images as ``shards/shard-KKKKK.npz`` (uint16
        ``images`` (N, C, H, W): divide by 65535, or 255 for 8-bit RGB; and
        ``index``, the image numbers).
    client : None, distributed.Client or str
        Run the shards on Dask workers (they must see ``out``), or locally.
    callback : callable, optional
        ``callback(done_images, total_images)`` after each shard; return
        ``False`` to stop. Finished shards are kept and a later call resumes.
    overwrite : bool
        Replace a folder holding anything other than an unfinished export
        with the same settings.
    watermark : bool
        Embed the invisible watermark (:mod:`medsynth_explore.provenance.watermark`)
        in every image large enough to carry it (64 blocks of 8 x 8 pixels,
        e.g. 64 x 64). Smaller images are written unmarked; ``manifest.json``
        (``provenance.watermark``) and :func:`verify` say so, and a warning is
        issued.
    watermark_key : str
        Key of the watermark; the default is public (anyone with this package
        can read the mark). Readers need the same key.
    signer : C2PASigner, optional
        Sign every PNG with a C2PA manifest
        (:func:`medsynth_explore.provenance.c2pa.make_test_signer` makes an
        untrusted local one for tests). Nothing is fetched from the network.

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    DataError
        Bad arguments, or ``out`` is in use and ``overwrite`` is False.
    CancelledError
        When the callback returned ``False``.

    Examples
    --------
    >>> import tempfile
    >>> from medsynth_explore.data import ImageSet, load_dataset
    >>> class Noise:  # any object with sample(), name, sha256 and card
    ...     name, sha256, card = "noise", "0" * 64, {"name": "noise"}
    ...     def sample(self, n, seed=None, **kw):
    ...         return ImageSet(np.random.default_rng(seed).random((n, 1, 8, 8), np.float32))
    >>> out = export(Noise(), 5, tempfile.mkdtemp() + "/syn", shard_size=2, seed=1)
    >>> len(load_dataset(out)), verify(out).ok
    (5, True)
    """
    n = check_int(n, "n", 1)
    seed = check_int(seed, "seed", 0)
    shard_size = check_int(shard_size, "shard_size", 1)
    if signer is not None and not isinstance(signer, C2PASigner):
        raise DataError(
            f"signer must be a medsynth_explore.provenance.C2PASigner (e.g. C2PASigner.from_files(chain, key)); "
            f"got {type(signer).__name__}."
        )
    if not isinstance(watermark, bool):
        raise DataError(f"watermark must be True or False, got {watermark!r}.")
    _wm._key_bits(watermark_key)  # checks the key
    table = conditions_table(conditions, n)
    gen = resolve_generator(generator)
    gen_ref = str(generator) if isinstance(generator, (str, Path)) else gen
    sha = getattr(gen, "sha256", None)
    card = getattr(gen, "card", None) or {}
    gen_name = str(getattr(gen, "name", None) or card.get("name") or type(gen).__name__)
    folder = Path(out).expanduser().resolve()  # workers may run in another directory
    card_sha = _sha256_bytes(_dumps(card).encode())
    # the watermark carries the checkpoint's hash; a generator without one is named by its card's digest
    mark_hash = _wm.hash_prefix(sha or card_sha)
    provenance_plan = {
        "watermark": watermark,
        "watermark_key_sha256": _sha256_bytes(watermark_key.encode()) if watermark else None,
        "c2pa_signer": signer.fingerprint if signer is not None else None,
    }

    shards = plan_shards(n, shard_size)
    seeds = [shard_seed(seed, k) for k in range(len(shards))]
    cond_record = None if table is None else (table if isinstance(table, dict) else table.to_dict(orient="records"))
    sampler = {
        "n": n,
        "seed": seed,
        "shard_size": shard_size,
        "conditions": cond_record,
        "prompt": prompt,
        "steps": steps,
        "guidance": guidance,
        "npz": bool(npz),
    }
    plan_body = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator": gen_name,
        "checkpoint_sha256": sha,
        "sampler": sampler,
        "provenance": provenance_plan,
    }
    token = hashlib.sha256(_dumps(plan_body).encode()).hexdigest()[:32]

    done_manifest = _prepare_folder(folder, token, overwrite)
    if done_manifest:
        if callback is not None:
            callback(n, n)
        return folder

    settings = {
        "prompt": prompt,
        "steps": steps,
        "guidance": guidance,
        "npz": bool(npz),
        "seed": seed,
        "checkpoint_sha256": sha or "",
        "package_version": _package_version(),
        "name_width": max(6, len(str(n - 1))),
        "model_card_sha256": card_sha,
        "watermark": watermark,
        "watermark_key": watermark_key,
        "watermark_prefix": mark_hash,
        "signer": signer,
    }
    records: dict[int, dict] = {}
    for k in range(len(shards)):
        rec = _load_record(folder, k, token)
        if rec is not None:
            records[k] = rec
    todo = [k for k in range(len(shards)) if k not in records]
    already = sum(shards[k][1] for k in records)

    def progress(done: int, total: int) -> Any:
        return None if callback is None else callback(already + done, n)

    with ClientScope(client) as cl:
        ref = gen_ref if isinstance(gen_ref, str) else remote_ref(gen_ref, cl)
        args = [
            (ref, str(folder), token, k, shards[k][0], shards[k][1], seeds[k], shard_conditions(table, *shards[k]), settings)
            for k in todo
        ]
        try:
            new = run_shards(
                _write_shard, args, client=cl, callback=progress, weights=[shards[k][1] for k in todo], name="medsynth-export"
            )
        except CancelledError:
            _remove_temporaries(folder)
            raise
    for rec in new:
        records[int(rec["index"])] = rec
    ordered = [records[k] for k in range(len(shards))]
    prov = _provenance_record(ordered, watermark, watermark_key, mark_hash, signer)
    if watermark and not prov["watermark"]["embedded"]:
        import warnings

        warnings.warn(f"export to {str(folder)!r}: {prov['watermark']['reason']}", stacklevel=2)
    _finish(folder, ordered, gen_name, sha, card, sampler, token, card_sha, prov)
    return folder


def _provenance_record(records: list[dict], watermark: bool, key: str, mark_hash: str, signer: Any) -> dict:
    """The ``provenance`` section of ``manifest.json``: what marks the images carry and who signed them."""
    first = records[0]
    marked = all(r.get("watermark") for r in records)
    wm: dict = {
        "embedded": marked,
        "library": "invisible-watermark (dwtDctSvd block embedder, Haar LL band of the luminance)",
        "format_version": _wm.VERSION,
        "strength_grey_levels": _wm.STRENGTH,
        "threshold": _wm.THRESHOLD,
        "key": "public default" if key == _wm.DEFAULT_KEY else "custom (not stored)",
        "payload": {"ai_generated": True, "model_sha256_prefix": mark_hash} if marked else None,
    }
    if not marked:
        wm["reason"] = (
            "the watermark was not asked for (watermark=False)"
            if not watermark
            else _wm.min_size_message((first["height"], first["width"])) + " They carry no watermark."
        )
    c2 = {"signed": signer is not None}
    if signer is not None:
        c2["signer"] = signer.describe()
        c2["note"] = (
            "C2PA readers trust a signer only if its certificate chains to a trust anchor they hold; "
            "a locally made certificate is untrusted."
        )
    return {"watermark": wm, "c2pa": c2}


def _prepare_folder(folder: Path, token: str, overwrite: bool) -> bool:
    """Create or check ``folder``. True when it already holds this finished export."""
    progress = folder / PROGRESS_DIR
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{str(folder)!r} is a file; give a folder path for the export.")
    if folder.is_dir() and any(folder.iterdir()):
        manifest = folder / MANIFEST
        plan = progress / "plan.json"
        same = False
        if manifest.is_file():
            try:
                same = json.loads(manifest.read_text()).get("token") == token
            except (OSError, json.JSONDecodeError):
                same = False
            if same and not overwrite:
                return True
        elif plan.is_file():
            try:
                same = json.loads(plan.read_text()).get("token") == token
            except (OSError, json.JSONDecodeError):
                same = False
        if not same and not overwrite:
            what = (
                "a finished export with other settings"
                if manifest.is_file()
                else ("an unfinished export with other settings" if plan.is_file() else "other files")
            )
            raise DataError(
                f"{str(folder)!r} holds {what}; pass overwrite=True (or --overwrite) to replace it, or choose an empty folder."
            )
        if overwrite:
            for p in folder.iterdir():
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "shards").mkdir(exist_ok=True)
    progress.mkdir(exist_ok=True)
    _remove_temporaries(folder)
    _atomic_write(progress / "plan.json", _dumps({"token": token}).encode())
    return False


def _metadata_table(records: list[dict]) -> pd.DataFrame:
    rows = [r for rec in records for r in rec["rows"]]
    columns: list[str] = []
    for rec in records:
        for c in rec["columns"]:
            if c not in columns:
                columns.append(c)
    df = pd.DataFrame.from_records(rows, columns=columns)
    for c in df.columns:
        if df[c].dtype == object:
            vals = df[c]
            if vals.map(lambda v: isinstance(v, (dict, list))).any():
                df[c] = vals.map(
                    lambda v: None if v is None else (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v))
                )
            elif vals.map(lambda v: v is not None and not isinstance(v, str)).any():
                df[c] = vals.map(lambda v: None if v is None else str(v))
    return df


def _finish(
    folder: Path,
    records: list[dict],
    gen_name: str,
    sha: Any,
    card: Mapping,
    sampler: dict,
    token: str,
    card_sha: str | None = None,
    provenance: Mapping | None = None,
) -> None:
    meta = _metadata_table(records)
    csv_bytes = meta.to_csv(index=False).encode()
    pq = io.BytesIO()
    try:
        meta.to_parquet(pq, index=False)
    except Exception as exc:  # pyarrow rejects some mixed columns
        raise DataError(f"cannot write metadata.parquet for the generator's metadata columns: {exc}") from exc
    _atomic_write(folder / "metadata.csv", csv_bytes)
    _atomic_write(folder / "metadata.parquet", pq.getvalue())
    files: dict[str, dict] = {}
    for rec in records:
        files.update(rec["files"])
    files["metadata.csv"] = {"sha256": _sha256_bytes(csv_bytes), "bytes": len(csv_bytes)}
    files["metadata.parquet"] = {"sha256": _sha256_bytes(pq.getvalue()), "bytes": len(pq.getvalue())}
    first = records[0]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "token": token,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "package": {"name": "medsynth-explore", "version": _package_version()},
        "ai_generated": True,
        "digital_source_type": DIGITAL_SOURCE_TYPE_URI,
        "generator": {"name": gen_name, "checkpoint_sha256": sha, "model_card_sha256": card_sha, "card": card},
        "sampler": sampler,
        "provenance": dict(provenance or {}),
        "image": {
            "channels": first["channels"],
            "height": first["height"],
            "width": first["width"],
            "bits": first["bits"],
            "scale": 65535 if first["bits"] == 16 else 255,
        },
        "shards": [
            {"index": r["index"], "start": r["start"], "count": r["count"], "seed": r["seed"], "files": sorted(r["files"])}
            for r in records
        ],
        "counts": {
            "images": int(sum(r["count"] for r in records)),
            "shards": len(records),
            "files": len(files),
            "png": sum(1 for f in files if f.endswith(".png")),
            "npz": sum(1 for f in files if f.endswith(".npz")),
        },
        "metadata_columns": list(meta.columns),
        "files": dict(sorted(files.items())),
    }
    _atomic_write(folder / MANIFEST, (json.dumps(_jsonable(manifest), indent=1, sort_keys=False, default=str) + "\n").encode())
    shutil.rmtree(folder / PROGRESS_DIR, ignore_errors=True)
    shards_dir = folder / "shards"
    if shards_dir.is_dir() and not any(shards_dir.iterdir()):
        shards_dir.rmdir()
    _remove_temporaries(folder)


# --------------------------------------------------------------------------- verify
@dataclass
class VerifyResult:
    """What :func:`verify` found. ``ok`` is True when nothing is missing, altered or extra.

    ``str(result)`` is a readable report; :meth:`table` has one row per image
    file (hash, C2PA manifest, watermark).
    """

    path: str
    ok: bool = False
    n_files: int = 0
    n_images: int = 0
    missing: list = field(default_factory=list)
    altered: list = field(default_factory=list)
    extra: list = field(default_factory=list)
    unlabelled: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    c2pa_missing: list = field(default_factory=list)
    c2pa_invalid: list = field(default_factory=list)
    c2pa_tampered: list = field(default_factory=list)
    unmarked: list = field(default_factory=list)
    signed: bool = False
    watermarked: bool | None = None
    notes: list = field(default_factory=list)
    files: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok

    def table(self) -> pd.DataFrame:
        """One row per image file: ``file``, ``bytes`` (ok / missing / altered), ``label``, ``c2pa``, ``watermark``."""
        return pd.DataFrame(self.files, columns=["file", "bytes", "label", "c2pa", "watermark"])

    def __str__(self) -> str:
        head = f"{self.path}: " + (
            f"OK, {self.n_images} images and {self.n_files} files match the manifest." if self.ok else "FAILED verification."
        )
        lines = [head]

        def block(title: str, items: list, limit: int = 20) -> None:
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {x}" for x in items[:limit])
                if len(items) > limit:
                    lines.append(f"    ... and {len(items) - limit} more")

        block("missing files", self.missing)
        block("altered files (SHA-256 differs from the manifest)", self.altered)
        block("files not in the manifest", self.extra)
        block("images without the AI-generated label", self.unlabelled)
        block("images without their C2PA manifest", self.c2pa_missing)
        block("C2PA manifests that fail validation", self.c2pa_invalid)
        block("images changed after signing (C2PA hash mismatch)", self.c2pa_tampered)
        block("images whose watermark is not found", self.unmarked)
        block("other problems", self.problems)
        lines.extend(f"  {note}" for note in self.notes)
        return "\n".join(lines)


def verify(
    out: Any,
    check_labels: bool = True,
    check_c2pa: bool = True,
    check_watermark: bool = False,
    trust_anchors: bytes | str | None = None,
    watermark_key: str = _wm.DEFAULT_KEY,
) -> VerifyResult:
    """Check an export folder against its manifest.

    Parameters
    ----------
    out : path-like
        A folder written by :func:`export`.
    check_labels : bool
        Also open every PNG and check its AI-generated label
        (``ai_generated="true"`` and ``DigitalSourceType``).
    check_c2pa : bool
        When the export was signed, read and validate every image's C2PA
        manifest (offline): missing, invalid (bad signature, unreadable,
        describing another generator) or tampered (the file's bytes changed
        after signing).
    check_watermark : bool
        Also read the watermark of every image the export marked (about 5 ms
        per 64 x 64 image).
    trust_anchors : bytes or str, optional
        PEM root certificate(s): then a signer that does not chain to them
        counts as invalid. Without them signers are not judged (a locally
        made certificate is untrusted anyway).
    watermark_key : str
        The key the export was marked with.

    Returns
    -------
    VerifyResult
        ``.ok``, lists of ``missing``, ``altered``, ``extra``,
        ``unlabelled``, ``c2pa_missing``, ``c2pa_invalid``, ``c2pa_tampered``
        and ``unmarked`` files and other ``problems`` (counts, metadata
        table); ``.table()`` one row per image; ``str()`` gives a report.

    Raises
    ------
    DataError
        When ``out`` is not a folder.

    Examples
    --------
    >>> import tempfile
    >>> print(verify(tempfile.mkdtemp()))  # doctest: +ELLIPSIS
    /...: FAILED verification.
      other problems (1):
        no manifest.json: this folder is not a finished export ...
    """
    folder = Path(out).expanduser()
    if not folder.is_dir():
        raise DataError(f"{str(folder)!r} is not a folder.")
    res = VerifyResult(path=str(folder))
    try:
        manifest = read_manifest(folder)
    except DataError as exc:
        msg = str(exc)
        if "no manifest.json" in msg:
            msg = "no manifest.json: this folder is not a finished export (an interrupted export resumes when run again)."
        res.problems.append(msg)
        return res
    files = manifest.get("files", {})
    outside = [n for n in files if Path(n).is_absolute() or ".." in Path(n).parts or "\\" in n]
    if outside:  # a manifest naming files elsewhere is not followed there
        res.problems.append(f"the manifest names files outside the folder: {outside[:5]}")
        files = {n: v for n, v in files.items() if n not in outside}
    res.n_files = len(files)
    res.n_images = int(manifest.get("counts", {}).get("images", 0))
    for name, info in files.items():
        f = folder / name
        if not f.is_file():
            res.missing.append(name)
        elif f.stat().st_size != info.get("bytes") or _sha256_file(f) != info.get("sha256"):
            res.altered.append(name)
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    res.extra = sorted(present - set(files) - {MANIFEST})
    pngs = sorted(f for f in files if f.endswith(".png"))
    counts = manifest.get("counts", {})
    if len(pngs) != res.n_images or counts.get("png", len(pngs)) != len(pngs):
        res.problems.append(f"the manifest lists {len(pngs)} PNG files for {res.n_images} images.")
    shard_total = sum(int(s["count"]) for s in manifest.get("shards", []))
    if shard_total != res.n_images:
        res.problems.append(f"the shards hold {shard_total} images but the manifest counts {res.n_images}.")
    if "metadata.csv" not in res.missing and (folder / "metadata.csv").is_file():
        try:
            meta = pd.read_csv(folder / "metadata.csv")
            if len(meta) != res.n_images:
                res.problems.append(f"metadata.csv has {len(meta)} rows for {res.n_images} images.")
            if "filename" not in meta.columns:
                res.problems.append("metadata.csv has no filename column.")
            elif sorted(meta["filename"].astype(str)) != pngs:
                res.problems.append("the filenames in metadata.csv differ from the images in the manifest.")
        except Exception as exc:  # a damaged CSV is reported, not raised
            res.problems.append(f"cannot read metadata.csv: {exc}")
    if check_labels:
        for name in pngs:
            f = folder / name
            if name in res.missing:
                continue
            try:
                labels = read_png_labels(f)
            except DataError:
                res.unlabelled.append(f"{name} (unreadable PNG)")
                continue
            if labels.get("ai_generated") != "true" or labels.get("DigitalSourceType") != DIGITAL_SOURCE_TYPE:
                res.unlabelled.append(name)
    _verify_provenance(folder, manifest, pngs, res, check_c2pa, check_watermark, trust_anchors, watermark_key)
    res.ok = not (
        res.missing
        or res.altered
        or res.extra
        or res.unlabelled
        or res.problems
        or res.c2pa_missing
        or res.c2pa_invalid
        or res.c2pa_tampered
        or res.unmarked
    )
    return res


def _verify_provenance(
    folder: Path,
    manifest: Mapping,
    pngs: list,
    res: VerifyResult,
    check_c2pa: bool,
    check_watermark: bool,
    trust_anchors: Any,
    watermark_key: str,
) -> None:
    """Per image: C2PA manifest and watermark against what ``manifest.json`` says the export wrote."""
    prov = manifest.get("provenance") or {}
    wm = prov.get("watermark") or {}
    res.signed = bool((prov.get("c2pa") or {}).get("signed"))
    res.watermarked = wm.get("embedded") if prov else None
    if not prov:
        res.notes.append("provenance: this export predates watermarks and C2PA manifests (no provenance section).")
    else:
        if not res.signed:
            res.notes.append("C2PA: the export was not signed (export(..., signer=...) signs it).")
        if not wm.get("embedded"):
            res.notes.append(f"watermark: none ({wm.get('reason', 'not embedded')}).")
    expected_sha = str((manifest.get("generator") or {}).get("checkpoint_sha256") or "")
    prefix = ((wm.get("payload") or {}).get("model_sha256_prefix")) or None
    unlabelled = set(res.unlabelled) | {u.split(" ")[0] for u in res.unlabelled}
    for name in pngs:
        f = folder / name
        row = {"file": name, "bytes": "ok", "label": "ok", "c2pa": "not signed", "watermark": "not checked"}
        if name in res.missing:
            row.update(bytes="missing", label="-", c2pa="-", watermark="-")
            res.files.append(row)
            continue
        if name in res.altered:
            row["bytes"] = "altered"
        if name in unlabelled:
            row["label"] = "missing"
        data = None
        if res.signed and check_c2pa:
            data = f.read_bytes()
            rep = read_c2pa(data, fmt="image/png", trust_anchors=trust_anchors)
            if not rep.present:
                res.c2pa_missing.append(name)
                row["c2pa"] = "missing"
            elif rep.tampered:
                res.c2pa_tampered.append(f"{name} ({', '.join(rep.failures)})")
                row["c2pa"] = "tampered"
            elif not rep.valid or (trust_anchors is not None and not rep.trusted):
                res.c2pa_invalid.append(f"{name} ({rep.summary()})")
                row["c2pa"] = "invalid"
            else:
                params = (rep.action() or {}).get("parameters") or {}
                if expected_sha and str(params.get("checkpoint_sha256")) != expected_sha:
                    res.c2pa_invalid.append(f"{name} (the manifest describes checkpoint {params.get('checkpoint_sha256')!r})")
                    row["c2pa"] = "invalid"
                else:
                    row["c2pa"] = "valid, trusted" if rep.trusted else "valid"
        if check_watermark and wm.get("embedded"):
            from .provenance.detection import detect

            try:
                found = detect(data if data is not None else f.read_bytes(), key=watermark_key)
            except DataError:
                found = {"watermark": False, "payload": None}
            got = (found.get("payload") or {}).get("model_sha256_prefix")
            if not found["watermark"] or (prefix and got != prefix):
                res.unmarked.append(name if not found["watermark"] else f"{name} (carries model prefix {got})")
                row["watermark"] = "not found" if not found["watermark"] else f"other model {got}"
            else:
                row["watermark"] = "found"
        elif not wm.get("embedded"):
            row["watermark"] = "not embedded"
        res.files.append(row)
    if res.signed and check_c2pa:
        good = sum(1 for r in res.files if r["c2pa"].startswith("valid"))
        signer = ((prov.get("c2pa") or {}).get("signer") or {}).get("subject", "?")
        judged = (
            "chains to the trust anchors given" if trust_anchors is not None else "not judged: pass trust_anchors to require it"
        )
        res.notes.append(f"C2PA: {good} of {len(pngs)} images carry a valid manifest signed by {signer} (trust {judged}).")
    elif res.signed:
        res.notes.append("C2PA: the export was signed; manifests not checked (check_c2pa=False).")
    if wm.get("embedded"):
        if check_watermark:
            found = sum(1 for r in res.files if r["watermark"] == "found")
            res.notes.append(f"watermark: found in {found} of {len(pngs)} images (model SHA-256 prefix {prefix}).")
        else:
            res.notes.append(f"watermark: embedded (model SHA-256 prefix {prefix}); not read (check_watermark=True reads it).")


# ``medsynth_explore.export`` is this module, in every import order; calling it calls export().
from ._callable import make_callable  # noqa: E402

make_callable(__name__, export)
