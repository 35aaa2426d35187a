"""The experiments themselves: each module parses its options and runs one study."""
