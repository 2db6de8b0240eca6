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
# ## Look first: asked-for findings side by side
#
# Each row asks every model for one finding (a 65-year-old woman), three images with the
# same seeds. The physics generator is the ground truth of what the finding looks like;
# the learned models should show the same thing. An effusion is a bright, blunted lower
# corner of a lung; cardiomegaly a wide heart; a nodule a small round opacity; a
# pneumothorax a dark rim without lung markings. `image_table` lays out the grid.

# %%
from medsynth_explore.data.display import image_table

available = mse.list_generators().set_index("name")["available"]
models = {"physics": physics, "vae": vae}
if available.get("phantomcxr-diffusion", False):
    models["diffusion"] = mse.load_generator("phantomcxr-diffusion")
asked = {"no finding": [], "cardiomegaly": ["cardiomegaly"], "nodule": ["nodule"], "effusion": ["effusion"],
         "pneumothorax": ["pneumothorax"]}
grid = {name: {} for name in asked}
findings = [f for f in asked.values() for _ in range(3)]  # three images per row
for model, g in models.items():
    s = g.sample(len(findings), conditions={"age": 65, "sex": "F", "findings": findings}, seed=0)
    for i, name in enumerate(asked):
        grid[name][model] = s.images[3 * i : 3 * i + 3]
image_table(grid, corner="asked for")

# %% [markdown]
# ## Check 1: a physical measurement
#
# Fluid collects in the costophrenic angles, the lower outer corners of the lungs.
# Measure the mean brightness there (rows 58-75 %, outer columns) minus the same
# columns higher up (rows 30-45 %). Fluid adds attenuation, so the difference grows
# with an effusion. The physics generator is the ground truth; the shift is small on
# average because many effusions are small and one-sided.
#
# `lower_zone_contrast` computes exactly this, one number per image, with plain numpy
# slicing (run `lower_zone_contrast??` to read it).

# %%
from medsynth_explore.tutorial import lower_zone_contrast

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
# ## A prompt sweep
#
# The diffusion model reads free text through the domain CLIP. The same seed under five
# prompts: only the words change, so what changes in the images is what the model took
# from them. With a prompt alone, no structured condition is fed to the network (the
# metadata column `conditioned_on` says so), so age and sex are left to the model.

# %%
prompts = ["No acute cardiopulmonary abnormality.", "Small left pleural effusion.",
           "Large right pleural effusion.", "The heart is enlarged.", "Large right pneumothorax."]
if "diffusion" in models:
    made = {p: models["diffusion"].sample(2, prompt=p, seed=0).images for p in prompts}
    sweep = image_table({p: {"2 images, seed=0": made[p]} for p in prompts}, corner="prompt", width=96)
else:
    sweep = "The diffusion model is not installed: there is no text-conditioned model to sweep."
sweep

# %% [markdown]
# Each finding a prompt names shows up (white lung bases for effusions, a wide heart
# shadow, a dark band without lung markings for the pneumothorax), and the same seed
# keeps much of the patient. Words for size and side are followed less reliably: compare
# the two effusion rows. Checks 2 and 3 above are how to measure such things.

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
