//! The firedrill command: parse the command line, hand over to the library.

use clap::Parser;

fn main() {
    let cli = firedrill::dispatch::Cli::parse();
    std::process::exit(firedrill::dispatch::main(cli));
}
