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
no_findings = Population(prevalence={"nodule": 0.0, "effusion": 0.0, "pneumothorax": 0.0, "cardiomegaly": 0.0})
patients = sample_patients(4, no_findings, seed=0)
with_nodule = patients.copy()
with_nodule["nodule"] = 1
images, masks = render(with_nodule, size=64, seed=0, return_masks=True)
print({k: int(v.sum()) for k, v in masks.items()})

# %% [markdown]
# ## Remove a lesion
#
# Mask the nodule (grown by two pixels so its edge is included) and inpaint with no
# findings. Outside the mask the image must stay *exactly* the same. The images go in as
# an `ImageSet` with the patient table as metadata, so the simulator re-renders *these*
# patients (same anatomy, build and site) inside the mask; from a bare array it would
# have to invent new patients, and their tissue would show as a patch.

# %%
from scipy.ndimage import binary_dilation

from medsynth_explore.data import ImageSet

mask = np.stack([binary_dilation(m, iterations=2) for m in masks["nodule"]])[:, None].astype(np.float32)
removed = gen.inpaint(ImageSet(images, with_nodule), mask, conditions={"findings": []}, seed=1)
added = gen.inpaint(removed, mask, conditions={"findings": ["nodule"]}, seed=1)

# %%
# NBVAL_CHECK_OUTPUT
keep = mask == 0
print("outside the mask unchanged:", bool((removed.images[keep] == images[keep]).all()))
inside = mask == 1
print(f"mean change inside the mask: {np.abs(removed.images - images)[inside].mean():.3f}")

# %% [markdown]
# Look at each patient: the original with its nodule, the nodule removed, the
# difference (blue: darker, red: brighter, white: unchanged; zero outside the mask) and
# a nodule inpainted back into the emptied region. The mask column shows in white the
# region that was allowed to change.

# %%
from medsynth_explore.data.display import image_table, png_bytes

diff = removed.images - images
scale = float(np.abs(diff).max()) or 1.0
image_table({f"patient {i}": {"with nodule": images[i : i + 1], "mask": mask[i : i + 1],
                              "removed": removed.images[i : i + 1],
                              "removed − original": [png_bytes(diff[i] / scale, cmap="diverging")],
                              "added back": added.images[i : i + 1]} for i in range(len(images))}, width=110)

# %% [markdown]
# ## A shortcut stress test
#
# Build a training cohort where 90 % of pneumothorax patients have a chest tube and
# nobody else has one. The pneumothoraces are small (pleural air takes 10 % of the
# lung's projected area), so the tube is the easier signal. Train a logistic regression
# on 32 x 32 pixels.
#
# `chest_tube_cohort` draws such a cohort: a `Population` with that tube rate and
# pneumothorax prevalence, every pneumothorax set to the same size, then `render`
# (run `chest_tube_cohort??` to read it).

# %%
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from medsynth_explore.features import PixelEncoder
from medsynth_explore.tutorial import chest_tube_cohort

enc = PixelEncoder(size=32)
train_table, train_images = chest_tube_cohort(400, seed=1, tube_rate=0.9, prevalence=0.3)
model = LogisticRegression(C=1.0, max_iter=3000).fit(enc.encode(train_images), train_table["pneumothorax"])

# %% [markdown]
# Test on a new cohort in which half of the pneumothorax patients have a tube, and
# score separately: pneumothorax *with* tube vs no pneumothorax, and *without* tube vs
# no pneumothorax. AUROC 0.5 is chance, 1.0 is perfect.

# %%
# NBVAL_CHECK_OUTPUT
test_table, test_images = chest_tube_cohort(300, seed=2, tube_rate=0.5, prevalence=0.5)
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
changed = np.abs(cf_images - test_images)[treated.to_numpy()] > 1e-3
print(f"patients: {int(treated.sum())}, pixels changed: {np.mean(changed):.3f}")
print(f"mean P(pneumothorax) with tube {p[treated].mean():.2f} -> tube removed {p_cf[treated].mean():.2f}")

# %% [markdown]
# The same three treated patients with their tube and re-rendered without it, and the
# difference: only the tube's pixels change, yet the predicted probability drops.

# %%
rows = np.flatnonzero(treated.to_numpy())[:3]
tube_diff = cf_images - test_images
tscale = float(np.abs(tube_diff[rows]).max()) or 1.0
image_table({f"patient {r}: P {p[r]:.2f} → {p_cf[r]:.2f}": {
    "with tube": test_images[r : r + 1], "tube removed": cf_images[r : r + 1],
    "difference": [png_bytes(tube_diff[r] / tscale, cmap="diverging")]} for r in rows}, width=110)

# %% [markdown]
# A drop in probability after removing only the tube means the model relies on it.
# A classifier to trust would give the same answer for both images.
#
# ## Try this
#
# - Train on `chest_tube_cohort(400, seed=1, tube_rate=0.5, prevalence=0.3)`: does the gap close?
# - Make the pneumothoraces larger (`pneumothorax_size=0.4`): the real signal gets easier and the shortcut matters less.
# - Inpaint an effusion with `"phantomcxr-vae"` using `masks["lungs"]`, and compare with the physics result.
