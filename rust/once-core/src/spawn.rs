//! Running a step's command: `sh -c CMD` in a session of its own, stdin from /dev/null, stdout
//! and stderr into one pipe, read to its end; and stopping every running command on Ctrl-C.
//!
//! The shell is started with `posix_spawn` (glibc's is a vfork: nothing of this process, which
//! holds a whole plan and a dozen threads, is copied). `std::process::Command` would use it too,
//! but cannot start a new session without a `pre_exec`, which makes it `fork` instead: that
//! cost 1.5 CPU seconds more over 1,000 steps (benches/RESULTS.md). The session is what an
//! interrupt signals (its process group), and it has no controlling terminal: a command that
//! opens `/dev/tty` for a prompt fails at once, as in CI, instead of being stopped for
//! reading from the terminal in the background with `once` waiting on it forever.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{
    kill_process_group, waitid, waitpid, Pid, Signal, WaitId, WaitIdOptions, WaitOptions,
};

use crate::error::{IoContext, Result};

/// How much of the pipe is read at a time: the size of a Linux pipe's buffer.
const READ_SIZE: usize = 64 * 1024;
/// How often `stop` looks whether the commands it signalled have exited.
const STOP_POLL: Duration = Duration::from_millis(10);

/// The environment of a command and the shell it starts with, worked out once and shared by
/// every command run with the same environment.
#[derive(Debug, Clone)]
pub struct CommandEnv {
    /// `NAME=value`, as `execve` takes them; a variable holding a NUL byte is left out (no
    /// process could be given it).
    vars: Vec<CString>,
    shell: CString,
}

impl CommandEnv {
    /// `vars` as the whole environment; `sh` is the first one on its `PATH`, as a shell or
    /// `execvp` with this environment would find it.
    #[must_use]
    pub fn new(vars: Vec<(String, String)>) -> CommandEnv {
        let path = vars
            .iter()
            .rev()
            .find(|(name, _)| name == "PATH")
            .map(|(_, value)| value.clone());
        let shell = path
            .as_deref()
            .and_then(find_shell)
            .and_then(|shell| CString::new(shell.into_os_string().as_bytes()).ok())
            .unwrap_or_else(|| c"/bin/sh".to_owned());
        CommandEnv {
            vars: vars
                .into_iter()
                .filter_map(|(name, value)| CString::new(format!("{name}={value}")).ok())
                .collect(),
            shell,
        }
    }

    /// The shell commands start with.
    #[must_use]
    pub fn shell(&self) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(self.shell.to_bytes()))
    }
}

fn find_shell(path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.split(':').find_map(|folder| {
        // An empty entry is the current folder, which differs per command: not searched.
        if folder.is_empty() {
            return None;
        }
        let candidate = Path::new(folder).join("sh");
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

/// Shows a running command's output as it comes; false: give up on the command.
pub type LiveOutput<'a> = &'a mut dyn FnMut(&[u8]) -> bool;

/// How a command ended and everything it wrote to stdout and stderr, in the order written.
#[derive(Debug)]
pub struct CommandOutput {
    /// Its exit code, or minus the signal that ended it.
    pub exit_code: i32,
    pub log: Vec<u8>,
}

/// The commands of a run: starts them, and stops all of them at once on an interrupt.
#[derive(Debug, Default)]
pub struct Commands {
    state: Mutex<Running>,
}

#[derive(Debug, Default)]
struct Running {
    /// Set by `stop`: no command starts after it.
    stopping: bool,
    /// The process groups of started commands whose shell is not reaped yet: until it is, its
    /// pid (the group's id) cannot be given to another process, so signalling it is safe.
    groups: HashSet<i32>,
    /// Commands nobody waits for (their reader gave up), reaped by `stop`.
    abandoned: Vec<Pid>,
}

impl Commands {
    #[must_use]
    pub fn new() -> Commands {
        Commands::default()
    }

    /// Run `sh -c cmd` in `cwd` and read its output to the end (a child it left in the
    /// background and that holds the pipe open is waited for too). `live` gets the output as
    /// it comes, whole lines at a time (the last one possibly without its newline). None when
    /// `stop` came first (nothing ran), or at once when `live` returns false: the output is
    /// read no further (the command's next write ends it with SIGPIPE), and the command is
    /// left for `stop` to end.
    pub fn run(
        &self,
        cmd: &str,
        cwd: &Path,
        env: &CommandEnv,
        live: Option<LiveOutput<'_>>,
    ) -> Result<Option<CommandOutput>> {
        if self.lock().stopping {
            return Ok(None);
        }
        let (pid, pipe) = spawn(cmd, cwd, env).at(cwd)?;
        let stopping = {
            let mut running = self.lock();
            running.groups.insert(pid.as_raw_nonzero().get());
            running.stopping
        };
        if stopping {
            // Started while `stop` ran, after it listed the groups to signal.
            let _ = kill_process_group(pid, Signal::KILL);
        }
        let read = read_all(pipe, live);
        let Ok(Some(log)) = read else {
            // The caller gave up on it (or the pipe failed): not waited for, and left in the
            // groups, so that `stop` ends it (and reaps it) with the others.
            self.lock().abandoned.push(pid);
            return read.map(|_| None).at(cwd);
        };
        let exit_code = self.reap(pid).at(cwd)?;
        Ok(Some(CommandOutput { exit_code, log }))
    }

    /// Stop every running command with its whole process group: TERM, then, after `grace`
    /// or as soon as every shell has exited, KILL for whatever is left in the groups (a
    /// child in the background outlives its shell). Nothing starts after this.
    pub fn stop(&self, grace: Duration) {
        let signalled: Vec<i32> = {
            let mut running = self.lock();
            running.stopping = true;
            running.groups.iter().copied().collect()
        };
        for &pid in &signalled {
            signal_group(pid, Signal::TERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            let running = self.lock();
            let waiting = signalled
                .iter()
                .any(|pid| running.groups.contains(pid) && !has_exited(*pid));
            drop(running);
            if !waiting {
                break;
            }
            thread::sleep(STOP_POLL);
        }
        for &pid in &signalled {
            signal_group(pid, Signal::KILL);
        }
        let abandoned = std::mem::take(&mut self.lock().abandoned);
        for pid in abandoned {
            let _ = self.reap(pid); // killed just now: the wait is short
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        // A panic elsewhere cannot leave `Running` half-changed: it is a flag and a set.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wait for the shell to exit, then reap it and forget its group under the lock, so that
    /// `stop` never signals a pid that may have been given to another process. Its exit
    /// code, or minus the signal that ended it.
    fn reap(&self, pid: Pid) -> io::Result<i32> {
        loop {
            match waitid(
                WaitId::Pid(pid),
                WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
            ) {
                Err(rustix::io::Errno::INTR) => {}
                Err(err) => return Err(err.into()),
                Ok(_) => break,
            }
        }
        let mut running = self.lock();
        let reaped = loop {
            match waitpid(Some(pid), WaitOptions::empty()) {
                Err(rustix::io::Errno::INTR) => {}
                other => break other,
            }
        };
        running.groups.remove(&pid.as_raw_nonzero().get());
        drop(running);
        let status = reaped?.map(|(_, status)| status);
        Ok(status
            .and_then(|status| {
                status
                    .exit_status()
                    .or_else(|| status.terminating_signal().map(|signal| -signal))
            })
            .unwrap_or(-1))
    }
}

/// The started shell, and the read end of the pipe its stdout and stderr write to.
fn spawn(cmd: &str, cwd: &Path, env: &CommandEnv) -> io::Result<(Pid, File)> {
    let invalid = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} holds a NUL byte"),
        )
    };
    let cmd = CString::new(cmd).map_err(|_| invalid("the command"))?;
    let cwd = CString::new(cwd.as_os_str().as_bytes()).map_err(|_| invalid("the folder"))?;
    // Close-on-exec, so a command started by another thread at the same moment does not
    // inherit this pipe and keep it open (this command's reader would wait for that one).
    let (reader, writer) = pipe_with(PipeFlags::CLOEXEC)?;
    let pid = posix::spawn_shell(&env.shell, &cmd, &cwd, &env.vars, &writer)?;
    // The write end is the command's alone now: ours closes here, or the reader would never
    // see the end of the output.
    drop(writer);
    Ok((pid, File::from(reader)))
}

/// The one call into libc that the standard library does not make for us.
#[allow(unsafe_code)]
mod posix {
    use std::ffi::{c_char, CStr, CString};
    use std::io;
    use std::mem::MaybeUninit;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::ptr;

    use rustix::process::Pid;

    /// `shell -c cmd` in `cwd` with the environment `vars`, in a new session, stdin from
    /// /dev/null, stdout and stderr to `output`, every signal at its default and none blocked.
    pub(super) fn spawn_shell(
        shell: &CStr,
        cmd: &CStr,
        cwd: &CStr,
        vars: &[CString],
        output: &OwnedFd,
    ) -> io::Result<Pid> {
        let argv: [*const c_char; 4] = [shell.as_ptr(), c"-c".as_ptr(), cmd.as_ptr(), ptr::null()];
        let envp: Vec<*const c_char> = vars
            .iter()
            .map(|var| var.as_ptr())
            .chain([ptr::null()])
            .collect();
        let fd = output.as_raw_fd();
        let mut pid: libc::pid_t = 0;
        // SAFETY: every pointer handed to libc points into a value borrowed for this whole
        // function (`argv` and `envp` are NULL-terminated arrays of NUL-terminated strings
        // that outlive the call); the attribute and file-action objects are initialised
        // before use and destroyed once, on every path, by `Spawn`'s drop.
        unsafe {
            let mut spawn = Spawn::new()?;
            let actions = spawn.actions.as_mut_ptr();
            let attr = spawn.attr.as_mut_ptr();
            check(libc::posix_spawn_file_actions_addchdir_np(
                actions,
                cwd.as_ptr(),
            ))?;
            check(libc::posix_spawn_file_actions_addopen(
                actions,
                0,
                c"/dev/null".as_ptr(),
                libc::O_RDONLY,
                0,
            ))?;
            // dup2 clears close-on-exec on the copies, which the command keeps.
            check(libc::posix_spawn_file_actions_adddup2(actions, fd, 1))?;
            check(libc::posix_spawn_file_actions_adddup2(actions, fd, 2))?;
            // Python ignores SIGPIPE (and SIGXFSZ), which a command would inherit: every signal
            // back to its default, and none blocked (a thread of ours may block some).
            let mut signals = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigfillset(signals.as_mut_ptr());
            check(libc::posix_spawnattr_setsigdefault(attr, signals.as_ptr()))?;
            libc::sigemptyset(signals.as_mut_ptr());
            check(libc::posix_spawnattr_setsigmask(attr, signals.as_ptr()))?;
            let flags = libc::c_int::from(libc::POSIX_SPAWN_SETSID)
                | libc::POSIX_SPAWN_SETSIGDEF
                | libc::POSIX_SPAWN_SETSIGMASK;
            check(libc::posix_spawnattr_setflags(attr, flags as libc::c_short))?;
            check(libc::posix_spawn(
                &raw mut pid,
                shell.as_ptr(),
                actions,
                attr,
                argv.as_ptr().cast::<*mut c_char>(),
                envp.as_ptr().cast::<*mut c_char>(),
            ))?;
        }
        Pid::from_raw(pid).ok_or_else(|| io::Error::other("posix_spawn gave no pid"))
    }

    /// The attribute and file-action objects of one `posix_spawn`, destroyed on drop. Moved
    /// once initialised: glibc's are plain data (the list of actions lives on the heap).
    struct Spawn {
        attr: MaybeUninit<libc::posix_spawnattr_t>,
        actions: MaybeUninit<libc::posix_spawn_file_actions_t>,
        ready: u8, // how many of the two are initialised, in that order
    }

    impl Spawn {
        fn new() -> io::Result<Spawn> {
            let mut spawn = Spawn {
                attr: MaybeUninit::uninit(),
                actions: MaybeUninit::uninit(),
                ready: 0,
            };
            // SAFETY: each is initialised in place, and counted only once it is.
            unsafe {
                check(libc::posix_spawnattr_init(spawn.attr.as_mut_ptr()))?;
                spawn.ready = 1;
                check(libc::posix_spawn_file_actions_init(
                    spawn.actions.as_mut_ptr(),
                ))?;
                spawn.ready = 2;
            }
            Ok(spawn)
        }
    }

    impl Drop for Spawn {
        fn drop(&mut self) {
            // SAFETY: only what `new` initialised is destroyed, once.
            unsafe {
                if self.ready >= 2 {
                    libc::posix_spawn_file_actions_destroy(self.actions.as_mut_ptr());
                }
                if self.ready >= 1 {
                    libc::posix_spawnattr_destroy(self.attr.as_mut_ptr());
                }
            }
        }
    }

    /// The `posix_spawn` family returns an error number instead of setting `errno`.
    fn check(code: libc::c_int) -> io::Result<()> {
        if code == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(code))
        }
    }
}

/// The whole output, handed to `live` in whole lines as it comes; None as soon as `live`
/// gives up (the pipe is closed then: the command's next write ends it with SIGPIPE).
fn read_all(mut pipe: File, mut live: Option<LiveOutput<'_>>) -> io::Result<Option<Vec<u8>>> {
    let mut log = Vec::new();
    let mut shown = 0; // how much of `log` `live` has had
    let mut chunk = vec![0; READ_SIZE];
    loop {
        let count = match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(count) => count,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        log.extend_from_slice(&chunk[..count]);
        if let Some(show) = live.as_mut() {
            if let Some(end) = log[shown..].iter().rposition(|&byte| byte == b'\n') {
                let end = shown + end + 1;
                if !show(&log[shown..end]) {
                    return Ok(None);
                }
                shown = end;
            }
        }
    }
    if let Some(show) = live.as_mut() {
        if shown < log.len() && !show(&log[shown..]) {
            return Ok(None);
        }
    }
    Ok(Some(log))
}

fn has_exited(pid: i32) -> bool {
    let Some(pid) = Pid::from_raw(pid) else {
        return true;
    };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
    // An error (ECHILD) means it is reaped already.
    !matches!(waitid(WaitId::Pid(pid), options), Ok(None))
}

fn signal_group(pid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        // Gone already (ESRCH), or not ours to signal: nothing left to stop.
        let _ = kill_process_group(pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> CommandEnv {
        CommandEnv::new(vec![(
            "PATH".to_owned(),
            std::env::var("PATH").unwrap_or_default(),
        )])
    }

    fn run(cmd: &str) -> CommandOutput {
        Commands::new()
            .run(cmd, Path::new("."), &env(), None)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn stdout_and_stderr_in_one_log_in_order() {
        let out = run("echo one; echo two >&2; printf three");
        assert_eq!(out.exit_code, 0);
        assert_eq!(out.log, b"one\ntwo\nthree");
    }

    #[test]
    fn exit_code_and_signal() {
        assert_eq!(run("exit 3").exit_code, 3);
        assert_eq!(run("kill -TERM $$").exit_code, -15);
    }

    #[test]
    fn live_gets_whole_lines_then_the_rest() {
        let mut seen: Vec<Vec<u8>> = Vec::new();
        let mut show = |data: &[u8]| {
            seen.push(data.to_vec());
            true
        };
        let out = Commands::new()
            .run(
                "printf 'a\\nb'; sleep 0.1; printf 'c\\nd'",
                Path::new("."),
                &env(),
                Some(&mut show),
            )
            .unwrap()
            .unwrap();
        assert_eq!(out.log, b"a\nbc\nd");
        assert_eq!(seen, vec![b"a\n".to_vec(), b"bc\n".to_vec(), b"d".to_vec()]);
    }

    #[test]
    fn giving_up_on_the_output_returns_at_once_and_stop_ends_the_command() {
        let commands = Commands::new();
        let started = Instant::now();
        let mut give_up = |_: &[u8]| false;
        let ran = commands
            .run(
                "echo one; sleep 5; echo two",
                Path::new("."),
                &env(),
                Some(&mut give_up),
            )
            .unwrap();
        assert!(ran.is_none());
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(commands.lock().groups.len(), 1);
        commands.stop(Duration::from_secs(3));
        assert!(commands.lock().groups.is_empty());
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn nothing_starts_after_stop() {
        let commands = Commands::new();
        commands.stop(Duration::ZERO);
        let ran = commands
            .run("echo hi", Path::new("."), &env(), None)
            .unwrap();
        assert!(ran.is_none());
    }

    #[test]
    fn stop_ends_a_command_and_its_background_child() {
        let commands = std::sync::Arc::new(Commands::new());
        let running = std::sync::Arc::clone(&commands);
        let started = Instant::now();
        let worker = thread::spawn(move || {
            running
                .run("sleep 30 & sleep 30", Path::new("."), &env(), None)
                .unwrap()
                .unwrap()
        });
        while commands.lock().groups.is_empty() {
            thread::sleep(Duration::from_millis(5));
        }
        commands.stop(Duration::from_secs(3));
        let out = worker.join().unwrap();
        assert_eq!(out.exit_code, -15);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn commands_starting_while_stop_runs_are_stopped_too() {
        // Threads start commands in a loop, so some start while `stop` signals the others
        // (rounds, as the moment is a race): every one must end at once, killed, and none
        // may start once `stop` has returned.
        for _ in 0..10 {
            let commands = std::sync::Arc::new(Commands::new());
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    let commands = std::sync::Arc::clone(&commands);
                    thread::spawn(move || {
                        let mut ran = 0;
                        while let Some(out) = commands
                            .run("sleep 5", Path::new("."), &env(), None)
                            .unwrap()
                        {
                            assert_ne!(out.exit_code, 0, "a command outlived stop");
                            ran += 1;
                        }
                        ran
                    })
                })
                .collect();
            while commands.lock().groups.is_empty() {
                thread::sleep(Duration::from_millis(1));
            }
            commands.stop(Duration::from_secs(3));
            for worker in workers {
                // The one in flight when `stop` came, at most: none starts after.
                assert!(worker.join().unwrap() <= 1);
            }
            assert!(commands.lock().groups.is_empty());
        }
    }

    #[test]
    fn missing_folder_is_an_error_naming_it() {
        let err = Commands::new()
            .run("true", Path::new("/no/such/folder"), &env(), None)
            .unwrap_err();
        assert!(err.to_string().contains("/no/such/folder"), "{err}");
    }

    #[test]
    fn shell_found_on_the_commands_path() {
        assert_eq!(
            CommandEnv::new(vec![]).shell(),
            Path::new("/bin/sh"),
            "no PATH: the default shell"
        );
        assert!(env().shell().ends_with("sh"));
    }
}
