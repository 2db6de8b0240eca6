# %% [markdown]
# # 10 · Provenance that survives: C2PA manifests and an invisible watermark
#
# **Why.** Synthetic radiographs get shared: re-saved, converted to JPEG, resized, stripped of
# metadata. Text labels such as `ai_generated=true` vanish the moment that happens, and then
# nothing tells a synthetic image from a real one.
#
# **What an export writes** (`mse.export`, `medsynth generate`), from most fragile to most robust:
#
# 1. **Labels** in PNG text chunks and XMP (IPTC `DigitalSourceType = trainedAlgorithmicMedia`).
# 2. A **C2PA manifest** (the Coalition for Content Provenance and Authenticity's standard, written
#    with the official `c2pa-python`): a signed `c2pa.created` action naming the generator, its
#    checkpoint SHA-256, the model card's digest, the seed, the sampler settings and the conditions.
#    It proves who signed and shows tampering; it is lost when metadata is stripped.
# 3. An **invisible watermark** (`invisible-watermark`'s block embedder) in the pixels: an
#    "AI-generated" flag and the first 4 hex digits of the checkpoint SHA-256. It survives
#    stripping, JPEG, resizing and 8-bit conversion.

# %%
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import medsynth_explore as mse
from medsynth_explore.provenance import detect, make_test_signer, read_c2pa, strip_c2pa

work = Path(tempfile.mkdtemp(prefix="provenance-"))

# %% [markdown]
# ## A signing certificate, made here
#
# Signing needs a private key and a certificate chain. In a study they would come from your
# organisation. Here we make a local root and signing certificate with `cryptography`:
# **their signer is untrusted**. Readers will report the manifests as intact and correctly
# signed, but not as coming from anyone they trust, unless they are given this local root.

# %%
# NBVAL_CHECK_OUTPUT
signer = make_test_signer(work / "certs", seed=0)
info = signer.describe()
print("algorithm:", info["alg"])
print("subject:  ", info["subject"])
print("files:    ", sorted(p.name for p in (work / "certs").iterdir()))

# %% [markdown]
# ## Export, signed and watermarked, then verify
#
# `verify` checks every file against the export's `manifest.json` (SHA-256 of the final, signed
# files), the labels, and per image the C2PA manifest; `check_watermark=True` also reads the mark.

# %%
# NBVAL_CHECK_OUTPUT
out = mse.export("phantomcxr-physics", 8, work / "synthetic", seed=0, shard_size=4,
                 conditions={"findings": ["effusion"]}, signer=signer)
result = mse.export.verify(out, check_watermark=True)
print("ok:", result.ok, "| signed:", result.signed, "| watermarked:", result.watermarked)
print(result.table().head(3).to_string(index=False))

# %% [markdown]
# What one exported image says about itself. `detect` reads all three layers.

# %%
# NBVAL_CHECK_OUTPUT
first = out / "images" / "000000.png"
r = detect(first)
print("watermark:", r["watermark"], "| payload:", r["payload"])
print("C2PA:", r["c2pa_summary"])
print("AI label:", r["label"])
action = read_c2pa(first).action()
print("action:", action["action"], "|", action["digitalSourceType"].rsplit("/", 1)[-1])
print(json.dumps({k: action["parameters"][k] for k in ("generator", "seed", "conditions", "watermark")}, indent=1))

# %% [markdown]
# With the local root as a trust anchor, the same manifest is also *trusted*:

# %%
# NBVAL_CHECK_OUTPUT
print(detect(first, trust_anchors=signer.trust_anchors)["c2pa_summary"])

# %% [markdown]
# ## Share it the way people do: strip metadata, convert to JPEG, resize
#
# Each copy loses the labels and the C2PA manifest. The watermark is still read, with the
# model's hash prefix.

# %%
# NBVAL_CHECK_OUTPUT
with Image.open(first) as im:
    x16 = np.asarray(im, dtype=np.uint16)
x8 = np.rint(x16 / 257.0).astype(np.uint8)


def saved(array, fmt, **kw):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt, **kw)
    return buf.getvalue()


copies = {
    "metadata stripped (16-bit PNG)": saved(x16, "PNG"),
    "8-bit PNG": saved(x8, "PNG"),
    "JPEG quality 90": saved(x8, "JPEG", quality=90),
    "JPEG, resized to 90 %": saved(np.asarray(Image.fromarray(x8).resize((58, 58), Image.BICUBIC)), "JPEG", quality=90),
}
for name, data in copies.items():
    r = detect(data)
    print(f"{name:32s} watermark {r['watermark']!s:5s} prefix {(r['payload'] or {}).get('model_sha256_prefix')}"
          f" | C2PA {r['c2pa_summary']} | label {r['label']}")

# %% [markdown]
# A real (never marked) image is not mistaken for a marked one: its best score stays well
# below the threshold of 0.75. `benchmarks/bench_watermark.py` measures detection and false
# positives on 500 + 500 images and the PSNR cost of the mark.

# %%
# NBVAL_CHECK_OUTPUT
real = mse.load_dataset("phantomcxr", n=4, seed=5).images
for x in real:
    r = detect(x)
    print(f"real image: watermark {r['watermark']}, score {r['watermark_score']:.2f}")

# %% [markdown]
# How much does the mark change the image? The difference, amplified 20 times (grey = none).
# It sits in 8 x 8-pixel blocks of the Haar low-pass band, a few grey levels out of 255.

# %%
unmarked = mse.export("phantomcxr-physics", 1, work / "plain", seed=0, shard_size=4,
                      conditions={"findings": ["effusion"]}, watermark=False)
with Image.open(unmarked / "images" / "000000.png") as im:
    plain16 = np.asarray(im, dtype=np.uint16)
diff = (x16.astype(np.float64) - plain16) / 65535
print(f"PSNR of the mark at 16 bits: {10 * np.log10(1 / np.mean(diff ** 2)):.1f} dB")
side = np.concatenate([plain16 / 65535, x16 / 65535, np.clip(0.5 + 20 * diff, 0, 1)], axis=1)
Image.fromarray(np.rint(side * 255).astype(np.uint8)).resize((3 * 192, 192), Image.NEAREST)

# %% [markdown]
# ## A tampered file
#
# Someone edits the pixels (here: paints a bright square) and keeps the C2PA chunk. The manifest's
# hash no longer matches the file: `detect` calls it tampered, and `verify` names the file.

# %%
# NBVAL_CHECK_OUTPUT
victim = out / "images" / "000003.png"
data = victim.read_bytes()
with Image.open(io.BytesIO(data)) as im:
    labels = {k: v for k, v in im.info.items() if isinstance(v, str)}
    pixels = np.asarray(im, dtype=np.uint16).copy()
pixels[20:30, 20:30] = 65535
from PIL.PngImagePlugin import PngInfo

meta = PngInfo()
for k, v in labels.items():
    meta.add_itxt(k, v) if k.startswith("XML:") else meta.add_text(k, v)
edited = saved(pixels, "PNG", pnginfo=meta)
i = data.index(b"caBX") - 4
manifest_chunk = data[i:i + 12 + int.from_bytes(data[i:i + 4], "big")]
victim.write_bytes(edited[:33] + manifest_chunk + edited[33:])  # the manifest chunk back after IHDR

print("detect:", detect(victim)["c2pa_summary"])
check = mse.export.verify(out)
print("verify ok:", check.ok)
print("changed after signing:", [t.split(" ")[0] for t in check.c2pa_tampered])
print("altered (SHA-256):", check.altered)

# %% [markdown]
# ## What is byte-identical
#
# The same seed gives the same pixels, labels and watermark, whatever the number of Dask workers.
# Inside the C2PA manifest store, c2pa-rs salts each assertion with 16 random bytes (the C2PA
# specification wants salts unpredictable), so two signings differ there and only there:
# without the store the files are identical, and `manifest.json` records that hash too
# (`sha256_without_c2pa`).

# %%
# NBVAL_CHECK_OUTPUT
again = mse.export("phantomcxr-physics", 8, work / "again", seed=0, shard_size=4,
                   conditions={"findings": ["effusion"]}, signer=signer)
name = "images/000001.png"
a, b = (out / name).read_bytes(), (again / name).read_bytes()
print("signed files equal:", a == b)
print("equal without the manifest store:", strip_c2pa(a) == strip_c2pa(b))
print("recorded hash matches:", mse.export.read_manifest(again)["files"][name]["sha256_without_c2pa"]
      == mse.export.read_manifest(out)["files"][name]["sha256_without_c2pa"])

# %% [markdown]
# From the command line: `medsynth generate ... --sign-cert chain.pem --sign-key key.pem`,
# `medsynth verify FOLDER --per-file --watermark`, `medsynth detect FILE...`. In the Explorer,
# the **Export** tab does the same for the active generator.
#
# ## Try this
#
# - Run `medsynth detect` on the JPEG copies written to disk: one line per file.
# - Export with `watermark_key="my secret"`: `detect(file)` no longer finds the mark, and
#   `detect(file, key="my secret")` does.
# - Crop the image by a few pixels before detecting: the mark's 8 x 8 block grid no longer lines up
#   and it is lost, a limit of this kind of watermark.
