"""Benchmarks: does skipped compute become real time? (CLIs: ``espnet_gated.bin.bench``, ``bench_threads``)

* :mod:`~espnet_gated.bench.models`: the gated, dense and exported models, the utterances, the report's names;
* :mod:`~espnet_gated.bench.variants`: what is decoded (masks, caches, batch sizes, searches);
* :mod:`~espnet_gated.bench.instrumentation`: timers, probes of what ran, fixed decode length;
* :mod:`~espnet_gated.bench.accounting`: times, executed MACs and their ratios;
* :mod:`~espnet_gated.bench.rendering`: bench.md and bench.png;
* :mod:`~espnet_gated.bench.latency` and :mod:`~espnet_gated.bench.throughput`: the two modes;
* :mod:`~espnet_gated.bench.training_threads`: a training step at torch's thread count and the rule's.

The package may import anything of the library but ``bin/`` (README, "Architecture"); nothing imports it but the
two CLIs and the tests.
"""
