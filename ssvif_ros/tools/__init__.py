"""Command-line tools (console scripts ``ssvif-*``)."""
