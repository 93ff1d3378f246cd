"""Target-neutral pipeline tests of p4src/aggregator.p4: case format, packets, runners."""
