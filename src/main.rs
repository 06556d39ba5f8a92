//! The `conduit` binary: parses the command line and exits with the command's code.

fn main() {
    std::process::exit(conduit::cli::main());
}
