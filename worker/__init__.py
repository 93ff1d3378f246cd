"""worker: the host side of p4reduce (quantization, packets, streaming, torch backend)."""
