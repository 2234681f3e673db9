//! Keeps the runtime key away from robots. Robots run as the agent's OS user, so
//! without care a robot could read the key from `/proc/<agent>/environ`.

/// The environment variable that may carry the key.
pub const KEY_VARIABLE: &str = "REGENTE_RUNTIME_KEY";

/// Makes the agent's memory and environment unreadable by other processes of
/// its user, and blanks the key in the environment block the kernel shows in
/// `/proc/<pid>/environ` (the way some clients blank a password in their
/// arguments). Call it once the key is read, before any thread is started.
pub fn hide_key() {
    #[cfg(target_os = "linux")]
    unsafe {
        // Not dumpable: /proc/<pid>/environ and /proc/<pid>/mem need root.
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
        blank_environment_value(KEY_VARIABLE);
    }
    // No robot inherits it either (the executor also removes every REGENTE_*).
    std::env::remove_var(KEY_VARIABLE);
}

/// Overwrites the value of `name` in place in the process's environment block.
///
/// # Safety
/// No other thread may read or change the environment meanwhile.
#[cfg(target_os = "linux")]
unsafe fn blank_environment_value(name: &str) {
    extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    let prefix = format!("{name}=");
    let mut entry = environ;
    if entry.is_null() {
        return;
    }
    while !(*entry).is_null() {
        let text = std::ffi::CStr::from_ptr(*entry).to_bytes();
        if text.starts_with(prefix.as_bytes()) {
            let value = (*entry).add(prefix.len());
            std::ptr::write_bytes(value, b'x', text.len() - prefix.len());
        }
        entry = entry.add(1);
    }
}

/// Makes everything this process creates private to its user (umask 077),
/// whatever the caller's umask. Explicit modes stay where a file must be
/// readable by others (packages for robot users).
pub fn private_umask() {
    #[cfg(unix)]
    unsafe {
        libc::umask(0o077);
    }
}
