"""ioc's Alembic migration scripts: ``env.py``, ``script.py.mako`` and ``versions/``.

Shipped inside the package (setuptools finds this directory as a package, and the template
through package-data), so an installed ioc upgrades its database with no source tree around.
:mod:`ioc.store.migrate` runs them; ``versions/README.md`` says how to add one.
"""
