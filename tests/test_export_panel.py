"""Export panel, driven as the browser would (no browser): fields, Export / resume, Cancel, signing, verify summary."""

from __future__ import annotations

import pytest

from medsynth_explore.export import read_manifest, verify
from medsynth_explore.jobs import JobRunner
from medsynth_explore.provenance import detect, make_test_signer
from medsynth_explore.session import Session
from medsynth_explore.widgets.export_panel import ExportPanel, parse_conditions

from doubles import Noise, toy_reference

pytestmark = pytest.mark.filterwarnings("ignore:FID from .* samples")


class Hooked(Noise):
    """64 x 64 noise that calls ``hook(seeds)`` before each shard (to click Cancel mid-export)."""

    hook = None

    def _generate(self, table, seeds, steps, guidance, prompts):
        if self.hook is not None:
            self.hook(seeds)
        return super()._generate(table, seeds, steps, guidance, prompts)


@pytest.fixture
def gen():
    return Hooked(size=64)


@pytest.fixture
def session(gen):
    return Session(reference=toy_reference(Noise(size=16), 12), generators=[gen], encoder="pixels")


def panel_for(session, tmp_path, **fields):
    p = ExportPanel(session, runner=JobRunner(synchronous=True), folder=str(tmp_path / "out"))
    p.n.value, p.shard_size.value, p.seed.value = 5, 2, 3
    for name, value in fields.items():
        getattr(p, name).value = value
    return p


def test_export_button_writes_the_folder_and_shows_the_verify_summary(session, gen, tmp_path):
    p = panel_for(session, tmp_path, conditions='{"sex": "F", "age": 70}')
    assert "test-noise" in p.generator_label.value
    p.export_button.click()
    assert p.last_error is None, p.last_error
    assert p.last_result is not None and p.last_result.ok and p.last_folder == tmp_path / "out"
    assert "OK, 5 images" in p.summary.value and "watermark: found in 5 of 5 images" in p.summary.value
    m = read_manifest(tmp_path / "out")
    assert m["sampler"]["conditions"] == {"sex": "F", "age": 70} and m["sampler"]["seed"] == 3 and m["sampler"]["shard_size"] == 2
    assert m["provenance"]["watermark"]["embedded"] and not m["provenance"]["c2pa"]["signed"]
    assert detect(tmp_path / "out" / "images" / "000004.png")["watermark"]
    # the panel did exactly what export() does
    from medsynth_explore.export import export

    ref = export(gen, 5, tmp_path / "ref", conditions={"sex": "F", "age": 70}, seed=3, shard_size=2)
    for f in (ref / "images").iterdir():
        assert (tmp_path / "out" / "images" / f.name).read_bytes() == f.read_bytes()
    assert p.progress.layout.visibility == "hidden" and "done" in p.status.value


def test_cancel_then_resume_keeps_finished_shards(session, gen, tmp_path):
    p = panel_for(session, tmp_path, n=6)
    calls = []

    def click_cancel_on_second_shard(seeds):
        calls.append(len(seeds))
        if len(calls) == 2:
            p.cancel_button.click()

    gen.hook = click_cancel_on_second_shard
    p.export_button.click()
    assert "cancelled" in p.status.value and p.last_result is None
    out = tmp_path / "out"
    assert not (out / "manifest.json").exists()
    kept = {f.name: f.read_bytes() for f in (out / "images").iterdir()}
    assert sorted(kept) == ["000000.png", "000001.png", "000002.png", "000003.png"]  # shards 0 and 1 finished
    gen.hook, calls[:] = (lambda seeds: calls.append(len(seeds))), []
    p.export_button.click()
    assert calls == [2]  # only the last shard was sampled again
    assert p.last_result.ok and all((out / "images" / k).read_bytes() == v for k, v in kept.items())


def test_signing_fields_sign_every_image(session, tmp_path):
    make_test_signer(tmp_path / "certs", seed=4)
    p = panel_for(
        session, tmp_path, cert=str(tmp_path / "certs" / "signer-chain.pem"), key=str(tmp_path / "certs" / "signer-key.pem")
    )
    p.export_button.click()
    assert p.last_result.ok and p.last_result.signed
    assert set(p.last_result.table()["c2pa"]) == {"valid"}
    assert "5 of 5 images carry a valid manifest" in p.summary.value and "UNTRUSTED" in p.summary.value


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"conditions": "sex=F"}, "JSON object"),
        ({"conditions": "[1, 2]"}, "JSON object"),
        ({"folder": "  "}, "output folder"),
        ({"cert": "chain.pem"}, "both the certificate chain and the private key"),
        ({"cert": "chain.pem", "key": "key.pem"}, "cannot read the certificate chain"),
        ({"conditions": '{"age": 5}'}, "outside the range"),
    ],
)
def test_bad_fields_show_an_error_in_the_panel(session, tmp_path, fields, words):
    p = panel_for(session, tmp_path, **fields)
    p.export_button.click()
    assert p.last_error is not None and words in p.last_error
    assert words in p.error.value or words.replace("'", "&#x27;") in p.error.value
    assert p.last_result is None


def test_folder_in_use_needs_overwrite_and_verify_button_reports_damage(session, tmp_path):
    p = panel_for(session, tmp_path)
    p.export_button.click()
    p.seed.value = 9
    p.export_button.click()
    assert "finished export with other settings" in p.last_error
    p.overwrite.value = True
    p.export_button.click()
    assert p.last_error is None and read_manifest(tmp_path / "out")["sampler"]["seed"] == 9
    (tmp_path / "out" / "images" / "000002.png").write_bytes(b"garbage")
    p.verify_button.click()
    assert not p.last_result.ok and "FAILED" in p.summary.value and "images/000002.png" in p.summary.value
    assert p.last_result.altered == ["images/000002.png"] == verify(tmp_path / "out").altered


def test_panel_follows_the_active_generator_and_stops_listening_when_closed(tmp_path):
    a, b = Hooked(size=64), Hooked(size=64, sha256="cd" * 32)
    s = Session(reference=toy_reference(Noise(size=16), 12), generators=[a], encoder="pixels")
    s.add_generator(b, name="second")
    p = panel_for(s, tmp_path)
    s.set_active("second")
    assert "second" in p.generator_label.value and "cdcdcdcd" in p.generator_label.value
    p.export_button.click()
    assert read_manifest(tmp_path / "out")["generator"]["checkpoint_sha256"] == "cd" * 32
    assert detect(tmp_path / "out" / "images" / "000000.png")["payload"]["model_sha256_prefix"] == "cdcd"
    p.close()
    label = p.generator_label.value
    s.set_active("test-noise")
    assert p.generator_label.value == label


def test_parse_conditions_and_app_registration():
    assert parse_conditions('{"findings": ["nodule"]}') == {"findings": ["nodule"]}
    assert parse_conditions("") is None
    from medsynth_explore.widgets import ExportPanel as exported
    from medsynth_explore.widgets.app import PANEL_ORDER

    assert exported is ExportPanel and ("Export", "export_panel", "ExportPanel") in PANEL_ORDER
