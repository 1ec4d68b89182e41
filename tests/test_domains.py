"""What kind of picture: photographs and flat graphics get calibration of their own, because a
confidence means different odds on each (calibration does not travel across domains)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sensorium.evals.calibrate import calibrate
from sensorium.evals.results import ExpertAnswer, SampleRecord
from sensorium.graphs import FittedWeights, FusionSettings, fuse_by_image
from sensorium.graphs.calibration import CalibrationMap
from sensorium.tools import Evidence
from sensorium.tools.domain import image_domain
from sensorium.tools.images import ImageStore

REPO = Path(__file__).resolve().parents[1]


def drawn_shape() -> Image.Image:
    """An easy-VQA-like picture: a flat shape on a flat background."""
    image = Image.new("RGB", (64, 64), (240, 240, 240))
    ImageDraw.Draw(image).ellipse((12, 12, 50, 50), fill=(200, 30, 30))
    return image


def test_photographs_and_graphics_are_told_apart_from_the_pixels(
    chelsea: Path, red_image: Path
) -> None:
    assert image_domain(Image.open(chelsea)) == "photo"
    assert image_domain(drawn_shape()) == "graphic"
    assert image_domain(Image.open(red_image)) == "graphic"
    # A flat graphic stays a graphic when saved as JPEG (block noise is not texture) ...
    noisy = np.asarray(drawn_shape(), dtype=np.int16)
    # ... and a photograph with its texture flattened away reads as a graphic.
    assert image_domain(Image.open(chelsea).quantize(4).convert("RGB")) == "graphic"
    rng = np.random.default_rng(0)
    textured = np.clip(noisy + rng.integers(-6, 7, noisy.shape), 0, 255).astype(np.uint8)
    assert image_domain(Image.fromarray(textured)) == "photo"  # sensor-like noise: a photo


def test_the_store_says_each_image_s_domain(tmp_path: Path, chelsea: Path) -> None:
    store = ImageStore(tmp_path / "images")
    photo = store.add(chelsea)
    graphic = store.add_image(drawn_shape())
    assert (store.domain(photo), store.domain(graphic.sha256)) == ("photo", "graphic")


def applied(fit: FittedWeights, folder: Path) -> FusionSettings:
    """Fusion settings that use a fit as users do: from a weights file."""
    path = folder / "weights.json"
    path.write_text(fit.model_dump_json(), encoding="utf-8")
    return FusionSettings(weights_file=path)


def test_fusion_uses_the_fit_of_the_picture_s_domain(tmp_path: Path) -> None:
    sure_on_graphics = CalibrationMap(method="platt", a=1.0, b=0.0)  # identity-like
    doubtful_on_photos = CalibrationMap(method="platt", a=0.0, b=-1.0)  # always ~0.27
    fit = FittedWeights(
        calibration={"answer_question": sure_on_graphics},
        domains={"photo": FittedWeights(calibration={"answer_question": doubtful_on_photos})},
    )
    settings = applied(fit, tmp_path)
    evidence = [
        Evidence(expert="answer_question", answer="cat", confidence=0.9, image="a" * 64),
        Evidence(expert="answer_question", answer="circle", confidence=0.9, image="b" * 64),
    ]
    domains = {"a" * 64: "photo", "b" * 64: "graphic"}
    photo, graphic = fuse_by_image(evidence, settings, "what", domains.__getitem__)
    assert photo.votes[0].confidence < 0.3 < 0.85 < graphic.votes[0].confidence
    assert settings.for_domain("graphic") is settings  # no fit of its own: the pooled one
    # Configuration still wins over a domain's fit.
    domain_weights = FittedWeights(
        domains={"photo": FittedWeights(weights={"answer_question": 3.0})}
    )
    assert applied(domain_weights, tmp_path).for_domain("photo").weight("answer_question") == 3
    (tmp_path / "weights.json").write_text(domain_weights.model_dump_json(), encoding="utf-8")
    configured = FusionSettings(
        weights={"answer_question": 0.5}, weights_file=tmp_path / "weights.json"
    )
    assert configured.for_domain("photo").weight("answer_question") == 0.5


def test_calibrate_fits_each_domain_on_its_own_samples(tmp_path: Path) -> None:
    """The same raw confidence is right 90% of the time on graphics and 30% on photos: one
    pooled map is wrong for both; a map per domain is right for each."""
    rng = random.Random(5)
    records = []
    for n in range(600):
        domain = "graphic" if n % 2 else "photo"
        right = rng.random() < (0.9 if domain == "graphic" else 0.3)
        said = "yes" if right else "no"
        records.append(
            SampleRecord(
                key=f"k:{n}", id=f"s{n}", task="vqa", kind="yes_no", domain=domain,
                expected=["yes"], answer_metric="answer_match",
                experts={"answer_question": ExpertAnswer(
                    answer=said, confidence=0.9, score=float(right))},
            )
        )  # fmt: skip
    result = calibrate(records, min_kind_samples=20, fit_on="train")
    assert set(result.domains) == {"graphic", "photo"}
    fitted = applied(result.weights, tmp_path)
    on_photos = fitted.for_domain("photo").calibrated("answer_question", 0.9, "yes_no")
    on_graphics = fitted.for_domain("graphic").calibrated("answer_question", 0.9, "yes_no")
    assert abs(on_photos - 0.3) < 0.08 and abs(on_graphics - 0.9) < 0.08
    photo_held_out = result.domains["photo"].held_out
    assert photo_held_out is not None
    assert photo_held_out.ece_fitted["answer_question"] < 0.1  # on samples it never saw
    # One domain only: no domain fits (the pooled fit is that domain's).
    alone = calibrate([r for r in records if r.domain == "photo"], min_kind_samples=20)
    assert alone.domains == {} and alone.weights.domains == {}


def test_a_domain_without_a_threshold_of_its_own_keeps_the_configured_one(
    tmp_path: Path,
) -> None:
    fit = FittedWeights(
        abstain_below=0.0,  # the pooled fit chose never to abstain
        domains={"photo": FittedWeights(abstain_below=0.0), "graphic": FittedWeights()},
    )
    settings = applied(fit, tmp_path)
    assert settings.abstain_below == 0.0
    assert settings.for_domain("photo").abstain_below == 0.0
    assert settings.for_domain("graphic").abstain_below == 0.25  # the default, not the pool's
