"""Environment ids, "is it installed?", and retrain's own installer (verifiers 0.4 has none).

An id is ``[owner/]name[@version]``, as on the Prime hub. verifiers imports the module
``name`` with ``-`` -> ``_`` (lower case), or its built-in ``verifiers.v1.tasksets.<module>``.
retrain installs an environment only when ``[environment] auto_install = true``, with
``python -m pip install name[==version]`` into the running interpreter (an id that is not a plain
package name and version, such as ``-rreqs.txt`` or ``--index-url=...``, is refused); pip's own
configuration (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, ...) decides where the package comes from.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass

from retrain.errors import ConfigError, RetrainError


@dataclass(frozen=True)
class EnvRef:
    """A parsed environment id."""

    id: str
    name: str  # distribution name, e.g. "wordle-game"
    version: str  # "" = any

    @property
    def module(self) -> str:
        """The module verifiers imports for this id."""
        return self.name.replace("-", "_").lower()

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}" if self.version else self.name

    def install_command(self) -> list[str]:
        return [sys.executable, "-m", "pip", "install", self.requirement]

    def install_hint(self) -> str:
        return "pip install " + shlex.quote(self.requirement)


# A distribution name (PEP 508) and a version (PEP 440 characters): neither may start with "-", so
# an id can never reach pip as an option (-rfile, --index-url=...) when auto_install runs it.
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def parse_env_id(env_id: str, where: str = "[environment] id") -> EnvRef:
    """``owner/name@version`` -> EnvRef(name, version); the owner is only a hub namespace."""
    raw = env_id.strip()
    owner, _, rest = raw.rpartition("/")
    name, at, version = rest.partition("@")
    if not (_NAME.fullmatch(name) and (not at or _VERSION.fullmatch(version))
            and (not owner or _OWNER.fullmatch(owner))):
        raise ConfigError(f'{where} = "{env_id}": not a verifiers environment id; expected [owner/]name[@version] '
                          'made of letters, digits, ".", "_" and "-" (not starting with "-"), e.g. "my-env" or '
                          '"owner/my-env@0.1.0".')
    return EnvRef(raw, name, version)


def is_installed(ref: EnvRef) -> bool:
    """Whether verifiers can import the environment (installed package or verifiers built-in)."""
    importlib.invalidate_caches()
    if importlib.util.find_spec(ref.module) is not None:
        return True
    try:
        return importlib.util.find_spec(f"verifiers.v1.tasksets.{ref.module}") is not None
    except ModuleNotFoundError:
        return False


def install(ref: EnvRef, where: str) -> None:
    """Install the environment's package with pip into this interpreter (``auto_install = true``)."""
    cmd = ref.install_command()
    print(f"retrain-verifiers: installing environment {ref.id!r}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join(line.strip() for line in (proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RetrainError(f'{where} = "{ref.id}": auto_install failed ({shlex.join(cmd)} exited {proc.returncode}): '
                           f"{tail}. Install it yourself or check the package name / pip index.")
    importlib.invalidate_caches()
    if not is_installed(ref):
        raise RetrainError(f'{where} = "{ref.id}": installed {ref.requirement!r} but module {ref.module!r} is still '
                           "not importable; the package must provide a top-level module named after the id.")


def ensure_installed(ref: EnvRef, auto_install: bool, where: str) -> None:
    """Install when asked to; otherwise a missing environment is one clear error with the command."""
    if is_installed(ref):
        return
    if not auto_install:
        raise ConfigError(f'{where} = "{ref.id}": verifiers environment is not installed (no module {ref.module!r}). '
                          f"Install it: {ref.install_hint()} (or set [environment] auto_install = true).")
    install(ref, where)
