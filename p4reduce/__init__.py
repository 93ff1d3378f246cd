"""p4reduce: in-network gradient aggregation on a P4 switch.

The distribution installs one import namespace. Its parts live in the checkout's
top-level folders and are mapped here by `pyproject.toml`:

- `p4reduce.contract`: the wire format, protocol constants and P4 names (imports nothing
  else of ours; everything else imports it);
- `p4reduce.worker`: the host side (quantization, streaming, the torch backend);
- `p4reduce.controller`: the P4Runtime control plane and `p4reduce-ctl`;
- `p4reduce.softswitch`: the embedded v1model target (compiler, runtime, P4Runtime server);
- `p4reduce.p4src`: the P4 sources of the aggregation pipeline, as package data.
"""

__version__ = "0.2.0"
