"""What every ``qcreep`` command shares: the one-line parser, argument types, logging."""

from __future__ import annotations

import argparse
import sys

DEFAULT_OUT = "qcreep-results"


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def argument_type(convert, accept, expected: str):
    """An argparse type: ``convert`` the text, keep it if ``accept(value)``, else say what was expected."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got '{text}'")
        return value
    return parse


positive_int = argument_type(int, lambda v: v >= 1, "a positive integer")
nonnegative_int = argument_type(int, lambda v: v >= 0, "an integer >= 0")
positive_float = argument_type(float, lambda v: 0 < v < float("inf"), "a positive number")
fraction = argument_type(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
unit_fraction = argument_type(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
probability = argument_type(float, lambda v: 0 < v <= 0.75, "a depolarising probability in (0, 0.75]")


def parse_level(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"levels are integers 0, 1, 2, got '{text}'") from None


def log(message: str) -> None:
    """A progress or status line on stderr (stdout carries the results)."""
    print(message, file=sys.stderr, flush=True)
