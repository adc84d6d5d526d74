//! Write the built-in seeds of every target into `<DIR>/<target>/seed-<n>`, a corpus
//! folder to fuzz from besides `fuzz/corpus/<target>/` (`scripts/fuzz` does):
//! `cargo run -p bosun-fuzz-targets --example write_seeds -- DIR`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: write_seeds DIR");
        std::process::exit(2);
    };
    for target in bosun_fuzz_targets::TARGETS {
        let dir = dir.join(target.name);
        std::fs::create_dir_all(&dir)?;
        for (i, seed) in bosun_fuzz_targets::seeds(target.name).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed)?;
        }
    }
    Ok(())
}
