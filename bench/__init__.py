"""NotifyHub benchmark: `make bench` (or `python -m bench --help`).

Measures, on this machine, the accept time of a 1,000-recipient send over real HTTP and the
end-to-end email throughput through the provider sandbox, for the real pipeline and for a
deliberately naive one (bench/naive.py), then the SMS and push throughput of the real pipeline
(bench/channels.py), and prints one JSON document on stdout.
"""
