"""CheXpert, MIMIC-CXR-JPG and NIH ChestX-ray14 layouts on tiny trees the tests write from the documented layouts.

The CSVs are written here by hand, column for column as the data sets document
them (not by the package's own writer), so that a reader and a writer sharing
a mistake would not pass each other.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medsynth_explore import DataError, load_dataset
from medsynth_explore.data.labels import CHEXPERT_LABELS, FINDINGS

OBS = list(CHEXPERT_LABELS)  # the 14 observations, in CheXpert's column order


def _jpg(path, value, size=(20, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full(size[::-1], value, np.uint8)
    a[::3] = 255 - value  # some texture, so that images differ
    Image.fromarray(a).save(path, quality=95)


# --------------------------------------------------------------------------- CheXpert
def chexpert_tree(base, name="CheXpert-v1.0-small", n_train=10, n_valid=2):
    root = base / name
    rows = {"train": [], "valid": []}
    sexes = ["Male", "Female", "Unknown"]
    k = 0
    for split, n in (("train", n_train), ("valid", n_valid)):
        for i in range(n):
            patient, study = f"patient{k // 2 + 1:05d}", f"study{k % 2 + 1}"
            lateral = k % 4 == 3
            rel = f"{split}/{patient}/{study}/view1_{'lateral' if lateral else 'frontal'}.jpg"
            _jpg(root / rel, 10 * k)
            labels = {o: [1.0, 0.0, -1.0, np.nan][(k + j) % 4] for j, o in enumerate(OBS)}
            rows[split].append(
                {
                    "Path": f"{name}/{rel}",
                    "Sex": sexes[k % 3],
                    "Age": 20 + 5 * k,
                    "Frontal/Lateral": "Lateral" if lateral else "Frontal",
                    "AP/PA": np.nan if lateral else ("AP" if k % 2 else "PA"),
                    **labels,
                }
            )
            k += 1
        if rows[split]:
            pd.DataFrame(rows[split]).to_csv(root / f"{split}.csv", index=False)
    return root


def test_chexpert_loads_with_harmonised_columns_beside_the_raw_ones(tmp_path):
    root = chexpert_tree(tmp_path)
    ds = load_dataset(root)
    assert ds.provenance["layout"] == "chexpert" and len(ds) == 12 and ds.shape == (12, 1, 24, 20)
    m = ds.metadata
    assert m["split"].tolist() == ["train"] * 10 + ["valid"] * 2
    assert m["sex"].tolist()[:3] == ["M", "F", pd.NA] and m["Sex"].tolist()[:3] == ["Male", "Female", "Unknown"]
    assert m["age"].tolist()[:2] == [20.0, 25.0]
    assert m["view"].tolist()[:4] == ["PA", "AP", "PA", "LATERAL"]
    assert m["patient_id"].tolist()[:3] == ["patient00001", "patient00001", "patient00002"]
    assert {"Path", "Pleural Effusion", "No Finding"} <= set(m.columns)  # raw columns kept
    for raw, voc in CHEXPERT_LABELS.items():  # U-Ignore: 1 -> 1, 0 -> 0, -1 and blank -> NA
        expect = m[raw].map({1.0: 1, 0.0: 0}).astype("Int64")
        pd.testing.assert_series_equal(m[voc], expect, check_names=False)
    ones = load_dataset(root, uncertain="ones").metadata
    zeros = load_dataset(root, uncertain="zeros", blank="zeros").metadata
    assert (ones["pleural_effusion"][m["Pleural Effusion"] == -1] == 1).all()
    assert (zeros["pleural_effusion"][m["Pleural Effusion"].isna()] == 0).all()
    assert zeros["pleural_effusion"].notna().all()
    img = np.asarray(Image.open(root / "train/patient00001/study1/view1_frontal.jpg"), np.float32) / 255
    np.testing.assert_allclose(ds.images[0, 0], img, atol=1e-6)


def test_chexpert_paths_resolve_after_a_rename_from_the_parent_and_from_a_csv(tmp_path):
    root = chexpert_tree(tmp_path, name="CheXpert-v1.0-small")
    renamed = root.rename(tmp_path / "my-chest-xrays")
    a = load_dataset(renamed)  # the CSV still says CheXpert-v1.0-small/...
    assert a.provenance["dropped_prefix"] == "CheXpert-v1.0-small" and len(a) == 12
    b = load_dataset(renamed / "train.csv")
    assert len(b) == 10 and b.provenance["layout"] == "chexpert"
    c = load_dataset(chexpert_tree(tmp_path / "above", n_train=4, n_valid=0).parent)  # the folder above the data set
    assert len(c) == 4
    # the documented parent: the CSV copied next to the data set folder (paths relative to the folder above)
    labels = tmp_path / "above" / "labels"
    labels.mkdir()
    (labels / "train.csv").write_text((tmp_path / "above" / "CheXpert-v1.0-small" / "train.csv").read_text())
    d = load_dataset(labels / "train.csv")
    assert len(d) == 4 and d.provenance["path"] == str(tmp_path / "above")
    np.testing.assert_array_equal(np.concatenate(list(d.batches(2))), c.images[:4])


def test_chexpert_paths_may_not_leave_the_data_root(tmp_path):
    root = chexpert_tree(tmp_path, n_train=2, n_valid=0)
    _jpg(tmp_path / "secret.jpg", 7)
    t = pd.read_csv(root / "train.csv")
    t.loc[1, "Path"] = "CheXpert-v1.0-small/../../secret.jpg"
    t.to_csv(root / "train.csv", index=False)
    with pytest.raises(DataError, match="outside the data folder"):
        load_dataset(root)
    t.loc[1, "Path"] = str(tmp_path / "secret.jpg")
    t.to_csv(root / "train.csv", index=False)
    with pytest.raises(DataError, match="absolute path"):
        load_dataset(root)
    assert len(load_dataset(root, allow_outside_root=True)) == 2
    t.loc[1, "Path"] = "CheXpert-v1.0-small/train/nobody.jpg"
    t.to_csv(root / "train.csv", index=False)
    with pytest.raises(DataError, match="is missing"):
        load_dataset(root)
    with pytest.warns(RuntimeWarning, match="skipped 1 of 2"):
        assert len(load_dataset(root, on_error="skip")) == 1
    with pytest.raises(DataError, match="split"):
        load_dataset(root, split="test")
    with pytest.raises(DataError, match="uncertain"):
        load_dataset(root, uncertain="maybe")


def test_write_chexpert_from_phantomcxr_reads_back_in_the_vocabulary(tmp_path):
    from medsynth_explore.data import write_chexpert
    from medsynth_explore.phantom import simulate

    sim = simulate(12, seed=3, size=32)
    root = write_chexpert(sim, tmp_path)
    back = load_dataset(root, size=32)
    assert len(back) == 12 and set(back.metadata["view"]) == {"PA"}
    assert back.metadata["sex"].tolist() == sim.metadata["sex"].tolist()
    np.testing.assert_array_equal(back.metadata["pleural_effusion"].to_numpy(int), sim.metadata["effusion"].to_numpy())
    np.testing.assert_array_equal(back.metadata["lung_lesion"].to_numpy(int), sim.metadata["nodule"].to_numpy())
    assert back.metadata["fracture"].isna().all()  # PhantomCXR does not label fractures: blank, read as unknown
    err = np.abs(back.images - sim.images)  # 8-bit JPEG (quality 95) of the 16-bit images
    assert err.mean() < 2 / 255 and err.max() < 16 / 255
    with pytest.raises(DataError, match="exists"):
        write_chexpert(sim, tmp_path)


# --------------------------------------------------------------------------- MIMIC-CXR-JPG
def mimic_tree(root, demographics=True):
    subjects = [10000032, 10000764, 11000011, 19999987]
    md, labels, split = [], [], []
    k = 0
    for s_i, subject in enumerate(subjects):
        for study_j in range(3 if s_i < 2 else 2):
            study = 50000000 + 10 * s_i + study_j
            dicom = f"{s_i:02d}{study_j:02d}aa-bbbbbbbb-cccccccc-dddddddd-eeeeeeee"
            _jpg(root / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg", 20 * k)
            md.append(
                {
                    "dicom_id": dicom,
                    "subject_id": subject,
                    "study_id": study,
                    "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                    "ViewPosition": ["PA", "AP", "LATERAL", "LL"][k % 4],
                    "Rows": 24,
                    "Columns": 20,
                    "StudyDate": 21800506 + 10000 * study_j,
                    "StudyTime": 213014.531,
                }
            )
            labels.append(
                {
                    "subject_id": subject,
                    "study_id": study,
                    **{o: [1.0, -1.0, 0.0, np.nan][(k + j) % 4] for j, o in enumerate(OBS)},
                }
            )
            split.append(
                {"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": ["train", "validate", "test"][s_i % 3]}
            )
            k += 1
    for name, rows in (("metadata", md), ("chexpert", labels), ("split", split)):
        with gzip.open(root / f"mimic-cxr-2.0.0-{name}.csv.gz", "wt") as fh:
            pd.DataFrame(rows).to_csv(fh, index=False)
    if demographics:
        pd.DataFrame(
            {
                "subject_id": subjects,
                "gender": ["F", "M", "F", "M"],
                "anchor_age": [52, 76, 30, 91],
                "anchor_year": [2180, 2175, 2181, 2180],
                "anchor_year_group": ["2014 - 2016"] * 4,
                "dod": [None] * 4,
            }
        ).to_csv(root / "patients.csv", index=False)
        pd.DataFrame(
            {
                "subject_id": [10000032, 10000032, 10000032, 10000764, 11000011],
                "hadm_id": [1, 2, 3, 4, 5],
                "race": ["WHITE", "WHITE", "BLACK/AFRICAN AMERICAN", "ASIAN", "HISPANIC/LATINO"],
            }
        ).to_csv(root / "admissions.csv", index=False)
    return root, md


def test_mimic_cxr_jpg_joins_labels_split_and_mimic_iv_demographics(tmp_path):
    root, md = mimic_tree(tmp_path / "mimic-cxr-jpg")
    ds = load_dataset(root, patients=root / "patients.csv", admissions=root / "admissions.csv")
    m = ds.metadata
    assert ds.provenance["layout"] == "mimic-cxr-jpg" and len(ds) == 10
    assert m["filename"][0] == f"files/p10/p10000032/s50000000/{md[0]['dicom_id']}.jpg"
    assert m["patient_id"].tolist()[:4] == ["10000032"] * 3 + ["10000764"]
    assert m["view"].tolist()[:4] == ["PA", "AP", "LATERAL", "LATERAL"]
    assert m["sex"].tolist()[:4] == ["F", "F", "F", "M"]
    # age at the study: anchor_age + (study year - anchor_year): 52 + (2180 - 2180), then +1, +2 years
    assert m["age"].tolist()[:3] == [52.0, 53.0, 54.0] and m["age"][3] == 76 + 5
    assert m["race"].tolist()[:4] == ["WHITE"] * 3 + ["ASIAN"] and pd.isna(m["race"].iloc[-1])
    for raw, voc in CHEXPERT_LABELS.items():
        pd.testing.assert_series_equal(m[voc], m[raw].map({1.0: 1, 0.0: 0}).astype("Int64"), check_names=False)
    assert load_dataset(root, split="test").metadata["subject_id"].unique().tolist() == [11000011]
    no_demo = load_dataset(root)
    assert "sex" not in no_demo.metadata.columns and "race" not in no_demo.metadata.columns  # not part of MIMIC-CXR-JPG
    by_split = load_dataset(root, split=["train", "validate"])
    assert set(by_split.metadata["split"]) == {"train", "validate"}


def test_mimic_partial_download_and_bad_tables(tmp_path):
    root, md = mimic_tree(tmp_path / "m", demographics=False)
    (root / "files" / "p19" / "p19999987" / "s50000030" / f"{md[8]['dicom_id']}.jpg").unlink()
    with pytest.raises(DataError, match="is missing.*on_error='skip'"):
        load_dataset(root)
    with pytest.warns(RuntimeWarning, match="skipped 1 of 10"):
        assert len(load_dataset(root, on_error="skip")) == 9
    with gzip.open(root / "mimic-cxr-2.0.0-metadata.csv.gz", "wt") as fh:
        pd.DataFrame([{"dicom_id": "x", "subject_id": "abc", "study_id": 1}]).to_csv(fh, index=False)
    with pytest.raises(DataError, match="subject_id"):
        load_dataset(root)
    with pytest.raises(DataError, match="labeler"):
        load_dataset(root, labeler="chexbert")


# --------------------------------------------------------------------------- NIH ChestX-ray14
def nih_tree(root):
    labels = [
        "Cardiomegaly|Effusion",
        "No Finding",
        "Nodule",
        "Mass|Infiltration",
        "Pleural_Thickening",
        "Hernia",
        "Effusion",
        "No Finding",
        "Emphysema|Fibrosis",
        "Pneumothorax",
        "Atelectasis|Consolidation|Edema",
        "Pneumonia",
    ]
    rows = []
    for i, lab in enumerate(labels):
        name = f"{i // 3 + 1:08d}_{i % 3:03d}.png"
        folder = root / (f"images_{i // 6 + 1:03d}") / "images"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16), 15 * i, np.uint8)).save(folder / name)
        rows.append(
            {
                "Image Index": name,
                "Finding Labels": lab,
                "Follow-up #": i % 3,
                "Patient ID": i // 3 + 1,
                "Patient Age": 412 if i == 5 else 30 + i,
                "Patient Gender": "MF"[i % 2],
                "View Position": "PA" if i % 2 else "AP",
                "OriginalImage[Width": 2048,
                "Height]": 2500,
                "OriginalImagePixelSpacing[x": 0.143,
                "y]": 0.143,
            }
        )
    text = pd.DataFrame(rows).to_csv(index=False).replace("\n", ",\n")  # the published file ends each line with a comma
    (root / "Data_Entry_2017.csv").write_text(text)
    (root / "train_val_list.txt").write_text("\n".join(r["Image Index"] for r in rows[:9]) + "\n")
    (root / "test_list.txt").write_text("\n".join(r["Image Index"] for r in rows[9:]) + "\n")
    return root, labels


def test_nih_cxr14_parses_finding_labels_and_finds_the_pngs(tmp_path):
    root, labels = nih_tree(tmp_path / "nih")
    ds = load_dataset(root)
    m = ds.metadata
    assert ds.provenance["layout"] == "nih-cxr14" and len(ds) == 12 and not any(c.startswith("Unnamed") for c in m.columns)
    assert m["filename"][0] == "images_001/images/00000001_000.png" and m["filename"][11] == "images_002/images/00000004_002.png"
    assert m["cardiomegaly"][0] == 1 and m["pleural_effusion"][0] == 1 and m["no_finding"][0] == 0 and m["no_finding"][1] == 1
    assert m["lung_lesion"].tolist()[:4] == [0, 0, 1, 1]  # nodule or mass
    assert m["pleural_thickening"][4] == 1 and m["hernia"][5] == 1 and m["emphysema"][8] == 1 and m["fibrosis"][8] == 1
    for i, lab in enumerate(labels):  # every label set round-trips into the vocabulary
        named = {c for c in FINDINGS if c in m.columns and m[c][i] == 1} - {"lung_lesion"}
        expect = (
            {"no_finding"}
            if lab == "No Finding"
            else {
                {"Effusion": "pleural_effusion", "Pleural_Thickening": "pleural_thickening"}.get(x, x.lower())
                for x in lab.split("|")
            }
        )
        assert named == expect, (lab, named)
    assert np.isnan(m["age"][5]) and m["Patient Age"][5] == 412  # an impossible age: NA, the raw value kept
    assert m["sex"].tolist()[:2] == ["M", "F"] and m["view"].tolist()[:2] == ["AP", "PA"] and m["patient_id"][3] == "2"
    assert m["split"].tolist() == ["train_val"] * 9 + ["test"] * 3
    assert len(load_dataset(root, split="test")) == 3
    np.testing.assert_allclose(ds.images[4, 0], 60 / 255, atol=1e-7)


def test_nih_refuses_paths_in_image_index(tmp_path):
    root, _ = nih_tree(tmp_path / "nih")
    t = pd.read_csv(root / "Data_Entry_2017.csv")
    t.loc[0, "Image Index"] = "../../etc/passwd"
    t.to_csv(root / "Data_Entry_2017.csv", index=False)
    with pytest.raises(DataError, match="plain file name"):
        load_dataset(root)


# --------------------------------------------------------------------------- detection, generic mapping
def test_ambiguous_folders_ask_for_a_layout(tmp_path):
    root, _ = nih_tree(tmp_path / "both")
    pd.DataFrame({"filename": ["images_001/images/00000001_000.png"]}).to_csv(root / "metadata.csv", index=False)
    with pytest.raises(DataError, match="matches several layouts.*layout="):
        load_dataset(root)
    assert len(load_dataset(root, layout="nih")) == 12
    assert len(load_dataset(root, layout="folder")) == 1
    with pytest.raises(DataError, match="unknown layout"):
        load_dataset(root, layout="padchest")
    with pytest.raises(DataError, match="does not take"):
        load_dataset(root, layout="nih", labeler="chexpert")


def test_generic_columns_and_labels_mapping(tmp_path):
    for i in range(4):
        Image.fromarray(np.full((8, 8), 50 * i, np.uint8)).save(tmp_path / f"{i}.png")
    pd.DataFrame(
        {
            "img": [f"{i}.png" for i in range(4)],
            "Gender": ["female", "male", "F", "x"],
            "Years": ["40", "061Y", "70", ""],
            "Subject": ["a", "a", "b", "c"],
            "Effusion?": ["yes", "no", "uncertain", ""],
        }
    ).to_csv(tmp_path / "metadata.csv", index=False)
    ds = load_dataset(
        tmp_path,
        filename_column="img",
        columns={"sex": "Gender", "age": "Years", "patient_id": "Subject"},
        labels={"Effusion?": "pleural_effusion"},
    )
    m = ds.metadata
    assert m["sex"].tolist() == ["F", "M", "F", pd.NA] and m["age"].tolist()[:3] == [40.0, 61.0, 70.0]
    assert m["patient_id"].tolist() == ["a", "a", "b", "c"] and m["pleural_effusion"].tolist() == [1, 0, pd.NA, pd.NA]
    with pytest.raises(DataError, match="not one of"):
        load_dataset(tmp_path, filename_column="img", labels={"Effusion?": "effusion_big"})
    with pytest.raises(DataError, match="no such column"):
        load_dataset(tmp_path, filename_column="img", columns={"sex": "Sex"})


# --------------------------------------------------------------------------- real against synthetic
def test_real_chexpert_against_a_phantomcxr_generator_share_subgroups(tmp_path, monkeypatch):
    from medsynth_explore.data import write_chexpert
    from medsynth_explore.evaluate import evaluate
    from medsynth_explore.generators import load_generator
    from medsynth_explore.phantom import simulate
    from medsynth_explore.session import Session
    from medsynth_explore.widgets.fairness import shared_columns

    monkeypatch.setenv("MEDSYNTH_CACHE_DIR", str(tmp_path / "cache"))
    gen = load_generator("phantomcxr-physics")
    fake = gen.sample(80, seed=1)
    real = load_dataset(write_chexpert(simulate(80, seed=5, size=fake.shape[-1]), tmp_path), lazy=True)
    rep = evaluate(real, fake, encoder="pixels", metrics=["fid"], by=["sex"], n_boot=0)
    assert set(rep.table["group"]) == {"all", "sex=F", "sex=M"}
    assert rep.table.set_index("group").loc["sex=F", "n_real"] == int((real.metadata["sex"] == "F").sum())
    rep2 = evaluate(real, fake, encoder="pixels", metrics=["fid"], by="pleural_effusion", n_boot=0, min_group_size=2)
    groups = set(rep2.table["group"])
    assert {"pleural_effusion=0", "pleural_effusion=1"} <= groups
    t = rep2.table.set_index("group")
    assert t.loc["pleural_effusion=1", "n_synthetic"] == int(fake.metadata["effusion"].sum())
    assert "effusion" not in real.metadata.columns and "pleural_effusion" not in fake.metadata.columns  # nobody renamed anything
    cols = shared_columns(real.metadata, fake.metadata)
    assert {"sex", "age", "pleural_effusion", "cardiomegaly", "lung_lesion"} <= set(cols)
    session = Session(reference=real, generators=[gen], encoder="pixels", cache=False)
    session.add_samples(fake)
    table = session.fairness(by="pleural_effusion", metric="coverage", n_boot=5, min_group=5)
    assert set(table["group"]) <= {"pleural_effusion=0", "pleural_effusion=1", "pleural_effusion=unknown"}


# --------------------------------------------------------------------------- the command line
def test_medsynth_evaluate_reads_a_chexpert_tree_with_layout_size_and_skip(tmp_path, capsys, monkeypatch):
    from medsynth_explore.cli import main

    monkeypatch.setenv("MEDSYNTH_CACHE_DIR", str(tmp_path / "cache"))
    root = chexpert_tree(tmp_path / "data", n_train=16, n_valid=0)  # images of 20 x 24: resized on load
    broken = sorted(root.glob("train/*/*/*.jpg"))[0]
    broken.write_bytes(broken.read_bytes()[:-200])  # truncated: left out with --on-error skip
    syn = tmp_path / "syn"
    assert main(["simulate", "--n", "16", "--size", "32", "--seed", "2", "--out", str(syn)]) == 0
    out = tmp_path / "report.json"
    args = ["evaluate", "--real", str(root), "--synthetic", str(syn), "--encoder", "pixels", "--metrics", "coverage"]
    args += ["--by", "sex", "--layout", "chexpert", "--size", "32", "--out", str(out)]
    assert main(args) == 2  # a truncated file stops the run by default ...
    assert "truncated" in capsys.readouterr().err
    assert main(args + ["--on-error", "skip"]) == 0  # ... and is left out, and said so, when asked
    assert "left out 1 unreadable real image file" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["provenance"]["real"]["n_skipped"] == 1
    rows = {r["group"]: r for r in report["table"]}
    # the real side's "Sex" (Male/Female/Unknown) and the simulator's "sex" (F/M) meet as one column
    assert rows["all"]["n_real"] == 15 and rows["all"]["n_synthetic"] == 16
    raw = pd.read_csv(root / "train.csv")
    kept = raw[~raw["Path"].str.endswith(str(broken.relative_to(root)))]
    assert rows["sex=F"]["n_real"] == int((kept["Sex"] == "Female").sum())
    assert rows["sex=M"]["n_real"] == int((kept["Sex"] == "Male").sum())
    assert rows["sex=F"]["n_synthetic"] == int((load_dataset(syn).metadata["sex"] == "F").sum())
