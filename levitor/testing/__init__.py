"""Test helpers, for tests, notebooks and benchmarks (never production code): tiny random models with the real
architectures (:mod:`levitor.testing.tiny`, :mod:`levitor.testing.tiny_perception`), tiny data sets
(:mod:`levitor.testing.datasets`) and float comparisons (:mod:`levitor.testing.compare`)."""
