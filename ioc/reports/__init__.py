"""Availability and incident reports: the data (:mod:`ioc.reports.build`), its renderings
(:mod:`ioc.reports.render`) and ``ioc report`` (:mod:`ioc.reports.command`)."""
