"""p4runtime package."""
