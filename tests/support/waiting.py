"""Polling with a deadline: how tests wait, never by sleeping a guessed time (``workers.lab.supervise``)."""

from workers.lab.supervise import wait_until as wait_for

__all__ = ["wait_for"]
