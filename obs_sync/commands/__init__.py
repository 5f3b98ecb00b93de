"""What each command does and prints, called by :mod:`obs_sync.cli` (which only parses)."""
