"""Clients of the gateway that are not part of any service image: the command-line client and
what it (and the benchmarks) use to play a reply as a listener would."""
