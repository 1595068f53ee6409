"""Environments: the synthetic generator (answers re-derived by sympy), MATH on a local fixture,
jsonl, the disjointness of training and held-out tasks, and exact resume of the data cursor."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from retrain.config import config_from_dict
from retrain.environments.generators import GENERATORS
from retrain.environments.jsonl import JsonlEnvironment
from retrain.environments.math_data import MathEnvironment
from retrain.environments.synthetic import SyntheticEnvironment, is_held_out
from retrain.errors import ConfigError
from retrain.plugins import load_plugins
from retrain.types import RunContext

FIXTURES = Path(__file__).parent / "fixtures"


def ctx_for(data: dict | None = None, **sections: dict) -> RunContext:
    return RunContext(config=config_from_dict({"data": data or {}, **sections}), registry=load_plugins())


def independent_value(meta: dict):
    """Re-derive the answer from the problem's own LaTeX (or word-problem expression) with sympy."""
    import sympy
    from latex2sympy2_extended import latex2sympy

    if "expression" in meta:
        return sympy.sympify(meta["expression"])
    parsed = latex2sympy(meta["latex"])
    if meta["kind"] == "evaluate":
        return sympy.nsimplify(sympy.simplify(parsed))
    solutions = sympy.solve(parsed, sympy.Symbol("x"))
    return set(solutions) if len(solutions) != 1 else solutions[0]


@pytest.mark.parametrize("kind", list(GENERATORS))
def test_generator_answers_match_an_independent_sympy_derivation(kind: str) -> None:
    import sympy
    from latex2sympy2_extended import latex2sympy

    level, generate = GENERATORS[kind]
    for seed in range(40):
        problem, answer, meta = generate(random.Random(f"check/{seed}"))
        assert "$" in problem or kind == "word"
        expected = independent_value(meta)
        got = latex2sympy(answer)
        if isinstance(expected, set):
            got_set = set(got) if isinstance(got, sympy.FiniteSet) else {got}
            assert got_set == expected, (problem, answer)
        else:
            assert sympy.simplify(got - expected) == 0, (problem, answer)


def test_generators_are_deterministic_per_seed() -> None:
    for kind, (_, generate) in GENERATORS.items():
        assert generate(random.Random(7)) == generate(random.Random(7)), kind


def test_synthetic_train_and_eval_never_overlap() -> None:
    env = SyntheticEnvironment(ctx_for(), levels=[1])  # level 1 has the smallest problem space
    held = env.eval_tasks(256)
    assert len({t.prompt for t in held}) == 256 and all(is_held_out(t.prompt) for t in held)
    held_prompts = {t.prompt for t in held}
    trained = env.sample(4000)
    assert not held_prompts & {t.prompt for t in trained}
    assert not any(is_held_out(t.prompt) for t in trained)  # structural: no hash-bucket-0 problem is ever trained on


def test_synthetic_eval_set_is_fixed_and_seed_independent() -> None:
    a = SyntheticEnvironment(ctx_for(training={"seed": 1}))
    b = SyntheticEnvironment(ctx_for(training={"seed": 2}))
    assert [t.prompt for t in a.eval_tasks(64)] == [t.prompt for t in b.eval_tasks(64)]
    assert [t.id for t in a.eval_tasks(10)] == [t.id for t in a.eval_tasks(64)[:10]]
    assert [t.prompt for t in a.sample(16)] != [t.prompt for t in b.sample(16)]  # training order follows the seed


def test_synthetic_levels_and_subjects_filter() -> None:
    env = SyntheticEnvironment(ctx_for(), levels=[4])
    assert {t.metadata["subject"] for t in env.sample(60)} == {"fraction", "radical"}
    env = SyntheticEnvironment(ctx_for(), subjects=["quadratic"])
    assert {t.metadata["level"] for t in env.sample(10)} == {5}
    with pytest.raises(ConfigError, match='"quadratc" is not a synthetic problem kind. Did you mean "quadratic"'):
        SyntheticEnvironment(ctx_for(), subjects=["quadratc"])
    with pytest.raises(ConfigError, match="levels 1-5"):
        SyntheticEnvironment(ctx_for(), levels=[6])


def test_synthetic_cursor_resumes_exactly() -> None:
    env = SyntheticEnvironment(ctx_for())
    env.sample(5)
    state = json.loads(json.dumps(env.state_dict()))  # survives a checkpoint round trip
    expected = [t.id for t in env.sample(7)]
    fresh = SyntheticEnvironment(ctx_for())
    fresh.load_state_dict(state)
    assert [t.id for t in fresh.sample(7)] == expected


def test_build_synthetic_through_registry_with_data_section() -> None:
    ctx = ctx_for({"source": "synthetic", "levels": [3]})
    env = ctx.registry.build("environment", "synthetic", ctx=ctx)
    assert {t.metadata["subject"] for t in env.sample(5)} == {"linear"}


def test_math_loader_on_the_release_folder_layout() -> None:
    env = MathEnvironment(ctx_for(), path=str(FIXTURES / "MATH"))
    train = env.sample(7)  # 7 usable train rows (one has no \boxed{}), one epoch
    assert sorted(t.answer for t in train) == sorted(["4", "x+3", "5", "2", "9", "6", "\\frac{1}{4}"])
    by_problem = {t.prompt: t for t in train}
    sums = by_problem["Find the sum of the roots of $x^2 - 5x + 6 = 0$."]
    assert sums.answer == "5" and sums.metadata == {**sums.metadata, "level": 3, "subject": "algebra"}
    assert by_problem["In how many ways can 3 books be arranged on a shelf?"].metadata["subject"] == \
        "counting_and_probability"
    held = env.eval_tasks(4)
    assert sorted(t.answer for t in held) == sorted(["5", "-4, 4", "\\frac{5}{6}", "3.14"])  # the LAST box
    assert not {t.prompt for t in held} & {t.prompt for t in train}
    with pytest.raises(ConfigError, match="num_problems = 5, but only 4 held-out tasks exist"):
        env.eval_tasks(5)


def test_math_loader_filters_and_formats(tmp_path: Path) -> None:
    env = MathEnvironment(ctx_for(), path=str(FIXTURES / "math_jsonl"), subjects=["Number Theory"], levels=[2, 3])
    assert sorted(t.answer for t in env.sample(2)) == ["2", "9"]
    env = MathEnvironment(ctx_for(), path=str(FIXTURES / "math_jsonl"), levels=[1])
    assert sorted(t.answer for t in env.sample(2)) == ["4", "6"]  # the level-1 row without \boxed{} is skipped
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (FIXTURES / "math_jsonl" / "math_train.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    one_file = MathEnvironment(ctx_for(eval={"num_problems": 2}), path=str(tmp_path / "train.parquet"))
    held = one_file.eval_tasks(2)
    assert len(held) == 2 and len(one_file.train) == 5  # 7 usable rows, 2 held out
    assert not {t.id for t in held} & {t.id for t in one_file.train}


def test_math_unknown_subject_and_missing_path() -> None:
    with pytest.raises(ConfigError, match='"algebr" is not a MATH subject. Did you mean "algebra"'):
        MathEnvironment(ctx_for(), path=str(FIXTURES / "MATH"), subjects=["algebr"])
    with pytest.raises(ConfigError, match='path = "/nonexistent/MATH": no such file or folder'):
        MathEnvironment(ctx_for(), path="/nonexistent/MATH")


def test_math_offline_without_path_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    with pytest.raises(ConfigError) as err:
        MathEnvironment(ctx_for(), subjects=["algebra"])
    message = str(err.value)
    assert message.startswith('[data] source = "math": cannot load EleutherAI/hendrycks_math (algebra) from the '
                              "Hugging Face hub")
    assert "set [data] path to a folder with train/ and test/" in message and "\n" not in message


def test_jsonl_environment(tmp_path: Path) -> None:
    rows = [{"prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(10)]
    rows.append({"prompt": [{"role": "user", "content": "Say hi"}], "answer": "hi", "id": "greet", "tag": "x"})
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = JsonlEnvironment(ctx_for(eval={"num_problems": 3}), path=str(path))
    held = env.eval_tasks(3)
    train = env.sample(8)
    assert len(env.train) == 8 and not {t.id for t in held} & {t.id for t in train}
    assert sorted(t.id for t in train) == sorted(t.id for t in env.train)  # one epoch = each task once
    greet = next(t for t in [*held, *train] if t.id == "greet")
    assert greet.prompt == [{"role": "user", "content": "Say hi"}] and greet.metadata == {"tag": "x"}


def test_jsonl_split_column_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": "2", "split": "test"}\n')
    env = JsonlEnvironment(ctx_for(), path=str(path))
    assert [t.prompt for t in env.eval_tasks(1)] == ["b"] and [t.prompt for t in env.sample(2)] == ["a", "a"]
    path.write_text('{"prompt": "a", "answer": "1"}\n{"prompt": "b"\n')
    with pytest.raises(ConfigError, match=f"{path}:2: invalid JSON"):
        JsonlEnvironment(ctx_for(), path=str(path))
    with pytest.raises(ConfigError, match='needs \\[data\\] path = "tasks.jsonl"'):
        JsonlEnvironment(ctx_for(), path="")


def test_reasoning_gym_missing_gives_install_hint() -> None:
    pytest.importorskip("pytest")
    try:
        import reasoning_gym  # noqa: F401
        pytest.skip("reasoning-gym is installed")
    except ImportError:
        pass
    from retrain.environments.reasoning_gym_env import ReasoningGymEnvironment

    with pytest.raises(ConfigError, match="needs the reasoning-gym package: pip install reasoning-gym"):
        ReasoningGymEnvironment(ctx_for(), name="basic_arithmetic")
