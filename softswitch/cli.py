"""`p4reduce-switch`: the softswitch as a program, with simple_switch_grpc's flags.

Differences from BMv2, on purpose: the gRPC address defaults to 127.0.0.1:9559 (not
0.0.0.0:9559) so a development switch is not reachable from the network unless asked;
the program is given as `--p4 FILE.p4` (compiled at start) or `--ir FILE.json` instead of
p4c's JSON; `-i N@udp:HOST:PORT[,peer=HOST:PORT]` adds UDP tunnel ports; and `--backend`
picks how programs run (compiled to C by default, see `p4reduce.softswitch.runtime.backend`).
Without a program the switch waits for a P4Runtime SetForwardingPipelineConfig, like
`simple_switch_grpc --no-p4`.

One line `p4reduce-switch: ready, P4Runtime on HOST:PORT` is printed (flushed) once the
server listens, so scripts can wait for it. SIGINT and SIGTERM stop it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from google.protobuf import text_format  # type: ignore[import-untyped,unused-ignore]
from google.protobuf.message import (  # type: ignore[import-untyped,unused-ignore]
    DecodeError,
)

from p4reduce.softswitch.p4runtime.pipeline_config import PipelineFactory
from p4reduce.softswitch.runtime.backend import BACKENDS, default_backend

LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def _probability(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"probability {p} is not in [0, 1]")
    return p


def _define(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    if not name.isidentifier():
        raise argparse.ArgumentTypeError(f"bad -D macro name {name!r}")
    return name, value or "1"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="p4reduce-switch",
        description="softswitch: an embedded v1model P4 target with a P4Runtime server "
        "(flags follow BMv2's simple_switch_grpc).",
        epilog="Ports: N@IFACE is a Linux interface (AF_PACKET, needs root). N@udp:HOST:PORT is a "
        "UDP tunnel bound to HOST:PORT, each datagram one Ethernet frame; without a peer it "
        "sends to whoever sent to it last (learning: any local process can take the port over), "
        "with ,peer=PEER_HOST:PEER_PORT it sends only to that peer and drops (and counts) "
        "datagrams from anyone else, e.g. -i 1@udp:127.0.0.1:9001,peer=127.0.0.1:40001. "
        "Backends: native compiles the program to C (the system C compiler, cached under "
        "~/.cache/p4reduce) and serves socket ports from a C thread; python runs generated "
        "Python; auto (the default, or $P4REDUCE_BACKEND) is native where it can be built "
        "and python otherwise, with one warning.",
    )
    p.add_argument("--device-id", type=int, default=0, help="P4Runtime device id (default 0)")
    p.add_argument(
        "-i",
        "--interface",
        dest="interfaces",
        action="append",
        default=[],
        metavar="N@IFACE",
        help="attach port N to a Linux interface (N@eth0, needs root) or a UDP tunnel "
        "(N@udp:HOST:PORT[,peer=HOST:PORT], see below); repeatable",
    )
    p.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default=default_backend(),
        help="how programs run: native (compiled to C), python, or auto: native when a C "
        f"compiler is available, else python with a warning (default: {default_backend()})",
    )
    p.add_argument(
        "--grpc-server-addr",
        default="127.0.0.1:9559",
        help="P4Runtime listen address (default 127.0.0.1:9559; BMv2 uses 0.0.0.0:9559)",
    )
    p.add_argument("--cpu-port", type=int, default=None, help="port used for PacketIn/PacketOut")
    p.add_argument("--log-level", choices=list(LOG_LEVELS), default="info")
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--p4", type=Path, metavar="PROGRAM.p4", help="compile and load at start")
    prog.add_argument("--ir", type=Path, metavar="FILE.json", help="load a compiled softswitch IR")
    p.add_argument(
        "--p4info",
        type=Path,
        metavar="FILE",
        help="P4Info for --ir (text or binary); emitted from the IR when omitted",
    )
    p.add_argument(
        "-D",
        dest="defines",
        action="append",
        type=_define,
        default=[],
        metavar="NAME[=VAL]",
        help="preprocessor define for --p4",
    )
    p.add_argument("--drop", type=_probability, default=0.0, help="receive drop probability")
    p.add_argument("--duplicate", type=_probability, default=0.0, help="duplicate probability")
    p.add_argument("--reorder", type=_probability, default=0.0, help="reorder probability")
    p.add_argument("--seed", type=int, default=None, help="seed for fault injection")
    return p


def _read_p4info(path: Path) -> Any:
    from finsy.proto import p4i

    data = _read_bytes(path)
    msg = p4i.P4Info()
    try:
        text_format.Parse(data.decode(), msg)
        return msg
    except (UnicodeDecodeError, text_format.ParseError):
        pass
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise CliError(f"{path}: not a P4Info (neither text nor binary protobuf)") from None
    return msg


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None


def load_program(args: argparse.Namespace) -> Any | None:
    """The ForwardingPipelineConfig for --p4/--ir, or None when neither is given."""
    from finsy.proto import p4r

    if args.p4 is None and args.ir is None:
        if args.p4info is not None:
            raise CliError("--p4info needs --ir")
        return None
    if args.p4 is not None:
        if not args.p4.is_file():
            raise CliError(f"{args.p4}: no such file")
        try:
            from p4reduce.softswitch.p4 import compile_file  # type: ignore[attr-defined,unused-ignore]
        except ImportError as exc:
            raise CliError(f"the P4 compiler is not available: {exc}") from None
        try:
            ir = compile_file(args.p4, defines=dict(args.defines))
        except Exception as exc:  # CompileError and friends carry a user-facing message
            raise CliError(f"{args.p4}: {exc}") from None
    else:
        try:
            ir = json.loads(_read_bytes(args.ir))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CliError(f"{args.ir}: not a JSON IR: {exc}") from None
    if args.p4info is not None and args.p4 is None:
        p4info = _read_p4info(args.p4info)
    else:
        from p4reduce.softswitch.p4.p4info import emit

        try:
            p4info = emit(ir)
        except Exception as exc:
            raise CliError(f"cannot build the P4Info: {exc}") from None
    return p4r.ForwardingPipelineConfig(
        p4info=p4info, p4_device_config=json.dumps(ir, sort_keys=True).encode()
    )


DeviceFactory = Callable[[argparse.Namespace], Any]


def backend_factory(backend: str) -> PipelineFactory:
    """Pipelines on `backend`; on `native`, a program C cannot run is refused (a
    P4Runtime INVALID_ARGUMENT with the reason), on `auto` it falls back to Python."""
    from p4reduce.softswitch.runtime.backend import make_pipeline

    def factory(ir: dict[str, Any]) -> Any:
        return make_pipeline(ir, backend)  # type: ignore[arg-type]

    return factory


def make_device(args: argparse.Namespace) -> Any:
    """The real device: softswitch.runtime.Device with the requested ports."""
    try:
        from p4reduce.softswitch.runtime import Device  # type: ignore[attr-defined,unused-ignore]
        from p4reduce.softswitch.runtime.ports import (  # type: ignore[import-not-found,unused-ignore]
            parse_port_spec,
        )
    except ImportError as exc:
        raise CliError(f"the softswitch runtime is not available: {exc}") from None

    dev = Device(device_id=args.device_id, cpu_port=args.cpu_port)
    for spec in args.interfaces:
        try:
            faults = {"drop": args.drop, "duplicate": args.duplicate, "reorder": args.reorder}
            if args.seed is not None:
                faults["seed"] = args.seed
            number, port = parse_port_spec(spec, **faults)
        except (ValueError, OSError) as exc:
            raise CliError(f"-i {spec}: {exc}") from None
        dev.add_port(number, port)
    return dev


def run(
    argv: Sequence[str] | None = None,
    device_factory: DeviceFactory = make_device,
    pipeline_factory: PipelineFactory | None = None,
) -> int:
    """The program; the factories are parameters so tests can run it without the runtime."""
    from p4reduce.softswitch.p4runtime import serve
    from p4reduce.softswitch.p4runtime.errors import P4RTError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=LOG_LEVELS[args.log_level], format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    config = load_program(args)
    device = device_factory(args)
    if pipeline_factory is None:
        pipeline_factory = backend_factory(args.backend)
    try:
        server = serve(device, args.grpc_server_addr, factory=pipeline_factory)
    except OSError as exc:
        raise CliError(str(exc)) from None
    try:
        if config is not None:
            try:
                server.service.install(config)
            except P4RTError as err:
                raise CliError(f"cannot load the program: {err.message}") from None
        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        device.start()
        print(f"p4reduce-switch: ready, P4Runtime on {server.address}", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            report_port_drops(device)
            device.stop()
    finally:
        server.stop()
    logging.getLogger("softswitch").info("stopped")
    return 0


def report_port_drops(device: Any) -> None:
    """At exit, one line per port whose frames were dropped outside the pipeline (a full
    receive ring or send queue), so that a benchmark's resends can be traced to where
    packets were lost; every port's counts at info level."""
    engine = getattr(device, "engine", None)  # a device without the C port engine has none
    if engine is None:
        return
    log = logging.getLogger("softswitch")
    for number in sorted(device.ports):
        st = engine.port_stats(number)
        line = (f"port {number}: received {st['received']}, sent {st['sent']}, dropped "
                f"{st['receive_dropped']} at receive (ring full) and {st['send_dropped']} "
                "at send (queue full)")
        if st["receive_dropped"] or st["send_dropped"]:
            print(f"p4reduce-switch: {line}", file=sys.stderr, flush=True)
        else:
            log.info("%s", line)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except CliError as err:
        print(f"p4reduce-switch: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
