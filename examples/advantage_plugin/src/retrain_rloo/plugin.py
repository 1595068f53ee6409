"""Registration only: no work at import (docs/plugins.md)."""

from retrain import hookimpl


@hookimpl
def retrain_register_advantages(register):  # type: ignore[no-untyped-def]
    from retrain_rloo.rloo import RLOO

    register("rloo", RLOO)
