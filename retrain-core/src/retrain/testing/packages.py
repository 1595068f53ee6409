"""Install packages for a test into a temporary folder, never into the running environment.

    site = install_target(tmp_path / "site", "path/to/my-plugin")   # pip install --target
    with on_sys_path(site):                                          # this process sees it
        registry = load_plugins()                                    # entry points included
    subprocess.run([...], env=path_env(site))                        # and so do subprocesses

``importlib.metadata`` reads the ``*.dist-info`` folders of every ``sys.path`` entry, so the
package's ``retrain`` entry points are discovered exactly as after a normal install.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


def pip(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> None:
    """``python -m pip ARGS`` with this interpreter; raises with pip's stderr on failure."""
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed: {proc.stderr[-2000:]}")


def install_target(target: str | Path, *requirements: str, deps: bool = False) -> Path:
    """``pip install --target TARGET REQUIREMENTS`` (no dependencies unless ``deps``); returns TARGET.

    Local source folders are built with this environment's setuptools when it has one
    (``--no-build-isolation``), so no index is needed.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    no_isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    pip("install", *([] if deps else ["--no-deps"]), *no_isolation, "--target", str(target), *requirements)
    return target


@contextlib.contextmanager
def on_sys_path(*folders: str | Path) -> Iterator[None]:
    """Put ``folders`` first on ``sys.path`` for the ``with`` block (imports and entry points)."""
    added = [str(f) for f in folders if str(f) not in sys.path]
    sys.path[:0] = added
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for f in added:
            if f in sys.path:
                sys.path.remove(f)
        importlib.invalidate_caches()


def path_env(*folders: str | Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with ``folders`` first on ``PYTHONPATH``."""
    env = dict(os.environ if base is None else base)
    parts = [str(f) for f in folders] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env
