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
mapper = umap.UMAP(n_neighbors=15, random_state=0, n_jobs=1).fit(f_real)  # one job: seeded UMAP is single-threaded anyway
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
#
# `metric_table` encodes `real` and the first 200 images of each candidate with the
# given encoder, then calls `M.fid`, `M.kid` (20 subsets of 100) and `M.prdc` (k = 5)
# once per candidate: one row each (run `metric_table??` to read it).

# %%
# NBVAL_CHECK_OUTPUT
from medsynth_explore.tutorial import metric_table

candidates = {"real vs real": other_real, "physics": physics, "vae": vae}
print(metric_table(PixelEncoder(size=8), real, candidates).loc[["real vs real", "physics"]].round(2))

# %% [markdown]
# The physics simulator *is* the real distribution here, so it scores like real vs
# real. The shipped VAE (a small model trained on a CPU) is further away:

# %%
metric_table(PixelEncoder(size=8), real, candidates).round(2)

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
# ## Fewer images than feature dimensions: the rank-deficiency warning
#
# FID fits a Gaussian (a mean and a covariance) to each feature set. A covariance
# estimated from N images has rank at most N - 1: with fewer images than dimensions
# (N < D), some directions get zero variance in the estimate, and the matrix square
# root inside FID works on a singular matrix. The value is then mostly estimation error,
# so `M.fid` warns (once, for the 32 below). The same two real sets in 64 dimensions
# (8 x 8 pixels), from 32 to 400 images:

# %%
for n in (32, 64, 100, 400):
    value = 1000 * M.fid(f_a[:n], f_b[:n])
    print(f"n = {n:3d} images in {f_a.shape[1]} dimensions: FID(real, real) x 1000 = {value:.2f}")

# %% [markdown]
# Two samples of the *same* distribution: FID grows as N shrinks (the bias of the
# previous section), and much faster once N falls below D = 64. When you see the
# warning, use more images, an encoder with fewer dimensions, or compare values only at
# the same N and encoder (KID, precision and coverage do not need N > D).
#
# ## The encoder changes everything
#
# The same images, three encoders: downsampled pixels, a randomly initialised CNN,
# and the domain CLIP trained on PhantomCXR images and reports (if installed). FID
# values are not comparable *across* encoders; rankings usually are more stable.

# %%
# the 256-dimensional encoders warn at 200 images (N < D, see above): their FID is inflated here, the ranking is the point
names = ["pixels", "random-cnn"] + (["phantomcxr-clip"] if default_encoder_name() == "phantomcxr-clip" else [])
for name in names:
    print(f"--- {name}")
    print(metric_table(get_encoder(name), real, candidates)[["FID x1000", "precision", "recall", "coverage"]].round(3))

# %% [markdown]
# ## Try this
#
# - Use `M.fid_infinity(f_real, enc.encode(vae.images))` and compare with the plain FID.
# - Compute metrics per subgroup: `mse.evaluate(real, vae, by=["sex"], encoder="pixels")`.
# - Try `k=3` and `k=10` in `M.prdc`: precision and recall move, density and coverage less.
