"""The mined-grams planning detector: phrases learned from a run by `retrain hicra mine`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.advantages.planning import PhraseDetector, read_phrases_file, resolve_path
from retrain.errors import ConfigError

if TYPE_CHECKING:
    from retrain.types import RunContext


class MinedGramDetector(PhraseDetector):
    """Planning tokens = tokens inside phrases mined from a run (`retrain hicra mine`), no built-in list."""

    config_section = "planning"

    def __init__(self, phrases_file: str = "", phrases: list[str] | None = None,
                 ctx: RunContext | None = None) -> None:
        if not phrases_file and not phrases:
            raise ConfigError('[planning] detector = "mined-grams" needs [planning] phrases_file: create one with '
                              "`retrain hicra mine RUN_DIR` (or use the built-in detector strategic-grams).")
        mined = read_phrases_file(resolve_path(phrases_file, ctx)) if phrases_file else []
        if phrases_file and not mined:
            raise ConfigError(f'[planning] phrases_file = "{phrases_file}": no phrases in the file. Mine more '
                              "samples (more steps, or lower --min-count) or add phrases by hand.")
        super().__init__([*mined, *(phrases or [])])
