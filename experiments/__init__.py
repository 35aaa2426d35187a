"""Runnable studies on the emulated backbone."""
