"""citybrain's default configs, shipped inside the package as data files.

``cities.yaml`` (the catalogue), ``scenes/`` (one scene per catalogued camera),
``dispatch.yaml`` and ``simulator.yaml``. :mod:`services.common.config.paths` finds them
through :mod:`importlib.resources`, so an installed wheel has them as well as a checkout.
"""
