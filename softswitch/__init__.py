"""softswitch: the embedded v1model target (compiler front end, runtime, P4Runtime server).

It exists because p4c and BMv2 cannot be installed from the registries our machines
reach; it follows BMv2's behaviour wherever a controller or a packet could tell.
"""
