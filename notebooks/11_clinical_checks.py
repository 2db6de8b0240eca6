# %% [markdown]
# # 11 · Checks no other tool makes: anatomy, stress tests, membership inference, model collapse
#
# **What.** Four questions a researcher should ask of a generator before trusting its images:
#
# 1. **Anatomy.** Are the lungs and the heart where a chest has them? Does asking for
#    cardiomegaly enlarge the heart, and does inpainting leave the rest of the chest alone?
# 2. **Stress test.** Edit one thing in an image (remove a chest tube, keep the
#    pneumothorax) and watch a classifier: does it look at the disease or at the tube?
# 3. **Membership inference.** Can an attacker tell which patients were in the training set?
# 4. **Model collapse.** What happens when a model is trained on its own samples,
#    generation after generation?
#
# The simulator knows the truth (every lung and heart mask, every patient's cardiothoracic
# ratio, who was in which training set), so each check is measured, not guessed.

# %%
import numpy as np

import medsynth_explore as mse
from medsynth_explore import anatomy
from medsynth_explore.phantom import Population, simulate

# %% [markdown]
# ## 1 · Anatomy by segmentation
#
# The shipped segmenter is a small U-Net trained on PhantomCXR images and the simulator's
# masks (`medsynth train --model segmenter`; its card records the command, time and
# held-out scores). Check it on patients it never saw: Dice 1 is a perfect overlap, and the
# cardiothoracic ratio (CTR: heart width over thorax width) it measures is compared with
# the simulator's true CTR.

# %%
# NBVAL_CHECK_OUTPUT
held = simulate(48, seed=2024, population=Population(prevalence={"cardiomegaly": 0.4, "effusion": 0.2}))
seg = anatomy.Segmenter()
truth = anatomy.truth_masks(held, size=64)
pred = seg.predict(held)
for s in anatomy.STRUCTURES:
    print(f"Dice {s:10s} {mse.metrics.dice(pred[s], truth[s]).mean():.2f}")
m = anatomy.measure(held, segmenter=seg)
err = mse.metrics.ctr_error(m["ctr"], held.metadata["ctr"])
print(f"CTR error {err['ctr_mae']:.3f} (the simulator's own masks: "
      f"{mse.metrics.ctr_error(anatomy.measure_masks(truth)['ctr'], held.metadata['ctr'])['ctr_mae']:.3f}, the 64-pixel floor)")
print(f"plausible anatomy: {m['plausible'].mean():.0%} of real images")

# %% [markdown]
# `anatomy.measure(images)` gives one row per image: CTR, lung and heart areas (shares of
# the image), and a `plausible` flag with the rule that failed. Now the generators:
# sample each with no finding and with cardiomegaly, and measure. Cardiomegaly should move
# the CTR past 0.5, no finding should not.

# %%
# NBVAL_CHECK_OUTPUT
conditions = {"no finding": {"findings": []}, "cardiomegaly": {"findings": ["cardiomegaly"]}}
for name in ("phantomcxr-physics", "phantomcxr-vae", "phantomcxr-gan"):
    t = anatomy.ctr_by_condition(name, conditions, n=24, segmenter=seg, n_boot=200).set_index("condition")
    print(f"{name:20s} CTR no finding {t.loc['no finding', 'ctr_mean']:.2f}, cardiomegaly "
          f"{t.loc['cardiomegaly', 'ctr_mean']:.2f}; implausible {t['implausible_rate'].mean():.0%}")

# %% [markdown]
# A generator that draws noise, or a heart on the wrong side, is caught, and the rule that
# failed is named. Noise fails every time; of four mirrored chests (heart on the image's
# left) three fail the heart-position range, and the fourth, whose heart lies near the
# midline, passes: a plausibility flag is a range check, not a diagnosis.

# %%
# NBVAL_CHECK_OUTPUT
noise = np.random.default_rng(0).random((4, 1, 64, 64)).astype(np.float32)
flipped = held.images[:4, :, :, ::-1].copy()  # mirror image: heart on the right
for label, images in [("noise", noise), ("mirrored", flipped)]:
    print(label, anatomy.measure(images, segmenter=seg)["implausible_reasons"].str.split(";").str[0].tolist())

# %% [markdown]
# ## 2 · Stress test: the chest-tube shortcut
#
# `shortcut_demo()` trains two pneumothorax classifiers (logistic regression on 64 x 64
# pixels, as in tutorial 03): one on a cohort where 90 % of pneumothorax patients have a
# chest tube and nobody else has one, one where tubes are as common with or without a
# pneumothorax. Then `mse.stress_test` takes new pneumothorax patients with a tube and lets
# the physics generator re-render each one **without the tube** (same anatomy, the
# pneumothorax kept), and, as a control, **without the pneumothorax**.
#
# *Effect* is the score after the edit minus the score after a null edit (the same region
# re-rendered unchanged), with a 95 % bootstrap interval.

# %%
# NBVAL_CHECK_OUTPUT
from medsynth_explore.stress import shortcut_demo

demo = shortcut_demo(n_test=32)
for name, clf in demo.classifiers.items():
    r = mse.stress_test(clf, "phantomcxr-physics", demo.images, edits=["remove chest tube", "remove pneumothorax"], n_boot=500)
    for _, row in r.table.iterrows():
        print(f"{name:31s} {row['edit']:20s} effect {row['effect']:+.2f} [{row['effect_low']:+.2f}, {row['effect_high']:+.2f}]")

# %% [markdown]
# The classifier trained with the shortcut loses confidence when only the tube goes; the
# other one does not. Both lose it when the pneumothorax goes, as they should. The
# counterfactual pairs are kept in `r.examples`; every pixel outside the region is the
# original one.

# %%
import plotly.express as px

ex = r.examples["remove chest tube"]
grid = np.concatenate([ex["before"][:4, 0], ex["after"][:4, 0], ex["region"][:4].astype(np.float32)], axis=2)
px.imshow(grid, facet_col=0, facet_col_wrap=2, binary_string=True, title="with tube | tube removed | region").show()

# %% [markdown]
# ## 3 · Membership inference
#
# The distance attack scores each candidate by how close the generator's nearest sample
# comes to it; an attack that tells members from non-members (AUC above 0.5, many true
# positives at a 1 % false-positive rate) means the model leaks its training patients.
# Two controls: a **copier** (its samples are its training images) and an **independent
# simulator** (fresh patients, never trained on anything).

# %%
# NBVAL_CHECK_OUTPUT
from medsynth_explore.features import get_encoder

members, non_members = simulate(200, seed=31), simulate(200, seed=32)
enc = get_encoder("pixels")
f_mem, f_non = enc.encode(members.images), enc.encode(non_members.images)
rng = np.random.default_rng(0)
candidates = {
    "copier": f_mem[rng.integers(0, 200, 1000)],
    "independent simulator": enc.encode(simulate(1000, seed=33).images),
}
for name, syn in candidates.items():
    r = mse.metrics.membership_inference(syn, f_mem, f_non, n_boot=300)
    print(f"{name:22s} AUC {r['auc']:.2f} [{r['auc_low']:.2f}, {r['auc_high']:.2f}], "
          f"TPR at 1% FPR {r['tpr_at_1pct_fpr']:.0%}")

# %% [markdown]
# Models that give a loss can be attacked with it: the diffusion model's denoising error
# at a few noise levels, or a VAE's negative ELBO, is lower on images it was trained on.
# A small VAE trained for many epochs on 24 images remembers them:

# %%
# NBVAL_CHECK_OUTPUT
import tempfile
from pathlib import Path

from medsynth_explore.generators.vae import train_vae

few = simulate(24, seed=41)
out = Path(tempfile.mkdtemp()) / "overfit-vae.safetensors"
vae, _ = train_vae(few, out, epochs=120, batch_size=8, width=8, latent_dim=16, weights_dtype="float32")
r = mse.metrics.membership_inference(None, few, simulate(24, seed=42), attack="loss", generator=vae, n_boot=300)
print(f"loss attack on the overfit VAE: AUC {r['auc']:.2f} [{r['auc_low']:.2f}, {r['auc_high']:.2f}]")

# %% [markdown]
# For the shipped models (training sets rebuilt from their cards, against held-out
# patients) run `python benchmarks/bench_membership.py`; the README lists the results.
#
# ## 4 · Model collapse across generations
#
# Train a VAE on real images (generation 0), then each next generation on the previous
# one's samples (with the real training set's labels), five times. The control chain trains
# each generation on fresh real images instead, so that what retraining alone does is not
# blamed on the model's own samples. A small run here (192 images, 6 epochs, a narrow VAE,
# 8 x 8 pixel features, about a minute); `python benchmarks/bench_model_collapse.py` runs
# a larger one in domain-CLIP features, with the reference classifier's per-finding fidelity.

# %%
from medsynth_explore.collapse import model_collapse
from medsynth_explore.features import PixelEncoder

train, test = simulate(192, seed=51), simulate(200, seed=52)
result = model_collapse(train, test, generations=5, epochs=6, train_kwargs={"width": 16, "latent_dim": 16, "batch_size": 16},
                        encoder=PixelEncoder(size=8), n_eval=200, seed=0)

# %%
for value, digits in (("fid", 1), ("coverage", 2), ("pixel_std", 3)):
    print(value, result.pivot(value).round(digits).to_dict("list"))

# %% [markdown]
# Training is not bit-for-bit repeatable across machines, so the digits above can move in
# the last place; what they say does not:

# %%
# NBVAL_CHECK_OUTPUT
fid, cov = result.pivot("fid"), result.pivot("coverage")
last = int(fid.index.max())
print(f"generation {last}: FID of the self-consuming chain over 1.5 x the fresh-real chain's:",
      bool(fid.loc[last, "self-consuming"] > 1.5 * fid.loc[last, "fresh real"]))
print(f"generation {last}: coverage of the self-consuming chain under half the fresh-real chain's:",
      bool(cov.loc[last, "self-consuming"] < 0.5 * cov.loc[last, "fresh real"]))

# %% [markdown]
# Fed its own samples, the chain drifts away from real chests: FID grows, coverage of the
# held-out real images falls towards zero, and the samples vary less from one to the next
# (`pixel_std`), while the chain retrained on fresh real images stays where generation 0
# was. Every number is in `result.table`, with what each generation was trained on and
# its checkpoint's SHA-256; `result.settings` records sizes, seeds and the encoder.

# %%
cov = result.pivot("coverage").reset_index().melt(id_vars="generation", var_name="chain", value_name="coverage")
fig = px.line(cov, x="generation", y="coverage", color="chain", markers=True, title="coverage of held-out real images")
fig.show()

# %% [markdown]
# ## In the Explorer
#
# The **Anatomy** tab measures any loaded generator, the **Stress test** tab runs these
# edits on your own classifier (`StressPanel(session, classifiers={"mine": my_model})`),
# and the **Privacy** tab has the membership attack.
#
# ## Try this
#
# - `anatomy.anatomy_report("phantomcxr-diffusion", n=32)` for every finding, with the rules that failed.
# - A classifier of your own: `mse.stress_test(my_torch_model, "phantomcxr-physics", images, target=0)`.
# - `shortcut_demo(tube_rate=0.5)`: a weaker confounder, a smaller effect.
