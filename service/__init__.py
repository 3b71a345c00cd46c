"""The composition root: builds the running service from every package and owns its life.

The top floor of the house and the only code that imports every package (``web``,
``alerts``, ``collectors`` and the core ``ioc``): the app (``app.IocApp``), the whole config
file (``config``), the command line (``cli``), reload, and the roles an instance takes (alert
leader, shard board, store tail). Nothing imports it but ``ioc/__main__.py``, which hands
``python -m ioc`` over to ``cli``; import-linter holds that (``[tool.importlinter]``).
"""
