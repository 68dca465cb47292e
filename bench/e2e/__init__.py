"""End-to-end latency lab: mediasrv against a faithful reproduction of the legacy path.

``legacy`` holds the old platform's per-call behaviour (it exists only here, in ``bench/``);
``run`` drives both paths in one process, on the same emulators and the same corpus, and
prints the headline ratio. See ``README.md`` in this directory.
"""
