"""Plain step functions: prepare, train, evaluate, score.

They take a config and folders and never know whether they run on a laptop or
inside a SageMaker job. ``models/`` and ``sources/`` hold one unit each; every
entrypoint calls ``register_schemas`` before it composes a config.
"""


def register_schemas() -> None:
    """Store the schema of every model and data source in Hydra's ConfigStore."""
    from steps import models, sources

    models.register()
    sources.register()
