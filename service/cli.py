"""``ioc`` command line: run, check, try, simulate, rules test, db upgrade/current."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from ioc import __version__, event_loop
from ioc.logs import fields, setup_logging
from service import report_command
from service.config import Config, ConfigError, load_config

log = logging.getLogger("ioc")

EXIT_OK = 0
EXIT_BAD_CONFIG = 2
EXIT_FAILED = 1
SHUTDOWN_GRACE = 5.0  # seconds for in-flight polls; the rest of the stop fits in the 10 s budget


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ioc", description="Monitoring service of a provincial Intelligent Operations Centre")
    parser.add_argument("--version", action="version", version=f"ioc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the service")
    run.add_argument("-c", "--config", default="config.yaml", help="config file (config.yaml)")
    run.add_argument("--listen", help="HOST:PORT of the web server (overrides service.listen)")
    run.add_argument("--shard", metavar="I/N|auto",
                     help="poll only shard I of N (0 to N-1) of the targets, or with auto "
                          "share them among the live instances (PostgreSQL) "
                          "(overrides collection.shard; docs/scaling.md)")

    check = sub.add_parser("check", help="validate a config file and exit")
    check.add_argument("-c", "--config", default="config.yaml", help="config file (config.yaml)")

    tryout = sub.add_parser(
        "try", help="poll the named targets once, now, and show what ioc saw and would "
                    "publish (nothing is stored); exit 0 up, 1 down, 2 config error")
    tryout.add_argument("-c", "--config", default="config.yaml", help="config file (config.yaml)")
    tryout.add_argument("names", nargs="+", metavar="NAME", help="collector names")
    tryout.add_argument("--json", action="store_true", help="print the trace as JSON")
    tryout.add_argument("--lang", choices=("vi", "en"), default="vi",
                        help="language of the readable trace (vi)")

    db = sub.add_parser("db", help="the database schema (migrations)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, text in (
            ("upgrade", "apply pending schema migrations to storage.url and print from -> to"),
            ("current", "print the schema revision of storage.url; exit 0 at head, "
                        "3 behind, 4 ahead, 1 unreachable")):
        db_command = db_sub.add_parser(name, help=text)
        db_command.add_argument("-c", "--config", default="config.yaml",
                                help="config file (config.yaml)")

    report_command.add_parser(sub)

    rules = sub.add_parser("rules", help="work with alert rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    rules_test = rules_sub.add_parser("test", help="run rule unit tests (YAML, like promtool)")
    rules_test.add_argument("files", nargs="+", metavar="FILE", help="rule test files")

    sim = sub.add_parser("simulate", help="run only the simulated department systems")
    sim.add_argument("--listen", default="127.0.0.1:8081", help="HOST:PORT (127.0.0.1:8081)")
    sim.add_argument("--latency-scale", type=float, default=1.0,
                     help="multiply simulated latencies (0 answers at once)")
    sim.add_argument("--portal-time-scale", type=float, default=1.0,
                     help="run the simulated portal's clock N times faster (demo: 3600)")
    sim.add_argument("--portal-min-monthly", type=int, default=0,
                     help="every unit receives at least N dossiers a month (demo: 100)")
    return parser


def _print_issues(err: ConfigError) -> None:
    print(f"{err.source}: {len(err.issues)} error(s)", file=sys.stderr)
    for issue in err.issues:
        print(f"  - {issue}", file=sys.stderr)


def cmd_check(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as err:
        _print_issues(err)
        return EXIT_BAD_CONFIG
    kinds: dict[str, int] = {}
    for collector in config.collectors:
        kinds[collector.type] = kinds.get(collector.type, 0) + 1
    by_kind = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
    print(f"{path}: OK")
    print(f"  collectors:  {len(config.collectors)} ({by_kind})")
    print(f"  departments: {len(config.departments)}")
    sources = [src for _, src in config.alert_rules]
    own = sum(1 for src in sources if src.startswith("alerts.rules["))
    default = sum(1 for src in sources if src.startswith("<ioc>/"))
    print(f"  alert rules: {len(sources)} ({own} in config, "
          f"{len(sources) - own - default} from rule files, {default} default)")
    print(f"  storage:     {config.storage.url.split('://', 1)[0]}")
    return EXIT_OK


def cmd_try(path: str, names: list[str], as_json: bool, lang: str) -> int:
    from service import try_command

    try:
        config = load_config(path)
    except ConfigError as err:
        _print_issues(err)
        return EXIT_BAD_CONFIG
    try:
        try_command.find_targets(config, names)
    except try_command.UnknownTarget as exc:
        print(f"ioc try: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    setup_logging(config.logging.level, config.logging.format, config.secrets)
    traces = event_loop.run(try_command.try_targets(config, names), event_loop.choose("auto"))
    sys.stdout.write(try_command.output(traces, as_json=as_json, lang=lang))
    if as_json:
        sys.stdout.write("\n")
    return try_command.exit_code(traces)


def cmd_db(command: str, path: str) -> int:
    from ioc import db_command

    try:
        config = load_config(path)
    except ConfigError as err:
        _print_issues(err)
        return EXIT_BAD_CONFIG
    setup_logging(config.logging.level, config.logging.format, config.secrets)
    run = db_command.upgrade if command == "upgrade" else db_command.current
    return run(config.storage.url)


class _StopSignals:
    """SIGTERM and SIGINT as an awaitable event, installed before the service starts.

    Installed first so that a stop requested while the service is still starting (a supervisor
    that gives up early, or a test that stops it as soon as it prints its address) is honoured
    gracefully once start-up is done, instead of killing the process with the default action.
    """

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._received: list[str] = []

    def __enter__(self) -> _StopSignals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._received.append(sig.name)
        self._stop.set()

    async def wait(self) -> str:
        await self._stop.wait()
        return self._received[0] if self._received else "unknown"


def console_hint(config: Config, url: str) -> str:
    """How to sign in to the console: which tokens may, by name (never the token itself), or
    why nobody can — the console asks for an operator token, and a config without one
    otherwise leaves a new user at a sign-in form nothing can pass."""
    console = url.rstrip("/") + "/console"
    names = [t.name for t in config.auth.tokens if {"operator", "admin"} & set(t.roles)]
    if not names:
        return (f"console: {console} needs an operator token, and auth.tokens has none; "
                "add one (docs/configuration.md#auth) to sign in")
    return (f"console: {console}  sign in with the token of {', '.join(names)} "
            f"(auth.tokens in {config.source})")


async def _run(config: Config, listen: str | None) -> int:
    from ioc.store.base import StoreError
    from ioc.store.migrate import MigrationRequiredError
    from ioc.store.schema import SchemaVersionError
    from service.app import IocApp

    app = IocApp(config, listen=listen)
    with _StopSignals() as signals:
        try:
            await app.start()
        except (OSError, StoreError, SchemaVersionError, MigrationRequiredError) as exc:
            log.error("cannot start", extra=fields(error=str(exc)))
            await app.stop(grace=0)
            return EXIT_FAILED
        print(f"ioc {__version__} is running at {app.url}  (Ctrl+C to stop)", flush=True)
        print(console_hint(config, app.url), flush=True)
        # What start-up built (imported modules, config models, templates, SQLAlchemy's
        # metadata) lives as long as the process; moved out of the collector's generations,
        # it is no longer scanned by every full collection that polling's garbage triggers
        # (measured: about a quarter of the CPU of a poll's pipeline work, BENCHMARKS.md).
        gc.collect()
        gc.freeze()
        # SIGHUP re-reads the config file, like Prometheus; a bad file is refused and logged.
        reloads: set[asyncio.Task[object]] = set()

        def on_hup() -> None:
            task: asyncio.Task[object] = asyncio.ensure_future(app.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hup)
        sig = await signals.wait()
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await asyncio.gather(*reloads, return_exceptions=True)
        log.info("shutting down", extra=fields(signal=sig))
        await app.stop(grace=SHUTDOWN_GRACE)
    return EXIT_OK


async def _simulate(listen: str, latency_scale: float, portal_time_scale: float = 1.0,
                    portal_min_monthly: int = 0) -> int:
    import os

    from collectors.simulator import start_simulator
    from ioc.config_types import split_listen

    host, port = split_listen(listen)
    token = os.environ.get("IOC_SIM_TOKEN") or None
    with _StopSignals() as signals:
        runner = await start_simulator(host, port, token=token, latency_scale=latency_scale,
                                       portal_time_scale=portal_time_scale,
                                       portal_min_monthly=portal_min_monthly)
        print(f"simulator running at http://{listen}  (fault injection "
              f"{'enabled' if token else 'disabled: set IOC_SIM_TOKEN'})", flush=True)
        await signals.wait()
        await runner.cleanup()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "rules":
        from alerts.rule_test_runner import main as run_rule_tests

        return run_rule_tests(args.files)
    if args.command == "check":
        return cmd_check(args.config)
    if args.command == "db":
        return cmd_db(args.db_command, args.config)
    if args.command == "report":
        return report_command.run(args)
    if args.command == "try":
        return cmd_try(args.config, args.names, args.json, args.lang)
    if args.command == "simulate":
        setup_logging()
        try:
            return event_loop.run(_simulate(args.listen, args.latency_scale,
                                            args.portal_time_scale, args.portal_min_monthly),
                                  event_loop.choose("auto"))
        except ValueError as exc:
            print(f"ioc simulate: {exc}", file=sys.stderr)
            return EXIT_BAD_CONFIG
    # run
    try:
        config = load_config(args.config)
    except ConfigError as err:
        _print_issues(err)
        return EXIT_BAD_CONFIG
    if args.listen:
        from ioc.config_types import split_listen

        try:
            split_listen(args.listen)
        except ValueError as exc:
            print(f"--listen: {exc}", file=sys.stderr)
            return EXIT_BAD_CONFIG
    if args.shard:
        import dataclasses

        from ioc.sharding import auto_shard_issue, check_shard

        try:
            shard = check_shard(args.shard)
        except ValueError as exc:
            print(f"--shard: {exc}", file=sys.stderr)
            return EXIT_BAD_CONFIG
        problem = auto_shard_issue(shard, config.storage.url)
        if problem is not None:
            print(f"--shard: {problem}", file=sys.stderr)
            return EXIT_BAD_CONFIG
        config = dataclasses.replace(
            config, collection=config.collection.model_copy(update={"shard": shard}))
    setup_logging(config.logging.level, config.logging.format, config.secrets)
    try:
        loop = event_loop.choose(config.service.event_loop)
    except ImportError as exc:  # validated with the config; only if uvloop broke since
        print(f"service.event_loop: uvloop cannot be loaded ({exc})", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return event_loop.run(_run(config, args.listen), loop)


if __name__ == "__main__":
    sys.exit(main())
