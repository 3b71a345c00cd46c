"""A stand-in for Hậu Giang's department websites, with faults that can be injected at run time.

The demo points ioc at it, and the tests use it as a real HTTP target, so monitoring can be
exercised end to end without touching any real provincial system.
"""

from .app import STATE, SimulatorState, base_latency, create_simulator_app, start_simulator
from .faults import FAULT_KINDS, FaultSpec, FaultSpecError, parse_fault
from .province import Unit, units

__all__ = [
    "FAULT_KINDS",
    "STATE",
    "FaultSpec",
    "FaultSpecError",
    "SimulatorState",
    "Unit",
    "base_latency",
    "create_simulator_app",
    "parse_fault",
    "start_simulator",
    "units",
]
