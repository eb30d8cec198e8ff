//! The `fairy2i` command line tool.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("fairy2i: not built yet");
    std::process::exit(2);
}
