"""construct grammars for vmbtool's on-disk blob format (see FORMAT.md)."""
