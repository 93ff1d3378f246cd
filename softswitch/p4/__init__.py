"""p4 package."""
