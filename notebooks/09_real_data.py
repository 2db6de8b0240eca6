# %% [markdown]
# # 09 · Real data: CheXpert-style folders, harmonised labels, data that stays on disk
#
# **What.** A real reference set comes in a public layout (CheXpert, MIMIC-CXR-JPG,
# NIH ChestX-ray14, DICOM trees) with its own column names, label coding and
# tens of thousands of images. This notebook builds a small folder in CheXpert's
# layout from PhantomCXR images, loads it the way you would load the real one,
# shows the harmonised columns that line real and synthetic data up, and compares a
# generator against it per finding and per sex.
#
# **Offline.** Everything is made here; nothing is downloaded.

# %%
import tempfile
from pathlib import Path

import pandas as pd

import medsynth_explore as mse
from medsynth_explore.data import write_chexpert
from medsynth_explore.data.labels import FINDINGS, PHANTOMCXR_FINDINGS

work = Path(tempfile.mkdtemp(prefix="medsynth-real-"))

# %% [markdown]
# ## A folder in CheXpert's layout
#
# CheXpert ships `CheXpert-v1.0-small/train.csv` and `valid.csv` with a `Path` column
# (relative to the folder *above* the data set), `Sex` as `Male`/`Female`/`Unknown`,
# `Age`, `Frontal/Lateral`, `AP/PA`, and 14 observations coded 1.0 (present), 0.0
# (absent), -1.0 (uncertain) or blank (not mentioned). `write_chexpert` writes an
# image set that way; we then mark a few effusions as uncertain, as CheXpert's
# report labeler does.

# %%
# NBVAL_CHECK_OUTPUT
cohort = mse.load_dataset("phantomcxr", n=400, seed=3)
root = write_chexpert(cohort, work)
csv = pd.read_csv(root / "train.csv")
csv.loc[csv.index[:12], "Pleural Effusion"] = -1.0
csv.to_csv(root / "train.csv", index=False)
print(root.name, "->", sorted(p.name for p in root.iterdir()))
print(csv[["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "Cardiomegaly", "Pleural Effusion"]].head(3).to_string())

# %% [markdown]
# ## Loading it
#
# `load_dataset` recognises the layout from its files (`layout="chexpert"` says it
# explicitly). Paths are resolved the way CheXpert documents them, and also when the
# data set folder was renamed. `lazy=True` keeps the pixels on disk: the set knows
# its size and metadata, and decodes images in batches when something needs them.
# (Without it, a set larger than the memory limit, 512 MiB of pixels by default,
# stays on disk by itself.)

# %%
# NBVAL_CHECK_OUTPUT
real = mse.load_dataset(root, layout="chexpert", lazy=True)
print(real)
print("file-backed:", real.file_backed, "| decoded it would take", round(real.nbytes / 1e6, 1), "MB")
print("batches of 64:", [len(b) for b in real.batches(64)])

# %% [markdown]
# Look at the images before measuring anything. A display decodes only the images it
# shows, never the whole set:

# %%
real.show(n=6, by="sex", columns=["sex", "age", "view"])

# %% [markdown]
# ## The harmonised columns
#
# Every real layout keeps its raw columns and adds the same harmonised ones:
# `age` (years), `sex` (`F`/`M`), `view` (`PA`/`AP`/`LATERAL`), `patient_id`, and the
# findings in one snake_case vocabulary (nullable integers 1/0, NA for unknown).
# Uncertain labels follow a policy: `uncertain="ignore"` (NA, the default),
# `"ones"` or `"zeros"`, the U-Ignore / U-Ones / U-Zeros of the CheXpert paper.

# %%
# NBVAL_CHECK_OUTPUT
m = real.metadata
raw_and_harmonised = ["Sex", "sex", "Frontal/Lateral", "AP/PA", "view", "patient_id", "Pleural Effusion", "pleural_effusion"]
print(m[raw_and_harmonised].head(4).to_string())
for policy in ("ignore", "ones", "zeros"):
    counts = mse.load_dataset(root, uncertain=policy, lazy=True).metadata["pleural_effusion"].value_counts(dropna=False)
    print(f"uncertain={policy!r:9}", {str(k): int(v) for k, v in counts.sort_index().items()})

# %% [markdown]
# The vocabulary holds CheXpert's 14 observations and NIH ChestX-ray14's extras.
# PhantomCXR and the shipped generators keep their own column names (`effusion`,
# `nodule`, `chest_tube`, and `conditions={"findings": ["effusion"]}` keeps working);
# when real and synthetic sets are compared, both sides are mapped into the vocabulary:

# %%
# NBVAL_CHECK_OUTPUT
print(len(FINDINGS), "findings:", ", ".join(FINDINGS))
print(PHANTOMCXR_FINDINGS)

# %% [markdown]
# ## A generator against the real set, per sex and per finding
#
# The physics generator records `sex` and `effusion`; the real set has `Sex`,
# `sex` and `Pleural Effusion`. `evaluate` harmonises both sides, so `by="sex"` and
# `by="pleural_effusion"` line up without renaming anything. The real side streams
# from disk through the encoder.

# %%
# NBVAL_CHECK_OUTPUT
gen = mse.load_generator("phantomcxr-physics")
fake = gen.sample(300, seed=0)
by_sex = mse.evaluate(real, fake, metrics=["fid", "coverage"], by="sex", n_boot=0, cache=False)
by_effusion = mse.evaluate(real, fake, metrics=["coverage"], by="pleural_effusion", n_boot=0, cache=False, min_group_size=5)
show = ["metric", "group", "value", "n_real", "n_synthetic"]
print(by_sex.table[show].round(3).to_string(index=False))
print(by_effusion.table[show].round(3).to_string(index=False))

# %% [markdown]
# The group `pleural_effusion=unknown` holds the real images whose effusion label is
# uncertain or blank: under U-Ignore they are compared with no synthetic group.
#
# ## Sizes, aspect ratios and safety
#
# Real images come in many sizes. `size=` resizes on load, `aspect=` says how:
# `"crop"` (scale to cover, cut the centre; the default), `"pad"` (fit inside, pad
# with black) or `"stretch"`. The original size stays in the metadata. Paths in a
# CSV must stay inside the data folder, and a damaged or oversized file raises a
# `DataError` that names it (or is skipped with `on_error="skip"` and listed in the
# provenance).

# %%
# NBVAL_CHECK_OUTPUT
small = mse.load_dataset(root, size=(48, 32), aspect="pad", lazy=True)
print(small.shape, small.metadata[["original_width", "original_height"]].iloc[0].tolist())
bad = csv.head(3).copy()
bad.loc[2, "Path"] = "CheXpert-v1.0-small/../../../secret.jpg"
bad.to_csv(root / "valid.csv", index=False)
try:
    mse.load_dataset(root)
except mse.DataError as err:
    first, _, rest = str(err).partition(", which resolves to")
    print("DataError:", first, "...", rest.split(". ", 1)[1])

# %% [markdown]
# ## Try this
#
# - Load with `uncertain="ones"` and compare coverage for `pleural_effusion=1`.
# - Point `load_dataset` at your own CheXpert, MIMIC-CXR-JPG (`patients=` and
#   `admissions=` from MIMIC-IV add sex, age and race) or NIH ChestX-ray14 folder;
#   `by=["sex", "age_group", "view"]` works on all of them.
# - Open the Explorer with this folder as the reference:
#   `mse.explore(generator="phantomcxr-physics", reference=real)`; the Fairness tab
#   offers the columns both sides share.
