//! Standard output for every subcommand, through [`out!`] and [`outln!`] instead of
//! `print!` and `println!`. A reader that leaves early (`bosun status | head`) closes
//! the pipe; `println!` would then panic, while these end the command quietly with
//! status 0, as a well-behaved Unix filter does.

use std::fmt;
use std::io::{ErrorKind, Write};

/// Write to stdout and flush. On a closed pipe, exit at once with status 0 and no
/// message; on any other write error, say so on stderr and exit with status 2.
pub fn write(args: fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(2);
        }
    }
}

/// `print!` that ends the command quietly when stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

/// `println!` that ends the command quietly when stdout is closed.
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
