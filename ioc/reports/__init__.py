"""Availability and incident reports: the data (:mod:`ioc.reports.build`), read from the
store by :mod:`ioc.reports.collect`, and its renderings (:mod:`ioc.reports.render`); the
``ioc report`` command is :mod:`service.report_command`."""
