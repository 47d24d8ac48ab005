"""Hostile files and models (data-safety issue, findings 5, 9, 10, 11 and 14): zip bombs, dead installs' leftovers,
deeply nested or huge JSON, absurd model values, malicious checkpoints, malformed markups, repair advice.

Everything is real: zips and folders written under tmp_path, real torch checkpoints, real killed processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import MODULE_DIR
from fake_models import (
    LESION_MS_TRAINER,
    PLANS_JSON,
    claim_sizes,
    dataset_json,
    fold_zip,
    malicious_checkpoint_bytes,
    trainer_files,
    write_tree,
    write_zip,
)
from SpinalLesionSegLib import safe_json
from SpinalLesionSegLib.analysis.level_sources import read_markups_discs
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.inference.protocol import Job, ProtocolError
from SpinalLesionSegLib.models import installer, registry, resolve, workspace

DEEP = "[" * 100_000 + "]" * 100_000
GB = 1_000_000_000


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(registry.HOME_ENV, str(tmp_path / "home"))
    return tmp_path / "home" / "models"


def _entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name != ".downloads") if cache.exists() else []


# --- finding 5: sizes checked before unpacking, leftovers of dead installs cleaned ---------------------------------


def test_a_zip_bomb_is_refused_before_anything_is_unpacked(tmp_path: Path, cache: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel, data in trainer_files((0,), prefix="m/").items():
            archive.writestr(rel, bytes(64 << 20) if rel == "m/fold_0/checkpoint_final.pth" else data)
    assert bomb.stat().st_size < 1 << 20  # 64 MiB of "weights" in under 1 MiB
    unpacked: list[int] = []
    with pytest.raises(InputError, match=r"checkpoint_final.pth: it would unpack to 67108864 bytes .*zip bomb"):
        installer.install("bomb", bomb, lambda stage, done, total: unpacked.append(done) if stage == "installing"
                          else None)
    assert unpacked == [] and _entries(cache) == []


def test_archives_declaring_more_than_the_size_limit_are_refused(tmp_path: Path, cache: Path) -> None:
    # A known model: at most 3x its published download size (lesion_ms: 764 MB -> 2292 MB).
    zips = [fold_zip(tmp_path / f"model_fold{fold}.zip", fold) for fold in range(5)]
    claim_sizes(zips[0], {f"{LESION_MS_TRAINER}/fold_0/checkpoint_final.pth": 3 * GB})
    with pytest.raises(InputError, match=r"model 'lesion_ms': its files would unpack to 3\d{3} MB, more than the "
                                         r"2292 MB allowed"):
        installer.install("lesion_ms", zips)
    # A custom model: the documented default cap (8 GiB).
    custom = write_zip(tmp_path / "huge.zip", trainer_files((0, 1, 2), prefix="m/"))
    claim_sizes(custom, {f"m/fold_{fold}/checkpoint_final.pth": 3 * GB for fold in range(3)})
    with pytest.raises(InputError, match=r"model 'huge': its files would unpack to 9\d{3} MB, more than the 8590 MB"):
        installer.install("huge", custom)
    assert _entries(cache) == []


_BLOCKED_INSTALL = """
import sys, time
from pathlib import Path
from SpinalLesionSegLib.models import installer

def block(stage, done, total):
    Path(sys.argv[3]).touch()
    time.sleep(600)

installer.install(sys.argv[1], sys.argv[2], block)
"""


def _blocked_install(name: str, source: Path, tmp_path: Path) -> subprocess.Popen:
    """A real install in another process, stopped inside its first copy (its work folder exists by then)."""
    started = tmp_path / f"{name}.started"
    env = {**os.environ, registry.HOME_ENV: str(tmp_path / "home"), "PYTHONPATH": str(MODULE_DIR)}
    process = subprocess.Popen([sys.executable, "-c", _BLOCKED_INSTALL, name, str(source), str(started)], env=env)
    deadline = time.monotonic() + 60
    while not started.exists():
        assert process.poll() is None and time.monotonic() < deadline, "the blocked install did not start"
        time.sleep(0.05)
    return process


@pytest.mark.skipif(os.name != "posix", reason="pids are only checked on POSIX")
def test_work_folders_of_dead_installs_are_cleaned_never_those_of_live_ones(tmp_path: Path, cache: Path) -> None:
    source = write_zip(tmp_path / "m.zip", trainer_files((0,), prefix="m/"))
    live = _blocked_install("live", source, tmp_path)
    try:
        killed = _blocked_install("killed", source, tmp_path)  # (its start leaves the live install's folder alone)
        killed.kill()
        killed.wait()
        ghost = write_tree(cache / ".tmp-ghost-abc", {"fold_0/checkpoint_final.pth": b"x"})  # no owner, 2 days old
        for path in (ghost / "fold_0" / "checkpoint_final.pth", ghost / "fold_0", ghost):
            os.utime(path, (time.time() - 2 * 86400,) * 2)
        fresh = write_tree(cache / ".tmp-fresh-abc", {"plans.json": b"{}"})  # no owner, young: maybe starting up
        assert [p.name.split("-")[1] for p in sorted(cache.glob(".tmp-*"))] == ["fresh", "ghost", "killed", "live"]
        installer.install("mine", source)
        assert [p.name.split("-")[1] for p in sorted(cache.glob(".tmp-*"))] == ["fresh", "live"]
        assert live.poll() is None
    finally:
        live.kill()
        live.wait()
    left_by_live = list(cache.glob(".tmp-live-*"))
    assert workspace.clean_stale(cache) == left_by_live and fresh.is_dir()


def test_a_model_caught_mid_replacement_is_put_back(tmp_path: Path, cache: Path) -> None:
    installer.install("mine", write_zip(tmp_path / "m.zip", trainer_files((0,), prefix="m/")))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    old = workspace.make_work_folder(cache, ".tmp-old-mine-")  # as _publish makes it, then "killed"
    owner = json.loads((old / workspace.OWNER_NAME).read_text())
    (old / workspace.OWNER_NAME).write_text(json.dumps({**owner, "pid": int(dead.stdout)}))
    os.replace(cache / "mine", old / "mine")
    installer.install("other", write_zip(tmp_path / "o.zip", trainer_files((0,), prefix="o/")))
    assert _entries(cache) == ["mine", "other"] and registry.verify("mine").ok


# --- finding 9: JSON too deep or too large ------------------------------------------------------------------------


@pytest.mark.parametrize("text, depth", [
    ('{"a": "[[[[[[[[[[", "b": [1, [2]]}', 3),
    (r'["\"[[[[", {"c": "\\"}, [[["]]]]"]]]]', 4),
    ('"[{"', 0),
    ("3", 0),
])
def test_nesting_is_measured_outside_strings(text: str, depth: int) -> None:
    assert safe_json.nesting_depth(text) == depth
    json.loads(text)


def test_safe_json_limits_and_errors_are_one_line(tmp_path: Path) -> None:
    assert safe_json.loads("[" * 64 + "]" * 64) is not None  # the limit itself is accepted
    with pytest.raises(InputError, match=r"^x.json: JSON nested 65 levels deep \(more than 64\)"):
        safe_json.loads("[" * 65 + "]" * 65, "x.json")
    assert safe_json.loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # a byte-order mark, as Windows editors write
    with pytest.raises(InputError, match="not UTF-8"):
        safe_json.loads(b'{"a": "\xff"}')
    with pytest.raises(InputError, match="not valid JSON .*digits"):
        safe_json.loads("1" * 5000)
    big = tmp_path / "big.json"
    big.write_text("[" + " " * 100 + "]")
    assert safe_json.load_file(big, max_bytes=102) == []
    with pytest.raises(InputError, match=r"big.json: too large for a JSON document \(more than 101 bytes\)"):
        safe_json.load_file(big, max_bytes=101)
    with pytest.raises(InputError, match="cannot be read"):
        safe_json.load_file(tmp_path / "absent.json")


def test_deeply_nested_model_json_is_refused_with_one_line(tmp_path: Path, cache: Path) -> None:
    deep_dataset = write_tree(tmp_path / "a", trainer_files((0,), dataset='{"labels": ' + DEEP + "}", prefix="m/"))
    with pytest.raises(InputError, match=r"dataset.json: JSON nested 100001 levels deep"):
        installer.install("deep", deep_dataset)
    deep_plans = write_tree(tmp_path / "b", trainer_files((0,), plans=DEEP, prefix="m/"))
    with pytest.raises(InputError, match=r"plans.json: JSON nested 100000 levels deep"):
        resolve.resolve_model(deep_plans)
    assert _entries(cache) == []


def test_deeply_nested_or_huge_jobs_and_markups_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match=r"^malformed job: JSON nested 100000 levels deep"):
        Job.from_json(DEEP)
    markups = tmp_path / "deep.mrk.json"
    markups.write_text('{"markups": ' + DEEP + "}")
    with pytest.raises(InputError, match=r"is not a Slicer markups file \(JSON nested 100001 levels deep"):
        read_markups_discs(markups)
    markups.write_text('{"markups": []' + " " * safe_json.MAX_BYTES + "}")
    with pytest.raises(InputError, match=r"is not a Slicer markups file \(too large for a JSON document"):
        read_markups_discs(markups)


# --- finding 11: malformed markups ----------------------------------------------------------------------------------


@pytest.mark.parametrize("document, problem", [
    ([], "no 'markups' list"),
    ({"markups": 5}, "no 'markups' list"),
    ({"markups": [5]}, "a 'markups' entry is 5, not an object"),
    ({"markups": [{"coordinateSystem": ["LPS"]}]}, r"coordinate system \['LPS'\]; LPS or RAS"),
    ({"markups": [{"controlPoints": 5}]}, "'controlPoints' must be a list of objects"),
    ({"markups": [{"controlPoints": ["C2-C3"]}]}, "'controlPoints' must be a list of objects"),
    ({"markups": [{"controlPoints": [{"label": {"x": 1}, "position": [0, 0, 0]}]}]}, "label {'x': 1} is not text"),
    ({"markups": [{"controlPoints": [{"label": "C2-C3", "position": ["a", "b", "c"]}]}]},
     r"control point 'C2-C3' has position \['a', 'b', 'c'\]; three numbers"),
    ({"markups": [{"controlPoints": [{"label": "C2-C3", "position": [1, 2]}]}]}, "three numbers"),
    ({"markups": [{"controlPoints": [{"label": "C2-C3", "position": [1, 2, float("nan")]}]}]}, "three numbers"),
])
def test_malformed_markups_are_one_line_errors(tmp_path: Path, document: object, problem: str) -> None:
    markups = tmp_path / "bad.mrk.json"
    markups.write_text(json.dumps(document))
    with pytest.raises(InputError, match=problem) as caught:
        read_markups_discs(markups)
    assert caught.value.path == str(markups) and "\n" not in str(caught.value)


# --- finding 10: absurd model values and bad checkpoints, refused at install --------------------------------------


def _plans(**configuration: object) -> str:
    plans = json.loads(PLANS_JSON)
    plans["configurations"]["3d_fullres"].update(configuration)
    return json.dumps(plans)


ARCHITECTURE = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {"n_stages": 2, "features_per_stage": [8, 16], "conv_op": "torch.nn.Conv3d",
                                "kernel_sizes": [[3, 3, 3]] * 2, "strides": [[1, 1, 1], [2, 2, 2]]},
                "_kw_requires_import": ["conv_op"]}


@pytest.mark.parametrize("dataset, plans, problem", [
    (None, _plans(patch_size=[100_000, 100_000, 100_000]), r"patch_size must be 2 or 3 whole numbers of 1..1024"),
    (None, _plans(patch_size=[0, 32, 32]), "patch_size must be"),
    (None, _plans(patch_size=[256, 512, 512]), r"at most 16777216 voxels in all, got \[256, 512, 512\]"),
    (None, _plans(patch_size="big"), "patch_size must be"),
    (None, _plans(spacing=[0.0, 1.0, 1.0]), r"spacing must be 2 or 3 voxel sizes of 0.01..100.0 mm"),
    (None, _plans(inherits_from="3d_fullres"), "inherits_from must be another configuration"),
    (None, json.dumps({"configurations": {"2d": {"patch_size": [64, 64]}}}),
     r"plans.json: has no configuration '3d_fullres', which the checkpoints were trained with \(it has '2d'\)"),
    (None, json.dumps({"configurations": []}), "configurations must be an object of 1 to 32 configurations"),
    (None, _plans(architecture={**ARCHITECTURE, "network_class_name": "os.system"}), r"refused: .*'os.system'"),
    (None, _plans(architecture={**ARCHITECTURE,
                                "arch_kwargs": {**ARCHITECTURE["arch_kwargs"], "conv_op": "os.system"}}),
     r"arch_kwargs.conv_op: refused"),
    (None, _plans(architecture={**ARCHITECTURE, "arch_kwargs": {**ARCHITECTURE["arch_kwargs"],
                                                                "features_per_stage": [8, 10 ** 9]}}),
     r"features_per_stage must be whole numbers of 1..4096"),
    (dataset_json(channel_names={str(i): "T2w" for i in range(10_000)}), None,
     "channel_names must be an object of 1 to 16 input channels"),
    (dataset_json(channel_names={"0": "T2w", "x": "T1w"}), None, "numbered"),
    (dataset_json({f"label{i}": i for i in range(10_000)}), None, "labels must be an object of 2 to 64 labels"),
    (dataset_json({"lesion": 1, "other": 2}), None, r"labels.background must be 0 \(nnU-Net requires it\)"),
    (dataset_json({"background": 0, "lesion": -1}), None, r"labels.lesion must be a label value \(0..1023\)"),
    (dataset_json(regions_class_order="all"), None, "regions_class_order must be a list"),
])
def test_absurd_model_values_are_refused_at_install(tmp_path: Path, cache: Path, dataset: str | None,
                                                    plans: str | None, problem: str) -> None:
    source = write_zip(tmp_path / "absurd.zip", trainer_files((0,), dataset=dataset, plans=plans, prefix="m/"))
    with pytest.raises(InputError, match=problem):
        installer.install("absurd", source)
    assert _entries(cache) == []


def test_a_sane_architecture_installs(tmp_path: Path) -> None:
    plans = _plans(architecture=ARCHITECTURE, spacing=[0.5, 0.5, 0.5])
    installer.install("sane", write_zip(tmp_path / "sane.zip", trainer_files((0,), plans=plans, prefix="m/")))
    assert resolve.resolve_model("sane").plans["configurations"]["3d_fullres"]["architecture"] == ARCHITECTURE


def _with_checkpoint(tmp_path: Path, data: bytes) -> Path:
    files = trainer_files((0, 1), prefix="m/")
    files["m/fold_1/checkpoint_best.pth"] = data  # the second choice of its fold: every checkpoint is checked
    return write_zip(tmp_path / "model.zip", files)


def test_malicious_or_broken_checkpoints_are_refused_at_install(tmp_path: Path, cache: Path) -> None:
    import torch

    marker = tmp_path / "EXECUTED"
    with pytest.raises(InputError, match=r"checkpoint_best.pth: refused: .*could run code .*system"):
        installer.install("evil", _with_checkpoint(tmp_path, malicious_checkpoint_bytes(marker)))
    assert not marker.exists()
    with pytest.raises(InputError, match="checkpoint_best.pth: cannot be read as a PyTorch checkpoint"):
        installer.install("garbage", _with_checkpoint(tmp_path, b"not a checkpoint at all"))
    for content, problem in [({"weights": {}}, "no 'network_weights'"),
                             ({"network_weights": {"w": "not a tensor"}}, "not a set of named tensors"),
                             ({"network_weights": {}, "init_args": ["3d_fullres"]}, "init_args.configuration")]:
        path = tmp_path / "content.pth"
        torch.save(content, path)
        with pytest.raises(InputError, match=problem):
            installer.install("broken", _with_checkpoint(tmp_path, path.read_bytes()))
    assert _entries(cache) == []


# --- finding 14: advice after a failed verification -----------------------------------------------------------------


def _corrupt_first_checkpoint(folder: Path) -> None:
    checkpoint = folder / "fold_0" / "checkpoint_final.pth"
    checkpoint.write_bytes(checkpoint.read_bytes() + b"tampered")


def test_verification_advice_fits_how_the_model_was_installed(tmp_path: Path) -> None:
    zipped = write_zip(tmp_path / "my model.zip", trainer_files((0,), prefix="m/"))
    _corrupt_first_checkpoint(installer.install("custom", zipped))
    with pytest.raises(InputError, match="failed verification") as caught:
        resolve.resolve_model("custom")
    assert str(caught.value).endswith("reinstall it from your folder or zip with 'spinal-lesion-seg models install "
                                      f"custom --force --from '{zipped.resolve()}''")
    assert registry.verify("custom").advice in str(caught.value)

    zips = [fold_zip(tmp_path / f"model_fold{fold}.zip", fold) for fold in range(5)]
    _corrupt_first_checkpoint(installer.install("lesion_ms", zips))
    with pytest.raises(InputError, match="failed verification") as caught:
        resolve.resolve_model("lesion_ms")
    assert str(caught.value).endswith("reinstall it with 'spinal-lesion-seg models install lesion_ms --force'")
