"""Generated retailers with planted store types: the sample data of ``make run``, the tests and
the benchmarks (``generator`` draws them, ``files`` writes the pipeline's inputs and the truth).
Nothing in the pipeline imports this package."""
