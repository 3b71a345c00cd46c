"""The composition root: builds the running service from every package and owns its life.

The only code that imports every package (``collectors``, ``alerts``, ``web`` and the core
``ioc``): the app (``app.IocApp``), the whole config file (``config``), the command line
(``cli``), reload, and the roles an instance takes (alert leader, shard board, store tail).
Nothing below imports it; import-linter holds that (``[tool.importlinter]`` in pyproject).
"""
