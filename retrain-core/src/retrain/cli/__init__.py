"""The ``retrain`` command line (Typer). Start-up imports no torch."""
