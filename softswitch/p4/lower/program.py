"""The program: declarations in order, then the V1Switch main package's six blocks and
the top-level IR document."""

from __future__ import annotations

from typing import TYPE_CHECKING

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import Loc, error
from p4reduce.softswitch.p4.ir import Control, ControllerHeader, Local, Parser, Pipeline, Program
from p4reduce.softswitch.p4.lower.bindings import (
    Ctx,
    PacketB,
    Scope,
    Val,
    anno_get,
    anno_ir,
    order_args,
)
from p4reduce.softswitch.p4.types import AnyT, ObjectT, is_data, show

if TYPE_CHECKING:
    from p4reduce.softswitch.p4.lower.context import Lowering


# V1Switch's six blocks in parameter order, with the IR roots their parameters bind to.
ROLES: list[tuple[str, list[str]]] = [
    ("parser", ["pkt_in", "hdr", "meta", "std"]), ("verify_checksum", ["hdr", "meta"]),
    ("ingress", ["hdr", "meta", "std"]), ("egress", ["hdr", "meta", "std"]),
    ("compute_checksum", ["hdr", "meta"]), ("deparser", ["pkt_out", "hdr"]),
]


class ProgramLowering:
    def __init__(self, cx: Lowering) -> None:
        self.cx = cx

    def run(self) -> Program:
        for d in self.cx.prog.decls:
            self.cx.decls.top_decl(d)
        if self.cx.main is None:
            loc = self.cx.prog.decls[-1].loc if self.cx.prog.decls else Loc(self.cx.source, 1, 1)
            raise error(loc, "program has no 'main' package instance (e.g. V1Switch(...) main;)")
        return self.pipeline(self.cx.main)

    def pipeline(self, main: A.InstanceDecl) -> Program:
        assert main.type is not None
        if not (isinstance(main.type, A.NamedType) and main.type.name == "V1Switch"):
            what = main.type.name if isinstance(main.type, A.NamedType) else "this"
            raise error(main.loc, f"not supported: package '{what}' (this compiler implements v1model's V1Switch)")
        pkg = self.cx.packages.get("V1Switch")
        if pkg is not None and len(pkg.params) != 6:
            raise error(pkg.loc, f"not supported: a V1Switch package with {len(pkg.params)} parameters, not v1model's")
        if pkg is not None:
            main.args = order_args(main.args, pkg.params, main.loc, "V1Switch")
        if len(main.args) != 6:
            raise error(main.loc, f"V1Switch expects 6 arguments, got {len(main.args)}")
        blocks: list[A.ControlDecl | A.ParserDecl] = []
        for (role, _), a in zip(ROLES, main.args, strict=True):
            if not (isinstance(a, A.Call) and isinstance(a.func, A.Name) and not a.args):
                raise error(a.loc, f"the {role} argument of V1Switch must be an instance like MyBlock()")
            n = a.func.name
            if role == "parser":
                if n not in self.cx.parser_decls:
                    raise error(a.loc, f"'{n}' is not a parser")
                blocks.append(self.cx.parser_decls[n])
            else:
                if n not in self.cx.control_decls:
                    raise error(a.loc, f"'{n}' is not a control")
                blocks.append(self.cx.control_decls[n])
        pdecl = blocks[0]
        if len(pdecl.params) != 4:
            raise error(pdecl.loc, f"parser '{pdecl.name}' must have 4 parameters (packet_in, out H, inout M, inout standard_metadata_t)")
        htype = self.cx.typerefs.resolve_type(pdecl.params[1].type, {})
        mtype = self.cx.typerefs.resolve_type(pdecl.params[2].type, {})
        if not is_data(htype) or htype["kind"] != "struct":
            raise error(pdecl.params[1].loc, f"the headers parameter must be a struct, not {show(htype)}")
        if not is_data(mtype) or mtype["kind"] != "struct":
            raise error(pdecl.params[2].loc, f"the metadata parameter must be a struct, not {show(mtype)}")
        rtypes: dict[str, AnyT] = {
            "hdr": htype, "meta": mtype, "std": {"kind": "struct", "name": "standard_metadata_t"},
            "pkt_in": {"kind": "object", "name": "packet_in", "args": []},
            "pkt_out": {"kind": "object", "name": "packet_out", "args": []}}
        parsers: dict[str, Parser] = {}
        controls: dict[str, Control] = {}
        for block, ((role, roots), decl) in enumerate(zip(ROLES, blocks, strict=True)):
            if len(decl.params) != len(roots):
                raise error(decl.loc, f"'{decl.name}' has {len(decl.params)} parameters; the v1model {role} block takes {len(roots)}")
            scope = Scope(parent=self.cx.glob)
            for p, root in zip(decl.params, roots, strict=True):
                pt = self.cx.typerefs.resolve_type(p.type, {})
                if pt["kind"] == "object":
                    pt = ObjectT(kind="object", name=pt["name"], args=[])
                if pt != rtypes[root]:
                    raise error(p.loc, f"parameter '{p.name}' of '{decl.name}' has type {show(pt)}; v1model expects {show(rtypes[root])} here")
                if root.startswith("pkt") or not is_data(pt):
                    scope.names[p.name] = PacketB(root == "pkt_out")
                else:
                    writable = p.direction in ("out", "inout")
                    scope.names[p.name] = Val({"op": "field", "path": [root], "type": pt}, writable,
                                              f"'{p.name}': it is an '{p.direction}' parameter" if p.direction != "none" else f"'{p.name}'")
            if isinstance(decl, A.ParserDecl):
                parsers[decl.name] = self.cx.parsers.lower_parser(decl, scope, block)
            else:
                if decl.name in controls:
                    raise error(decl.loc, f"control '{decl.name}' is used twice in V1Switch")
                locals_: list[Local] = []
                ctx = Ctx("control", decl.name, decl.name + ".", scope, locals_, set(), block=block)
                body = self.cx.controls.control_body(decl, ctx)
                controls[decl.name] = {"name": decl.name, "locals": locals_, "body": body}
        pipe = Pipeline(parser=blocks[0].name, verify_checksum=blocks[1].name, ingress=blocks[2].name,
                        egress=blocks[3].name, compute_checksum=blocks[4].name, deparser=blocks[5].name)
        ch: list[ControllerHeader] = []
        for hname, h in sorted(self.cx.headers.items()):
            ca = anno_get(h.annotations, "controller_header")
            if ca is not None:
                ch.append({"name": ca.string or ca.body, "header": hname, "annotations": anno_ir(h.annotations)})
        prog: Program = {
            "ir_version": 1, "source": self.cx.source, "arch": "v1model", "types": self.cx.out.types,
            "errors": list(self.cx.errors), "enums": dict(self.cx.enums), "serializable_enums": dict(self.cx.serenums),
            "pipeline": pipe, "header_type": htype["name"], "meta_type": mtype["name"],
            "parsers": parsers, "controls": controls,
            "actions": sorted(self.cx.out.actions.values(), key=lambda a: a["name"]),
            "tables": sorted(self.cx.out.tables.values(), key=lambda a: a["name"]),
            "registers": self.cx.out.registers, "counters": self.cx.out.counters,
            "direct_counters": self.cx.out.direct_counters, "meters": self.cx.out.meters,
            "direct_meters": self.cx.out.direct_meters, "digests": self.cx.out.digests,
            "controller_headers": ch, "value_sets": self.cx.out.value_sets,
        }
        if self.cx.newtypes:
            prog["newtypes"] = self.cx.newtypes
        if self.cx.out.action_profiles:
            prog["action_profiles"] = self.cx.out.action_profiles
        self.cx.controlplane.finish(prog)
        return prog
