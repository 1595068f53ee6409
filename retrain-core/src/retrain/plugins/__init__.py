"""The plugin system: discovery (discovery.py), what is known of each plugin (info.py), the
component kinds (kinds.py), the registry (registry.py) and the pre-flight selection check
(selection.py). Imports go one way: discovery -> registry -> selection -> kinds.

``load_plugins()`` builds a fresh :class:`Registry` (never global). Built-ins register through
the same hooks as third-party plugins (as ``builtin.<area>``). Only discovery.py and
``hookspecs`` import pluggy.
"""

from retrain.components import INJECTED, Component, Option, factory_options, load_dotted
from retrain.plugins.discovery import BUILTIN_MODULES, ENTRY_POINT_GROUP, PluginLoadWarning, load_plugins
from retrain.plugins.info import PluginInfo
from retrain.plugins.kinds import KINDS, Kind, normalize_kind
from retrain.plugins.registry import Registry

__all__ = [
    "BUILTIN_MODULES", "ENTRY_POINT_GROUP", "INJECTED", "KINDS", "Component", "Kind", "Option", "PluginInfo",
    "PluginLoadWarning", "Registry", "factory_options", "load_dotted", "load_plugins", "normalize_kind",
]
