"""What the plugin manager knows about one plugin (its own module: discovery fills it, the registry reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from retrain.components import Component, jsonable


@dataclass
class PluginInfo:
    name: str
    package: str
    version: str
    module: str
    file: str = ""
    builtin: bool = False
    error: str = ""  # "" = loaded
    exception: BaseException | None = None
    hooks: list[str] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def label(self) -> str:
        """``"name" (package version)`` for messages."""
        return f'"{self.name}" ({self.package} {self.version})'.replace(" )", ")")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "package": self.package, "version": self.version, "module": self.module,
            "file": self.file, "builtin": self.builtin, "status": "ok" if self.ok else "failed",
            "error": self.error or None, "hooks": self.hooks,
            "components": [{"kind": c.kind, "name": c.name, "summary": c.summary,
                            "config_section": c.config_section,
                            "options": [{"name": o.name, "type": o.type,
                                         "default": None if o.required else jsonable(o.default),
                                         "required": o.required} for o in c.options()]}
                           for c in self.components],
        }
