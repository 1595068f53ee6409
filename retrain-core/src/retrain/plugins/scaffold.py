"""``retrain plugins new NAME --kind KIND``: an installable plugin package with one component and
its contract tests, which pass as generated (tests/core/test_plugins_new.py installs one of each
kind and runs them).

Layout (for ``retrain plugins new myadv --kind advantage``)::

    retrain-myadv/
      pyproject.toml                  entry point myadv = "retrain_myadv.plugin"
      README.md
      src/retrain_myadv/__init__.py
      src/retrain_myadv/plugin.py     the registration hook (nothing heavy at import)
      src/retrain_myadv/advantage.py  the component: edit me
      tests/test_myadv.py             contract tests (retrain.testing.contracts)
"""

from __future__ import annotations

import re
from pathlib import Path

from retrain.errors import ConfigError
from retrain.plugins.kinds import KINDS

#: kind -> (class or factory name suffix, component module source, test source)
SCAFFOLD_KINDS = ("advantage", "reward", "environment", "transform", "engine", "backend")

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "__DIST__"
version = "0.1.0"
description = "retrain plugin: __LABEL__ \\"__NAME__\\""
requires-python = ">=3.10"
dependencies = ["retrain-core>=__CORE__"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points.retrain]
__NAME__ = "__MODULE__.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

README = '''# __DIST__

A retrain plugin that registers the __LABEL__ `__NAME__` (written by `retrain plugins new`).

```bash
pip install -e ".[test]" && pytest -q      # contract tests
retrain plugins show __NAME__ && retrain plugins check
```

Select it in a run config:

```toml
__SELECT__
```
'''

PLUGIN = '''"""Entry point of __DIST__: registers the __LABEL__ "__NAME__". Nothing heavy at import."""

from retrain import hookimpl


@hookimpl
def __HOOK__(register):
    from __MODULE__.__KIND__ import __FACTORY__  # the component module may import torch

    register("__NAME__", __FACTORY__)
'''

COMPONENTS = {
    "advantage": ('''"""The __NAME__ advantage: group rewards [B, G] -> advantages [B, G]. Edit me."""

from __future__ import annotations

import torch


class __FACTORY__:
    """Group-centred advantages times `scale`: A_i = scale * (r_i - mean_g r)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __call__(self, rewards: torch.Tensor) -> torch.Tensor:
        centred = rewards - rewards.mean(dim=1, keepdim=True)  # [B, G]
        return self.scale * centred  # [B, G]
''', '''from __future__ import annotations

import torch
from retrain.advantages.credit import build_advantage
from retrain.testing.builders import make_ctx
from retrain.testing.contracts import check_advantage

from __MODULE__.advantage import __FACTORY__


def test_contract():
    check_advantage(__FACTORY__())


def test_values_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0]])  # [B=1, G=4], mean 0.5
    assert torch.equal(__FACTORY__(scale=2.0)(rewards), torch.tensor([[1.0, -1.0, -1.0, 1.0]]))


def test_selected_by_name_with_its_options():
    ctx = make_ctx({"algorithm": {"advantage_mode": "__NAME__"}, "__NAME__": {"scale": 2.0}})
    assert build_advantage(ctx).scale == 2.0
'''),
    "reward": ('''"""The __NAME__ reward: scores completions against reference answers. Edit me."""

from __future__ import annotations

import re

from retrain.protocols import RewardResult


class __FACTORY__:
    """1 when the completion's last number equals the reference answer, else 0."""

    def __init__(self, tolerance: float = 0.0) -> None:
        self.tolerance = tolerance

    def score(self, responses: list[str], references: list[str]) -> RewardResult:
        return RewardResult([self._one(r, ref) for r, ref in zip(responses, references, strict=True)])

    def _one(self, response: str, reference: str) -> float:
        numbers = re.findall(r"-?\\d+(?:\\.\\d+)?", response)
        try:
            return 1.0 if numbers and abs(float(numbers[-1]) - float(reference)) <= self.tolerance else 0.0
        except ValueError:  # a reference that is not a number
            return 0.0
''', '''from __future__ import annotations

from retrain.rewards import build_reward
from retrain.testing.builders import make_ctx
from retrain.testing.contracts import check_reward

from __MODULE__.reward import __FACTORY__


def test_contract():
    check_reward(__FACTORY__())


def test_values_by_hand():
    result = __FACTORY__().score(["2 + 2 = 4", "it is 5", "no idea", "4.0"], ["4", "4", "4", "x"])
    assert result.rewards == [1.0, 0.0, 0.0, 0.0]


def test_selected_by_name_with_its_options():
    ctx = make_ctx({"reward": {"type": "__NAME__"}, "__NAME__": {"tolerance": 0.5}})
    assert build_reward(ctx).score(["4.4"], ["4"]).rewards == [1.0]
'''),
    "environment": ('''"""The __NAME__ environment: the tasks a run trains and evaluates on. Edit me."""

from __future__ import annotations

import random
from typing import Any

from retrain.types import Task


class __FACTORY__:
    """Addition problems "What is a + b?" with operands up to `max_operand`, seeded by the run."""

    def __init__(self, max_operand: int = 20, ctx: Any = None) -> None:
        self.max_operand = max_operand
        self.seed = ctx.config.training.seed if ctx is not None else 0
        self.cursor = 0  # training tasks served so far (checkpointed)

    def _task(self, index: int, split: str) -> Task:
        rng = random.Random(f"{split}:{self.seed}:{index}")
        a, b = rng.randint(0, self.max_operand), rng.randint(0, self.max_operand)
        return Task(prompt=f"What is {a} + {b}?", answer=str(a + b), id=f"{split}-{index}")

    def sample(self, batch_size: int) -> list[Task]:
        tasks = [self._task(self.cursor + i, "train") for i in range(batch_size)]
        self.cursor += batch_size
        return tasks

    def eval_tasks(self, n: int) -> list[Task]:
        return [self._task(i, "eval") for i in range(n)]

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor = int(state["cursor"])
''', '''from __future__ import annotations

from retrain.testing.builders import make_ctx
from retrain.testing.contracts import check_environment

from __MODULE__.environment import __FACTORY__


def test_contract():
    check_environment(__FACTORY__)


def test_answers_are_the_sums():
    for task in __FACTORY__(max_operand=5).sample(8):
        a, b = task.prompt.removeprefix("What is ").removesuffix("?").split(" + ")
        assert task.answer == str(int(a) + int(b)) and max(int(a), int(b)) <= 5


def test_selected_by_name_with_its_options():
    ctx = make_ctx({"data": {"source": "__NAME__"}, "__NAME__": {"max_operand": 3}})
    env = ctx.registry.build("environment", "__NAME__", ctx=ctx)
    assert env.max_operand == 3 and len(env.sample(2)) == 2
'''),
    "transform": ('''"""The __NAME__ token transform: how episode advantages become token advantages. Edit me."""

from __future__ import annotations

from retrain.advantages import TransformSpec


def __FACTORY__(cap: float = 2.0, beta: float = 0.1) -> TransformSpec:
    """GTPO token weighting on per-token uncertainty clipped at `cap` (one very surprising token weighs less)."""

    def clip(h: list[float], planning: list[int], lam: float) -> list[float]:
        return [min(x, cap) for x in h]

    return TransformSpec(name="__NAME__", use_gtpo=True, entropy_transform=clip, gtpo_beta=beta)
''', '''from __future__ import annotations

from retrain.advantages.credit import build_transform
from retrain.testing.builders import make_ctx
from retrain.testing.contracts import check_transform_spec

from __MODULE__.transform import __FACTORY__


def test_contract():
    check_transform_spec(__FACTORY__())


def test_clips_uncertainty():
    assert __FACTORY__(cap=1.0).entropy_transform([0.5, 3.0], [0, 0], 0.0) == [0.5, 1.0]


def test_selected_by_name_with_its_options():
    ctx = make_ctx({"algorithm": {"transform_mode": "__NAME__"}, "__NAME__": {"beta": 0.3}})
    assert build_transform(ctx).gtpo_beta == 0.3
'''),
    "engine": ('''"""The __NAME__ engine: samples completions, token-in / token-out. Edit me."""

from __future__ import annotations

import math
import random
from typing import Any

from retrain.types import Generation, SamplingParams


class __FACTORY__:
    """Uniform random tokens over the vocabulary (a no-model baseline), seeded per prompt and sample."""

    def __init__(self, vocab_size: int = 0, ctx: Any = None) -> None:
        self.tokenizer = getattr(ctx, "tokenizer", None)
        self.vocab_size = vocab_size or (len(self.tokenizer) if self.tokenizer is not None else 256)
        self.version = 0

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> Generation:
        ids: list[list[int]] = []
        for b, _prompt in enumerate(prompt_ids):
            for g in range(params.n):
                rng = random.Random(f"{params.seed}:{b}:{g}")
                ids.append([rng.randrange(self.vocab_size) for _ in range(params.max_tokens)])
        logprob = -math.log(self.vocab_size)  # every token has probability 1 / V
        texts = [self.tokenizer.decode(row) if self.tokenizer is not None else " ".join(map(str, row)) for row in ids]
        return Generation(completion_ids=ids, logprobs=[[logprob] * len(row) for row in ids],
                          finish_reasons=["length"] * len(ids), texts=texts, policy_version=self.version)

    def sync(self, backend: Any, version: int) -> None:
        self.version = version  # a real engine loads the backend's new weights here

    def close(self) -> None:
        pass
''', '''from __future__ import annotations

import math

from retrain.testing.builders import make_ctx
from retrain.testing.contracts import check_engine
from retrain.types import SamplingParams

from __MODULE__.engine import __FACTORY__


def test_contract():
    check_engine(__FACTORY__(vocab_size=50))


def test_logprobs_are_uniform():
    gen = __FACTORY__(vocab_size=50).generate([[1]], SamplingParams(n=1, max_tokens=3))
    assert gen.logprobs == [[-math.log(50)] * 3]


def test_selected_by_name_with_its_options():
    ctx = make_ctx({"inference": {"engine": "__NAME__"}, "__NAME__": {"vocab_size": 7}})
    assert ctx.registry.build("engine", "__NAME__", ctx=ctx).vocab_size == 7
'''),
    "backend": ('''"""The __NAME__ backend: the trainer that owns the weights. Edit me."""

from __future__ import annotations

from typing import Any

from retrain.backends.local import LocalBackend


class __FACTORY__(LocalBackend):
    """The local trainer (transformers + peft) with token advantages clipped to [-clip, clip] first."""

    config_section = "__NAME__"  # its options; [backend] keeps the local trainer's

    def __init__(self, clip: float = 5.0, ctx: Any = None) -> None:
        backend = ctx.config.backend  # [backend] devices, dtype, ... as for the local backend
        super().__init__(devices=backend.devices, dtype=backend.dtype, autocast=backend.autocast,
                         gradient_checkpointing=backend.gradient_checkpointing,
                         logprob_chunk=backend.logprob_chunk, micro_batch_size=backend.micro_batch_size,
                         threads=backend.threads, compile=backend.compile, ctx=ctx)
        self.clip = clip

    def train_step(self, rollouts: Any, token_advantages: Any, **step_options: Any) -> dict[str, float]:
        clipped = token_advantages.clamp(-self.clip, self.clip)  # [N, T]
        return super().train_step(rollouts, clipped, **step_options)
''', '''from __future__ import annotations

import math

import pytest
import torch
from retrain.testing import tiny_model_dir
from retrain.testing.builders import make_ctx, make_rollouts


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    torch.set_num_threads(1)
    model = tiny_model_dir(tmp_path_factory.mktemp("tiny"))
    ctx = make_ctx({"model": {"model": str(model), "lora_rank": 0}, "backend": {"backend": "__NAME__", "devices": "cpu"},
                    "__NAME__": {"clip": 0.5}})
    return ctx.registry.build("backend", "__NAME__", ctx=ctx)


def test_a_step_updates_the_weights_and_the_version(backend):
    rollouts = make_rollouts(backend.tokenizer, ["12", "3", "45", "6"], group_size=2)
    before = backend.version
    metrics = backend.train_step(rollouts, torch.full(rollouts.mask.shape, 3.0) * rollouts.mask)  # clipped to 0.5
    assert backend.version == before + 1 and backend.clip == 0.5
    assert all(math.isfinite(v) for v in metrics.values())


def test_checkpoint_round_trip(backend, tmp_path):
    backend.save_checkpoint(str(tmp_path / "ckpt"))
    version = backend.version
    backend.version += 5
    backend.load_checkpoint(str(tmp_path / "ckpt"))
    assert backend.version == version
'''),
}

SELECT = {
    "advantage": '[algorithm]\nadvantage_mode = "__NAME__"\n\n[__NAME__]\nscale = 1.0',
    "reward": '[reward]\ntype = "__NAME__"\n\n[__NAME__]\ntolerance = 0.0',
    "environment": '[data]\nsource = "__NAME__"\n\n[__NAME__]\nmax_operand = 20',
    "transform": '[algorithm]\ntransform_mode = "__NAME__"\n\n[__NAME__]\ncap = 2.0',
    "engine": '[inference]\nengine = "__NAME__"',
    "backend": '[backend]\nbackend = "__NAME__"\n\n[__NAME__]\nclip = 5.0',
}


def package_names(name: str) -> dict[str, str]:
    """Distribution, import module and class names for a plugin ``name``."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ConfigError(f'retrain plugins new: "{name}" is not a plugin name; use lower-case letters, digits, '
                          '"-" and "_", starting with a letter (e.g. "myadv").')
    module = "retrain_" + name.replace("-", "_")
    camel = "".join(part.capitalize() for part in re.split(r"[-_]", name) if part)
    return {"name": name, "dist": "retrain-" + name.replace("_", "-"), "module": module, "camel": camel}


def write_plugin(name: str, kind: str, parent: Path) -> Path:
    """Write the package ``parent/retrain-NAME`` and return its folder."""
    if kind not in SCAFFOLD_KINDS:
        raise ConfigError(f'retrain plugins new: --kind "{kind}" has no template; kinds: {", ".join(SCAFFOLD_KINDS)}.')
    names = package_names(name)
    root = parent / names["dist"]
    if root.exists():
        raise ConfigError(f"retrain plugins new: {root} already exists; choose another name or folder.")
    from retrain import __version__

    factory = names["camel"] + kind.capitalize() if kind != "transform" else "make_" + names["module"].removeprefix("retrain_")
    values = {"__DIST__": names["dist"], "__NAME__": name, "__MODULE__": names["module"], "__KIND__": kind,
              "__LABEL__": KINDS[kind].label, "__HOOK__": KINDS[kind].hook, "__FACTORY__": factory,
              "__CORE__": __version__, "__SELECT__": SELECT[kind]}

    def fill(text: str) -> str:
        for key in sorted(values, key=len, reverse=True):
            text = text.replace(key, values[key])
        return text

    component, tests = COMPONENTS[kind]
    files = {
        "pyproject.toml": PYPROJECT, "README.md": README,
        f"src/{names['module']}/__init__.py": "", f"src/{names['module']}/plugin.py": PLUGIN,
        f"src/{names['module']}/{kind}.py": component,
        f"tests/test_{names['module'].removeprefix('retrain_')}.py":
            f'"""Contract tests of the {KINDS[kind].label} "{name}" (written by `retrain plugins new`; '
            'they pass as generated)."""\n\n' + tests,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fill(text))
    return root
