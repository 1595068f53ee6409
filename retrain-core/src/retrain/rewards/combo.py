"""``combo``: a weighted sum of several rewards, each term's values kept in ``RewardResult.terms``.

```toml
[reward]
type = "combo"
terms = [{type = "math", weight = 1.0}, {type = "my_rewards.brevity", weight = 0.1, name = "brevity"}]
```
A term takes the ``[reward]`` options (timeout, workers, ...) and may override them in its table.
"""

from __future__ import annotations

from typing import Any

from retrain.config.values import check_value
from retrain.errors import ConfigError
from retrain.protocols import RewardResult


class ComboReward:
    """Weighted sum of reward terms: [reward] terms = [{type = "math", weight = 1.0}, ...]."""

    config_section = "reward"

    def __init__(self, ctx: Any = None, terms: list | None = None) -> None:
        from retrain.rewards import build_reward

        if not terms:
            raise ConfigError('[reward] type = "combo" needs terms, e.g. terms = [{type = "math", weight = 1.0}].')
        self.terms: list[tuple[str, float, Any]] = []
        for k, term in enumerate(terms):
            where = f"[reward] terms[{k}]"
            if not isinstance(term, dict) or not isinstance(term.get("type"), str):
                raise ConfigError(f'{where}: expected a table with a type, e.g. {{type = "math", weight = 1.0}}.')
            if term["type"] == "combo":
                raise ConfigError(f'{where}: type = "combo" cannot be nested.')
            weight = term.get("weight", 1.0)
            problem, weight = check_value(weight, float)  # the config checker: a finite number
            if problem:
                raise ConfigError(f"{where}: weight = {term['weight']!r}: {problem}")
            name = str(term.get("name", term["type"]))
            if name in (n for n, _, _ in self.terms):
                raise ConfigError(f'{where}: two terms are named "{name}"; give one a name = "...".')
            overrides = {k2: v for k2, v in term.items() if k2 not in ("type", "weight", "name")}
            reward = build_reward(ctx, term["type"], overrides, where=f"{where} type")
            self.terms.append((name, float(weight), reward))

    def score(self, responses: list[str], references: list[str]) -> RewardResult:
        total = [0.0] * len(responses)
        result = RewardResult(total)
        for name, weight, reward in self.terms:
            part = reward.score(responses, references)
            result.terms[name] = list(part.rewards)
            result.errors += part.errors
            result.timeouts += part.timeouts
            result.unparsed_refs += getattr(part, "unparsed_refs", 0)
            for i, value in enumerate(part.rewards):
                total[i] += weight * value
        return result

    def close(self) -> None:
        for _, _, reward in self.terms:
            close = getattr(reward, "close", None)
            if close is not None:
                close()
