"""Collectors: the parts of ioc that reach out to the province's systems and measure them."""
