"""Command line: ``mediasrv serve | demo | emulate | turns | vad | calls | report``.

Each sub-command is a thin wrapper; the work lives in the modules it names.

The lab commands (``demo``, ``emulate``, ``serve --emulate``, ``turns --labels``) import
:mod:`mediasrv.lab` inside the function that runs them (:func:`_demo`, :func:`_emulate`,
:func:`_serve`, :func:`_turns`), so the product commands never load it; ``tests/test_layers.py``
holds that list.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys

from mediasrv.profiles import PROFILES

EMULATORS = ("soniox", "elevenlabs", "openai", "telnyx")


def _default_corpus() -> str:
    """The corpus embedded in the package (the demo conversation)."""
    from mediasrv.corpus import DEMO_CORPUS

    return str(DEMO_CORPUS)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    p = argparse.ArgumentParser(
        prog="mediasrv", description="Low-latency media server for AI phone calls on Telnyx"
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the daemon (webhook + media WebSocket)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument(
        "--mode",
        default="echo",
        choices=["echo", "agent"],
        help="echo: replay the caller; agent: the voice agent",
    )
    s.add_argument("--agent", default=None, help="agent mode: the agent file (.json/.toml)")
    s.add_argument(
        "--public-url",
        default=None,
        help="agent mode: the wss:// base Telnyx reaches (stream_url = <public-url>/api/telnyx/audio-stream)",
    )
    s.add_argument("--records", default="var/mediasrv.db", help="agent mode: call records database")
    s.add_argument(
        "--emulate",
        default=None,
        choices=sorted(PROFILES),
        help="agent mode without keys: run the provider emulators in-process on this profile",
    )
    s.add_argument("--lead-ms", type=int, default=80, help="outbound pacer lead over real time (<= 100)")

    d = sub.add_parser("demo", help="daemon + emulated providers + a simulated caller, printing each turn")
    d.add_argument("--profile", default="fast", choices=sorted(PROFILES))
    d.add_argument("--calls", type=int, default=1, help="concurrent calls")
    d.add_argument("--corpus", default=None, help="a directory in the corpus format (labels.json + WAVs)")
    d.add_argument("--turns", type=int, default=5, help="caller utterances per call")
    d.add_argument(
        "--agent", default=None, help="agent file (.json/.toml); default: a built-in support agent"
    )
    d.add_argument("--json", action="store_true", help="end with one JSON summary line")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--records", default=None, help="call records database (default: a temporary file)")

    t = sub.add_parser("turns", help="run the VAD and turn detector over a recording, offline")
    from mediasrv.tools.turns_tool import add_arguments

    add_arguments(t)
    v = sub.add_parser("vad", help="speech segments of a recording (VAD alone, offline)")
    from mediasrv.tools.vad_tool import add_arguments as add_vad_arguments

    add_vad_arguments(v)
    sub.add_parser("calls", help="list and show recorded calls (mediasrv calls --help)", add_help=False)
    sub.add_parser(
        "report", help="latency tables and plots from call records or logs (--help)", add_help=False
    )

    e = sub.add_parser("emulate", help="run one provider emulator alone")
    e.add_argument("name", choices=EMULATORS)
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--port", type=int, default=0)
    e.add_argument("--profile", default="typical", choices=sorted(PROFILES))
    return p


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


async def _emulate(name: str, profile: str, host: str, port: int) -> None:
    """``mediasrv emulate NAME``: one provider emulator alone, until interrupted."""
    if name == "soniox":
        from mediasrv.lab.emulators import soniox as mod
    elif name == "elevenlabs":
        from mediasrv.lab.emulators import elevenlabs as mod  # type: ignore[no-redef]
    elif name == "openai":
        from mediasrv.lab.emulators import llm as mod  # type: ignore[no-redef]
    else:
        from mediasrv.lab.emulators import telnyx as mod  # type: ignore[no-redef]
    await mod.serve(profile, host, port)


def _serve(args: argparse.Namespace) -> int:
    """``mediasrv serve``: the daemon in echo or agent mode (``--emulate``: the lab's providers)."""
    from mediasrv.server import ServerConfig, run, serve

    cfg = ServerConfig(host=args.host, port=args.port, mode=args.mode, lead_ms=args.lead_ms)
    if args.mode == "echo":
        run(serve(cfg))
        return 0
    from mediasrv.agent_mode import EmulatedEndpoints, serve_agent
    from mediasrv.errors import ConfigError

    emulated: EmulatedEndpoints | None = None
    if args.emulate:
        from mediasrv.lab.emulated import emulated_endpoints

        emulated = functools.partial(emulated_endpoints, args.emulate)
    try:
        run(serve_agent(cfg, args.agent, public_url=args.public_url, records=args.records, emulated=emulated))
    except ConfigError as exc:
        print(f"mediasrv serve: {exc}", file=sys.stderr)
        return 2
    return 0


def _turns(args: argparse.Namespace) -> int:
    """``mediasrv turns``: with ``--labels``, the lab's scripted STT plays the text side."""
    from mediasrv.tools.turns_tool import main as turns_main

    if args.labels is None:
        return turns_main(args)
    from mediasrv.lab.scripted_stt import ScriptedStt

    return turns_main(args, scripted_stt=ScriptedStt)


def _demo(args: argparse.Namespace) -> int:
    """``mediasrv demo``: the daemon, the lab's emulators and a simulated caller."""
    from mediasrv.lab.demo import DemoOptions, run_demo
    from mediasrv.server import run

    opts = DemoOptions(
        profile=args.profile,
        calls=args.calls,
        corpus=args.corpus or _default_corpus(),
        turns=args.turns,
        json=args.json,
        seed=args.seed,
        agent=args.agent,
        records=args.records,
    )
    result: list[int] = []

    async def go() -> None:
        result.append(await run_demo(opts))

    run(go())
    return result[0] if result else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mediasrv`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # `calls` and `report` own their whole command line (sub-actions, --help).
    verbs = [a for a in argv if not a.startswith("-")]
    if verbs and verbs[0] in ("calls", "report"):
        rest = argv[argv.index(verbs[0]) + 1 :]
        _setup_logging(argv.count("-v"))
        if verbs[0] == "calls":
            from mediasrv.tools.calls_tool import main as calls_main

            return calls_main(rest)
        from mediasrv.report import main as report_main

        return report_main(rest)
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    from mediasrv.server import run

    if args.command == "serve":
        return _serve(args)
    if args.command == "turns":
        return _turns(args)
    if args.command == "vad":
        from mediasrv.tools.vad_tool import main as vad_main

        return vad_main(args)
    if args.command == "emulate":
        try:
            run(_emulate(args.name, args.profile, args.host, args.port))
        except KeyboardInterrupt:
            pass
        return 0
    if args.command == "demo":
        return _demo(args)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
