"""Networks shared by task plugins."""
