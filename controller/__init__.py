"""controller: the P4Runtime control plane of p4reduce and its CLI."""
