"""Named inputs of multi-sequence models (issue 16, point 1): ``predict --input T2w=... --input STIR=...`` and a
worker job's ``channels`` put each image on its model channel, whatever order they come in.

The two-channel model is the bundled demo network with a second input channel of zero weights
(:func:`fake_models.two_channel_model_files`): its output is exactly the demo's on the channel-0 (T2w) image, so
comparing outputs shows which image went to which channel. Real nnunetv2 and torch, real files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from fake_models import two_channel_model_files, write_tree
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.inference.case import group_cases
from SpinalLesionSegLib.inference.channels import order_by_channel, parse_named_input
from SpinalLesionSegLib.inference.protocol import Job, ProtocolError


def _predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "SpinalLesionSegLib", "predict", *args, "--device", "cpu",
                           "--folds", "0"], capture_output=True, text=True, timeout=600)


def _soft(folder: Path, stem: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{stem}_lesion_soft.nii.gz")))


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory, t2_path: Path) -> dict:
    """The two-channel model, the real T2w and a second sequence on its grid (the T2w's intensities inverted, so
    that it looks nothing like a T2w), and the demo model's soft map of the T2w alone."""
    root = tmp_path_factory.mktemp("channels")
    model = write_tree(root / "model", two_channel_model_files())
    image = sitk.ReadImage(str(t2_path))
    values = sitk.GetArrayFromImage(image).astype(np.float32)
    stir = sitk.GetImageFromArray(values.max() - values)
    stir.CopyInformation(image)
    stir_path = root / "sub-01_STIR.nii.gz"
    sitk.WriteImage(stir, str(stir_path))
    demo = _predict(str(t2_path), "-o", str(root / "demo"), "--model", "demo")
    assert demo.returncode == 0, demo.stderr
    return {"model": model, "t2": t2_path, "stir": stir_path, "root": root,
            "demo_soft": _soft(root / "demo", "t2")}


def test_names_match_the_models_channels_in_any_order(case: dict, tmp_path: Path) -> None:
    named = _predict("--input", f"stir={case['stir']}", "--input", f"T2w={case['t2']}", "-o", str(tmp_path / "named"),
                     "--model", str(case["model"]))
    assert named.returncode == 0, named.stderr
    # Channel 0 got the T2w (the output is the demo's on it); the outputs are named after the first channel's image.
    np.testing.assert_array_equal(_soft(tmp_path / "named", "t2"), case["demo_soft"])
    sidecar = json.loads((tmp_path / "named" / "t2_lesion_seg.json").read_text())
    assert [(s["channel"], s["path"]) for s in sidecar["Sources"]] == [("T2w", str(case["t2"])),
                                                                       ("STIR", str(case["stir"]))]
    # By order, the same images in the same order give the same result; swapped, another one.
    ordered = _predict(str(case["t2"]), str(case["stir"]), "-o", str(tmp_path / "ordered"), "--model",
                       str(case["model"]))
    assert ordered.returncode == 0, ordered.stderr
    np.testing.assert_array_equal(_soft(tmp_path / "ordered", "t2"), case["demo_soft"])
    swapped = _predict("--input", f"T2w={case['stir']}", "--input", f"STIR={case['t2']}", "-o",
                       str(tmp_path / "swapped"), "--model", str(case["model"]))
    assert swapped.returncode == 0, swapped.stderr
    assert not np.array_equal(_soft(tmp_path / "swapped", "sub-01_STIR"), case["demo_soft"])


@pytest.mark.parametrize(("inputs", "problem"), [
    (["FLAIR=a.nii.gz", "T2w=b.nii.gz"], "a channel the model does not have (its channels: T2w, STIR)"),
    (["T2w=a.nii.gz", "t2w=b.nii.gz"], "is a second image for channel 't2w'"),
    (["T2w=a.nii.gz"], "no image for channel(s) STIR"),
])
def test_wrong_names_are_one_line_before_anything_runs(case: dict, tmp_path: Path, inputs: list[str],
                                                       problem: str) -> None:
    for name in ("a.nii.gz", "b.nii.gz"):
        (tmp_path / name).write_bytes(case["t2"].read_bytes())
    args = []
    for text in inputs:
        name, file = text.split("=")
        args += ["--input", f"{name}={tmp_path / file}"]
    done = _predict(*args, "-o", str(tmp_path / "out"), "--model", str(case["model"]))
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert done.returncode == 2 and len(errors) == 1 and problem in errors[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*_lesion_seg.nii.gz"))


def test_parsing_and_matching_rules() -> None:
    assert parse_named_input(" T2*w = scans/t2.nii.gz ") == ("T2*w", Path("scans/t2.nii.gz"))
    for text in ("t2.nii.gz", "=t2.nii.gz", "T2w="):
        with pytest.raises(InputError, match="--input takes NAME=IMAGE"):
            parse_named_input(text)
    # The project's spellings of T2*-weighted are one channel; case does not matter.
    assert order_by_channel(["stir", "T2*w"], ["b", "a"], ["T2starw", "STIR"]) == [Path("a"), Path("b")]
    assert group_cases(["b", "a"], ["T2starw", "STIR"], ["STIR", "t2starw"]) == [[Path("a"), Path("b")]]
    assert group_cases(["a", "b", "c", "d"], ["T2w", "STIR"]) == [[Path("a"), Path("b")], [Path("c"), Path("d")]]


def test_a_worker_job_carries_the_channel_names() -> None:
    job = Job(inputs=["stir.nii.gz", "t2.nii.gz"], output_dir="out", channels=["STIR", "T2w"])
    assert Job.from_json(job.to_json()) == job
    for channels in (["T2w"], ["T2w", ""], "T2w"):
        with pytest.raises(ProtocolError, match="'channels'"):
            Job(inputs=["stir.nii.gz", "t2.nii.gz"], output_dir="out", channels=channels)


@pytest.fixture
def registered(case: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The two-channel model registered as a bundled model named ``two_sequences``, with a missing-sequence policy
    (the registry's own table, extended for the test, as the installer tests do)."""
    import dataclasses
    from types import MappingProxyType

    from SpinalLesionSegLib.models import checksums, manifests

    folder = write_tree(tmp_path / "two_sequences", two_channel_model_files())
    checksums.write_sha256sums(folder)

    def register(policy: str) -> None:
        entry = dataclasses.replace(manifests.MANIFESTS["demo"], name="two_sequences", bundled_folder=folder,
                                    missing_sequences=policy)
        monkeypatch.setattr(manifests, "MANIFESTS", MappingProxyType({**manifests.MANIFESTS, "two_sequences": entry}))

    return register


def test_a_missing_sequence_follows_the_models_policy(case: dict, registered, tmp_path: Path, capsys) -> None:
    from SpinalLesionSegLib.cli import main as cli_main
    from SpinalLesionSegLib.inference.channels import POLICIES

    from SpinalLesionSegLib.models.manifests import MANIFESTS

    assert {manifest.missing_sequences for manifest in MANIFESTS.values()} <= set(POLICIES)
    args = ["predict", "--input", f"T2w={case['t2']}", "--model", "two_sequences", "--device", "cpu", "--folds", "0"]
    registered("refuse")
    assert cli_main([*args, "-o", str(tmp_path / "refused")]) == 2
    assert "no image for channel(s) STIR" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())

    registered("zeros")
    assert cli_main([*args, "-o", str(tmp_path / "zeros")]) == 0
    # STIR fed as zeros; this model ignores channel 1, so the result is the demo's on the T2w.
    np.testing.assert_array_equal(_soft(tmp_path / "zeros", "t2"), case["demo_soft"])
    sidecar = json.loads((tmp_path / "zeros" / "t2_lesion_seg.json").read_text())
    assert sidecar["sequences"]["missing"] == ["STIR"] and sidecar["sequences"]["missing_policy"] == "zeros"
    assert [s["channel"] for s in sidecar["Sources"]] == ["T2w"] and not list((tmp_path / "zeros").glob("*.tfm"))

    # Without the reference sequence (channel 0 here), the first one given takes its place: outputs on its grid,
    # named after it.
    assert cli_main(["predict", "--input", f"STIR={case['stir']}", "--model", "two_sequences", "--device", "cpu",
                     "--folds", "0", "-o", str(tmp_path / "no_reference")]) == 0
    sidecar = json.loads((tmp_path / "no_reference" / "sub-01_STIR_lesion_seg.json").read_text())
    assert sidecar["sequences"]["reference"] == "STIR" and sidecar["sequences"]["missing"] == ["T2w"]
