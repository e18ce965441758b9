"""Example applications that show piimw in front of real frameworks."""
