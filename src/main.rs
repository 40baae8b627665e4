//! The firedrill command: parse the command line, hand over to the library.

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    std::process::exit(cli::main(cli));
}
