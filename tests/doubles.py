"""Test doubles shared by the test files: tiny seeded generators, their cards and toy reference sets.

Every double is a real :class:`~medsynth_explore.generators.Generator` subclass
(so the base class checks conditions, seeds and shapes exactly as for the
shipped models) that draws a few pixels from its per-image seeds:

* :class:`Noise`: uniform noise whose brightness follows age (export, scale);
  optionally slow and leaving a mark per shard, for the Dask tests.
* :class:`Rings` / :class:`Blobs`: a ring or disc whose radius follows age,
  brighter for women (rings), darker at the bottom with an effusion (panels).
* :class:`Broken`: fails on every call (error paths); :class:`Copier`: returns
  its training images (memorisation).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medsynth_explore.data import ImageSet
from medsynth_explore.errors import DataError
from medsynth_explore.generators import Condition, ConditionSchema, Generator
from medsynth_explore.generators.conditions import condition_distribution, phantomcxr_schema

#: Age, sex and two findings: the smallest schema with every kind of condition but text.
SMALL_SCHEMA = ConditionSchema(
    [
        Condition("age", "continuous", range=(18, 90)),
        Condition("sex", "categorical", values=("F", "M")),
        Condition("findings", "findings", names=("effusion", "nodule")),
    ]
)
#: Age and sex only.
AGE_SEX_SCHEMA = ConditionSchema(
    [Condition("age", "continuous", range=(18, 90)), Condition("sex", "categorical", values=("F", "M"))]
)


def toy_distribution(schema: ConditionSchema, n: int = 200, seed: int = 1, age=(20, 80)) -> dict:
    """A training-condition distribution for ``schema`` from a seeded table of ``n`` patients."""
    rng = np.random.default_rng(seed)
    table = {"age": rng.integers(age[0], age[1], n), "sex": rng.choice(["F", "M"], n)}
    for name in schema.finding_names:
        table[name] = rng.integers(0, 2, n) if name == "effusion" else np.zeros(n, int)
    return condition_distribution(pd.DataFrame(table), schema)


def toy_card(
    name: str = "toy",
    family: str = "physics",
    size: int = 16,
    schema: ConditionSchema | None = None,
    capabilities=("conditions",),
    distribution: dict | None = None,
    **extra,
) -> dict:
    """A model card for a test double: image size, condition schema and its training distribution."""
    schema = schema or phantomcxr_schema()
    card = {
        "name": name,
        "family": family,
        "architecture": {"image_size": size},
        "conditions": schema.to_dict(),
        "capabilities": list(capabilities),
        "training_data": {"condition_distribution": distribution or toy_distribution(schema)},
    }
    card.update(extra)
    return card


class Noise(Generator):
    """Seeded uniform noise, brightness 0.3 + 0.0075 * age; ``delay`` seconds per batch; ``marks``: a file per batch."""

    def __init__(
        self,
        size: int = 16,
        schema: ConditionSchema = SMALL_SCHEMA,
        sha256: str = "ab" * 32,
        delay: float = 0.0,
        marks: str | None = None,
        distribution: dict | None = None,
    ):
        super().__init__(
            toy_card("test-noise", size=size, schema=schema, capabilities=(), distribution=distribution), sha256=sha256
        )
        self.delay, self.marks = delay, marks

    def _generate(self, table, seeds, steps, guidance, prompts):
        if self.marks:
            Path(self.marks, f"{int(seeds[0])}-{os.getpid()}-{time.monotonic_ns()}").touch()
        if self.delay:
            time.sleep(self.delay)
        size = self.image_shape[-1]
        out = np.stack([np.random.default_rng(int(s)).random((1, size, size), dtype=np.float32) for s in seeds])
        return out * (0.3 + 0.0075 * table["age"].to_numpy(float))[:, None, None, None]


class Rings(Generator):
    """A ring whose radius follows age, brighter for F; effusion darkens the bottom rows."""

    def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
        size = self.image_shape[-1]
        yy, xx = np.mgrid[:size, :size]
        rr = np.hypot(yy - size / 2, xx - size / 2)
        out = np.empty((len(cond_table), 1, size, size), np.float32)
        for i, (s, row) in enumerate(zip(rng_seed, cond_table.itertuples())):
            rng = np.random.default_rng(int(s))
            r = 2 + row.age / 20
            img = 0.2 + (0.5 if row.sex == "F" else 0.35) * (np.abs(rr - r) < 1.5) + rng.normal(0, 0.08, (size, size))
            if row.effusion:
                img[-size // 4 :] *= 0.5
            out[i, 0] = np.clip(img, 0, 1)
        return out


class Blobs(Generator):
    """A bright disc whose size follows age; effusion darkens the bottom quarter. Inpaints by redrawing."""

    def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
        size = self.image_shape[-1]
        out = np.empty((len(cond_table), 1, size, size), np.float32)
        yy, xx = np.mgrid[:size, :size]
        for i, (s, row) in enumerate(zip(rng_seed, cond_table.itertuples())):
            rng = np.random.default_rng(int(s))
            r = 4 + row.age / 10
            img = 0.2 + 0.6 * ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r) + rng.normal(0, 0.05, (size, size))
            if row.effusion:
                img[size * 3 // 4 :] *= 0.5
            out[i, 0] = np.clip(img, 0, 1)
        return out

    def _inpaint(self, images, masks, cond_table, rng_seed, steps, guidance, prompts):
        return self._generate(cond_table, rng_seed, steps, guidance, prompts)


class Broken(Generator):
    """A generator whose sampling always fails (for the error paths)."""

    def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
        raise DataError("broken generator: this model cannot sample (test double).")


class Copier(Generator):
    """Returns training images verbatim (a memorising generator)."""

    def __init__(self, card, images):
        super().__init__(card)
        self.images = images

    def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
        return self.images[np.asarray(rng_seed) % len(self.images)]


def toy_reference(generator: Generator, n: int = 60, seed: int = 0, draw_seed: int = 99, site: bool = False) -> ImageSet:
    """``n`` "real" images of ``generator`` drawn for a seeded table of patients (age, sex, effusion; site if asked)."""
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame({"age": rng.integers(20, 80, n), "sex": rng.choice(["F", "M"], n)})
    if site:
        meta["site"] = rng.choice(["A", "B"], n)
    meta = meta.assign(cardiomegaly=0, nodule=0, effusion=rng.integers(0, 2, n), pneumothorax=0)
    imgs = generator.sample(
        n,
        conditions={
            "age": meta.age.to_numpy(float),
            "sex": meta.sex.tolist(),
            "findings": [["effusion"] if e else [] for e in meta.effusion],
        },
        seed=draw_seed,
    ).images
    return ImageSet(imgs, meta, {"source": "test"})
