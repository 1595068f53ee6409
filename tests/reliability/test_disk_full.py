"""A full disk: one line naming the path and the disk, the previous checkpoint kept, nothing left
behind that breaks the resumed run. The disk is real: a 2 MB tmpfs mounted in a private mount
namespace (``unshare``), so the test needs no root and touches no real disk."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import cli_env
from retrain.testing.runs import read_metrics, write_toy_config

SCRIPT = """
set -u
mount -t tmpfs -o size=2000k tmpfs "$DISK" || exit 90
"$PY" -m retrain.cli.main "$CFG" 2> "$OUT/full.err"; echo $? > "$OUT/full.rc"
cp -a "$DISK/." "$OUT/after_full"
mount -o remount,size=64m "$DISK"
"$PY" -m retrain.cli.main "$CFG" --resume latest 2> "$OUT/resume.err"; echo $? > "$OUT/resume.rc"
cp -a "$DISK/." "$OUT/after_resume"
"""


def private_tmpfs_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


#: The part of SCRIPT that fills the disk (the torchrun run stops there).
FILL_ONLY = SCRIPT.split("cp -a")[0]


def save_on_a_full_disk(tmp_path: Path, tiny_model: Path, script: str, **sections: dict) -> tuple[Path, Path]:
    """Run ``script`` in a private namespace on a 2 MB tmpfs at ``tmp_path/disk`` with a 3-step run that
    saves every step; the disk fills while step 2 is saved. Asserts the one line; returns (disk, out)."""
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir(), out.mkdir()
    cfg = write_toy_config(tmp_path / "run.toml", tiny_model, disk / "runs",
                           training={"max_steps": 3, "save_every": 1, "keep_checkpoints": 2}, **sections)
    env = cli_env(DISK=str(disk), OUT=str(out), CFG=str(cfg), PY=sys.executable)
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    # the full disk: exit 2, one line that names the checkpoint, the disk and what is kept
    err = (out / "full.err").read_text()
    assert (out / "full.rc").read_text().strip() == "2", err[-3000:]
    assert "Traceback" not in err and "ChildFailedError" not in err, err[-3000:]
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    run = disk / "runs" / "run"
    assert len(lines) == 1 and lines[0].startswith(f"error: could not write checkpoint {run}/checkpoints/step_2: "
                                                   f"no space left on device (disk {disk}: "), err[-3000:]
    assert f"The previous checkpoint {run}/checkpoints/step_1 is intact." in lines[0]
    return disk, out


@pytest.mark.skipif(not private_tmpfs_works(), reason="needs `unshare -rm` and tmpfs mounts (Linux user namespaces)")
def test_a_full_disk_while_saving_is_one_line_and_keeps_the_previous_checkpoint(tiny_model, tmp_path):
    disk, out = save_on_a_full_disk(tmp_path, tiny_model, SCRIPT)
    after = out / "after_full" / "runs" / "run"
    assert sorted(p.name for p in (after / "checkpoints").iterdir()) == ["step_1"]  # no .tmp-step_2 left
    assert (after / "checkpoints" / "step_1" / "state.pt").is_file()
    assert [r["step"] for r in read_metrics(after)] == [1, 2]

    # space again: --resume latest continues from step 1 and finishes
    resume_err = (out / "resume.err").read_text()
    assert (out / "resume.rc").read_text().strip() == "0", resume_err[-3000:]
    final = out / "after_resume" / "runs" / "run"
    assert [r["step"] for r in read_metrics(final)] == [1, 2, 3]
    assert sorted(p.name for p in (final / "checkpoints").iterdir()) == ["step_2", "step_3"]
    assert not Path(disk / "runs").exists()  # the tmpfs vanished with its namespace: nothing on the real disk


@pytest.mark.skipif(not private_tmpfs_works(), reason="needs `unshare -rm` and tmpfs mounts (Linux user namespaces)")
def test_a_full_disk_under_torchrun_is_the_same_one_line_and_exit_2(tiny_model, tmp_path):
    """[backend] devices = "cpu:2": both ranks stop with the same line; the launcher prints it once and
    exits 2 as one process does (before: the line twice, torchrun's failure report, exit 1). ~16 s."""
    save_on_a_full_disk(tmp_path, tiny_model, FILL_ONLY, backend={"devices": "cpu:2"})


def test_a_full_disk_while_logging_metrics_or_samples_is_one_line():
    """/dev/full fails every write with ENOSPC, like a full disk (a real device, no mock)."""
    from retrain.loggers.jsonl import JsonlLogger
    from retrain.train.files import WriteError, append_jsonl

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    logger = JsonlLogger(path="/dev/full")
    with pytest.raises(WriteError) as err:
        logger.log(3, {"reward/mean": 0.5})
    logger.close()
    assert str(err.value).startswith("could not write step 3's metrics to /dev/full: no space left on device (disk /")
    assert "continue with --resume latest" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(WriteError, match=r"^could not write rows to /dev/full: no space left on device"):
        append_jsonl(Path("/dev/full"), [{"step": 3, "completion": "x" * 10_000}])
