//! The `conduit` binary: parses the command line and exits with the command's code.

/// With the `mimalloc` feature, every allocation goes to mimalloc: most per-request work in a
/// proxy is small, short-lived header and buffer allocations, which it serves from per-thread
/// free lists.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(conduit::cli::main());
}
