"""What the plugin makes of captured prints after the fact (plain modules, no OctoPrint)."""
