"""GPU kernels with their references and benchmarks (MSA for Hopper in kernels/msa)."""
