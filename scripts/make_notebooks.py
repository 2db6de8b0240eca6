"""Write, execute and tidy the tutorial notebooks in notebooks/.

The tutorials are kept here as Python source in "percent" format (``# %%``
starts a code cell, ``# %% [markdown]`` a markdown cell) so that changes are
easy to review. Running this script

1. writes ``notebooks/NN_name.ipynb`` for every tutorial,
2. executes each one top to bottom with nbclient (in the notebooks/ folder,
   as ``pytest --nbval-lax notebooks/`` does),
3. keeps the outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` (nbval compares
   them on every run) and clears all other outputs, execution counts and
   widget state.

Usage::

    python scripts/make_notebooks.py            # all tutorials
    python scripts/make_notebooks.py 03 05      # only those whose name starts so
    python scripts/make_notebooks.py --no-exec  # write without running
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
CHECK = "# NBVAL_CHECK_OUTPUT"

TUTORIALS: dict[str, str] = {}

# ----------------------------------------------------------------------------------------
TUTORIALS["00_quickstart"] = r'''
# %% [markdown]
# # 00 · Quickstart: the Explorer in three lines
#
# **What.** `medsynth_explore` treats an image generator as a *data set*: you draw
# images from it, look at them next to real ones and measure how close they are.
# Everything here runs offline on a CPU with the embedded default, **PhantomCXR**, a
# physics-based simulator of chest radiographs. It serves as the "real" reference data
# and as a generator in its own right (`phantomcxr-physics`).
#
# **Why.** Before a synthetic data set is used for training or sharing, someone has to
# see it and measure it: does it look right, does it cover every patient group, does it
# copy its training images? The Explorer puts all of that in one window.
#
# Which generators are installed on this machine:

# %%
import medsynth_explore as mse

mse.list_generators()[["name", "family", "available"]]

# %% [markdown]
# The three lines: import, then `explore`. `n_reference` is the number of simulated
# "real" radiographs the generator is compared with (kept small so this runs in seconds).
# The app has tabs for generating, inpainting, embeddings, live metrics, fairness,
# the speed/quality trade-off, privacy, the model card and a visual Turing test.

# %%
import medsynth_explore as mse
app = mse.explore(generator="phantomcxr-physics", reference="phantomcxr", n_reference=200)
app

# %% [markdown]
# Everything the app shows lives in `app.session`, so it can also be reached from
# Python. The reference set is an `ImageSet`: images of shape (N, C, H, W) in [0, 1]
# plus one metadata row per image. Because the simulator knows the truth, every image
# carries its labels: age, sex, site and findings.

# %%
# NBVAL_CHECK_OUTPUT
ref = app.session.reference
print(ref.images.shape, ref.images.dtype)
print(ref.metadata[["cardiomegaly", "nodule", "effusion", "pneumothorax"]].mean().round(3).to_string())

# %% [markdown]
# Draw 64 images from the active generator (the same `seed` always gives the same
# images) and ask the session for the distribution metrics. FID and KID are distances
# (lower is better); precision, recall, density and coverage are shares (higher is
# better). Their values depend on the feature encoder: the domain CLIP when it is
# installed, otherwise downsampled pixels (tutorial 04 explains this).

# %%
samples = app.session.generate(64, seed=0)
print(app.session.encoder.id)
{k: round(v, 3) for k, v in app.session.metrics().items()}

# %% [markdown]
# ## Try this
#
# - Open the *Generate* tab above, set `findings` to *effusion* and press Generate;
#   the *Live metrics* tab updates as the samples arrive.
# - Add a shipped model: `mse.explore(generator=["phantomcxr-physics", "phantomcxr-vae"], n_reference=200)`
#   and compare them in the *Trilemma* tab.
'''

# ----------------------------------------------------------------------------------------
TUTORIALS["01_model_as_a_dataset"] = r'''
# %% [markdown]
# # 01 · A model as a data set: card, hash, export, provenance
#
# **What.** A trained generator can stand in for a data set: share the weights, and
# anyone can draw as many images as they need. For that to be trustworthy, each
# synthetic image must be traceable to *exactly* the model and the settings that made it.
#
# **How.** Every shipped checkpoint is one `.safetensors` file whose header carries a
# **model card** (what it was trained on, how, its limitations). Its **SHA-256** names
# the exact weights. `export` writes images together with a manifest of hashes and the
# generator's identity; `verify` checks a folder against it later.

# %%
import tempfile
from pathlib import Path

import numpy as np

import medsynth_explore as mse
from medsynth_explore.checkpoint import file_sha256, format_card
from medsynth_explore.export import export, verify

gen = mse.load_generator("phantomcxr-vae")
gen

# %% [markdown]
# The model card, as Markdown text. Read *Known limitations* before you use any model.

# %%
print(format_card(gen.card))

# %% [markdown]
# `gen.sha256` is the hash of the checkpoint file; anyone can recompute it from the
# file on disk. If the two differ, the weights are not the ones the card describes.

# %%
# NBVAL_CHECK_OUTPUT
print(len(gen.sha256), gen.sha256 == file_sha256(gen.path))

# %% [markdown]
# ## Draw a data set
#
# `sample` returns an `ImageSet`. The metadata holds the requested conditions and the
# provenance of every image: generator name, checkpoint hash, seed and the per-image
# seed, so a single image can be regenerated on its own.

# %%
ds = gen.sample(16, conditions={"sex": "F", "findings": ["effusion"]}, seed=0)
ds.metadata[["age", "sex", "effusion", "generator", "checkpoint_sha256", "seed", "image_seed"]].head()

# %% [markdown]
# ## Export with provenance, verify, load back
#
# `export` writes labelled 16-bit PNG files (each carries an "AI-generated" tag), a
# metadata table and `manifest.json` with the hash of every file. Shards are seeded
# from the run seed, so the same call always writes the same bytes.

# %%
work = Path(tempfile.mkdtemp(prefix="medsynth-tutorial-"))
out = export(gen, n=32, out=work / "vae-effusion", conditions={"findings": ["effusion"]}, seed=0, shard_size=16)
sorted(p.name for p in out.iterdir())

# %%
result = verify(out)
print(result.ok)
print(result)

# %% [markdown]
# Exporting again with the same seed reproduces every file byte for byte (the image
# hashes in the two manifests agree). Tampering with a file would make `verify` fail.

# %%
# NBVAL_CHECK_OUTPUT
import json

again = export(gen, n=32, out=work / "vae-effusion-again", conditions={"findings": ["effusion"]}, seed=0, shard_size=16)
files = lambda folder: json.loads((folder / "manifest.json").read_text())["files"]
print(files(out) == files(again), verify(again).ok)

# %% [markdown]
# The exported folder is an ordinary data set: `load_dataset` reads it back with its
# metadata. The 16-bit PNG files round the images to 1/65535.

# %%
# NBVAL_CHECK_OUTPUT
back = mse.load_dataset(out)
print(len(back), back.images.shape[1:], int(back.metadata["effusion"].sum()))
print(back.metadata["generator"].unique().tolist(), (back.metadata["checkpoint_sha256"] == gen.sha256).all())

# %% [markdown]
# ## Try this
#
# - Change one byte of a PNG in the export folder and run `verify(out)` again.
# - Export from `"phantomcxr-gan"` and compare its card with the VAE's.
# - The same from a shell: `medsynth generate phantomcxr-vae --n 100 --out data/vae` then `medsynth verify data/vae`.
'''

# ----------------------------------------------------------------------------------------
TUTORIALS["02_conditions_and_prompts"] = r'''
# %% [markdown]
# # 02 · Conditions and prompts: does the model do what it is told?
#
# **What.** Conditional generators take age, sex and findings (and some take free
# text). A requested "effusion" is only useful if the image then *shows* an effusion.
#
# **How.** Three independent checks:
# 1. a measurement that follows from the physics (a pleural effusion is fluid at the
#    bottom of the chest, so the lower lung zone gets brighter),
# 2. the reference classifier, a CNN trained on the "real" images (if installed),
# 3. CLIPScore with the domain CLIP, which compares each image with its report text
#    (if installed).

# %%
import numpy as np
import pandas as pd

import medsynth_explore as mse
from medsynth_explore.features import reference_classifier as rc_module
from medsynth_explore.features import domain_clip as dc_module

physics = mse.load_generator("phantomcxr-physics")
vae = mse.load_generator("phantomcxr-vae")
print(physics.conditions.names, physics.conditions.finding_names)

# %% [markdown]
# ## Steering
#
# Scalars apply to every image; a list gives one value per image. Conditions left out
# are drawn from the training distribution (seeded).

# %%
n = 32
with_eff = physics.sample(n, conditions={"age": 65, "findings": ["effusion"]}, seed=0)
without = physics.sample(n, conditions={"age": 65, "findings": []}, seed=0)
with_eff.metadata[["age", "sex", "effusion", "cardiomegaly"]].head(3)

# %% [markdown]
# ## Check 1: a physical measurement
#
# Fluid collects in the costophrenic angles, the lower outer corners of the lungs.
# Measure the mean brightness there (rows 58-75 %, outer columns) minus the same
# columns higher up (rows 30-45 %). Fluid adds attenuation, so the difference grows
# with an effusion. The physics generator is the ground truth; the shift is small on
# average because many effusions are small and one-sided.

# %%
def lower_zone_contrast(images):
    h, w = images.shape[-2:]
    cols = np.r_[int(0.12 * w):int(0.32 * w), int(0.68 * w):int(0.88 * w)]
    low = images[:, 0, int(0.58 * h):int(0.75 * h)][:, :, cols].mean(axis=(1, 2))
    mid = images[:, 0, int(0.30 * h):int(0.45 * h)][:, :, cols].mean(axis=(1, 2))
    return low - mid

# %%
# NBVAL_CHECK_OUTPUT
for name, s in [("physics, effusion", with_eff), ("physics, none", without)]:
    print(f"{name:20s} {lower_zone_contrast(s.images).mean():+.3f}")

# %% [markdown]
# The same measurement for the shipped VAE: if it learned the condition, its
# "effusion" images move the same way.

# %%
v_eff = vae.sample(n, conditions={"age": 65, "findings": ["effusion"]}, seed=0)
v_none = vae.sample(n, conditions={"age": 65, "findings": []}, seed=0)
for name, s in [("vae, effusion", v_eff), ("vae, none", v_none)]:
    print(f"{name:20s} {lower_zone_contrast(s.images).mean():+.3f}")

# %% [markdown]
# ## Check 2: the reference classifier
#
# A CNN trained on simulated "real" images predicts each finding, sex and age. For
# images that follow their conditions, `p_effusion` is high when effusion was
# requested and low otherwise. Its checkpoint is a separate file; the cell says so
# when it is not installed.

# %%
if rc_module.CLASSIFIER_ASSET.is_file():
    clf = rc_module.ReferenceClassifier()
    rows = {}
    for name, s in [("physics, effusion", with_eff), ("physics, none", without), ("vae, effusion", v_eff), ("vae, none", v_none)]:
        rows[name] = clf.predict(s.images).mean()
    print(pd.DataFrame(rows).T.round(2))
else:
    print(f"reference classifier not installed ({rc_module.CLASSIFIER_ASSET}); train it with "
          "`medsynth train --model classifier --data phantomcxr --out FILE`.")

# %% [markdown]
# ## Check 3: CLIPScore and free text
#
# CLIPScore is `100 * max(cos, 0)` between the image embedding and the text embedding.
# Read it *relatively*: absolute values of 60-70 are typical for any chest sentence.
# Images that show an effusion should score higher with "Pleural effusion." than
# images without, and lower with "No pleural effusion." (negations are hard for
# CLIP models, so that column usually moves less). Models with the `"text"` capability also take a free-text
# `prompt` instead of structured conditions.

# %%
if dc_module.DEFAULT_CLIP_PATH.is_file():
    from medsynth_explore.metrics import clip_score

    clip = dc_module.load_domain_clip()
    scores = {}
    for text in ["Pleural effusion.", "No pleural effusion."]:
        txt = clip.encode_text([text] * n)
        scores[text] = {name: clip_score(clip.encode_image(s.images), txt).mean()
                        for name, s in [("physics, effusion", with_eff), ("physics, none", without),
                                        ("vae, effusion", v_eff), ("vae, none", v_none)]}
    print(pd.DataFrame(scores).round(1))
else:
    print(f"domain CLIP not installed ({dc_module.DEFAULT_CLIP_PATH}).")

# %%
for name in mse.list_generators().query("available")["name"]:
    g = mse.load_generator(name)
    print(f"{name:22s} text prompts: {'text' in g.capabilities}")

# %% [markdown]
# Asking a model for something it cannot do raises a clear error instead of being
# ignored silently:

# %%
try:
    physics.sample(2, prompt="small left apical pneumothorax", seed=0)
except mse.CapabilityError as err:
    print("CapabilityError:", err)

# %% [markdown]
# ## Try this
#
# - Steer age: `physics.sample(32, conditions={"age": [20] * 16 + [85] * 16}, seed=0)` and look at bone brightness.
# - Repeat check 1 for `"phantomcxr-gan"`.
# - With a text-capable model: `g.sample(8, prompt="large right pleural effusion", seed=0)`.
'''

# ----------------------------------------------------------------------------------------
TUTORIALS["03_inpainting_and_counterfactuals"] = r'''
# %% [markdown]
# # 03 · Inpainting and counterfactuals: add a lesion, remove a chest tube
#
# **What.** Inpainting regenerates a masked part of an image (mask 1 = regenerate,
# 0 = keep) under new conditions. The result is a *counterfactual*: the same patient,
# with or without a finding. Counterfactuals answer "what does my classifier look at?".
#
# **Why.** A classifier can learn a **shortcut**: in hospitals, patients treated for a
# pneumothorax often have a chest tube, so a model may detect the tube instead of the
# air. It then fails on untreated patients, who need it most.

# %%
import numpy as np
import pandas as pd
import plotly.express as px

import medsynth_explore as mse
from medsynth_explore.phantom import Population, render, sample_patients

gen = mse.load_generator("phantomcxr-physics")
print(sorted(gen.capabilities))

# %% [markdown]
# ## Ground-truth masks
#
# The simulator returns masks of the lungs, heart and each finding. Take a patient
# without findings, then the same patient (same anatomy) with a nodule.

# %%
patients = sample_patients(4, Population(prevalence={"nodule": 0.0, "effusion": 0.0, "pneumothorax": 0.0, "cardiomegaly": 0.0}), seed=0)
with_nodule = patients.copy()
with_nodule["nodule"] = 1
images, masks = render(with_nodule, size=64, seed=0, return_masks=True)
print({k: int(v.sum()) for k, v in masks.items()})

# %% [markdown]
# ## Remove a lesion
#
# Mask the nodule (grown by two pixels so its edge is included) and inpaint with no
# findings. Outside the mask the image must stay *exactly* the same.

# %%
from scipy.ndimage import binary_dilation

mask = np.stack([binary_dilation(m, iterations=2) for m in masks["nodule"]])[:, None].astype(np.float32)
removed = gen.inpaint(images, mask, conditions={"findings": []}, seed=1)
added = gen.inpaint(removed.images, mask, conditions={"findings": ["nodule"]}, seed=1)

# %%
# NBVAL_CHECK_OUTPUT
keep = mask == 0
print("outside the mask unchanged:", bool((removed.images[keep] == images[keep]).all()))
inside = mask == 1
print(f"mean change inside the mask: {np.abs(removed.images - images)[inside].mean():.3f}")

# %%
fig = px.imshow(np.concatenate([images[:, 0], removed.images[:, 0], added.images[:, 0]], axis=2),
                facet_col=0, facet_col_wrap=2, binary_string=True, title="with nodule | removed | added back")
fig.show()

# %% [markdown]
# ## A shortcut stress test
#
# Build a training cohort where 90 % of pneumothorax patients have a chest tube and
# almost nobody else does. The pneumothoraces are small (10 % of the lung width), so
# the tube is the easier signal. Train a logistic regression on 32 x 32 pixels.

# %%
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from medsynth_explore.features import PixelEncoder

def cohort(n, seed, tube_rate, prevalence):
    pop = Population(prevalence={"pneumothorax": prevalence}, chest_tube_given_pneumothorax=tube_rate,
                     chest_tube_given_no_pneumothorax=0.0)
    table = sample_patients(n, pop, seed=seed)
    table.loc[table["pneumothorax"] == 1, "pneumothorax_size"] = 0.10
    return table, render(table, size=64, seed=seed)

enc = PixelEncoder(size=32)
train_table, train_images = cohort(400, seed=1, tube_rate=0.9, prevalence=0.3)
model = LogisticRegression(C=1.0, max_iter=3000).fit(enc.encode(train_images), train_table["pneumothorax"])

# %% [markdown]
# Test on a new cohort in which half of the pneumothorax patients have a tube, and
# score separately: pneumothorax *with* tube vs no pneumothorax, and *without* tube vs
# no pneumothorax. AUROC 0.5 is chance, 1.0 is perfect.

# %%
# NBVAL_CHECK_OUTPUT
test_table, test_images = cohort(300, seed=2, tube_rate=0.5, prevalence=0.5)
p = model.predict_proba(enc.encode(test_images))[:, 1]
y = test_table["pneumothorax"].to_numpy()
for tube in (1, 0):
    sel = (y == 0) | (test_table["chest_tube"].to_numpy() == tube)
    print(f"pneumothorax {'with' if tube else 'without'} tube: AUROC {roc_auc_score(y[sel], p[sel]):.2f}")

# %% [markdown]
# The classifier is worse on untreated patients. The counterfactual makes the cause
# visible: take the *same* pneumothorax patients and remove only their tube
# (the simulator re-renders the same anatomy without it), then compare predictions.

# %%
# NBVAL_CHECK_OUTPUT
treated = (test_table["pneumothorax"] == 1) & (test_table["chest_tube"] == 1)
no_tube = test_table.copy()
no_tube["chest_tube"] = 0
cf_images = render(no_tube, size=64, seed=2)
p_cf = model.predict_proba(enc.encode(cf_images))[:, 1]
print(f"patients: {int(treated.sum())}, pixels changed: {np.mean(np.abs(cf_images - test_images)[treated.to_numpy()] > 1e-3):.3f}")
print(f"mean P(pneumothorax) with tube {p[treated].mean():.2f} -> tube removed {p_cf[treated].mean():.2f}")

# %% [markdown]
# A drop in probability after removing only the tube means the model relies on it.
# A classifier to trust would give the same answer for both images.
#
# ## Try this
#
# - Set `chest_tube_given_pneumothorax=0.5` for training: does the gap close?
# - Make the pneumothoraces larger (`0.4`): the real signal gets easier and the shortcut matters less.
# - Inpaint an effusion with `"phantomcxr-vae"` using `masks["lungs"]`, and compare with the physics result.
'''

# ----------------------------------------------------------------------------------------
TUTORIALS["04_embeddings_and_metrics"] = r'''
# %% [markdown]
# # 04 · Embeddings and metrics: FID, KID, precision, recall, coverage
#
# **What.** Distribution metrics compare a set of real images with a set of
# synthetic ones in a *feature space*:
# - **FID**: distance between Gaussians fitted to the two feature sets (lower is better).
# - **KID**: a kernel distance (MMD) that is unbiased for small samples (lower is better).
# - **Precision / density**: do synthetic images fall where real ones are? (fidelity)
# - **Recall / coverage**: are all kinds of real images produced? (diversity)
#
# **Why this tutorial.** The numbers depend on the *sample size* and the *encoder*.
# A value means nothing without both.

# %%
import numpy as np
import pandas as pd
import plotly.express as px

import medsynth_explore as mse
from medsynth_explore import metrics as M
from medsynth_explore.features import PixelEncoder, default_encoder_name, get_encoder

real = mse.load_dataset("phantomcxr", n=400, seed=1)
other_real = mse.load_dataset("phantomcxr", n=400, seed=2)
physics = mse.load_generator("phantomcxr-physics").sample(200, seed=0)
vae = mse.load_generator("phantomcxr-vae").sample(200, seed=0)

# %% [markdown]
# ## A map of the features (UMAP)
#
# Fit UMAP on real features, then place synthetic images into the same map. Regions
# with real points but no synthetic ones are what a model misses.

# %%
import umap

enc = get_encoder("pixels")
f_real = enc.encode(real.images)
mapper = umap.UMAP(n_neighbors=15, random_state=0).fit(f_real)
xy = np.concatenate([mapper.embedding_, mapper.transform(enc.encode(vae.images))])
labels = ["real"] * len(real) + ["vae"] * len(vae)
px.scatter(x=xy[:, 0], y=xy[:, 1], color=labels, opacity=0.6, title="UMAP of pixel features").show()

# %% [markdown]
# ## Metrics with a baseline
#
# Always compare with **real vs real**: two independent real samples. That is the
# best any generator can get at this sample size. Pixel features lie in [0, 1], so
# FID values are small; they are shown x 1000. Here with downsampled pixels as
# features (transparent and deterministic), 8 x 8 = 64 values per image: FID needs
# more images than feature dimensions, or its covariance is rank-deficient (the
# package warns when that happens).

# %%
# NBVAL_CHECK_OUTPUT
def table(enc, n=200):
    f_real = enc.encode(real.images)
    rows = {}
    for name, s in [("real vs real", other_real), ("physics", physics), ("vae", vae)]:
        f = enc.encode(s.images[:n])
        res = M.prdc(f_real, f, k=5)
        rows[name] = {"FID x1000": 1000 * M.fid(f_real, f), "KID x1000": 1000 * M.kid(f_real, f, subsets=20, subset_size=100)[0],
                      "precision": res["precision"], "recall": res["recall"], "coverage": res["coverage"]}
    return pd.DataFrame(rows).T

print(table(PixelEncoder(size=8)).loc[["real vs real", "physics"]].round(2))

# %% [markdown]
# The physics simulator *is* the real distribution here, so it scores like real vs
# real. The shipped VAE (a small model trained on a CPU) is further away:

# %%
table(PixelEncoder(size=8)).round(2)

# %% [markdown]
# ## Sample size changes FID
#
# FID is biased: the smaller the sample, the larger the value, even between two sets
# drawn from the same distribution. Compare FIDs only at equal sample sizes (or use
# `M.fid_infinity`, which extrapolates to an infinite sample).

# %%
# NBVAL_CHECK_OUTPUT
f_a = PixelEncoder(size=8).encode(real.images)
f_b = PixelEncoder(size=8).encode(other_real.images)
for n in (100, 200, 400):
    print(f"n = {n:3d}: FID(real, real) x 1000 = {1000 * M.fid(f_a[:n], f_b[:n]):.2f}")

# %% [markdown]
# ## The encoder changes everything
#
# The same images, three encoders: downsampled pixels, a randomly initialised CNN,
# and the domain CLIP trained on PhantomCXR images and reports (if installed). FID
# values are not comparable *across* encoders; rankings usually are more stable.

# %%
# the 256-dimensional encoders warn about rank-deficient covariances at 200 images: here that is the point
names = ["pixels", "random-cnn"] + (["phantomcxr-clip"] if default_encoder_name() == "phantomcxr-clip" else [])
for name in names:
    print(f"--- {name}")
    print(table(get_encoder(name))[["FID x1000", "precision", "recall", "coverage"]].round(3))

# %% [markdown]
# ## Try this
#
# - Use `M.fid_infinity(f_real, f_vae)` and compare with the plain FID.
# - Compute metrics per subgroup: `mse.evaluate(real, vae, by=["sex"], encoder="pixels")`.
# - Try `k=3` and `k=10` in `M.prdc`: precision and recall move, density and coverage less.
'''

# ----------------------------------------------------------------------------------------
TUTORIALS["05_fairness"] = r"""
# %% [markdown]
# # 05 · Fairness: find a subgroup gap, close part of it with synthetic data
#
# **What.** Train a classifier on a cohort in which one group is rare, then measure its
# performance *per subgroup*. Then add synthetic images of the under-represented group
# ("targeted oversampling") and measure again.
#
# Here women make up only 2 % of the training cohort, built with
# `Population(subgroup_shares={"sex == 'F'": 0.02})`. Any pandas query works as a
# group, e.g. `"sex == 'F' and age > 70"` (see *Try this*).
#
# **How to read the numbers.** AUROC per group with a bootstrap 95 % interval. A gap
# counts only if the intervals say so; small test groups give wide intervals.

# %%
import numpy as np
import pandas as pd

import medsynth_explore as mse
from medsynth_explore.features import PixelEncoder
from medsynth_explore.phantom import Population, simulate
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

GROUP = "sex == 'F'"
FINDING = "pneumothorax"
train = simulate(800, seed=1, population=Population(subgroup_shares={GROUP: 0.02}))
test = simulate(600, seed=2, population=Population(prevalence={FINDING: 0.3}, subgroup_shares={GROUP: 0.5}))
print(f"group in training: {int(train.metadata.eval(GROUP).sum())} of {len(train)}; in the test set: {int(test.metadata.eval(GROUP).sum())} of {len(test)}")

# %% [markdown]
# The classifier: logistic regression on 32 x 32 pixels, predicting pneumothorax.

# %%
enc = PixelEncoder(size=32)
X_test = enc.encode(test.images)
y_test = test.metadata[FINDING].to_numpy()
in_group = test.metadata.eval(GROUP).to_numpy()

def fit(images, labels):
    return LogisticRegression(C=1.0, max_iter=3000).fit(enc.encode(images), labels)

def per_group_auroc(model, n_boot=200, seed=0):
    p = model.predict_proba(X_test)[:, 1]
    rng = np.random.default_rng(seed)
    rows = {}
    for name, sel in [("group", in_group), ("everyone else", ~in_group)]:
        y, q = y_test[sel], p[sel]
        boots = []
        for _ in range(n_boot):
            i = rng.integers(0, len(y), len(y))
            if 0 < y[i].sum() < len(i):
                boots.append(roc_auc_score(y[i], q[i]))
        lo, hi = np.percentile(boots, [2.5, 97.5])
        rows[name] = {"AUROC": roc_auc_score(y, q), "low": lo, "high": hi, "n": int(sel.sum())}
    return pd.DataFrame(rows).T

# %%
# NBVAL_CHECK_OUTPUT
biased = fit(train.images, train.metadata[FINDING])
before = per_group_auroc(biased)
print(before.round(2))
print(f"gap (everyone else - group): {before.AUROC['everyone else'] - before.AUROC['group']:+.2f}")

# %% [markdown]
# Women's radiographs differ (breast shadows over the lower lungs, smaller lungs), and
# a classifier that saw 16 of them does not transfer well.
#
# ## Targeted synthetic oversampling
#
# Ask a generator for 200 images of women of all ages, with findings drawn from the
# training distribution, and add them to the training set. The physics generator is
# used here; any conditional model works the same way (try `"phantomcxr-vae"`).

# %%
gen = mse.load_generator("phantomcxr-physics")
rng = np.random.default_rng(0)
k = 200
extra = gen.sample(k, conditions={"sex": "F", "age": rng.uniform(20, 90, k).round(1).tolist()}, seed=3)
print(extra.metadata["sex"].value_counts().to_dict(), f"{FINDING} in {int(extra.metadata[FINDING].sum())} images")

# %%
# NBVAL_CHECK_OUTPUT
augmented = fit(np.concatenate([train.images, extra.images]),
                np.concatenate([train.metadata[FINDING].to_numpy(), extra.metadata[FINDING].to_numpy()]))
after = per_group_auroc(augmented)
print(after.round(2))
print(f"gap (everyone else - group): {after.AUROC['everyone else'] - after.AUROC['group']:+.2f}")

# %% [markdown]
# Read the result with the intervals: the group's AUROC rises and the gap shrinks,
# while everyone else keeps theirs. Part of the gap remains: 200 extra images do not
# make up for a cohort of 784 men. Extra data for the group is also simply more data:
# add 200 images drawn from the *whole* population instead to separate the two effects.
#
# The `Fairness` tab of the Explorer (and `Session.fairness`) shows distribution
# metrics of a generator per subgroup in the same way.
#
# ## Try this
#
# - Add 200 untargeted images (`gen.sample(200, seed=3)`) instead and compare.
# - Make old women the rare group: `GROUP = "sex == 'F' and age > 70"` (and draw ages 71-90).
#   On PhantomCXR that gap is much smaller: a rare group is not always a disadvantaged one. Measure before you fix.
# - Change `FINDING` to `"effusion"`, or use `"phantomcxr-vae"` as the generator: does a model
#   trained on an unbiased cohort make images that help as much as the simulator's?
"""

# ----------------------------------------------------------------------------------------
TUTORIALS["06_privacy"] = r'''
# %% [markdown]
# # 06 · Privacy: memorization and copy detection
#
# **What.** A generator trained on a small data set can reproduce its training images.
# Shared synthetic data would then leak patients. We compare two "generators":
#
# - a **copier** that returns its training images with a little noise (a model that
#   memorised everything),
# - the **simulator**, which draws fresh patients and never saw the training set.
#
# **How.** In a feature space, measure the distance from each synthetic image to its
# nearest training image, and compare with real **held-out** images (never trained on):
# - *copy rate*: share of synthetic images closer to a training image than the closest
#   1 % of held-out images are (about 0.01 without copying),
# - *authenticity*: share of synthetic images that are not closer to their nearest
#   training image than that image's own nearest real neighbour,
# - *C_T* (Meehan et al. 2020): a z-score, clearly negative (below -3) means copying.

# %%
import numpy as np

import medsynth_explore as mse
from medsynth_explore import metrics as M
from medsynth_explore.features import get_encoder

train = mse.load_dataset("phantomcxr", n=300, seed=11)
heldout = mse.load_dataset("phantomcxr", n=300, seed=12)

rng = np.random.default_rng(0)
pick = rng.integers(0, len(train), 300)
copies = np.clip(train.images[pick] + rng.normal(0, 0.01, train.images[pick].shape), 0, 1).astype(np.float32)
fresh = mse.load_generator("phantomcxr-physics").sample(300, seed=13).images

enc = get_encoder("pixels")
f_train, f_held = enc.encode(train.images), enc.encode(heldout.images)
f_copy, f_fresh = enc.encode(copies), enc.encode(fresh)

# %% [markdown]
# ## Nearest-neighbour distances

# %%
# NBVAL_CHECK_OUTPUT
d_held, _ = M.nn_distances(f_held, f_train)
for name, f in [("held-out real", f_held), ("copier", f_copy), ("simulator", f_fresh)]:
    d, _ = M.nn_distances(f, f_train)
    print(f"{name:14s} median distance to nearest training image: {np.median(d):.3f}")

# %% [markdown]
# ## Copy rate, authenticity, C_T

# %%
# NBVAL_CHECK_OUTPUT
for name, f in [("copier", f_copy), ("simulator", f_fresh)]:
    cr = M.copy_rate(f_train, f, f_held, q=0.01)
    au = M.authenticity(f_train, f)
    ct = M.ct_test(f_train, f_held, f, n_cells=5, min_count=20, seed=0)
    print(f"{name:10s} copy rate {cr['copy_rate']:.2f} (expected {cr['expected']:.2f})  "
          f"authenticity {au['authenticity']:.2f}  C_T {ct['ct']:+.1f}")

# %% [markdown]
# The copier is caught by all three. The simulator behaves like held-out data: a copy
# rate near 1 %, C_T near 0. Note that low copy rate is *evidence*, not proof, of
# privacy: it depends on the feature space, and a model can leak in ways these
# distances do not see.
#
# ## What a small training set does
#
# With few training images, real held-out images lie further from the training set,
# so the threshold grows and near-copies are harder to tell from new images. Repeat
# the copier test with only 30 training images:

# %%
# NBVAL_CHECK_OUTPUT
for n_train in (300, 30):
    ft = f_train[:n_train]
    d_h, _ = M.nn_distances(f_held, ft)
    cr_fresh = M.copy_rate(ft, f_fresh, f_held)["copy_rate"]
    print(f"train size {n_train:3d}: median held-out distance {np.median(d_h):.3f}, simulator copy rate {cr_fresh:.2f}")

# %% [markdown]
# The Explorer's *Privacy* tab draws these distance histograms and shows the closest
# pairs side by side (`Session(train=..., holdout=...)`).
#
# ## Try this
#
# - Increase the copier noise from 0.01 to 0.05: when does it stop being detected?
# - Use `get_encoder("random-cnn")` instead of pixels.
# - `M.privacy_report(f_train, f_copy, f_held)` gives all numbers in one dict.
'''

# ----------------------------------------------------------------------------------------
TUTORIALS["07_trilemma"] = r'''
# %% [markdown]
# # 07 · The generative trilemma: speed, quality, diversity
#
# **What.** Generative models trade three things: **speed** of sampling,
# **quality** (fidelity: FID, precision) and **diversity** (recall, coverage).
# GANs are fast and sharp but drop modes; VAEs are fast and diverse but blurry;
# diffusion models are good at both but slow; a physics simulator is exact where its
# physics is, but only as diverse as its parameters.
#
# **How.** Load every installed generator into one `Session`, draw the same number of
# images from each, and measure all three on this machine. Speeds are wall-clock
# numbers of *this* run, so they change from machine to machine.

# %%
import pandas as pd
import plotly.express as px

import medsynth_explore as mse
from medsynth_explore.session import Session

wanted = ["phantomcxr-physics", "phantomcxr-vae", "phantomcxr-gan", "phantomcxr-diffusion"]
available = mse.list_generators().set_index("name")["available"]
names = [n for n in wanted if available[n]]
missing = [n for n in wanted if not available[n]]
print("compared:", names)
print("not installed (train them to include them):", missing)

# %%
session = Session(reference="phantomcxr", generators=names, n_reference=300, encoder="pixels", seed=0)
result = session.trilemma(n=48, seed=0)
result.round(3)

# %% [markdown]
# Read the table: `images_per_s` is speed (higher is faster), `fid` and `precision`
# are quality, `recall` and `coverage` diversity. With 48 images the intervals are wide;
# the ordering matters more than the third digit.

# %%
px.scatter(result, x="images_per_s", y="coverage", size="precision", color="generator", log_x=True,
           hover_data=["fid", "recall"], title="speed vs diversity (marker size: precision)").show()

# %% [markdown]
# ## Try this
#
# - Raise `n` to 200 and see which differences survive.
# - For the diffusion model, sampling steps trade speed for quality:
#   `mse.load_generator("phantomcxr-diffusion").sample(48, steps=10, seed=0)`.
# - The Explorer's *Trilemma* tab shows the same table live: `mse.explore(generator=names, n_reference=300)`.
'''

# ----------------------------------------------------------------------------------------
TUTORIALS["08_bring_your_own"] = r'''
# %% [markdown]
# # 08 · Bring your own data and models
#
# **What.** Everything in the earlier tutorials works on your data: a folder of images
# with a CSV, a MedMNIST `.npz`, a folder of DICOM files, and generators from
# diffusers. This notebook makes a tiny example of each, so it runs anywhere.
#
# **Offline.** Nothing is downloaded. A hub id that is not in the local cache fails
# with an `OfflineError` that says what to fetch and where to put it.

# %%
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import medsynth_explore as mse

work = Path(tempfile.mkdtemp(prefix="medsynth-byo-"))
rng = np.random.default_rng(0)

# %% [markdown]
# ## A folder of images with a CSV
#
# One `metadata.csv` with a `filename` column; every other column becomes metadata.

# %%
# NBVAL_CHECK_OUTPUT
folder = work / "pngs"
folder.mkdir()
rows = []
for i in range(6):
    img = (rng.random((32, 32)) * 255).astype(np.uint8)
    Image.fromarray(img).save(folder / f"img{i}.png")
    rows.append({"filename": f"img{i}.png", "age": 40 + 5 * i, "sex": "FM"[i % 2]})
pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)

ds = mse.load_dataset(folder)
print(ds.images.shape, ds.images.dtype, float(ds.images.min()) >= 0, float(ds.images.max()) <= 1)
print(ds.metadata[["filename", "age", "sex"]].head(3).to_string())

# %% [markdown]
# ## A MedMNIST `.npz`
#
# MedMNIST files hold `train_images`, `train_labels`, `val_...`, `test_...` as uint8.

# %%
# NBVAL_CHECK_OUTPUT
npz = work / "tiny_pneumoniamnist.npz"
arrays = {}
for split, n in [("train", 8), ("val", 2), ("test", 4)]:
    arrays[f"{split}_images"] = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
    arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 1))
np.savez(npz, **arrays)

mnist = mse.load_dataset(npz)
print(mnist.images.shape, mnist.metadata["split"].value_counts().sort_index().to_dict())
print(len(mse.load_dataset(npz, split="test")))

# %% [markdown]
# ## A DICOM folder
#
# Pixel data is scaled by its stored bit depth; PatientAge and PatientSex become
# `age` and `sex`. Here we write three small 12-bit files with pydicom.

# %%
# NBVAL_CHECK_OUTPUT
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

dicom_dir = work / "dicom"
dicom_dir.mkdir()
for i, (age, sex) in enumerate([("045Y", "F"), ("063Y", "M"), ("081Y", "F")]):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    d = FileDataset(str(dicom_dir / f"{i}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    d.SOPClassUID, d.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    d.PatientAge, d.PatientSex, d.Modality = age, sex, "DX"
    d.Rows = d.Columns = 32
    d.SamplesPerPixel, d.PhotometricInterpretation = 1, "MONOCHROME2"
    d.BitsAllocated, d.BitsStored, d.HighBit, d.PixelRepresentation = 16, 12, 11, 0
    d.PixelData = (rng.random((32, 32)) * 4095).astype(np.uint16).tobytes()
    d.save_as(dicom_dir / f"{i}.dcm", enforce_file_format=True)

dcm = mse.load_dataset(dicom_dir)
print(dcm.images.shape, dcm.metadata[["age", "sex"]].to_dict("list"))

# %% [markdown]
# Bad input gets a `DataError` that says what is wrong and how to fix it:

# %%
# NBVAL_CHECK_OUTPUT
(work / "no_csv").mkdir()
Image.fromarray(np.zeros((8, 8), np.uint8)).save(work / "no_csv" / "a.png")
try:
    mse.load_dataset(work / "no_csv")
except mse.DataError as err:
    print("DataError:", str(err).replace(str(work), "<work>"))

# %% [markdown]
# ## A diffusers pipeline folder
#
# Any local diffusers pipeline folder (with `model_index.json`) loads as a generator.
# Here a tiny, untrained DDPM, so the images are noise, but the whole protocol works:
# seeds, metadata with the folder's hash, the same metrics.

# %%
# NBVAL_CHECK_OUTPUT
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

torch.manual_seed(0)
unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                   down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                   norm_num_groups=4)
DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=20)).save_pretrained(work / "tiny-ddpm")

g = mse.load_generator(work / "tiny-ddpm")
a = g.sample(3, seed=0, steps=4)
b = g.sample(3, seed=0, steps=4)
print(type(g).__name__, sorted(g.capabilities), g.image_shape)
print("same seed, same images:", bool(np.allclose(a.images, b.images, atol=1e-5)))

# %% [markdown]
# ## A hub id, offline
#
# `load_generator("org/model")` looks only in the local Hugging Face cache. Offline,
# a model that is not there raises `OfflineError` with the command to fetch it
# on a machine with network access; this is the documented behaviour, not a fallback.

# %%
try:
    mse.load_generator("example-org/chest-xray-diffusion")
except mse.OfflineError as err:
    print("OfflineError:", err)

# %% [markdown]
# ## Use them
#
# Every loaded set is an `ImageSet`, so the rest of the package applies, e.g.
# `mse.evaluate(real, synthetic, encoder="pixels")`, or
# `mse.explore(generator=str(work / "tiny-ddpm"), reference=folder)` for the Explorer.
#
# ## Try this
#
# - Load the real PneumoniaMNIST file if you have it: `mse.load_dataset("pneumoniamnist.npz", split="test")`.
# - Write a PhantomCXR set to a folder with `mse.load_dataset("phantomcxr", n=50).to_folder("my_folder")`
#   and open the CSV.
# - Pass your own checkpoint path to `mse.load_generator`: safetensors files with a model card load directly.
'''


# ========================================================================================
def parse_percent(text: str) -> list:
    """Split percent-format source into nbformat cells."""
    cells, kind, buf = [], None, []

    def flush():
        if kind is None:
            return
        body = "\n".join(buf).strip("\n")
        if kind == "markdown":
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(body))
        else:
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.strip("\n").splitlines():
        if line.startswith("# %%"):
            flush()
            kind, buf = ("markdown" if "[markdown]" in line else "code"), []
        else:
            buf.append(line)
    flush()
    return cells


def build(name: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = parse_percent(TUTORIALS[name])
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, c in enumerate(nb.cells):
        c["id"] = f"{name[:2]}-{i:02d}"
    return nb


def tidy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Keep outputs only in NBVAL_CHECK_OUTPUT cells; drop widget state and run metadata."""
    nb.metadata.pop("widgets", None)
    for key in list(nb.metadata.get("language_info", {})):
        if key != "name":
            nb.metadata["language_info"].pop(key)
    count = 0
    for c in nb.cells:
        c.metadata = {}
        if c.cell_type != "code":
            continue
        if CHECK in c.source:
            count += 1
            c.execution_count = count
            for o in c.outputs:
                if "execution_count" in o:
                    o["execution_count"] = count
                o.pop("metadata", None) if o.get("output_type") == "stream" else None
                if "metadata" in o:
                    o["metadata"] = {}
        else:
            c.outputs = []
            c.execution_count = None
    return nb


def run(name: str, timeout: int = 600) -> float:
    from nbclient import NotebookClient

    nb = build(name)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NB_DIR)}}).execute()
    seconds = time.perf_counter() - t0
    for c in nb.cells:
        if c.cell_type == "code" and CHECK in c.source:
            for o in c.outputs:
                if o.get("output_type") == "stream" and o.get("name") == "stderr":
                    raise SystemExit(f"{name}: a checked cell wrote to stderr, which nbval would compare:\n{o['text']}")
    nbformat.write(tidy(nb), NB_DIR / f"{name}.ipynb")
    return seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", help="prefixes of the tutorials to write (default: all)")
    ap.add_argument("--no-exec", action="store_true", help="write the notebooks without executing them")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    NB_DIR.mkdir(exist_ok=True)
    names = [n for n in TUTORIALS if not args.only or any(n.startswith(p) for p in args.only)]
    for name in names:
        if args.no_exec:
            nbformat.write(tidy(build(name)), NB_DIR / f"{name}.ipynb")
            print(f"wrote {name}.ipynb")
        else:
            print(f"{name}.ipynb executed in {run(name):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
