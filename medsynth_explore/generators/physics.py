"""The PhantomCXR simulator as a generator (family ``"physics"``).

Conditional sampling draws patients from the simulator's population
(:func:`~medsynth_explore.phantom.sample_patients`), overwrites the requested
age, sex and finding columns, makes the table consistent
(:func:`~medsynth_explore.phantom.complete_patients`: a finding switched on
gets its parameters from the patient's anatomy seed) and renders it. Conditions
the caller leaves out therefore keep the population's joint structure (unlike
the learned models, which draw them from per-condition marginals). The
output metadata holds the full ground truth of every image (site, BMI,
cardiothoracic ratio, finding sizes and sides, devices) besides the conditions.

Inpainting re-renders a patient under the requested conditions and pastes
the masked region into the given image. When the image came from PhantomCXR
(its metadata has the patient columns, e.g. ``anatomy_seed``), the same
patient is re-rendered, so the pasted region is an exact counterfactual
(same anatomy, new labels, new detector noise). For any other image a new
patient is drawn and only the masked region of that patient is pasted, which
will not line up with the surrounding anatomy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from .base import Generator
from .conditions import condition_distribution, phantomcxr_schema

__all__ = ["PhysicsGenerator"]

_PATIENT_COLUMNS = ("anatomy_seed", "bmi", "site")


class PhysicsGenerator(Generator):
    """PhantomCXR simulator behind the :class:`Generator` protocol.

    Parameters
    ----------
    size : int, default 64
        Image side in pixels (32 to 256).
    population : Population or dict, optional
        The cohort spec patients are drawn from; the default population when None.
    device, dtype : optional
        Accepted for the common generator interface: the simulator is numpy
        code on the CPU in float64 arithmetic with float32 images, so only
        ``"cpu"`` and float32 are valid; anything else raises
        :class:`~medsynth_explore.errors.CapabilityError` rather than being ignored.

    Notes
    -----
    Images are rendered in fixed blocks of :attr:`block_size` with the
    detector noise of a block drawn from its first image seed, so the output
    does not depend on ``batch_size`` (which is accepted and ignored) and the
    progress callback fires once per block. Unlike the learned models, the
    first ``k`` images of ``sample(n)`` are not guaranteed to equal
    ``sample(k)``.

    Examples
    --------
    >>> g = PhysicsGenerator()
    >>> s = g.sample(2, conditions={"age": 70, "findings": ["cardiomegaly"]}, seed=0)
    >>> s.metadata["age"].tolist(), s.metadata["cardiomegaly"].tolist()
    ([70.0, 70.0], [1, 1])
    >>> bool((s.metadata["ctr"] > 0.5).all())
    True
    """

    default_batch_size = 64

    def __init__(self, size: int = 64, population: Any = None, device: Any = None, dtype: Any = None) -> None:
        from .. import phantom
        from ..errors import CapabilityError
        from .devices import resolve_device, resolve_dtype

        if (device is not None and resolve_device(device).type != "cpu") or (
            dtype is not None and str(resolve_dtype(dtype)) != "torch.float32"
        ):
            raise CapabilityError(
                f"the physics simulator runs on the CPU in numpy (float32 images); device={device!r}, dtype={dtype!r} "
                "cannot be honoured. Leave device and dtype unset for it."
            )

        size = phantom._check_size(size)
        self._population = phantom._as_population(population)
        schema = phantomcxr_schema()
        ref = phantom.sample_patients(4000, self._population, seed=0)
        card = {
            "name": "phantomcxr-physics",
            "family": "physics",
            "architecture": {
                "image_size": int(size),
                "channels": 1,
                "simulator": "PhantomCXR",
                "simulator_version": phantom.__version__,
            },
            "description": (
                "The PhantomCXR physics-informed simulator: analytic X-ray line integrals through simple 3-D anatomy, "
                "Beer-Lambert attenuation, quantum noise and site-specific detectors."
            ),
            "conditions": schema.to_dict(),
            "capabilities": ["conditions", "inpaint"],
            "training_data": {
                "dataset": "PhantomCXR population (no training: images are simulated)",
                "version": phantom.__version__,
                "population": self._population.to_dict(),
                "condition_distribution": condition_distribution(ref, schema),
            },
            "sampler_defaults": {"sampler": "phantomcxr-render"},
            "intended_use": "Reference data and ground truth for evaluating generators; teaching.",
            "limitations": [
                "A simplified simulator: anatomy is made of simple solids; it is not a real radiograph.",
                "Ages are rounded to whole years when rendered.",
                "Inpainting re-renders a patient and pastes the masked region: an exact counterfactual for PhantomCXR images "
                "(same patient re-rendered), but an unrelated patient's pixels for any other image.",
            ],
        }
        super().__init__(card, sha256=f"phantomcxr-{phantom.__version__}-{self._population_digest()}")

    def _population_digest(self) -> str:
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self._population.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def population(self):
        """The population patients are drawn from."""
        return self._population

    def _resolve(
        self, n: int, conditions: Any, prompts: list | None, seed: int, context: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        from .. import phantom

        if prompts is not None:  # pragma: no cover - guarded by the capability check
            raise DataError("the physics generator takes no prompt.")
        given = self._schema.validate(conditions)
        if context is not None and all(c in context.columns for c in _PATIENT_COLUMNS):
            table = context.reset_index(drop=True).copy()
        else:
            table = phantom.sample_patients(n, self._population, seed=seed)
            table["patient_id"] = [f"phys{seed % 10**8:08d}-{i:06d}" for i in range(n)]
        for key, value in given.items():
            table[key] = list(value) if isinstance(value, np.ndarray) else value
        table = phantom.complete_patients(table)
        table["age"] = table["age"].astype(float)  # continuous condition, as for every generator
        table["prompt"] = ""
        front = [c for c in self._schema.columns if c in table] + ["prompt"]
        return table[front + [c for c in table.columns if c not in front]]

    #: Images rendered per call. The simulator draws detector noise for a whole
    #: call from one seed, so blocks are fixed (batch_size is validated but not
    #: used) to keep the output independent of batch_size.
    block_size = 64

    def _batch_size(self, batch_size: Any) -> int:
        super()._batch_size(batch_size)
        return self.block_size

    def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
        from .. import phantom

        size = self.image_shape[-1]
        # one render call per block: noise seeded by the block's first image seed
        return phantom.render(cond_table, size=size, seed=int(rng_seed[0]))

    def _inpaint(self, images, masks, cond_table, rng_seed, steps, guidance, prompts):
        return self._generate(cond_table, rng_seed, steps, guidance, prompts)

    def inpaint(
        self, image, mask, conditions=None, prompt=None, seed=None, steps=None, guidance=None, batch_size=None, callback=None
    ):
        """Re-render the masked region under new conditions; see the module notes.

        Parameters are those of :meth:`Generator.inpaint`. Conditions not
        given are kept from the image's metadata when it has them.

        Examples
        --------
        >>> import numpy as np
        >>> g = PhysicsGenerator()
        >>> img = g.sample(1, conditions={"findings": []}, seed=0)
        >>> m = np.zeros((64, 64)); m[32:, :] = 1
        >>> out = g.inpaint(img, m, conditions={"findings": ["effusion"]}, seed=0)
        >>> int(out.metadata["effusion"][0]), int(out.metadata["anatomy_seed"][0]) == int(img.metadata["anatomy_seed"][0])
        (1, True)
        """
        return super().inpaint(
            image,
            mask,
            conditions=conditions,
            prompt=prompt,
            seed=seed,
            steps=steps,
            guidance=guidance,
            batch_size=batch_size,
            callback=callback,
        )

    @classmethod
    def from_checkpoint(cls, checkpoint: Any, **kw: Any) -> "PhysicsGenerator":
        """Build from a card of family ``"physics"`` (no weights; image size from the card)."""
        arch = checkpoint.card.get("architecture", {})
        kw.setdefault("size", int(arch.get("image_size", 64)))
        pop = (checkpoint.card.get("training_data") or {}).get("population")
        if pop is not None:
            kw.setdefault("population", pop)
        return cls(**kw)
