"""The run layer: the only place where task families (``envs``) meet agents (``agents``).

``config`` (a run's config and its TOML), ``build`` (a run's parts from its config),
``checkpoints`` and ``directory`` (a run directory, its resume checks, :func:`load_run`),
``remote`` (the inner loop shipped to sampler workers) and ``training`` (the loop). Rendering,
reports and the CLI sit above this layer; the core below it knows neither families nor agents.
"""
