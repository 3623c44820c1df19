"""Development tools: benchmarks and profilers, apart from the product (no image ships this folder).

    python -m bench.train --out DIR ...     training throughput beside the plain Hugging Face baselines
    python -m bench.eval --out DIR ...      generation speed of the engine beside plain generate
    python -m bench.curate                  curation speed on this machine
    bench/stepprofile.py                    torch.profiler over training steps (bench.train --profile)
    bench/benchmodel.py                     a random model of a given shape, for the GPU benchmarks

May import anything in jobs/ (a tool measures the product from outside); nothing in jobs/ or workflows/ imports it.
"""
