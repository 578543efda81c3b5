//! Children die with their parent: every process `callpatch` starts gets `PR_SET_PDEATHSIG(SIGKILL)`,
//! so a parent that is killed (even by SIGKILL) takes its parts and their children with it instead of
//! leaving them to write into its folder later. The death signal is tied to the thread that spawned
//! the child, so spawn only from a thread that lives as long as the child may (here: the main thread).

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Ties the child `cmd` will start to this process; with `own_group` the child also leads a new process
/// group, so that its children can be signalled together (`kill(-pid)`) and a terminal's Ctrl-C reaches
/// only the parent, which forwards it (`interrupt`).
pub fn tie(cmd: &mut Command, own_group: bool) -> &mut Command {
    // SAFETY: `getpid` has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the child between fork and exec and calls only async-signal-safe
    // functions (setpgid, prctl, getppid, _exit); it allocates nothing (`last_os_error` reads errno).
    unsafe {
        cmd.pre_exec(move || {
            if own_group && libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the death signal was armed: then nobody would send it.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    }
}
