//! Starting a child process without copying the node.
//!
//! A plain `fork` copies the node's page tables and then makes every page it writes
//! while the child starts up a copy-on-write fault: with a node of 20 MB that cost more
//! than running a short command (`true`) itself, and it is paid for every command a
//! fan-out sends. The standard library avoids it with `posix_spawn`, but only when no
//! code has to run in the child before `exec`; bosun's children must set their
//! parent-death signal there. So the child is made here with
//! `clone(CLONE_VM | CLONE_VFORK)`, the way `posix_spawn` itself does it: it borrows the
//! node's memory on a stack of its own, the forking thread waits until it has called
//! `exec` (or failed), and between the two it makes only system calls:
//!
//! 1. reset every signal the node handles to its default (the handlers are the node's
//!    and must not run in the child), and SIGPIPE too, which Rust programs ignore;
//! 2. lead a process group of its own;
//! 3. ask for SIGKILL when its parent dies, and give up if the parent is gone already;
//! 4. put its standard streams in place and change directory;
//! 5. unblock every signal and `exec` the program, trying each `PATH` entry in turn as
//!    `execvp` does. Unlike `execvp`, a file the kernel cannot run (a script with no
//!    `#!` line) is not handed to `/bin/sh`: a command runs through a shell only when
//!    its message asks (`useShell`); it fails with "Exec format error".
//!
//! Every signal, glibc's internal ones included, is blocked on the starting thread
//! around the `clone` (with the system call itself: glibc's wrappers leave those out).
//! Everything the child needs (paths, argv, environment) is prepared before, by the
//! parent: the child allocates nothing and takes no lock. A failure is written to
//! memory the parent reads once the child has ended, and becomes the spawn's error.
//!
//! The end of a child is awaited through a pidfd; on a kernel without them (before 5.3)
//! a thread waits for the end without reaping. Either way a child is reaped only by its
//! [`Child`], so it is never signalled after its pid could be another process's. A child
//! whose spawn was given up before it became a [`Child`], or a [`Child`] dropped before
//! its end, is killed (when the launch asked for that) and reaped later: none stays a
//! zombie.
//!
//! `unsafe` is confined to this file: it is the one place bosun writes what a crate does
//! not offer (the standard library's spawner cannot run code in a `CLONE_VFORK` child,
//! and no maintained crate starts one with a parent-death signal).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

/// Where a child's standard stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Io {
    /// The node's own.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe to the node: the child's `stdin`, `stdout` or `stderr` field.
    Piped,
}

/// What to start: a program, its arguments, changes to the node's environment, a
/// directory and the standard streams.
#[derive(Debug, Clone)]
pub struct Launch {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    stdio: [Io; 3],
    kill_on_drop: bool,
}

impl Launch {
    /// Start `program`: a path, or a name looked up in `PATH` like a shell does.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Launch {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdio: [Io::Inherit; 3],
            kill_on_drop: false,
        }
    }

    /// Add one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Add arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Set a variable in the child's environment.
    pub fn env(&mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((name.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Set variables in the child's environment.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Leave a variable of the node's environment out of the child's.
    pub fn env_remove(&mut self, name: impl AsRef<OsStr>) -> &mut Self {
        self.env.push((name.as_ref().to_owned(), None));
        self
    }

    /// Run in `dir`.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Where the child's stdin comes from.
    pub fn stdin(&mut self, io: Io) -> &mut Self {
        self.stdio[0] = io;
        self
    }

    /// Where the child's stdout goes.
    pub fn stdout(&mut self, io: Io) -> &mut Self {
        self.stdio[1] = io;
        self
    }

    /// Where the child's stderr goes.
    pub fn stderr(&mut self, io: Io) -> &mut Self {
        self.stdio[2] = io;
        self
    }

    /// Kill the child (SIGKILL) when its [`Child`] is dropped before it ended.
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Self {
        self.kill_on_drop = kill;
        self
    }

    /// The child's environment: the node's, with `leave_out` variables removed, then
    /// this launch's changes in order.
    fn environment(&self, leave_out: &dyn Fn(&OsStr) -> bool) -> Vec<(OsString, OsString)> {
        let mut vars: Vec<(OsString, OsString)> =
            std::env::vars_os().filter(|(k, _)| !leave_out(k)).collect();
        for (name, value) in &self.env {
            vars.retain(|(k, _)| k != name);
            if let Some(v) = value {
                vars.push((name.clone(), v.clone()));
            }
        }
        vars
    }
}

/// A launch made ready for [`start`]: every string the child needs, and the file
/// descriptors of both ends of its streams.
pub(crate) struct Prepared {
    /// The paths `exec` tries, in order.
    paths: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: Option<CString>,
    /// What the child puts at 0, 1 and 2 (`None`: leaves the node's).
    child_ends: [Option<OwnedFd>; 3],
    /// The node's ends of piped streams.
    parent_ends: [Option<OwnedFd>; 3],
    kill_on_drop: bool,
}

fn c_string(bytes: impl Into<Vec<u8>>, what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} holds a NUL byte"),
        )
    })
}

/// A descriptor at 3 or above: below, `dup2` onto 0, 1 or 2 could overwrite another
/// stream's source (when the node runs with a standard stream closed).
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl on a descriptor we own; the new one is ours to own.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `moved` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(read)?, above_stdio(write)?))
}

fn dev_null() -> io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    above_stdio(OwnedFd::from(file))
}

/// The paths to try for `program`, as `execvp` would: itself when it names a path,
/// else each `PATH` entry (an empty one is the working directory).
fn candidates(program: &OsStr, path_var: Option<&OsStr>) -> Vec<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return vec![PathBuf::from(program)];
    }
    let path_var = path_var.unwrap_or(OsStr::new("/bin:/usr/bin"));
    path_var
        .as_bytes()
        .split(|b| *b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
            Path::new(OsStr::from_bytes(dir)).join(program)
        })
        .collect()
}

impl Prepared {
    /// Everything the child needs; `leave_out` names the node's variables it must not
    /// inherit.
    pub(crate) fn new(launch: &Launch, leave_out: &dyn Fn(&OsStr) -> bool) -> io::Result<Self> {
        if launch.program.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no program given",
            ));
        }
        let env = launch.environment(leave_out);
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_os_str());
        let paths = candidates(&launch.program, path_var)
            .into_iter()
            .map(|p| c_string(p.into_os_string().into_vec(), "the program's path"))
            .collect::<io::Result<Vec<_>>>()?;
        let mut argv = vec![c_string(launch.program.as_bytes(), "the program")?];
        for a in &launch.args {
            argv.push(c_string(a.as_bytes(), "an argument")?);
        }
        let envp = env
            .into_iter()
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend(v.into_vec());
                c_string(kv, "an environment variable")
            })
            .collect::<io::Result<Vec<_>>>()?;
        let cwd = launch
            .cwd
            .as_ref()
            .map(|d| c_string(d.as_os_str().as_bytes(), "the directory"))
            .transpose()?;
        let mut child_ends: [Option<OwnedFd>; 3] = [None, None, None];
        let mut parent_ends: [Option<OwnedFd>; 3] = [None, None, None];
        for (i, io) in launch.stdio.iter().enumerate() {
            match io {
                Io::Inherit => {}
                Io::Null => child_ends[i] = Some(dev_null()?),
                Io::Piped => {
                    let (read, write) = pipe_pair()?;
                    let (child, parent) = if i == 0 { (read, write) } else { (write, read) };
                    child_ends[i] = Some(child);
                    parent_ends[i] = Some(parent);
                }
            }
        }
        Ok(Prepared {
            paths,
            argv,
            envp,
            cwd,
            child_ends,
            parent_ends,
            kill_on_drop: launch.kill_on_drop,
        })
    }
}

/// What the child reads, and where it writes why it failed. Lives on the parent's stack
/// while the parent waits for the child's `exec`.
#[repr(C)]
struct ChildArgs {
    paths: *const *const libc::c_char,
    paths_len: usize,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    fds: [RawFd; 3],
    parent: libc::pid_t,
    /// Set by the child when it fails: the errno and the step.
    error: libc::c_int,
    step: libc::c_int,
}

const STEP_GROUP: libc::c_int = 1;
const STEP_DEATH_SIGNAL: libc::c_int = 2;
const STEP_PARENT_GONE: libc::c_int = 3;
const STEP_STREAMS: libc::c_int = 4;
const STEP_DIRECTORY: libc::c_int = 5;
const STEP_EXEC: libc::c_int = 6;

/// The child, on its own stack in the parent's memory. Makes only system calls (through
/// libc's thin wrappers) and never returns: `exec` or `_exit`.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive while the parent waits (vfork);
    // only async-signal-safe calls follow.
    unsafe {
        let args = &mut *(arg as *mut ChildArgs);
        for signal in 1..=64 {
            if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let ignored = old.sa_sigaction == libc::SIG_IGN;
            if old.sa_sigaction == libc::SIG_DFL || (ignored && signal != libc::SIGPIPE) {
                continue;
            }
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
        if libc::setpgid(0, 0) != 0 {
            fail(args, STEP_GROUP);
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            fail(args, STEP_DEATH_SIGNAL);
        }
        if libc::getppid() != args.parent {
            *libc::__errno_location() = libc::ESRCH;
            fail(args, STEP_PARENT_GONE);
        }
        for (target, fd) in args.fds.into_iter().enumerate() {
            if fd >= 0 && libc::dup2(fd, target as libc::c_int) < 0 {
                fail(args, STEP_STREAMS);
            }
        }
        if !args.cwd.is_null() && libc::chdir(args.cwd) != 0 {
            fail(args, STEP_DIRECTORY);
        }
        set_raw_mask(&NO_SIGNALS, std::ptr::null_mut());
        // As execvp: a path that does not exist or cannot be run is passed over; if none
        // runs, a permission error found on the way is the one reported.
        let mut denied = false;
        for i in 0..args.paths_len {
            libc::execve(*args.paths.add(i), args.argv, args.envp);
            match *libc::__errno_location() {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => fail(args, STEP_EXEC),
            }
        }
        if denied {
            *libc::__errno_location() = libc::EACCES;
        }
        fail(args, STEP_EXEC)
    }
}

/// Every signal, glibc's own (32 and 33) included, as the kernel's mask.
const ALL_SIGNALS: u64 = !0;
const NO_SIGNALS: u64 = 0;

/// Set this thread's signal mask with the system call itself: glibc's wrappers leave
/// out the two signals it uses internally, which must be blocked too while a child
/// shares the node's memory.
///
/// # Safety
/// `old` is null or points to writable memory for the previous mask.
unsafe fn set_raw_mask(mask: &u64, old: *mut u64) {
    // SAFETY: the kernel reads 8 bytes from `mask` and writes 8 to `old` if not null.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            mask as *const u64,
            old,
            std::mem::size_of::<u64>(),
        );
    }
}

/// Tell the parent why and end the child.
///
/// # Safety
/// Only in the child, with `args` the parent's.
unsafe fn fail(args: &mut ChildArgs, step: libc::c_int) -> ! {
    // SAFETY: the child's errno is the forking thread's, which waits; then the child
    // ends without running anything of the parent's (no atexit handlers, no flushing).
    unsafe {
        args.error = *libc::__errno_location();
        args.step = step;
        libc::_exit(127)
    }
}

fn step_name(step: libc::c_int) -> &'static str {
    match step {
        STEP_GROUP => "making its process group",
        STEP_DEATH_SIGNAL => "asking for a parent-death signal",
        STEP_PARENT_GONE => "checking its parent",
        STEP_STREAMS => "setting up its standard streams",
        STEP_DIRECTORY => "changing to its directory",
        _ => "starting it",
    }
}

/// The child's stack: enough for the libc calls it makes.
const CHILD_STACK: usize = 64 * 1024;

/// Pointers to `strings`, then a null pointer: an `argv` or `envp` for `execve`.
fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Start the prepared child from this thread, which its parent-death signal follows.
/// Returns its pid once it has called `exec`; a failure before (a program not found, a
/// directory that does not exist) is the error, and the child is reaped.
pub(crate) fn start(prepared: &mut Prepared) -> io::Result<Started> {
    let paths: Vec<*const libc::c_char> = prepared.paths.iter().map(|p| p.as_ptr()).collect();
    let argv = null_terminated(&prepared.argv);
    let envp = null_terminated(&prepared.envp);
    let fd = |i: usize| {
        prepared.child_ends[i]
            .as_ref()
            .map_or(-1, |f| f.as_raw_fd())
    };
    let mut args = ChildArgs {
        paths: paths.as_ptr(),
        paths_len: paths.len(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: prepared
            .cwd
            .as_ref()
            .map_or(std::ptr::null(), |c| c.as_ptr()),
        fds: [fd(0), fd(1), fd(2)],
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        error: 0,
        step: 0,
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // SAFETY: the stack is ours and outlives the child's use of it (the parent waits
    // for its exec or exit); it grows down from its 16-byte aligned end. All signals are
    // blocked around the clone so that none is handled in the child before it has reset
    // the handlers; the thread's mask is restored afterwards.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK);
        let top = top.sub(top as usize % 16);
        let mut before: u64 = 0;
        set_raw_mask(&ALL_SIGNALS, &mut before);
        let pid = libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut args as *mut ChildArgs as *mut libc::c_void,
        );
        let clone_error = io::Error::last_os_error();
        set_raw_mask(&before, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    drop(stack);
    // SAFETY: the child has exec'd or ended: it no longer writes `args`.
    let (error, step) = unsafe {
        (
            std::ptr::read_volatile(&args.error),
            std::ptr::read_volatile(&args.step),
        )
    };
    // The child's ends are its own now.
    for end in &mut prepared.child_ends {
        end.take();
    }
    if step != 0 {
        let mut status = 0;
        // SAFETY: reaping our own child, which has exited.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let os = io::Error::from_raw_os_error(error);
        return Err(if step == STEP_EXEC {
            os
        } else {
            io::Error::new(os.kind(), format!("{} failed: {os}", step_name(step)))
        });
    }
    Ok(Started {
        pid,
        kill_on_drop: prepared.kill_on_drop,
    })
}

/// A child [`start`] started, not yet wrapped in a [`Child`]. Dropped so (the caller of
/// the spawn went away meanwhile), it is killed if the launch asked for that, and reaped
/// either way.
pub(crate) struct Started {
    pid: libc::pid_t,
    kill_on_drop: bool,
}

impl Started {
    fn take(self) -> (libc::pid_t, bool) {
        let this = std::mem::ManuallyDrop::new(self);
        (this.pid, this.kill_on_drop)
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.kill_on_drop {
            // SAFETY: not reaped yet, so the pid is still this child's.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        reap_later(self.pid, Ending::Poll);
    }
}

/// How the end of a child is noticed.
enum Ending {
    /// A pidfd, readable once the child has ended.
    Pidfd(AsyncFd<OwnedFd>),
    /// A thread that waits for the end without reaping, for kernels without pidfds.
    Thread(oneshot::Receiver<()>),
    /// Neither (or the thread is done): look now and then.
    Poll,
}

/// Reap `pid` once it ends, off the caller's path: on the runtime when there is one and
/// a pidfd tells the end, else on a thread of its own.
fn reap_later(pid: libc::pid_t, ending: Ending) {
    match (ending, tokio::runtime::Handle::try_current()) {
        (Ending::Pidfd(fd), Ok(runtime)) => {
            runtime.spawn(async move {
                while let Ok(mut ready) = fd.readable().await {
                    ready.clear_ready();
                    let mut raw = 0;
                    // SAFETY: our own child; this task is the only one left to reap it.
                    if unsafe { libc::waitpid(pid, &mut raw, libc::WNOHANG) } != 0 {
                        break;
                    }
                }
            });
        }
        _ => {
            let _ = std::thread::Builder::new()
                .name("bosun-child-reap".into())
                .spawn(move || {
                    let mut raw = 0;
                    // SAFETY: our own child; this thread is the only one left to reap it.
                    while unsafe { libc::waitpid(pid, &mut raw, 0) } < 0
                        && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                    {
                    }
                });
        }
    }
}

/// A started child: its pid until it is reaped, its piped streams, and its end.
pub struct Child {
    pid: libc::pid_t,
    status: Option<ExitStatus>,
    ending: Ending,
    kill_on_drop: bool,
    /// Its stdin, when piped.
    pub stdin: Option<pipe::Sender>,
    /// Its stdout, when piped.
    pub stdout: Option<pipe::Receiver>,
    /// Its stderr, when piped.
    pub stderr: Option<pipe::Receiver>,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Wait for `pid` to end without reaping it, on a thread, for kernels without pidfds.
fn end_watcher(pid: libc::pid_t) -> io::Result<Ending> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("bosun-child-wait".into())
        .spawn(move || {
            loop {
                // SAFETY: waits for our child's end and leaves it to be reaped.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                let r = unsafe {
                    libc::waitid(
                        libc::P_PID,
                        pid as libc::id_t,
                        &mut info,
                        libc::WEXITED | libc::WNOWAIT,
                    )
                };
                if r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    break;
                }
            }
            let _ = tx.send(());
        })?;
    Ok(Ending::Thread(rx))
}

impl Child {
    /// Wrap a child [`start`] started. Must be called within a tokio runtime. On an
    /// error the child is killed (with `kill_on_drop`) and reaped.
    pub(crate) fn adopt(started: Started, prepared: Prepared) -> io::Result<Child> {
        let (pid, kill_on_drop) = started.take();
        // From here on an early return drops `child`, which ends and reaps it.
        let mut child = Child {
            pid,
            status: None,
            ending: Ending::Poll,
            kill_on_drop,
            stdin: None,
            stdout: None,
            stderr: None,
        };
        // SAFETY: pidfd_open on our own child, which is not reaped yet: the pid is it.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        child.ending = if pidfd >= 0 {
            // SAFETY: a fresh descriptor nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
            // SAFETY: an OwnedFd, held by the AsyncFd alone until it is dropped.
            let registered =
                unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
            Ending::Pidfd(registered.map_err(io::Error::from)?)
        } else {
            end_watcher(pid)?
        };
        let [stdin, stdout, stderr] = prepared.parent_ends;
        child.stdin = stdin.map(pipe::Sender::from_owned_fd).transpose()?;
        child.stdout = stdout.map(pipe::Receiver::from_owned_fd).transpose()?;
        child.stderr = stderr.map(pipe::Receiver::from_owned_fd).transpose()?;
        Ok(child)
    }

    /// Its pid, while it has not been reaped.
    pub fn id(&self) -> Option<u32> {
        self.status.is_none().then_some(self.pid as u32)
    }

    /// Reap it if it has ended.
    fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let mut raw = 0;
        // SAFETY: our own child, not reaped yet.
        match unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) } {
            0 => Ok(None),
            n if n == self.pid => {
                let status = ExitStatus::from_raw(raw);
                self.status = Some(status);
                Ok(Some(status))
            }
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Wait for it to end (closing its stdin first) and reap it. Safe to cancel and call
    /// again.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.stdin.take();
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(status);
            }
            match &mut self.ending {
                Ending::Pidfd(fd) => {
                    let mut ready = fd.readable().await?;
                    ready.clear_ready();
                }
                Ending::Thread(ended) => {
                    let _ = ended.await;
                    self.ending = Ending::Poll;
                }
                Ending::Poll => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    /// Send it SIGKILL, unless it has been reaped.
    pub fn start_kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: not reaped yet, so the pid is still this child's.
        if unsafe { libc::kill(self.pid, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Kill it and wait for its end.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.start_kill()?;
        self.wait().await.map(|_| ())
    }
}

impl Drop for Child {
    /// A child dropped before it was reaped is reaped when it ends (killed first with
    /// `kill_on_drop`), so that it never stays a zombie.
    fn drop(&mut self) {
        if self.status.is_some() || matches!(self.try_reap(), Ok(Some(_))) {
            return;
        }
        if self.kill_on_drop {
            let _ = self.start_kill();
        }
        reap_later(self.pid, std::mem::replace(&mut self.ending, Ending::Poll));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Spawner;
    use tokio::io::AsyncReadExt;

    async fn output(mut child: Child) -> (ExitStatus, String, String) {
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = child.stdout.take() {
            s.read_to_string(&mut out).await.unwrap();
        }
        if let Some(mut s) = child.stderr.take() {
            s.read_to_string(&mut err).await.unwrap();
        }
        (child.wait().await.unwrap(), out, err)
    }

    fn sh(script: &str) -> Launch {
        let mut l = Launch::new("sh");
        l.arg("-c")
            .arg(script)
            .stdin(Io::Null)
            .stdout(Io::Piped)
            .stderr(Io::Piped);
        l
    }

    /// A field of `/proc/PID/status`.
    fn status_field(pid: u32, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name}:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap()
    }

    #[tokio::test]
    async fn runs_a_program_found_in_path_with_its_output_and_exit_code() {
        let spawner = Spawner::default();
        let child = spawner
            .spawn(sh("echo out; echo err >&2; exit 3").clone())
            .await
            .unwrap();
        let (status, out, err) = output(child).await;
        assert_eq!(status.code(), Some(3));
        assert_eq!(out, "out\n");
        assert_eq!(err, "err\n");
    }

    #[tokio::test]
    async fn a_program_that_cannot_start_is_an_error_naming_why() {
        let spawner = Spawner::default();
        let e = spawner
            .spawn(Launch::new("bosun-no-such-program"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        let dir = std::env::temp_dir().join(format!("bosun-spawn-test-{}", bosun_proto::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_runnable = dir.join("not-runnable");
        std::fs::write(&not_runnable, "#!/bin/sh\n").unwrap();
        let e = spawner.spawn(Launch::new(&not_runnable)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let mut bad_dir = Launch::new("true");
        bad_dir.current_dir("/no/such/dir");
        let e = spawner.spawn(bad_dir).await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("changing to its directory failed"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn environment_directory_and_signals_are_the_childs_own() {
        let spawner = Spawner::default();
        // The node's PATH is inherited (the test process has one), HOME is left out.
        let path = std::env::var("PATH").unwrap();
        let mut l = sh("echo \"$PATH $BOSUN_SPAWN_TEST_SET ${HOME-unset} $(pwd)\"");
        l.env("BOSUN_SPAWN_TEST_SET", "set")
            .env_remove("HOME")
            .current_dir("/tmp");
        let (status, out, _) = output(spawner.spawn(l).await.unwrap()).await;
        assert!(status.success());
        assert_eq!(out, format!("{path} set unset /tmp\n"));

        // A long-running child: its own process group, no signal blocked, SIGPIPE not
        // ignored (Rust ignores it in the node).
        let mut l = Launch::new("sleep");
        l.arg("30").kill_on_drop(true);
        let mut child = spawner.spawn(l).await.unwrap();
        let pid = child.id().unwrap();
        assert_eq!(
            nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32)))
                .unwrap()
                .as_raw(),
            pid as i32
        );
        assert_eq!(
            u64::from_str_radix(&status_field(pid, "SigBlk"), 16).unwrap(),
            0
        );
        let ignored = u64::from_str_radix(&status_field(pid, "SigIgn"), 16).unwrap();
        assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE ignored");
        child.kill().await.unwrap();
        assert_eq!(child.wait().await.unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(child.id(), None, "reaped");
    }

    #[tokio::test]
    async fn a_dropped_child_is_killed_and_reaped() {
        let spawner = Spawner::default();
        let mut l = Launch::new("sleep");
        l.arg("30").kill_on_drop(true);
        let child = spawner.spawn(l).await.unwrap();
        let pid = child.id().unwrap() as i32;
        drop(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(std::time::Instant::now() < deadline, "the child lingers");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_file_without_a_shebang_line_is_not_handed_to_a_shell() {
        let dir = std::env::temp_dir().join(format!("bosun-spawn-test-{}", bosun_proto::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("plain-script");
        std::fs::write(&script, "echo \"ran by sh: $1\"\n").unwrap();
        std::fs::set_permissions(
            &script,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )
        .unwrap();
        let mut l = Launch::new(&script);
        l.arg("first").stdout(Io::Piped).stderr(Io::Piped);
        let e = Spawner::default().spawn(l).await.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOEXEC), "{e}");
    }

    /// A child whose spawn was given up before it was wrapped (its caller went away) is
    /// killed and reaped, not left running or a zombie.
    #[tokio::test]
    async fn a_started_child_never_taken_over_is_killed_and_reaped() {
        let mut l = Launch::new("sleep");
        l.arg("30").kill_on_drop(true);
        let mut prepared = Prepared::new(&l, &|_| false).unwrap();
        let started = start(&mut prepared).unwrap();
        let pid = started.pid;
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(started);
        crate::wait_until(
            "the child to be gone",
            std::time::Duration::from_secs(10),
            || !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        )
        .await;
    }

    /// Without pidfds (kernels before 5.3) a thread tells the end: a wait that is cut
    /// short can be made again, and the child is still killed and reaped.
    #[tokio::test]
    async fn a_cancelled_wait_on_the_thread_fallback_can_be_made_again() {
        let mut l = Launch::new("sleep");
        l.arg("30");
        let spawner = Spawner::default();
        let mut child = spawner.spawn(l).await.unwrap();
        child.ending = end_watcher(child.pid).unwrap();
        let cut = tokio::time::timeout(std::time::Duration::from_millis(100), child.wait()).await;
        assert!(cut.is_err(), "sleep 30 ended early");
        child.kill().await.unwrap();
        assert_eq!(child.wait().await.unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(child.id(), None);
    }
}
