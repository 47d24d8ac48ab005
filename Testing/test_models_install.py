"""Model installer and registry: offline installs, fold merging, safety of archives, checksums, resolve_model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import MappingProxyType

import pytest
from fake_models import LESION_MS_TRAINER, dataset_json, fold_zip, trainer_files, write_tree, write_zip
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import sha256_file
from SpinalLesionSegLib.models import checksums, installer, manifests, registry, resolve
from SpinalLesionSegLib.models.manifests import MANIFESTS


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own model cache through SPINAL_LESION_SEG_HOME."""
    home = tmp_path / "home"
    monkeypatch.setenv(registry.HOME_ENV, str(home))
    return home / "models"


def _cache_entries(cache: Path) -> list[str]:
    """What an install left in the cache (download folders excluded)."""
    return sorted(p.name for p in cache.iterdir() if p.name != ".downloads") if cache.exists() else []


def test_home_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry.models_dir() == tmp_path / "home" / "models"
    monkeypatch.delenv(registry.HOME_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert registry.models_dir() == tmp_path / "user" / ".spinal-lesion-seg" / "models"


def test_install_from_a_dataset_zip_keeps_only_what_prediction_needs(tmp_path: Path, cache: Path) -> None:
    files = trainer_files((0, 1), best_only=(1,), prefix="Dataset101_Fake/nnUNetTrainer__nnUNetPlans__3d_fullres/")
    archive = write_zip(tmp_path / "Dataset101_Fake.zip", files)
    folder = installer.install("mine", archive)

    assert folder == cache / "mine" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    installed = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert installed == ["dataset.json", "fold_0/checkpoint_best.pth", "fold_0/checkpoint_final.pth",
                         "fold_1/checkpoint_best.pth", "plans.json"]
    assert not (folder / "trainer_class.py").exists() and not (folder / "IMPORTED").exists()
    record = json.loads((cache / "mine" / registry.RECORD_NAME).read_text())
    assert record["custom"] is True and record["folds"] == [0, 1]
    assert set(record["files"]) == set(installed)
    assert record["sources"][0]["kind"] == "zip"
    assert record["sources"][0]["sha256"] == sha256_file(archive)
    assert _cache_entries(cache) == ["mine"]

    resolved = resolve.resolve_model("mine")
    assert resolved.verified and resolved.manifest is None and resolved.release is None
    assert resolved.folds == (0, 1)
    # checkpoint_final.pth wins over checkpoint_best.pth; best is used when final is absent
    assert resolved.checkpoints == {0: folder / "fold_0/checkpoint_final.pth", 1: folder / "fold_1/checkpoint_best.pth"}
    assert resolved.dataset["labels"] == {"background": 0, "lesion": 1}
    assert resolved.plans["plans_name"] == "nnUNetPlans"
    assert (resolved.orientation, resolved.orientation_source, resolved.axcodes) == ("RPI", "dataset.json", "LAS")
    assert (resolved.lesion_label, resolved.cord_label, resolved.region_based) == ("lesion", None, False)
    assert resolved.fingerprint == record["fingerprint"]
    assert registry.path("mine") == folder
    assert [s.name for s in registry.list_models() if s.kind == "custom"] == ["mine"]


def test_install_from_an_unzipped_trainer_folder(tmp_path: Path, cache: Path) -> None:
    source = write_tree(tmp_path / "nnUNetTrainer__nnUNetPlans__3d_fullres",
                        trainer_files((0,), dataset=dataset_json(orientation=None)))
    folder = installer.install("offline", source)
    resolved = resolve.resolve_model("offline")
    assert resolved.folder == folder and folder.name == source.name
    # no image_orientation in dataset.json and no manifest: LPI, as SCT does
    assert (resolved.orientation, resolved.orientation_source) == ("LPI", "default")
    assert json.loads((cache / "offline" / registry.RECORD_NAME).read_text())["sources"][0]["kind"] == "folder"


def test_fold_zips_merge_into_one_trainer_folder(tmp_path: Path) -> None:
    zips = [fold_zip(tmp_path / f"model_fold{fold}.zip", fold) for fold in range(5)]
    folder = installer.install("lesion_ms", zips)
    assert folder.name == LESION_MS_TRAINER
    resolved = resolve.resolve_model("lesion_ms")
    assert resolved.folds == (0, 1, 2, 3, 4) and resolved.manifest is MANIFESTS["lesion_ms"]
    assert resolved.release == "r20250909" and resolved.verified
    assert all(path.name == "checkpoint_final.pth" for path in resolved.checkpoints.values())


def test_a_known_model_with_a_missing_fold_or_foreign_labels_is_refused(tmp_path: Path, cache: Path) -> None:
    zips = [fold_zip(tmp_path / f"model_fold{fold}.zip", fold) for fold in range(4)]
    with pytest.raises(InputError, match="fold_4 missing"):
        installer.install("lesion_ms", zips)
    region = dataset_json({"background": 0, "sc": [1, 2], "lesion": 2})
    zips = [fold_zip(tmp_path / f"region_fold{fold}.zip", fold, dataset=region) for fold in range(5)]
    with pytest.raises(InputError, match="labels .* differ"):
        installer.install("lesion_ms", zips)
    assert _cache_entries(cache) == []


def test_fold_zips_that_disagree_are_not_merged_and_nothing_is_installed(tmp_path: Path, cache: Path) -> None:
    zips = [fold_zip(tmp_path / "model_fold0.zip", 0),
            fold_zip(tmp_path / "model_fold1.zip", 1, dataset=dataset_json(orientation="LPI"))]
    with pytest.raises(InputError, match="dataset.json differs"):
        installer.install("lesion_ms", zips)
    duplicate = [fold_zip(tmp_path / "a.zip", 0), fold_zip(tmp_path / "b.zip", 0)]
    with pytest.raises(InputError, match="fold_0/checkpoint_best.pth is also in"):
        installer.install("twice", duplicate)
    assert _cache_entries(cache) == []


def test_crop_metadata_at_the_zip_root_is_installed_with_the_model(tmp_path: Path) -> None:
    crop = {f"pad_{side}": 10.0 for side in ("superior", "inferior", "left", "right", "anterior", "posterior")}
    zips = [fold_zip(tmp_path / f"model_fold{fold}.zip", fold, trainer="nnUNetTrainer__nnUNetPlans__3d_fullres",
                     root_files={"crop_metadata.json": json.dumps(crop).encode()}) for fold in range(5)]
    resolved = resolve.resolve_model(installer.install("lesion_ms_cropped", zips))
    assert resolved.name == "lesion_ms_cropped" and resolved.verified
    assert resolved.crop_metadata == crop
    assert resolved.manifest is not None and resolved.manifest.crop is not None
    without = [fold_zip(tmp_path / f"plain{fold}.zip", fold) for fold in range(5)]
    with pytest.raises(InputError, match="crop_metadata.json: missing"):
        installer.install("lesion_ms_cropped", without, force=True)


def test_region_based_model_reports_lesion_and_cord_labels(tmp_path: Path) -> None:
    region = dataset_json({"background": 0, "sc": [1, 2], "lesion": 2}, regions_class_order=[1, 2])
    archive = write_zip(tmp_path / "axial.zip", trainer_files((0,), dataset=region, prefix="Trainer__Plans__2d/"))
    resolved = resolve.resolve_model(installer.install("lesion_ms_axial_t2", archive))
    assert (resolved.lesion_label, resolved.cord_label, resolved.region_based) == ("lesion", "sc", True)


@pytest.mark.parametrize("member, why", [
    ("../evil.txt", "outside the archive"),
    ("model/../../evil.txt", "outside the archive"),
    ("/etc/evil.txt", "absolute path"),
    ("C:/evil.txt", "absolute path"),
])
def test_unsafe_member_names_are_refused(tmp_path: Path, cache: Path, member: str, why: str) -> None:
    files = trainer_files((0,), prefix="model/")
    files[member] = b"pwned"
    archive = write_zip(tmp_path / "evil.zip", files)
    with pytest.raises(InputError, match=why):
        installer.install("evil", archive)
    assert _cache_entries(cache) == []
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_members_are_refused(tmp_path: Path, cache: Path) -> None:
    archive = write_zip(tmp_path / "link.zip", trainer_files((0,), prefix="model/"),
                        symlinks={"model/fold_1/checkpoint_final.pth": "/etc/passwd"})
    with pytest.raises(InputError, match="symbolic link"):
        installer.install("link", archive)
    assert _cache_entries(cache) == []


def test_symlinks_in_a_source_folder_are_refused(tmp_path: Path, cache: Path) -> None:
    source = write_tree(tmp_path / "trainer", trainer_files((0,)))
    (source / "fold_1").mkdir()
    (source / "fold_1" / "checkpoint_final.pth").symlink_to(tmp_path / "elsewhere.pth")
    with pytest.raises(InputError, match="symbolic link"):
        installer.install("link", source)
    assert _cache_entries(cache) == []


def test_sources_that_are_not_models_are_refused(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "not.zip").write_bytes(b"PK but not really")
    with pytest.raises(InputError, match="not a readable zip"):
        installer.install("x", tmp_path / "not.zip")
    with pytest.raises(InputError, match="no nnU-Net trainer folder"):
        installer.install("x", write_zip(tmp_path / "empty.zip", {"readme.txt": b"hi"}))
    two = {**trainer_files((0,), prefix="D/A__P__2d/"), **trainer_files((0,), prefix="D/A__P__3d_fullres/")}
    with pytest.raises(InputError, match="several nnU-Net trainer folders"):
        installer.install("x", write_zip(tmp_path / "two.zip", two))
    with pytest.raises(InputError, match="no such file"):
        installer.install("x", tmp_path / "missing.zip")
    with pytest.raises(InputError, match="invalid model name"):
        installer.install("../x", tmp_path / "two.zip")
    with pytest.raises(InputError, match="unknown model 'nope'"):
        installer.install("nope")
    assert _cache_entries(cache) == []


def test_failed_reinstall_keeps_the_previous_install(tmp_path: Path, cache: Path) -> None:
    good = write_zip(tmp_path / "good.zip", trainer_files((0,), prefix="m/"))
    folder = installer.install("mine", good)
    assert installer.install("mine", good) == folder  # already installed: left as is
    bad = write_zip(tmp_path / "bad.zip", {**trainer_files((0,), prefix="m/"), "../evil": b"x"})
    with pytest.raises(InputError):
        installer.install("mine", bad, force=True)
    assert _cache_entries(cache) == ["mine"]
    assert registry.verify("mine").ok
    installer.install("mine", write_zip(tmp_path / "new.zip", trainer_files((0, 1), prefix="m/")), force=True)
    assert resolve.resolve_model("mine").folds == (0, 1)
    assert _cache_entries(cache) == ["mine"]


def test_corruption_is_reported_by_verify_and_refused_by_resolve_model(tmp_path: Path) -> None:
    folder = installer.install("mine", write_zip(tmp_path / "m.zip", trainer_files((0, 1), prefix="m/")))
    assert registry.verify("mine").ok and registry.verify("mine").files_checked == 6
    checkpoint = folder / "fold_1" / "checkpoint_final.pth"
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))

    result = registry.verify("mine")
    assert not result.ok
    assert [(problem.path, problem.problem.split(" (")[0]) for problem in result.problems] == \
        [(checkpoint, "sha256 mismatch")]
    with pytest.raises(InputError, match="sha256 mismatch") as caught:
        resolve.resolve_model("mine")
    assert caught.value.path == str(checkpoint)
    # through its path the registered model is verified too
    with pytest.raises(InputError, match="sha256 mismatch"):
        resolve.resolve_model(folder)


def test_missing_and_unrecorded_files_fail_verification(tmp_path: Path) -> None:
    folder = installer.install("mine", write_zip(tmp_path / "m.zip", trainer_files((0, 1), prefix="m/")))
    (folder / "fold_0" / "checkpoint_best.pth").unlink()
    write_tree(folder, {"fold_7/checkpoint_final.pth": b"slipped in later"})
    problems = {problem.path.relative_to(folder).as_posix(): problem.problem for problem in registry.verify("mine").problems}
    assert problems == {"fold_0/checkpoint_best.pth": "missing",
                        "fold_7/checkpoint_final.pth": "not part of the installed model (no recorded checksum)"}
    with pytest.raises(InputError, match="missing"):
        resolve.resolve_model("mine")


def test_a_plain_trainer_folder_resolves_unverified_without_running_its_code(tmp_path: Path) -> None:
    dataset_folder = write_tree(tmp_path / "Dataset101_Fake", trainer_files((0, 2), prefix="nnUNetTrainer__P__3d/"))
    resolved = resolve.resolve_model(dataset_folder)  # a Dataset folder holding one trainer folder
    assert resolved.folder == (dataset_folder / "nnUNetTrainer__P__3d").resolve()
    assert resolved.name == "nnUNetTrainer__P__3d" and not resolved.verified and resolved.manifest is None
    assert resolved.folds == (0, 2)
    assert resolve.resolve_model(resolved.folder).fingerprint == resolved.fingerprint
    assert not (resolved.folder / "IMPORTED").exists()
    with pytest.raises(InputError, match="no such model folder"):
        resolve.resolve_model(tmp_path / "nowhere")
    with pytest.raises(InputError, match="unknown model 'nowhere'"):
        resolve.resolve_model("nowhere")
    (resolved.folder / "plans.json").write_text("{not json")
    with pytest.raises(InputError, match="plans.json: not valid JSON"):
        resolve.resolve_model(resolved.folder)


def test_known_but_not_installed_models_say_how_to_install(tmp_path: Path) -> None:
    for action in (resolve.resolve_model, registry.path, registry.verify, installer.remove):
        with pytest.raises(InputError, match="models install lesion_ms_mp2rage"):
            action("lesion_ms_mp2rage")


def test_remove(tmp_path: Path, cache: Path) -> None:
    installer.install("mine", write_zip(tmp_path / "m.zip", trainer_files((0,), prefix="m/")))
    assert installer.remove("mine") == cache / "mine"
    assert _cache_entries(cache) == []
    with pytest.raises(InputError, match="unknown model 'mine'"):
        registry.path("mine")
    with pytest.raises(InputError, match="bundled"):
        installer.remove("demo")


def test_bundled_model_is_verified_against_its_sha256sums(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bundled model's own dataset.json (its labels are what the demo manifest checks), fake folds.
    dataset = (MANIFESTS["demo"].bundled_folder / "dataset.json").read_text()
    bundled = write_tree(tmp_path / "demo", trainer_files((0, 1), dataset=dataset))
    demo = dataclasses.replace(MANIFESTS["demo"], bundled_folder=bundled)
    monkeypatch.setattr(manifests, "MANIFESTS", MappingProxyType({**MANIFESTS, "demo": demo}))
    with pytest.raises(InputError, match="SHA256SUMS: missing"):
        resolve.resolve_model("demo")
    sums = checksums.write_sha256sums(bundled)
    assert len(sums.read_text().splitlines()) == 6
    resolved = resolve.resolve_model("demo")
    assert resolved.verified and resolved.folds == (0, 1) and resolved.release == "bundled"
    assert installer.install("demo") == bundled and registry.path("demo") == bundled
    (bundled / "plans.json").write_text(json.dumps({"tampered": True}))
    with pytest.raises(InputError, match="plans.json: sha256 mismatch"):
        resolve.resolve_model("demo")


def test_missing_bundled_demo_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = dataclasses.replace(MANIFESTS["demo"], bundled_folder=tmp_path / "absent")
    monkeypatch.setattr(manifests, "MANIFESTS", MappingProxyType({**MANIFESTS, "demo": demo}))
    with pytest.raises(InputError, match="bundled 'demo' model is missing"):
        resolve.resolve_model("demo")
    assert not registry.is_installed("demo")


def test_manifests_are_complete() -> None:
    assert set(MANIFESTS) == {"lesion_ms", "lesion_ms_cropped", "lesion_ms_axial_t2", "lesion_ms_mp2rage", "demo",
                              "demo_multisequence", "cord_contrast_agnostic"}
    for manifest in MANIFESTS.values():
        assert manifest.bundled == (not manifest.archives)
        assert manifest.contrasts and manifest.citation and manifest.licence
        assert all(archive.sha256 is None for archive in manifest.archives)  # none are published
    assert MANIFESTS["lesion_ms"].doi == "10.1177/13524585261427333"
    assert [a.filename for a in MANIFESTS["lesion_ms"].archives] == [f"model_fold{k}.zip" for k in range(5)]
    assert MANIFESTS["lesion_ms_mp2rage"].folds == (3,) and MANIFESTS["lesion_ms_mp2rage"].crop is not None
    assert MANIFESTS["lesion_ms_axial_t2"].labels["sc"] == (1, 2)  # region-based: sc overlaps lesion
    assert MANIFESTS["demo"].bundled_folder == manifests.MANIFESTS["demo"].bundled_folder
    assert MANIFESTS["demo"].bundled_folder.parts[-3:] == ("Resources", "Models", "demo")
    multisequence = MANIFESTS["demo_multisequence"]
    assert multisequence.bundled_folder.parts[-3:] == ("Resources", "Models", "demo_multisequence")
    assert multisequence.missing_sequences == "impute" and multisequence.contrasts == ("T2w", "STIR")
