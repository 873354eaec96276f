//! hostguard's benchmarks: criterion benches in `benches/`, whole-process comparisons with peer
//! tools in `scripts/`, figures in `results/`. Nothing here is published.
