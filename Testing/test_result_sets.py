"""Atomic result sets: a kill at any instant leaves the old complete set or the new one, never a mix.

The fault test kills the real worker (``kill -9`` of its process group) at random moments of its write stage, at
least 20 times, and checks the folder after each kill. Everything is real: the demo model, torch, SimpleITK, files.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import MODULE_DIR
from SpinalLesionSegLib.errors import InputError
from SpinalLesionSegLib.image_io import sha256_file, write_image
from SpinalLesionSegLib.phantom import make_phantom
from SpinalLesionSegLib.result_set import ResultSet, journal_path, recover

DEMO = MODULE_DIR / "Resources" / "Models" / "demo"
KILLS = 20
ROLES = ("lesion_seg", "lesion_soft", "sc_seg")


def _roles(folder: Path, stem: str = "case") -> dict[str, Path]:
    return {role: folder / f"{stem}_{role}.nii.gz" for role in ROLES}


def _image(value: float) -> sitk.Image:
    return sitk.GetImageFromArray(np.full((4, 5, 6), value, np.float32))


def _publish(folder: Path, value: float, roles: tuple[str, ...] = ROLES) -> dict[str, Path]:
    manifest = folder / "case_lesion_seg.json"
    with ResultSet(manifest, _roles(folder)) as result_set:
        for role in roles:
            result_set.stage_image(role, _image(value))
        record = {"value": value, "outputs": {r: str(p) for r, p in _roles(folder).items() if r in roles},
                  "written_sha256": result_set.sha256()}
        return result_set.publish(json.dumps(record))


def _complete_set(manifest: Path) -> dict | None:
    """The manifest's record when the set is complete (every file it lists has the sha256 it records, and no
    other file of the case is visible); None when the set is absent (no manifest). Fails on a mixed set."""
    visible = {p.name for p in manifest.parent.glob("*") if not p.name.startswith(".") and p.suffix == ".gz"}
    if not manifest.exists():
        return None
    record = json.loads(manifest.read_text())
    for role, digest in record["written_sha256"].items():
        assert sha256_file(record["outputs"][role]) == digest, f"{role} does not match its sidecar: a mixed set"
    assert visible == {Path(p).name for p in record["outputs"].values() if p.endswith(".gz")}, "stray files"
    return record


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_publishing_replaces_the_whole_set_and_drops_files_the_new_one_lacks(tmp_path: Path) -> None:
    _publish(tmp_path, 1.0)
    published = _publish(tmp_path, 2.0, roles=("lesion_seg", "lesion_soft"))  # e.g. a model without cord output
    assert set(published) == {"lesion_seg", "lesion_soft", "sidecar"}
    assert _complete_set(tmp_path / "case_lesion_seg.json")["value"] == 2.0
    assert not _roles(tmp_path)["sc_seg"].exists(), "the older run's cord mask must not sit beside the new set"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failure_while_staging_leaves_the_old_set_and_no_temporary(tmp_path: Path) -> None:
    _publish(tmp_path, 1.0)
    with pytest.raises(RuntimeError), ResultSet(tmp_path / "case_lesion_seg.json", _roles(tmp_path)) as result_set:
        result_set.stage_image("lesion_seg", _image(2.0))
        result_set.stage_image("lesion_soft", sitk.Image())  # an empty image: SimpleITK refuses to write it
    assert _complete_set(tmp_path / "case_lesion_seg.json")["value"] == 1.0
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("moved", [0, 1, 2, 3])
def test_a_publication_killed_midway_is_rolled_forward(tmp_path: Path, moved: int) -> None:
    """The state a kill leaves after the journal is written and ``moved`` of the 3 renames are done (the old
    manifest already removed): recovery completes the new set."""
    _publish(tmp_path, 1.0)
    manifest = tmp_path / "case_lesion_seg.json"
    result_set = ResultSet(manifest, _roles(tmp_path)).__enter__()
    for role in ("lesion_seg", "lesion_soft"):
        result_set.stage_image(role, _image(2.0))
    record = {"value": 2.0, "outputs": {r: str(_roles(tmp_path)[r]) for r in ("lesion_seg", "lesion_soft")},
              "written_sha256": result_set.sha256()}
    staged_manifest = tmp_path / f".{manifest.name}.{_dead_pid()}.x.partial"
    staged_manifest.write_text(json.dumps(record))
    moves = [(result_set.staged["lesion_seg"], _roles(tmp_path)["lesion_seg"]),
             (result_set.staged["lesion_soft"], _roles(tmp_path)["lesion_soft"]), (staged_manifest, manifest)]
    journal_path(manifest).write_text(json.dumps({"pid": _dead_pid(), "moves": [[a.name, b.name] for a, b in moves],
                                                  "remove": [_roles(tmp_path)["sc_seg"].name]}))
    manifest.unlink()
    _roles(tmp_path)["sc_seg"].unlink()
    for temporary, final in moves[:moved]:
        os.replace(temporary, final)
    assert recover(manifest) is True
    assert _complete_set(manifest)["value"] == 2.0
    assert not journal_path(manifest).exists() and recover(manifest) is False


def test_a_planted_journal_cannot_move_or_delete_files_elsewhere(tmp_path: Path) -> None:
    """Refused in one line once it is too old to be one being written; never followed outside the set's folder."""
    manifest = tmp_path / "case_lesion_seg.json"
    victim = tmp_path.parent / f"{tmp_path.name}-victim.txt"
    victim.write_text("keep me")
    for record in ({"pid": _dead_pid(), "moves": [], "remove": [f"../{victim.name}"]},
                   {"pid": _dead_pid(), "moves": [["other.txt", manifest.name]], "remove": []},
                   {"pid": "1", "moves": [], "remove": []}, [1, 2]):
        journal_path(manifest).write_text(json.dumps(record))
        assert recover(manifest) is False  # a young unreadable journal may be one being written: left alone
        os.utime(journal_path(manifest), (time.time() - 60, time.time() - 60))
        with pytest.raises(InputError, match="not a valid publication journal"):
            recover(manifest)
    assert victim.read_text() == "keep me"


def test_a_live_publishers_journal_is_waited_for_not_rolled_forward(tmp_path: Path) -> None:
    manifest = tmp_path / "case_lesion_seg.json"
    journal_path(manifest).write_text(json.dumps({"pid": os.getppid(), "moves": [], "remove": []}))
    assert recover(manifest) is False and journal_path(manifest).exists()


def test_two_processes_publishing_one_set_never_mix_it(tmp_path: Path) -> None:
    script = ("import sys, test_result_sets as t; from pathlib import Path\n"
              "for i in range(40): t._publish(Path(sys.argv[1]), float(sys.argv[2]) + i)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(MODULE_DIR),
                                                       os.environ.get("PYTHONPATH", "")]))
    runs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(base)], env=env,
                             stderr=subprocess.PIPE, text=True) for base in (0.0, 1000.0)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
    assert _complete_set(tmp_path / "case_lesion_seg.json")["value"] in (39.0, 1039.0)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def _run_worker(job: dict, kill_after_s: float | None) -> dict | None:
    """Run one job in a fresh worker; with ``kill_after_s``, kill -9 its process group that long after it reports
    the write stage. Returns the result line when it finished."""
    process = subprocess.Popen([sys.executable, "-m", "SpinalLesionSegLib.inference.worker", "-"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    process.stdin.write(json.dumps(job))
    process.stdin.close()
    last = None
    for line in process.stdout:
        last = json.loads(line)
        if kill_after_s is not None and last.get("stage") == "write":
            time.sleep(kill_after_s)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:  # it finished first
                pass
            break
    process.wait(timeout=120)
    return last if last and last["type"] == "result" else None


def test_kill_9_at_random_moments_of_the_writes_leaves_a_complete_set(tmp_path: Path) -> None:
    """Two folders, each first given a complete set, then re-run with a new threshold and killed at a random
    instant of the write stage (uniform over 1.3x its measured length), KILLS times in all. After each kill the
    visible set is complete (or, only mid-swap, absent with its journal); after recovery it is the old set or the
    new one. Both outcomes must occur, so the kills really span the publication."""
    phantom = make_phantom(3, spacing=(0.4, 0.4, 0.5))  # a large grid, so that writing takes a while
    source = write_image(phantom.image, tmp_path / "in" / "case.nii.gz")
    job = {"inputs": [str(source)], "model": str(DEMO), "device": "cpu", "folds": [0], "threshold": 0.5}
    folders = [tmp_path / f"out{i}" for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        finished = list(pool.map(lambda f: _run_worker(dict(job, id=f.name, output_dir=str(f)), None), folders))
    window_s = 1.3 * max(r["results"][0]["timings_s"]["write_s"] for r in finished)
    rng = random.Random(11)
    outcomes: list[str] = []

    def kill_once(folder: Path) -> str:
        manifest = folder / "case_lesion_seg.json"
        old = json.loads(manifest.read_text())["threshold"]
        new = 0.3 if old != 0.3 else 0.6
        _run_worker(dict(job, id=folder.name, output_dir=str(folder), threshold=new), rng.uniform(0, window_s))
        if _complete_set(manifest) is None:
            assert journal_path(manifest).exists(), "a set may vanish only mid-swap, with its journal to finish it"
        recover(manifest)
        threshold = _complete_set(manifest)["threshold"]
        assert threshold in (old, new)
        return "old" if threshold == old else "new"

    with ThreadPoolExecutor(2) as pool:
        for _ in range(KILLS // 2):
            outcomes += pool.map(kill_once, folders)
    assert len(outcomes) >= 20 and {"old", "new"} <= set(outcomes), outcomes
    for folder in folders:  # the next run cleans the dead runs' temporaries and completes
        assert _run_worker(dict(job, id="last", output_dir=str(folder)), None) is not None
        assert _complete_set(folder / "case_lesion_seg.json")["threshold"] == 0.5
        assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_an_edit_made_while_the_new_result_was_computed_is_never_overwritten(tmp_path: Path) -> None:
    """The corrected-mask rule is checked again under the journal's lock, just before the swap: a person who saved
    a correction while the new result was being computed keeps it (unless overwrite)."""
    _publish(tmp_path, 1.0)
    manifest, mask = tmp_path / "case_lesion_seg.json", _roles(tmp_path)["lesion_seg"]
    for overwrite in (False, True):
        with ResultSet(manifest, _roles(tmp_path), overwrite=overwrite) as result_set:
            result_set.stage_image("lesion_seg", _image(2.0))
            write_image(_image(9.0), mask)  # the correction, saved meanwhile
            edited = sha256_file(mask)
            if not overwrite:
                with pytest.raises(InputError, match="differs from what spinal-lesion-seg wrote"):
                    result_set.publish(json.dumps({"value": 2.0}))
                assert sha256_file(mask) == edited and json.loads(manifest.read_text())["value"] == 1.0
            else:
                result_set.publish(json.dumps({"value": 2.0}))
                assert sha256_file(mask) != edited
        assert not journal_path(manifest).exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failed_rename_leaves_no_journal_to_block_the_next_run(tmp_path: Path) -> None:
    manifest = tmp_path / "case_lesion_seg.json"
    _roles(tmp_path)["lesion_soft"].mkdir()  # a folder where a file must go: the rename fails
    with pytest.raises(OSError), ResultSet(manifest, _roles(tmp_path)) as result_set:
        for role in ("lesion_seg", "lesion_soft"):
            result_set.stage_image(role, _image(1.0))
        result_set.publish("{}")
    assert not journal_path(manifest).exists()
    _roles(tmp_path)["lesion_soft"].rmdir()
    assert _publish(tmp_path, 2.0)["sidecar"] == manifest  # the case is not blocked
